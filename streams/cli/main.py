"""The ``columnist`` command line.

Each command imports what it needs when it runs, so ``columnist --help`` and
``columnist vocab validate`` start in a fraction of a second without loading the model
runtime, the stream processor or the database engine.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from columnist.streams.cli.model import model_app
from columnist.streams.cli.common import fail, settings, store_or_exit, vocabulary_or_exit
from columnist.streams.cli.stream import register as register_stream_commands
from columnist.streams.cli.workbench import register as register_workbench_commands

app = typer.Typer(help="Turn a CLIP model into ClickHouse columns: one confidence per attribute, per image.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
vocab_app = typer.Typer(help="Validate and inspect vocabularies.", no_args_is_help=True)
app.add_typer(vocab_app, name="vocab")


def _print_version(wanted: bool) -> None:
    if wanted:
        from columnist import __version__

        typer.echo(f"columnist {__version__}")
        raise typer.Exit()


@app.callback()
def root(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                      help="Print the version and exit.")) -> None:
    """Turn a CLIP model into ClickHouse columns: one confidence per attribute, per image."""
app.add_typer(model_app, name="model")

DbOption = typer.Option(None, "--db", help="ClickHouse DSN (default: $COLUMNIST_DB or chdb://./.columnist/db).")
ModelOption = typer.Option(None, "--model", help="'mock', a built-in model or a model directory (default: $COLUMNIST_MODEL).")
VocabOption = typer.Option(None, "--vocab", help="A vocabulary YAML file or built-in name (default: $COLUMNIST_VOCAB).")


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


@app.command()
def tag(
    paths: List[Path] = typer.Argument(..., help="Image files and folders (walked recursively)."),
    vocab: Optional[str] = VocabOption,
    model: Optional[str] = ModelOption,
    db: Optional[str] = DbOption,
    collection: str = typer.Option("", help="Collection name stored with each image."),
    batch_size: Optional[int] = typer.Option(None, help="Images per encoder batch."),
) -> None:
    """Tag images without Kafka: encode, score every attribute, write to ClickHouse."""
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from columnist.models.registry import load_encoder
    from columnist.streams.tagger import find_images, tag as run_tag

    config = settings()
    vocabulary = vocabulary_or_exit(vocab)
    files = find_images(paths)
    if not files:
        fail(f"no images found in {', '.join(map(str, paths))}")
    encoder = load_encoder(model or config.model, threads=config.threads, batch_size=config.batch_size)
    store = store_or_exit(db)
    console = Console(stderr=True)
    with Progress(console=console, transient=False) as progress:
        task = progress.add_task(f"tagging with {encoder.name}", total=len(files))
        report = run_tag(files, vocabulary, encoder, store, batch_size or config.batch_size,
                         collection, on_progress=lambda n: progress.advance(task, n))
    summary = Table(title=f"columnist tag: vocabulary {vocabulary.name} v{vocabulary.version}")
    for column in ("images tagged", "failed", "attributes", "score rows written"):
        summary.add_column(column, justify="right")
    summary.add_row(str(report.tagged), str(len(report.failed)), str(len(vocabulary.codes)), str(report.score_rows))
    Console().print(summary)
    for path, reason in report.failed:
        console.print(f"[red]failed[/red] {path}: {reason}", highlight=False, soft_wrap=True)
    store.close()
    if report.failed and not report.tagged:
        raise typer.Exit(1)


@app.command()
def query(
    sql: str = typer.Argument(..., help="A SQL query, e.g. \"SELECT image_id FROM columnist.image_columns WHERE earth > 0.9\"."),
    db: Optional[str] = DbOption,
    format: str = typer.Option("table", "--format", "-f", help="table, csv or json."),
) -> None:
    """Run a SQL query and print the result (through the worker while it owns an embedded database)."""
    from columnist.streams.cli.output import print_rows
    from columnist.streams.store.reader import QueryFailed, Reader

    if format not in ("table", "csv", "json"):
        fail(f"--format must be table, csv or json, not {format!r}", 2)
    reader = Reader(db or settings().db, settings())
    try:
        columns, rows = reader.query(sql)
    except (QueryFailed, ConnectionError) as err:
        fail(f"query failed: {err}")
    finally:
        reader.close()
    print_rows(columns, rows, format)


register_stream_commands(app, vocab_app)
register_workbench_commands(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
