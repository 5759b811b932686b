"""Where a model command writes (``model pull --out``, ``model export --out``, ``model quantize
--out``): nothing it writes may delete or overwrite what columnist did not make.

``pull`` builds the model in a staging folder beside the target and swaps it in whole, so it
replaces the target: only a target columnist wrote (it holds the MARKER file) may be
replaced, never a folder that merely has a ``model.json``, never the folder being converted
or one of its parents, and never while another pull writes it (a lock beside it).
``export`` and ``quantize`` write their own files into the target: it must be new, empty, or
a model directory.
"""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from columnist.errors import ConfigurationError, Locked
from columnist.printable import printable

MARKER = ".columnist-model"
"""Written into every model directory ``pull`` makes: what says columnist may replace it."""


class TargetRefused(ConfigurationError):
    """An --out that columnist will not write into (or replace)."""


class TargetBusy(Locked):
    """Another pull is writing the same --out."""


def check_target(out: Path, replaces: bool, source: Path | None = None) -> None:
    """TargetRefused unless ``out`` may be written (``replaces``: replaced as a whole)."""
    shown = printable(out)
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise TargetRefused(f"{shown}: exists and is not a folder; choose another --out")
    if source is not None:
        resolved, given = out.resolve(), Path(source).resolve()
        if resolved == given or given.is_relative_to(resolved) or resolved.is_relative_to(given):
            raise TargetRefused(f"{shown}: the folder being converted is in it, or it is in that folder; choose "
                                "another --out")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if replaces and not (out / MARKER).is_file():
        raise TargetRefused(f"{shown}: a folder columnist did not write (no {MARKER} in it) would be replaced; "
                            "remove it yourself or choose another --out")
    if not replaces and not (out / "model.json").is_file():
        raise TargetRefused(f"{shown}: a folder that is not a model directory (no model.json); choose another --out")


def mark(directory: Path) -> None:
    (directory / MARKER).write_text("written by columnist (model pull); columnist may replace this folder\n")


@contextmanager
def target_lock(out: Path) -> Iterator[None]:
    """One pull at a time into a folder: the folder holding ``out`` is locked (flock on the
    folder itself, so no lock file is left behind); TargetBusy while another pull holds it."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(out.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as err:
        raise TargetRefused(f"{printable(out)}: cannot use its folder: {err.strerror}") from None
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise TargetBusy(f"another `columnist model pull` is writing into {printable(out.parent)}; wait for it, "
                             "or choose another --out") from None
        yield
    finally:
        os.close(descriptor)
