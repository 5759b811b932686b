"""pyarrow, without the import of pandas it makes when it builds an array.

pyarrow looks for pandas the first time it builds an array, so that it can take pandas
objects; chdb depends on pandas, so that look imports it: a third of a second of CPU, a fifth
of a `columnist tag` of one photo, and taken from the encoder in a long `tag` or a worker's
first batch. columnist never hands pyarrow a pandas object, so the look is made here to find
none, when a store is opened (on the thread that opens it, before the writers start); and the
store builds every column with its type (``strings``), because pyarrow infers an untyped
list's type through pandas all the same. pyarrow imports pandas again wherever pandas is really
asked for (``to_pandas``), so that still works.
"""

from __future__ import annotations

import sys
from typing import Iterable

import pyarrow as pa

__all__ = ["pa", "strings"]


class _NoPandas:
    """A finder that answers `import pandas` with ImportError, put first while pyarrow looks."""

    @staticmethod
    def find_spec(name: str, path: object = None, target: object = None) -> None:
        if name == "pandas":
            raise ImportError("not looked for: columnist hands pyarrow no pandas objects")


def _look_for_pandas_finds_none() -> None:
    if "pandas" in sys.modules:  # imported already: there is nothing to save
        return
    sys.meta_path.insert(0, _NoPandas)
    try:
        pa.array([0], pa.int8())
    finally:
        sys.meta_path.remove(_NoPandas)


_look_for_pandas_finds_none()


def strings(values: Iterable[str]) -> pa.Array:
    """A column of strings, typed: pyarrow infers an untyped list's type through pandas."""
    return pa.array(list(values), pa.string())
