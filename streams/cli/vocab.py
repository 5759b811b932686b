"""`columnist vocab validate` and `columnist vocab push`."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from columnist.cli.common import DbOption
from columnist.cli.common import settings as current_settings

vocab_app = typer.Typer(help="Validate and publish vocabularies.", no_args_is_help=True)


@vocab_app.command("validate")
def vocab_validate(files: List[Path] = typer.Argument(..., help="Vocabulary YAML files.")) -> None:
    """Check vocabulary files; print a summary, or every problem with the entry it is in."""
    from columnist.vocab.schema import VocabularyError, load_vocabulary

    failed = False
    for file in files:
        try:
            vocab = load_vocabulary(file)
        except VocabularyError as err:
            typer.echo(str(err), err=True)
            failed = True
            continue
        typer.echo(f"{file}: ok: vocabulary {vocab.name!r} version {vocab.version}, "
                   f"{len(vocab.attributes)} attributes, {len(vocab.derived)} derived")
    if failed:
        raise typer.Exit(VocabularyError.exit_code)


@vocab_app.command("push")
def vocab_push(file: Path = typer.Argument(..., metavar="FILE", help="A vocabulary YAML file."),
               db: Optional[str] = DbOption) -> None:
    """Check a vocabulary and publish it for the workers to apply: it is refused here, as every
    worker would refuse it, when it is invalid or older than (or the same version as, with
    other content) the newest one on the topic or the one applied to the store."""
    from columnist.kafka.publish import push_vocabulary, pushed_vocabulary
    from columnist.vocab.schema import load_vocabulary
    from columnist.vocabulary_change import VocabularyConflict, check_newer

    vocab = load_vocabulary(file)
    settings = current_settings()
    newest = pushed_vocabulary(vocab.name, settings)
    for against, where in ((newest, settings.topic_vocab), (_applied(vocab.name, db or settings.db, settings), "the store")):
        if against is not None and against.content_hash() == vocab.content_hash():
            typer.echo(f"vocabulary {vocab.name!r} v{vocab.version} is {'on ' + where if where != 'the store' else 'applied'}"
                       " already; nothing pushed")
            return
        try:
            check_newer(against, vocab)
        except VocabularyConflict as err:
            raise VocabularyConflict(f"{err} (checked against {where}); not pushed") from None
    push_vocabulary(vocab, settings)
    typer.echo(f"pushed vocabulary {vocab.name!r} v{vocab.version} ({len(vocab.codes)} attributes) "
               f"to {settings.topic_vocab}")


def _applied(name: str, dsn: str, settings):
    """The vocabulary applied to the store, read directly or through the worker that owns it;
    None when there is no store there yet, or it cannot be read now (the topic still decides)."""
    from columnist.cli.reader import Reader
    from columnist.errors import ColumnistError

    try:
        reader = Reader(dsn, settings)
    except (ColumnistError, ConnectionError):
        return None
    try:
        if reader.store is not None:
            return reader.store.applied_vocabulary(name)
        applied = {v["name"]: v for v in reader.worker.status().get("vocabularies", [])}
        return _Applied(applied[name]) if name in applied else None
    except (ColumnistError, ConnectionError, KeyError):
        return None
    finally:
        reader.close()


class _Applied:
    """What the worker's status says of an applied vocabulary: enough to compare versions."""

    def __init__(self, described: dict):
        self.name, self.version, self._hash = described["name"], described["version"], described["content_hash"]

    def content_hash(self) -> str:
        return self._hash


def register(app: typer.Typer) -> None:
    app.add_typer(vocab_app, name="vocab")
