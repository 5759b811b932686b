"""What a name means where a name or a path may be given (``--model``, ``--vocab``).

One rule for both: the name as a path when it is one, else the name in each of the places
that hold such things (built-in first), with ``/`` in a repository id spelt ``--`` in a
folder name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable


def name_or_path(name: str, places: Iterable[Path], wanted: Callable[[Path], bool], suffix: str = "") -> Path | None:
    """The first candidate ``wanted`` accepts: ``name`` itself, then ``place/name<suffix>`` for
    each place; None when none is."""
    candidates = [Path(name).expanduser(), *(Path(place) / (name.replace("/", "--") + suffix) for place in places)]
    return next((candidate for candidate in candidates if wanted(candidate)), None)
