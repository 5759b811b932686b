"""columnist: a CLIP model as a factory of ClickHouse columns.

This folder is the package root. setuptools maps the customer's other top-level folders
under it: ``columnist.models`` is ``models/`` (the CLIP runtime) and ``columnist.vocab`` is
``vocab/`` (vocabularies and scoring maths); everything else here is the service around them,
from the bottom layer up: records, errors, settings -> (models, vocab) -> store, kafka ->
pipeline, tagger, vocabulary_change, workbench -> worker -> cli.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("columnist")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without installing
    __version__ = "0+unknown"
