"""Ready-made ONNX model folders -> columnist model directories, without torch.

Two layouts are recognised (their files as published on Hugging Face):

* Immich (``immich-app/ViT-B-32__openai``, ``…SigLIP…``, ``XLM-Roberta-Large-Vit-B-32``, …):
  ``config.json`` (open_clip's model config), ``visual/model.onnx`` (input ``image``, output
  ``embedding``, batch fixed at 1), ``visual/preprocess_cfg.json``, ``textual/model.onnx``
  (int32 ``text``, or ``input_ids`` + ``attention_mask`` for M-CLIP), ``textual/tokenizer.json``
  and ``tokenizer_config.json``. Weights of large towers sit in files beside ``model.onnx``.
* transformers.js (``Xenova/clip-vit-base-patch32``, ``Xenova/siglip-base-patch16-224``):
  ``config.json`` (a transformers config), ``preprocessor_config.json``, ``tokenizer.json``,
  ``tokenizer_config.json`` and ``onnx/vision_model[_quantized].onnx`` /
  ``onnx/text_model[_quantized].onnx`` (CLIP: ``image_embeds`` / ``text_embeds``; SigLIP:
  ``pooler_output``).

Neither layout carries a trained logit scale or SigLIP's logit bias (they are weights, not
config), so ``convert`` takes them as arguments, and records where every number came from
in ``model.json``'s ``provenance``. The converted towers are run once on a blank image and a
short text to check their inputs and embedding sizes before anything is written.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from columnist.errors import ConfigurationError
from columnist.models.registry import BUILTIN_DIR
from columnist.models.spec import ModelSpec
from columnist.models.target import check_target, mark, target_lock
from columnist.printable import printable

CLIP_LOGIT_SCALE = 100.0
"""OpenAI CLIP's trained logit scale (exp 4.6052), the value of every released CLIP."""

RESERVED_NAMES = {"mock"}

SKIPPED = (".armnn", ".rknn")
"""Files of other runtimes in Immich's folders (ARM NN, Rockchip NPU)."""


class LayoutError(ConfigurationError, ValueError):
    """A folder that is not a model layout columnist knows, or whose files disagree."""


def recognise(folder: Path) -> str:
    """'immich', 'transformers.js', or LayoutError saying what was expected."""
    folder = Path(folder)
    if (folder / "visual" / "model.onnx").is_file() and (folder / "textual" / "model.onnx").is_file():
        return "immich"
    if (folder / "onnx").is_dir() and (folder / "preprocessor_config.json").is_file():
        return "transformers.js"
    found = ", ".join(sorted(p.name for p in folder.iterdir())[:12]) if folder.is_dir() else "nothing"
    raise LayoutError(f"{folder}: not a model layout columnist knows (found {found}); expected Immich's "
                      "visual/model.onnx + textual/model.onnx + config.json, or transformers.js's "
                      "onnx/vision_model.onnx + onnx/text_model.onnx + preprocessor_config.json")


def convert(folder: Path, out: Path, source: str, name: str | None = None, variant: str = "fp32",
            logit_scale: float | None = None, logit_bias: float | None = None) -> ModelSpec:
    """Write a columnist model directory ``out`` from the model layout in ``folder``; ``out``
    appears whole or not at all, and replaces only a model directory a pull wrote."""
    folder, out = Path(folder), Path(out)
    layout = recognise(folder)
    with target_lock(out):
        check_target(out, replaces=True, source=folder)
        spec, files = _read_layout(layout, folder, source, variant)
        spec = _with_logits(spec, logit_scale, logit_bias)
        spec = spec.model_copy(update={"name": name or f"{spec.name}@{_revision(folder, spec)}"})
        try:
            spec = ModelSpec.model_validate(spec.model_dump())  # model_copy does not validate what it sets
        except ValueError as err:
            raise LayoutError(f"{printable(folder)}: {' '.join(str(err).split())[:400]}") from None
        if spec.name in RESERVED_NAMES or (BUILTIN_DIR / spec.name / "model.json").is_file():
            raise LayoutError(f"model name {spec.name!r} is a built-in model's: choose another --name")
        _check_files(folder, files)
        for stale in out.parent.glob(f".{out.name}.partial-*"):  # left by a conversion that was killed
            shutil.rmtree(stale, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
        umask = os.umask(0)
        os.umask(umask)
        staging.chmod(0o777 & ~umask)  # mkdtemp's 0700 would keep the model from a service running as another user
        try:
            for relative in files:
                target = staging / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(folder / relative, target)
            spec.write(staging)
            mark(staging)
            check(staging, spec, named=folder)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        _swap(staging, out)
    return spec


def _read_layout(layout: str, folder: Path, source: str, variant: str) -> tuple[ModelSpec, list[str]]:
    try:
        return (_immich if layout == "immich" else _transformers_js)(folder, source, variant)
    except LayoutError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, RecursionError, ArithmeticError) as err:
        raise LayoutError(f"{printable(folder)}: its {layout} configuration files do not describe a model columnist "
                          f"can run ({type(err).__name__}: {printable(err)})") from None


def _check_files(folder: Path, files: list[str]) -> None:
    """Every file to copy is a regular file inside the folder (a Hugging Face snapshot links
    into its repository's blobs), not sparse, and all of them together within MAX_MODEL_BYTES."""
    snapshots = folder.resolve().parent
    allowed = (folder, snapshots.parent / "blobs") if snapshots.name == "snapshots" else (folder,)
    total = 0
    for relative in files:
        total += _regular(folder / relative, MAX_MODEL_FILE_BYTES, allowed)
    if total > MAX_MODEL_BYTES:
        raise LayoutError(f"{printable(folder)}: its model files come to {total:,} bytes, more than a model may have "
                          f"({MAX_MODEL_BYTES:,})")


def _swap(staging: Path, out: Path) -> None:
    """``staging`` becomes ``out``; what was there (a model directory a pull wrote) goes."""
    if not out.exists():
        staging.rename(out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    out.rename(old / out.name)
    staging.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def _revision(folder: Path, spec: ModelSpec) -> str:
    """What tells these weights from another revision's, in the model's name (stored with every
    embedding, so a store refuses to mix them): the Hugging Face commit of a cache snapshot,
    else the first hex digits of the two graph files' sha256."""
    import hashlib
    import re

    resolved = folder.resolve()
    if resolved.parent.name == "snapshots" and re.fullmatch(r"[0-9a-f]{40}", resolved.name):
        return resolved.name[:10]
    digest = hashlib.sha256()
    for file in (spec.visual, spec.textual):
        with open(folder / file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return "sha256-" + digest.hexdigest()[:10]


# -- Immich ------------------------------------------------------------------------------

def _immich(folder: Path, source: str, variant: str) -> tuple[ModelSpec, list[str]]:
    if variant != "fp32":
        raise LayoutError(f"{source}: Immich publishes fp32 ONNX towers only (asked for {variant!r}); "
                          "quantize after pulling: columnist model quantize")
    config = _json(folder / "config.json")
    preprocess = _json(folder / "visual" / "preprocess_cfg.json")
    tokenizer_config = _json(folder / "textual" / "tokenizer_config.json")
    text = config.get("text_cfg", {})
    size = preprocess.get("size", 224)
    siglip = "siglip" in json.dumps(config).lower()
    nllb = "nllb" in str(text.get("hf_tokenizer_name", "")).lower()
    provenance = {
        "embedding_dim": "config.json embed_dim",
        "image_size": "visual/preprocess_cfg.json size",
        "mean": "visual/preprocess_cfg.json mean", "std": "visual/preprocess_cfg.json std",
        "resize": "visual/preprocess_cfg.json resize_mode" if "resize_mode" in preprocess
        else "default 'shortest' (preprocess_cfg.json has no resize_mode)",
        "context_length": "config.json text_cfg.context_length" if "context_length" in text
        else "default 77 (config.json has none; Immich uses 77)",
        "pad_token": "textual/tokenizer_config.json pad_token",
    }
    spec = ModelSpec(
        name=source, embedding_dim=_integer(config["embed_dim"], "config.json embed_dim"),
        image_size=_integer(size[0] if isinstance(size, list) else size, "visual/preprocess_cfg.json size"),
        mean=tuple(preprocess.get("mean", (0.48145466, 0.4578275, 0.40821073))),
        std=tuple(preprocess.get("std", (0.26862954, 0.26130258, 0.27577711))),
        resize=_resize_mode(preprocess.get("resize_mode", "shortest"), folder),
        interpolation=_interpolation(preprocess.get("interpolation", "bicubic"), folder),
        context_length=_integer(text.get("context_length", 77), "config.json text_cfg.context_length"),
        logit_scale=CLIP_LOGIT_SCALE, source=f"{source} (Immich layout)",
        visual="visual/model.onnx", textual="textual/model.onnx", tokenizer="textual/tokenizer.json",
        pad_token=_token(tokenizer_config.get("pad_token")),
        canonicalize=(text.get("tokenizer_kwargs") or {}).get("clean") == "canonicalize",
        text_prefix="eng_Latn" if nllb else "",
        provenance={**provenance, "family": "siglip" if siglip else "clip",
                    **({"text_prefix": "NLLB reads a language code first; English, as Immich does"} if nllb else {})},
    )
    files = [p.relative_to(folder).as_posix() for tower in ("visual", "textual")
             for p in sorted((folder / tower).rglob("*")) if _wanted(p, folder / tower)]
    return spec, files


def _wanted(path: Path, tower: Path) -> bool:
    """Everything of an ONNX tower (its model, external weight files, configs), nothing of
    other runtimes (``*.armnn``, ``*.rknn``, the ``rknpu/`` and ``fp16/`` folders)."""
    parts = path.relative_to(tower).parts
    return not path.is_dir() and path.suffix not in SKIPPED and parts[0] not in ("rknpu", "fp16")  # a FIFO is refused later


# -- transformers.js ---------------------------------------------------------------------

VARIANTS = {"fp32": "", "int8": "_quantized"}
"""transformers.js file suffixes columnist can run (fp16 and 4-bit towers take other inputs)."""


def _transformers_js(folder: Path, source: str, variant: str) -> tuple[ModelSpec, list[str]]:
    if variant not in VARIANTS:
        raise LayoutError(f"{source}: variant {variant!r} is not one columnist runs; choose {' or '.join(VARIANTS)}")
    config = _json(folder / "config.json")
    preprocess = _json(folder / "preprocessor_config.json")
    tokenizer_config = _json(folder / "tokenizer_config.json")
    kind = config.get("model_type", "")
    if kind not in ("clip", "siglip"):
        raise LayoutError(f"{folder / 'config.json'}: model_type {kind!r}; columnist runs 'clip' and 'siglip'")
    suffix = VARIANTS[variant]
    visual, textual = f"onnx/vision_model{suffix}.onnx", f"onnx/text_model{suffix}.onnx"
    for tower in (visual, textual):
        if not (folder / tower).is_file():
            raise LayoutError(f"{folder}: {tower} is missing (the {variant} variant of this repository)")
    crop = preprocess.get("do_center_crop", False)
    size = _side(preprocess.get("crop_size") if crop else preprocess.get("size"))
    siglip = kind == "siglip"
    dim = config.get("projection_dim", 512) if not siglip else config.get("text_config", {}).get("hidden_size", 768)
    max_length = tokenizer_config.get("model_max_length", 64 if siglip else 77)
    max_length = int(min(max_length, 512)) if isinstance(max_length, (int, float)) and not isinstance(max_length, bool) \
        else _integer(max_length, "tokenizer_config.json model_max_length")
    spec = ModelSpec(
        name=source + ("-int8" if variant == "int8" else ""),
        embedding_dim=_integer(dim, "config.json " + ("text_config.hidden_size" if siglip else "projection_dim")),
        image_size=size,
        mean=tuple(preprocess.get("image_mean")), std=tuple(preprocess.get("image_std")),
        resize="shortest" if crop else "squash",
        interpolation="bilinear" if preprocess.get("resample") == 2 else "bicubic",
        context_length=min(max_length, 64 if siglip else 77),
        dtype="int8" if variant == "int8" else "fp32",
        logit_scale=CLIP_LOGIT_SCALE, source=f"{source} (transformers.js layout, {variant})",
        visual=visual, textual=textual, tokenizer="tokenizer.json",
        visual_output="pooler_output" if siglip else "image_embeds",
        textual_output="pooler_output" if siglip else "text_embeds",
        pad_token=_token(tokenizer_config.get("pad_token")),
        canonicalize=siglip and bool(tokenizer_config.get("do_lower_case")),
        provenance={
            "embedding_dim": "config.json " + ("text_config.hidden_size" if siglip else "projection_dim"),
            "image_size": "preprocessor_config.json " + ("crop_size" if crop else "size"),
            "mean": "preprocessor_config.json image_mean", "std": "preprocessor_config.json image_std",
            "resize": "preprocessor_config.json do_center_crop",
            "context_length": "tokenizer_config.json model_max_length",
            "pad_token": "tokenizer_config.json pad_token", "family": kind,
        },
    )
    files = [visual, textual, "tokenizer.json", "config.json", "preprocessor_config.json", "tokenizer_config.json"]
    files += [p.relative_to(folder).as_posix() for tower in (visual, textual)
              for p in sorted((folder / "onnx").glob(Path(tower).name + "_data*"))]  # external weights
    return spec, files


# -- shared ------------------------------------------------------------------------------

def _with_logits(spec: ModelSpec, logit_scale: float | None, logit_bias: float | None) -> ModelSpec:
    provenance = dict(spec.provenance)
    family = provenance.get("family", "clip")
    update: dict[str, Any] = {}
    if logit_scale is not None:
        update["logit_scale"], provenance["logit_scale"] = logit_scale, "given (--logit-scale)"
    elif family == "clip":
        provenance["logit_scale"] = "OpenAI CLIP's trained value (not in the repository)"
    else:
        provenance["logit_scale"] = ("not in the repository: 100 until given (--logit-scale); "
                                     "scores use the vocabulary's calibration")
    if logit_bias is not None:
        update["logit_bias"], provenance["logit_bias"] = logit_bias, "given (--logit-bias)"
    elif family != "clip":
        provenance["logit_bias"] = "not in the repository: give it (--logit-bias) for native sigmoid scores"
    update["provenance"] = provenance
    return spec.model_copy(update=update)


def check(directory: Path, spec: ModelSpec, named: Path | None = None) -> None:
    """Run both towers on two different inputs each, alone and together: their inputs,
    embedding sizes and the tokenizer must agree with ``spec``, every row must be finite, and
    an input's row must not depend on its batch-mates (a tower that reverses or mixes its
    batch would store every image with another's embedding). LayoutError names the file."""
    import numpy as np
    from PIL import Image

    from columnist.models.clip import ClipEncoder

    shown = printable(named or directory)  # errors name the folder people gave, not the staging copy
    encoder = ClipEncoder(directory, spec, runtime="onnxruntime", batch_size=2)
    side = spec.image_size
    images = [Image.new("RGB", (side, side), (127, 127, 127)),
              Image.fromarray(np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8))]
    texts = ["a photo of the Moon", "an astronaut floating outside a spacecraft, seen through a window"]
    try:
        checks = [("image", spec.visual, encoder.encode_images(images), [encoder.encode_images([i]) for i in images]),
                  ("text", spec.textual, encoder.encode_texts(texts), [encoder.encode_texts([t]) for t in texts])]
    except ValueError as err:
        raise LayoutError(f"{shown}: {printable(str(err).replace(str(directory), str(named or directory)), 400)}") from None
    except Exception as err:  # onnxruntime's own errors name the input and the shape it wanted
        message = printable(str(err).replace(str(directory), str(named or directory)), 400)
        raise LayoutError(f"{shown}: the towers do not run as described: {message}") from None
    for tower, file, together, alone in checks:
        where = f"{shown}/{printable(file)}"
        if together.shape != (2, spec.embedding_dim) or any(a.shape != (1, spec.embedding_dim) for a in alone):
            raise LayoutError(f"{where}: the {tower} tower answers {together.shape} for 2 inputs of "
                              f"{spec.embedding_dim} dimensions (the configuration's embedding size)")
        if not np.isfinite(together).all() or not all(np.isfinite(a).all() for a in alone):
            raise LayoutError(f"{where}: the {tower} tower gives NaN or infinite values")
        agreement = [float(together[i] @ alone[i][0]) for i in range(2)]
        if min(agreement) < 0.999:
            raise LayoutError(f"{where}: the {tower} tower's answer for one input changes with the other inputs of its "
                              f"batch (cosine {min(agreement):.3f} between the same input alone and in a batch)")


MAX_JSON_BYTES = 10_000_000
MAX_MODEL_FILE_BYTES = 20_000_000_000  # the largest published towers keep ~4 GB beside model.onnx
MAX_MODEL_BYTES = 20_000_000_000
"""All files of a model together (the largest published multilingual towers are ~9 GB)."""


def _json(path: Path) -> dict:
    """A JSON object from a small regular file (a config names no FIFO, device or huge file),
    with finite numbers only (``Infinity``, ``NaN`` and ``1e999`` are refused)."""
    from columnist.files import FileRefused, read_regular_file

    if not path.exists():
        raise LayoutError(f"{printable(path)} is missing")
    _regular(path, MAX_JSON_BYTES)
    try:
        document = json.loads(read_regular_file(path, MAX_JSON_BYTES), parse_constant=_not_finite,
                              parse_float=_finite)
    except (OSError, ValueError, RecursionError, FileRefused) as err:
        raise LayoutError(f"{printable(path)}: cannot read it as JSON: {printable(err)}") from None
    if not isinstance(document, dict):
        raise LayoutError(f"{printable(path)}: not a JSON object")
    return document


def _not_finite(constant: str) -> float:
    raise ValueError(f"{constant} is not a number a model configuration may hold")


def _finite(text: str) -> float:
    import math

    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:40]} is beyond what a number may be")
    return value


def _integer(value: Any, where: str) -> int:
    """A whole number as a configuration writes one (512, not 512.7, not true)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise LayoutError(f"{where}: {printable(value, 40)} is not a whole number")
    return value


def _regular(path: Path, max_bytes: int | None = None, inside: tuple[Path, ...] = ()) -> int:
    """``path`` (after its symlinks) is a regular file of at most ``max_bytes``, not sparse,
    inside one of ``inside`` when given; its size."""
    import stat

    target = path.resolve()
    try:
        info = os.stat(target)
    except OSError as err:
        raise LayoutError(f"{printable(path)}: cannot read it: {err.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        from columnist.files import kind

        raise LayoutError(f"{printable(path)}: {kind(info.st_mode)}, not a regular file")
    if inside and not any(target.is_relative_to(folder.resolve()) for folder in inside):
        raise LayoutError(f"{printable(path)}: a link to a file outside the model folder ({printable(target)})")
    if max_bytes is not None and info.st_size > max_bytes:
        raise LayoutError(f"{printable(path)}: {info.st_size:,} bytes, more than a model file may have")
    if info.st_size > (1 << 20) and info.st_blocks * 512 < info.st_size // 2:
        raise LayoutError(f"{printable(path)}: a sparse file ({info.st_size:,} bytes, mostly holes), not model weights")
    return info.st_size


def _token(value: Any) -> str | None:
    """A special token as tokenizer_config.json writes it: a string or {"content": ...}."""
    return value.get("content") if isinstance(value, dict) else value


def _side(value: Any) -> int:
    """224, {"height": 224, "width": 224} or {"shortest_edge": 224} -> 224."""
    if isinstance(value, dict):
        value = value.get("height", value.get("shortest_edge"))
    if not isinstance(value, int) or isinstance(value, bool):
        raise LayoutError(f"image size {value!r} is not one columnist understands")
    return value


def _resize_mode(mode: str, folder: Path) -> str:
    if mode not in ("shortest", "squash"):
        raise LayoutError(f"{folder}: resize_mode {mode!r} is not supported (shortest or squash)")
    return mode


def _interpolation(method: str, folder: Path) -> str:
    if method not in ("bicubic", "bilinear"):
        raise LayoutError(f"{folder}: interpolation {method!r} is not supported (bicubic or bilinear)")
    return method
