"""Helpers shared by the CLI commands: settings, vocabularies, the store,
and failing with a clear message and a non-zero exit."""

from __future__ import annotations

from typing import NoReturn, Optional

import typer

from columnist.vocab import load_vocabulary_arg
from columnist.vocab.schema import Vocabulary


DbOption = typer.Option(None, "--db", help="ClickHouse DSN (default: $COLUMNIST_DB or chdb://./.columnist/db).")
ModelOption = typer.Option(None, "--model", help="'mock', a built-in model or a model directory (default: $COLUMNIST_MODEL).")
VocabOption = typer.Option(None, "--vocab", help="A vocabulary YAML file or built-in name (default: $COLUMNIST_VOCAB).")


def settings():
    from columnist.settings import get_settings

    return get_settings()


def fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(message, err=True)
    raise typer.Exit(code)


def vocabulary_or_exit(name_or_path: Optional[str]) -> Vocabulary:
    """The vocabulary argument (default: $COLUMNIST_VOCAB), or exit naming every problem."""
    from columnist.vocab.schema import VocabularyError

    from columnist.cli.errors import CONFIGURATION

    try:
        return load_vocabulary_arg(name_or_path or settings().vocab)
    except VocabularyError as err:
        fail(str(err), CONFIGURATION)


WHEN_LOCKED = {
    "replay": "a running worker applies vocabularies itself: `columnist vocab push FILE`; or stop it first",
    "tag": "stop the worker first, or let it ingest them: `columnist publish images PATH`",
    "repair": "a running worker owns it: stop the worker first (it mends orphans itself when it starts)",
    "workbench": "the workbench reads stored embeddings, which only the process owning an embedded database can: "
                 "stop the worker first, or keep both on a ClickHouse server (COLUMNIST_DB=http://…)",
}


def store_or_exit(db: Optional[str], purpose: str):
    """The store for --db (default: $COLUMNIST_DB), or exit saying what to do when a worker
    owns it (``purpose``: a key of WHEN_LOCKED)."""
    from columnist.cli.errors import LOCKED
    from columnist.store import StoreLocked, connect

    try:
        return connect(db or settings().db, settings().cluster)
    except StoreLocked as err:
        fail(f"{err}\n{WHEN_LOCKED[purpose]}", LOCKED)
