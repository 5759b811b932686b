"""`columnist vocab validate` and `columnist vocab push`."""

from __future__ import annotations

from pathlib import Path
from typing import List

import typer

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
        raise typer.Exit(1)


@vocab_app.command("push")
def vocab_push(file: Path = typer.Argument(..., help="A vocabulary YAML file.")) -> None:
    """Validate a vocabulary and publish it for the worker to apply (an invalid one is refused here)."""
    from columnist.kafka.publish import push_vocabulary
    from columnist.vocab.schema import VocabularyError, load_vocabulary

    try:
        vocab = load_vocabulary(file)
    except VocabularyError as err:
        typer.echo(str(err), err=True)
        raise typer.Exit(1)
    settings = current_settings()
    push_vocabulary(vocab, settings)
    typer.echo(f"pushed vocabulary {vocab.name!r} v{vocab.version} ({len(vocab.codes)} attributes) "
               f"to {settings.topic_vocab}")


def register(app: typer.Typer) -> None:
    app.add_typer(vocab_app, name="vocab")
