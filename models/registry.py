"""Model names to encoders: ``mock``, a built-in model directory, or any directory path."""

from __future__ import annotations

from pathlib import Path

from columnist.errors import ConfigurationError
from columnist.models.encoder import Encoder
from columnist.printable import printable

BUILTIN_DIR = Path(__file__).parent
PULLED_DIR = Path.home() / ".columnist" / "models"
"""Where `columnist model pull` writes models (OWNER--NAME)."""


class ModelNotFound(ConfigurationError, LookupError):
    """No built-in, pulled or local model by that name (or path)."""


def load_encoder(name: str, threads: int = 0, batch_size: int = 32, runtime: str = "auto") -> Encoder:
    """The encoder for ``name``: 'mock', a built-in model (e.g. 'tiny-clip') or a directory.

    ``threads`` (0: one per core) and ``batch_size`` apply to ONNX models; ``runtime`` is
    'auto' (the one the model directory names: onnxruntime, or openvino for a model quantized
    for it) or a name of models.sessions.RUNTIMES."""
    if name == "mock":
        from columnist.models.mock import MockEncoder

        return MockEncoder()
    directory = resolve_model_dir(name)
    from columnist.models.clip import ClipEncoder

    encoder = ClipEncoder.from_directory(directory, threads=threads, batch_size=batch_size, runtime=runtime)
    encoder.ref = lasting_ref(name)
    return encoder


def lasting_ref(ref: str) -> str:
    """How to name a model so another process, in another directory, loads the same one: a
    relative model folder as its absolute path; a name (built-in, pulled) as it is."""
    try:
        path = Path(ref).expanduser()
        if not path.is_absolute() and (path / "model.json").is_file():
            return str(path.resolve())
        return ref
    except (OSError, RuntimeError, ValueError):  # not a path this system can have: a name
        return ref


def model_folders() -> list[Path]:
    """Where local models live: the built-in ones, pulled ones, and this checkout's exports."""
    return [BUILTIN_DIR, PULLED_DIR, Path(".columnist") / "models"]


def resolve_model_dir(name: str) -> Path:
    """A model directory by path, or by the name of a built-in, pulled or exported model."""
    from columnist.lookup import name_or_path

    found = name_or_path(name, model_folders(), lambda candidate: (candidate / "model.json").is_file())
    if found is not None:
        return found.resolve()
    raise ModelNotFound(
        f"model {printable(name)!r} not found: expected 'mock', a built-in model "
        f"({', '.join(builtin_models()) or 'none'}) or a directory holding model.json; a model from Hugging Face "
        f"is pulled first: columnist model pull OWNER/NAME (e.g. immich-app/{printable(name.split('/')[-1], 60)}__openai"
        f" for open_clip's names), then --model OWNER/NAME"
    )


def builtin_models() -> list[str]:
    return sorted(p.parent.name for p in BUILTIN_DIR.glob("*/model.json"))


def local_models() -> list[tuple[str, str, str, int, str, str, str]]:
    """(name, runtime, precision, embedding size, scoring, source, directory) of every local model."""
    from columnist.models.spec import ModelSpec

    rows = []
    for folder in model_folders():
        for description in sorted(folder.glob("*/model.json")):
            if description.parent.name.startswith("."):
                continue  # a conversion in progress, or one that was killed
            try:
                spec = ModelSpec.read(description.parent)
            except (OSError, ValueError):
                continue  # a half-written or foreign model.json is not listed
            rows.append((spec.name, spec.runtime, spec.dtype, spec.embedding_dim, spec.scoring,
                         spec.source or "-", str(description.parent.resolve())))
    return rows
