"""``columnist model pull REPO_ID``: a ready-made ONNX model from Hugging Face, no torch.

huggingface_hub does the downloading: its cache (``HF_HOME``), revisions, resumable
downloads and ``HF_HUB_OFFLINE=1`` (then only the cache is read). Only the files the
layouts need are fetched (no ARM NN / Rockchip files, no fp16 or 4-bit variants), then
models.layouts turns the snapshot into a columnist model directory.
"""

from __future__ import annotations

from pathlib import Path

from columnist.errors import Unavailable, UsageError
from columnist.models.layouts import convert
from columnist.models.spec import ModelSpec

PATTERNS = {
    "fp32": ["config.json", "*.md", "visual/*", "textual/*", "preprocessor_config.json", "tokenizer.json",
             "tokenizer_config.json", "special_tokens_map.json", "onnx/vision_model.onnx*", "onnx/text_model.onnx*"],
    "int8": ["config.json", "*.md", "preprocessor_config.json", "tokenizer.json", "tokenizer_config.json",
             "special_tokens_map.json", "onnx/vision_model_quantized.onnx*", "onnx/text_model_quantized.onnx*"],
}
IGNORE = ["*.armnn", "*.rknn", "*/rknpu/*", "*/fp16/*"]


class PullError(Unavailable, RuntimeError):
    """Offline, unknown repository or revision, no network: a sentence saying what to do."""


class InvalidRepoId(UsageError, ValueError):
    """Not OWNER/NAME: refused before anything is fetched or a folder is named after it."""


def check_repo_id(repo_id: str) -> str:
    """OWNER/NAME as Hugging Face spells repository ids (it also names the local folder)."""
    import re

    if (not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}", repo_id)
            or ".." in repo_id or "--" in repo_id):  # Hugging Face allows neither; '--' would merge folder names
        raise InvalidRepoId(f"{repo_id[:100]!r} is not a Hugging Face repository id (OWNER/NAME, "
                        "e.g. immich-app/ViT-B-32__openai)")
    return repo_id


def default_out(repo_id: str) -> Path:
    from columnist.models.registry import PULLED_DIR

    return PULLED_DIR / check_repo_id(repo_id).replace("/", "--")


def pull(repo_id: str, out: Path | None = None, revision: str | None = None, variant: str = "fp32",
         name: str | None = None, logit_scale: float | None = None, logit_bias: float | None = None,
         snapshot: Path | None = None) -> tuple[ModelSpec, Path]:
    """Download ``repo_id`` (or read it from the cache), or take ``snapshot``, a copied folder,
    and convert it into ``out``."""
    out = Path(out) if out else default_out(repo_id)
    snapshot = snapshot or download(check_repo_id(repo_id), revision, variant)
    spec = convert(snapshot, out, repo_id, name=name, variant=variant, logit_scale=logit_scale, logit_bias=logit_bias)
    return spec, out


def download(repo_id: str, revision: str | None = None, variant: str = "fp32") -> Path:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    if variant not in PATTERNS:
        raise PullError(f"variant {variant!r}: choose {' or '.join(PATTERNS)}")
    try:
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=PATTERNS[variant],
                                      ignore_patterns=IGNORE))
    except RepositoryNotFoundError:
        raise PullError(f"{repo_id}: no such model repository on Hugging Face (or it is private: "
                        "log in with `hf auth login`)") from None
    except RevisionNotFoundError:
        raise PullError(f"{repo_id}: no revision {revision!r}") from None
    except LocalEntryNotFoundError:
        from huggingface_hub.constants import HF_HUB_CACHE

        cache = Path(HF_HUB_CACHE) / ("models--" + repo_id.replace("/", "--"))
        raise PullError(f"{repo_id} is not in the Hugging Face cache and the hub cannot be reached "
                        f"(offline, or HF_HUB_OFFLINE=1): pull it on a machine with network, then copy its "
                        f"cache folder to {cache}, or convert a copied snapshot folder with --from-folder DIR") from None
    except (HfHubHTTPError, OSError) as err:
        raise PullError(f"{repo_id}: download failed: {str(err).splitlines()[0][:300]}") from None
