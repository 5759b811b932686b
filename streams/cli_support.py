"""Helpers shared by the CLI and the worker: resolving a vocabulary argument."""

from __future__ import annotations

from pathlib import Path

from vocab import builtin_vocabulary_path
from vocab.schema import Vocabulary, load_vocabulary


def load_vocabulary_arg(name_or_path: str) -> Vocabulary:
    """A YAML file path, or the name of a built-in vocabulary ('space')."""
    path = Path(name_or_path)
    if not path.exists() and builtin_vocabulary_path(name_or_path).exists():
        path = builtin_vocabulary_path(name_or_path)
    return load_vocabulary(path)
