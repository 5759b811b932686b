"""A recognised model folder -> a columnist model directory: read, checked, copied, swapped in.

Neither layout carries a trained logit scale or SigLIP's logit bias (they are weights, not
config), so ``convert`` takes them as arguments, and records where every number came from in
``model.json``'s ``provenance``. Before anything is written the converted towers are run
(``check``); the directory appears whole or not at all (a staging folder renamed), and
replaces only a model directory a pull wrote (models.target).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from columnist.files import umask
from columnist.models.layouts.files import MAX_MODEL_BYTES, MAX_MODEL_FILE_BYTES, LayoutError, regular
from columnist.models.layouts.registry import Layout, recognise
from columnist.models.registry import BUILTIN_DIR
from columnist.models.spec import ModelSpec
from columnist.models.target import check_target, mark, target_lock
from columnist.printable import printable

RESERVED_NAMES = {"mock"}


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
        _clear_stale_staging(out)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
        (staging / STAGING_MARKER).write_text("a model pull in progress (columnist); removed when it ends\n")
        staging.chmod(0o777 & ~umask())  # mkdtemp's 0700 would keep the model from a service running as another user
        try:
            for relative in files:
                target = staging / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(folder / relative, target)
            spec.write(staging)
            (staging / STAGING_MARKER).unlink()
            mark(staging)
            check(staging, spec, named=folder)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        _swap(staging, out)
    return spec


STAGING_MARKER = ".columnist-staging"
"""In a staging folder from its first moment: what says a later pull may clear it."""


def _clear_stale_staging(out: Path) -> None:
    """Staging folders a killed pull left beside ``out``: only folders that are named so and
    hold the staging marker (a user's own `.name.partial-notes` stays)."""
    import glob

    for stale in out.parent.glob(glob.escape(f".{out.name}.partial-") + "*"):
        if stale.is_dir() and not stale.is_symlink() and (stale / STAGING_MARKER).is_file():
            shutil.rmtree(stale, ignore_errors=True)


def _read_layout(layout: "Layout", folder: Path, source: str, variant: str) -> tuple[ModelSpec, list[str]]:
    try:
        return layout.read(folder, source, variant)
    except LayoutError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, RecursionError, ArithmeticError) as err:
        raise LayoutError(f"{printable(folder)}: its {layout.NAME} configuration files do not describe a model columnist "
                          f"can run ({type(err).__name__}: {printable(err)})") from None


def _check_files(folder: Path, files: list[str]) -> None:
    """Every file to copy is a regular file inside the folder (a Hugging Face snapshot links
    into its repository's blobs), not sparse, and all of them together within MAX_MODEL_BYTES."""
    snapshots = folder.resolve().parent
    allowed = (folder, snapshots.parent / "blobs") if snapshots.name == "snapshots" else (folder,)
    total = 0
    for relative in files:
        total += regular(folder / relative, MAX_MODEL_FILE_BYTES, allowed)
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
    """Run both towers on four different inputs each, alone and in batches of 2, 3 and 8:
    their inputs, embedding sizes and the tokenizer must agree with ``spec``, every row must be
    finite and not zero, and an input's row must not depend on its batch-mates (a tower that
    reverses, mixes or averages its batch would store every image with another's embedding).
    LayoutError names the file."""
    import numpy as np
    from PIL import Image

    from columnist.models.clip import ClipEncoder

    shown = printable(named or directory)  # errors name the folder people gave, not the staging copy
    encoder = ClipEncoder(directory, spec, runtime=spec.runtime, batch_size=8)
    side = spec.image_size
    ramp = np.linspace(0, 255, side * side * 3).reshape(side, side, 3).astype(np.uint8)
    images = [Image.new("RGB", (side, side), (127, 127, 127)),
              Image.fromarray(np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)),
              Image.fromarray(ramp), Image.new("RGB", (side, side), (200, 40, 30))]
    texts = ["a photo of the Moon", "an astronaut floating outside a spacecraft, seen through a window",
             "a cup of coffee", "rocket"]
    try:
        checks = [("image", spec.visual, encoder.encode_images, images), ("text", spec.textual, encoder.encode_texts, texts)]
        answers = [(tower, file, [encode([x]) for x in inputs],
                    [(size, encode([inputs[i % 4] for i in range(size)])) for size in (2, 3, 8)])
                   for tower, file, encode, inputs in checks]
    except ValueError as err:
        raise LayoutError(f"{shown}: {printable(str(err).replace(str(directory), str(named or directory)), 400)}") from None
    except Exception as err:  # onnxruntime's own errors name the input and the shape it wanted
        message = printable(str(err).replace(str(directory), str(named or directory)), 400)
        raise LayoutError(f"{shown}: the towers do not run as described: {message}") from None
    for tower, file, alone, batches in answers:
        where = f"{shown}/{printable(file)}"
        for size, together in batches:
            if together.shape != (size, spec.embedding_dim) or any(a.shape != (1, spec.embedding_dim) for a in alone):
                raise LayoutError(f"{where}: the {tower} tower answers {together.shape} for {size} inputs of "
                                  f"{spec.embedding_dim} dimensions (the configuration's embedding size)")
            if not np.isfinite(together).all() or not all(np.isfinite(a).all() for a in alone):
                raise LayoutError(f"{where}: the {tower} tower gives NaN or infinite values")
            if (np.linalg.norm(together, axis=1) < 0.5).any() or any(np.linalg.norm(a) < 0.5 for a in alone):
                raise LayoutError(f"{where}: the {tower} tower gives zero vectors (nothing to compare)")
            agreement = min(float(together[i] @ alone[i % 4][0]) for i in range(size))
            if agreement < 0.999:
                raise LayoutError(f"{where}: the {tower} tower's answer for one input changes with the other inputs "
                                  f"of its batch (cosine {agreement:.3f} between the same input alone and in a batch "
                                  f"of {size})")
