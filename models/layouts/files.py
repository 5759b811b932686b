"""Reading a model folder that may come from anywhere: small, regular, strict JSON
configurations, bounded model files, and the values layouts take from them."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from columnist.errors import ConfigurationError
from columnist.printable import printable


class LayoutError(ConfigurationError, ValueError):
    """A folder that is not a model layout columnist knows, or whose files disagree."""


CLIP_LOGIT_SCALE = 100.0
"""OpenAI CLIP's trained logit scale (exp 4.6052), the value of every released CLIP."""
MAX_JSON_BYTES = 10_000_000
MAX_MODEL_FILE_BYTES = 20_000_000_000  # the largest published towers keep ~4 GB beside model.onnx
MAX_MODEL_BYTES = 20_000_000_000
"""All files of a model together (the largest published multilingual towers are ~9 GB)."""


def read_json(path: Path) -> dict:
    """A JSON object from a small regular file (a config names no FIFO, device or huge file),
    with finite numbers only (``Infinity``, ``NaN`` and ``1e999`` are refused)."""
    from columnist.files import FileRefused, read_regular_file

    if not path.exists():
        raise LayoutError(f"{printable(path)} is missing")
    regular(path, MAX_JSON_BYTES)
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


def integer(value: Any, where: str) -> int:
    """A whole number as a configuration writes one (512, not 512.7, not true)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise LayoutError(f"{where}: {printable(value, 40)} is not a whole number")
    return value


def regular(path: Path, max_bytes: int | None = None, inside: tuple[Path, ...] = ()) -> int:
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


def token(value: Any) -> str | None:
    """A special token as tokenizer_config.json writes it: a string or {"content": ...}."""
    return value.get("content") if isinstance(value, dict) else value


def side(value: Any) -> int:
    """224, {"height": 224, "width": 224} or {"shortest_edge": 224} -> 224."""
    if isinstance(value, dict):
        value = value.get("height", value.get("shortest_edge"))
    if not isinstance(value, int) or isinstance(value, bool):
        raise LayoutError(f"image size {value!r} is not one columnist understands")
    return value


def resize_mode(mode: str, folder: Path) -> str:
    if mode not in ("shortest", "squash"):
        raise LayoutError(f"{folder}: resize_mode {mode!r} is not supported (shortest or squash)")
    return mode


def interpolation(method: str, folder: Path) -> str:
    if method not in ("bicubic", "bilinear"):
        raise LayoutError(f"{folder}: interpolation {method!r} is not supported (bicubic or bilinear)")
    return method
