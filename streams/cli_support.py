"""Helpers shared by the CLI commands (and the worker): settings, vocabularies, the store,
and failing with a clear message and a non-zero exit."""

from __future__ import annotations

from pathlib import Path
from typing import NoReturn, Optional

from vocab import builtin_vocabulary_path
from vocab.schema import Vocabulary, load_vocabulary


def settings():
    from streams.settings import get_settings

    return get_settings()


def fail(message: str, code: int = 1) -> NoReturn:
    import typer

    typer.echo(message, err=True)
    raise typer.Exit(code)


def load_vocabulary_arg(name_or_path: str) -> Vocabulary:
    """A YAML file path, or the name of a built-in vocabulary ('space')."""
    path = Path(name_or_path)
    if not path.exists() and builtin_vocabulary_path(name_or_path).exists():
        path = builtin_vocabulary_path(name_or_path)
    return load_vocabulary(path)


def vocabulary_or_exit(name_or_path: Optional[str]) -> Vocabulary:
    """The vocabulary argument (default: $COLUMNIST_VOCAB), or exit naming every problem."""
    from vocab.schema import VocabularyError

    try:
        return load_vocabulary_arg(name_or_path or settings().vocab)
    except VocabularyError as err:
        fail(str(err))


def store_or_exit(db: Optional[str]):
    """The store for --db (default: $COLUMNIST_DB), or exit when a worker owns it."""
    from streams.reader import StoreLocked, connect_store

    try:
        return connect_store(db or settings().db, settings())
    except StoreLocked as err:
        fail(f"{err}: stop the worker first, or push a vocabulary for it to apply")
