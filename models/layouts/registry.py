"""The model layouts columnist converts, by name: a third layout is one new module here.

Each layout module has ``NAME``, ``EXPECTS`` (its files, in words), ``recognises(folder)``
and ``read(folder, source, variant) -> (ModelSpec, files to copy)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from columnist.models.layouts import immich, transformers_js
from columnist.models.layouts.files import LayoutError
from columnist.models.spec import ModelSpec
from columnist.printable import printable


class Layout(Protocol):
    NAME: str
    EXPECTS: str

    def recognises(self, folder: Path) -> bool: ...

    def read(self, folder: Path, source: str, variant: str) -> tuple[ModelSpec, list[str]]: ...


LAYOUTS: list[Layout] = [immich, transformers_js]


def recognise(folder: Path) -> Layout:
    """The layout of ``folder``, or LayoutError saying what was expected."""
    folder = Path(folder)
    for layout in LAYOUTS:
        if layout.recognises(folder):
            return layout
    found = ", ".join(printable(p.name, 60) for p in sorted(folder.iterdir())[:12]) if folder.is_dir() else "nothing"
    raise LayoutError(f"{printable(folder)}: not a model layout columnist knows (found {found}); expected "
                      + ", or ".join(layout.EXPECTS for layout in LAYOUTS))
