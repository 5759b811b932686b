"""`columnist tag`: the batch path, without Kafka."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from columnist.cli.common import DbOption, ModelOption, VocabOption, encoders_for, exit_now, fail, settings, \
    store_or_exit, vocabulary_in, vocabulary_or_exit, utf8_text
from columnist.errors import INTERRUPTED
from columnist.printable import printable


def tag(
    paths: List[Path] = typer.Argument(..., metavar="PATHS...", help="Photos, videos and folders (walked "
                                       "recursively)."),
    vocab: Optional[str] = VocabOption,
    model: Optional[str] = ModelOption,
    db: Optional[str] = DbOption,
    collection: str = typer.Option("", help="Collection name stored with each image; it also namespaces image ids "
                                   "(collection/relative path instead of the file URI).", callback=utf8_text),
    batch_size: Optional[int] = typer.Option(None, min=1, max=1024, help="Images per encoder batch."),
    force: bool = typer.Option(False, "--force", help="Decode and encode every image again, even unchanged ones."),
) -> None:
    """Tag images without Kafka: encode, score every attribute, write to ClickHouse.

    A re-run is incremental: images already stored with the same content are skipped."""
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import Progress
    from rich.table import Table

    from columnist import decode_watch, tower_watch
    from columnist.models.registry import load_encoder
    from columnist.store import ModelMismatch
    from columnist.tagger import TagRun, skipped_summary, tag as run_tag, walk
    from columnist.vocabulary_change import VocabularyConflict

    config = settings()
    tower_watch.configure(config.encode_timeout, batch_size or config.batch_size)
    decode_watch.configure(config.run_path)
    missing = [printable(p) + (" (a link to nothing, or a loop of links)" if p.is_symlink() else "")
               for p in paths if not p.exists()]
    if missing:
        fail(f"not found: {', '.join(missing)}", 3)  # before any database is created
    if vocab and Path(vocab).is_file():
        vocabulary_or_exit(vocab)  # a broken file is named before any database is created
    walked = walk(paths, collection)
    files = walked.files
    if walked.skipped:
        Console(stderr=True).print(f"skipped: {skipped_summary(walked.skipped)}",
                                   highlight=False)
    if not files:
        fail(f"no images or videos found in {', '.join(printable(p) for p in paths)}")
    encoder = load_encoder(model or config.model, threads=config.threads, batch_size=config.batch_size, runtime=config.runtime)
    if force:  # sure to encode: open the model while the store opens
        encoder.open_image_tower_soon()
    store = store_or_exit(db, "tag", create=True)
    try:
        encoder, target = encoders_for(store, encoder, model)
    except ModelMismatch as err:
        store.close()
        fail(f"{err}; nothing was tagged", err.exit_code)
    vocabulary = vocabulary_in(store, vocab)
    console = Console(stderr=True)
    run = TagRun()
    run.failed += walked.clash_reasons()
    default_view = vocabulary.name == vocabulary_or_exit(None).name  # COLUMNIST_VOCAB's view is image_columns
    try:
        with Progress(console=console, transient=False) as progress:
            also = f" (and {target.name}, which the store moves to)" if target is not None else ""
            task = progress.add_task(f"tagging with {encoder.name}{also}", total=len(files))
            run_tag(files, vocabulary, encoder, store, batch_size or config.batch_size, collection,
                    on_progress=lambda n: progress.advance(task, n), force=force, default_view=default_view,
                    run=run, limits=config.image_limits, target=target, write_group=config.write_group)
    except (VocabularyConflict, ModelMismatch) as err:
        store.close()
        fail(f"{err}; nothing was tagged", err.exit_code)
    except KeyboardInterrupt:
        store.close()
        fail(f"interrupted: {run.counters.images_stored} images stored, {run.counters.images_unchanged} already "
             "stored; run the same command again to resume", INTERRUPTED)
    counters = run.counters
    summary = Table(title=f"columnist tag: vocabulary {vocabulary.name} v{vocabulary.version}")
    for column in ("images tagged", "encoded", "already stored", "failed", "attributes", "score rows written"):
        summary.add_column(column, justify="right")
    summary.add_row(str(counters.images_stored), str(counters.images_encoded), str(counters.images_unchanged),
                    str(len(run.failed)), str(len(vocabulary.codes)), str(run.score_rows))
    Console().print(summary)
    if counters.images_unchanged:
        console.print(f"{counters.images_unchanged} already stored (unchanged since they were tagged; --force encodes "
                      "them again)")
    for path, reason in run.failed:
        console.print(f"[red]failed[/red] {escape(printable(path, 300))}: {escape(printable(reason, 1000))}",
                      highlight=False, soft_wrap=True)
    store.close()
    exit_now(1 if run.failed and not counters.images_stored and not counters.images_unchanged else 0)


def register(app: typer.Typer) -> None:
    app.command()(tag)
