"""columnist: a CLIP model as a factory of ClickHouse columns.

This folder is the root of the ``columnist`` package; setuptools maps the customer's
top-level folders under it (``columnist.streams`` = ``streams/``, ``columnist.models`` =
``models/``, ``columnist.vocab`` = ``vocab/``), so the only name installed is ``columnist``.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("columnist")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without installing
    __version__ = "0+unknown"
