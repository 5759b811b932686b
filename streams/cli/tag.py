"""`columnist tag`: the batch path, without Kafka."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from columnist.streams.cli.common import DbOption, ModelOption, VocabOption, fail, settings, store_or_exit, \
    vocabulary_or_exit


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


def register(app: typer.Typer) -> None:
    app.command()(tag)
