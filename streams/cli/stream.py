"""The CLI commands of the streaming service: worker, publish, replay, backfill, status."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from columnist.cli.common import DbOption, ModelOption, VocabOption, utf8_text
from columnist.cli.common import settings as current_settings

publish_app = typer.Typer(help="Publish events to Kafka.", no_args_is_help=True)


def worker(
    model: Optional[str] = ModelOption,
    db: Optional[str] = DbOption,
    vocab: Optional[str] = typer.Option(None, "--vocab", metavar="FILE_OR_NAME",
                                        help="The default vocabulary, applied when none of its name is (default: "
                                             "$COLUMNIST_VOCAB)."),
    loglevel: str = typer.Option("info", help="Log level."),
) -> None:
    """Run the streaming worker: ingest images, apply vocabulary changes (COLUMNIST_* settings;
    the options override them)."""
    from columnist.worker.app import run_worker

    given = {"model": model, "db": db, "vocab": vocab}
    settings = current_settings().model_copy(update={k: v for k, v in given.items() if v is not None})
    run_worker(settings, loglevel)


@publish_app.command("images")
def publish_images(
    paths: List[Path] = typer.Argument(..., metavar="PATHS...", help="Photos, videos and folders (walked "
                                       "recursively)."),
    collection: str = typer.Option("", help="Collection name carried by each event; it also namespaces image ids "
                                   "(collection/relative path instead of the file URI).", callback=utf8_text),
) -> None:
    """Publish one ingest event per image or video (file:// URIs as given, links kept; the
    worker's COLUMNIST_IMAGE_ROOTS must cover them: files outside the roots set here are named
    and not published)."""
    from rich.progress import Progress

    from collections import Counter

    from columnist.cli.common import fail
    from columnist.kafka.publish import publish_images as publish
    from columnist.models.media import suffix_kind
    from columnist.printable import printable
    from columnist.tagger import absolute, skipped_summary, walk

    missing = [str(p) for p in paths if not p.exists() and not p.is_symlink()]
    if missing:
        fail(f"not found: {', '.join(printable(m) for m in missing)}", 3)
    settings = current_settings()
    walked = walk(paths, collection)
    if walked.skipped:
        typer.echo(f"skipped: {skipped_summary(walked.skipped)}", err=True)
    for path, reason in walked.clash_reasons():
        typer.echo(f"{printable(path)}: {reason}", err=True)
    files, roots = walked.files, settings.roots
    if roots:
        outside = [(i, p) for i, p in files if not any(absolute(p).is_relative_to(r) or p.resolve().is_relative_to(r)
                                                       for r in roots)]
        if outside:
            typer.echo(f"{len(outside)} files outside COLUMNIST_IMAGE_ROOTS ({':'.join(map(str, roots))}) not published "
                       f"(the worker would refuse them), e.g. {printable(outside[0][1])}", err=True)
            files = [f for f in files if f not in outside]
    else:
        typer.echo("COLUMNIST_IMAGE_ROOTS is not set here: the worker reads file:// URIs only inside its own roots",
                   err=True)
    if not files:
        fail(f"nothing to publish from {', '.join(printable(p) for p in paths)}")
    with Progress(transient=True) as progress:
        task = progress.add_task(f"publishing to {settings.topic_images}", total=len(files))
        count = publish(files, settings, collection, on_sent=lambda n: progress.advance(task, n))
    kinds = Counter(suffix_kind(path.name) or "image" for _, path in files)
    typer.echo(f"published {count} events ({', '.join(f'{n} {k}' for k, n in kinds.items())}) to "
               f"{settings.topic_images} at {settings.kafka}")


def _progress_chunks(label: str):
    """A progress bar over replay chunks, and the callback that moves it: (done, total)."""
    from rich.progress import Progress

    progress = Progress(transient=False)
    task = progress.add_task(label, total=None)
    return progress, (lambda done, total: progress.update(task, completed=done, total=total))


def replay(
    vocab: str = typer.Option(..., "--vocab", help="The vocabulary file (or built-in name) to apply."),
    db: Optional[str] = DbOption,
    model: Optional[str] = ModelOption,
) -> None:
    """Apply a vocabulary by hand: diff against the applied one, score only what changed from stored embeddings."""
    from columnist.cli.common import fail, store_or_exit, vocabulary_or_exit
    from columnist.models.registry import load_encoder
    from columnist.prompt_cache import PromptCache
    from columnist.store import ModelMismatch, check_model
    from columnist.vocabulary_change import VocabularyConflict, apply_vocabulary

    settings = current_settings()
    new = vocabulary_or_exit(vocab)
    store = store_or_exit(db, "replay", create=True)
    encoder = load_encoder(model or settings.model, settings.threads, settings.batch_size, runtime=settings.runtime)
    old = store.applied_vocabulary(new.name)
    progress, advance = _progress_chunks(f"replaying {new.name} v{new.version}")
    try:
        check_model(store, encoder.name)
        with progress:
            report = apply_vocabulary(store, encoder, old, new, settings.replay_chunks, on_chunk=advance,
                                      default_view=new.name == vocabulary_or_exit(None).name,
                                      prompts=PromptCache(encoder, store))
    except (VocabularyConflict, ModelMismatch) as err:
        store.close()
        fail(f"{err}; the store is unchanged", err.exit_code)
    d = report.diff
    typer.echo(f"applied {new.name} v{new.version}: added {list(d.added)}, changed {list(d.changed)}, "
               f"removed {list(d.removed)}, dependents {list(d.dependents)}; "
               f"{report.stored_scores} scores of {len(d.rescore)} attribute(s) written, no image decoded")
    store.close()


def backfill(
    vocab: Optional[str] = VocabOption,
    attribute: List[str] = typer.Option([], "--attribute", metavar="CODE",
                                        help="Attribute code to re-score (repeatable; default: all)."),
    db: Optional[str] = DbOption,
    model: Optional[str] = ModelOption,
    resume: bool = typer.Option(False, help="Continue an interrupted backfill instead of starting over."),
) -> None:
    """Re-score attributes of the applied vocabulary for every stored embedding (and their derived dependents)."""
    from columnist.cli.common import fail, store_or_exit, vocabulary_in
    from columnist.models.registry import load_encoder
    from columnist.prompt_cache import PromptCache
    from columnist.vocab.diff import VocabularyDiff, dependents
    from columnist.vocab.prompts import text_embeddings

    settings = current_settings()
    store = store_or_exit(db, "replay")
    wanted = vocabulary_in(store, vocab)
    applied = store.applied_vocabulary(wanted.name)
    if applied is None or applied.content_hash() != wanted.content_hash():
        store.close()
        fail(f"vocabulary {wanted.name!r} v{wanted.version} is not the one applied to {store.dsn}: backfill re-scores "
             "an applied vocabulary (`columnist replay --vocab FILE` applies a new one)", 3)
    unknown = [a for a in attribute if a not in applied.codes]
    if unknown:
        store.close()
        fail(f"vocabulary {applied.name!r} v{applied.version} has no attribute(s) {', '.join(unknown)}", 2)
    codes = set(attribute or applied.codes)
    codes |= set(dependents(applied, codes))
    ordered = tuple(c for c in applied.codes if c in codes)
    encoder = load_encoder(model or settings.model, settings.threads, settings.batch_size, runtime=settings.runtime)
    replayer = store.replayer(encoder.name, encoder.logit_scale, encoder.source, settings.replay_chunks,
                              job=f"backfill {applied.content_hash()[:16]} {' '.join(ordered)}",
                              model_calibration=encoder.calibration)
    if not resume:
        replayer.forget_checkpoints(applied)
    progress, advance = _progress_chunks(f"backfilling {len(ordered)} attributes")
    with progress:
        texts = text_embeddings(PromptCache(encoder, store), applied, ordered)
        report = replayer.run(applied, VocabularyDiff(changed=ordered), texts, advance)
    typer.echo(f"backfilled {', '.join(ordered)}: {report.score_rows + report.late_score_rows} scores written "
               f"({report.chunks_skipped} chunks resumed)")
    store.close()


def status(db: Optional[str] = DbOption,
           since: str = typer.Option("24h", "--since", metavar="WHEN",
                                     help="Count this group's dead letters since then (30m, 2h, 7d or a date).")) -> None:
    """The worker(s): consumer lag, this group's dead letters, and the store actually read
    (directly, or through the worker that owns it): counts per kind, applied vocabularies,
    scores per attribute."""
    from columnist.cli.output import print_rows
    from columnist.cli.reader import Reader

    settings = current_settings()
    kafka_down = not _kafka_line(settings, since)
    reader = Reader(db or settings.db, settings)  # after Kafka: an embedded database is held only to read it
    try:
        if reader.store is not None:
            typer.echo(f"database {reader.store.dsn} (read directly)")
        else:
            worker = reader.worker.status()
            typer.echo(f"database {worker.get('database')} (read through the worker on {reader.worker.path}: model "
                       f"{worker.get('model')} on {worker.get('runtime')})")
            if worker.get("runtime_choice"):
                typer.echo(f"runtime auto: {worker['runtime_choice']}")
            typer.echo(_migration_line(worker.get("models") or {}))
        for table in reader.summary().values():
            print_rows(table["columns"], table["rows"])
    finally:
        reader.close()
    if kafka_down:
        from columnist.cli.errors import UNAVAILABLE

        raise typer.Exit(UNAVAILABLE)


def _kafka_line(settings, since: str) -> bool:
    """Say the consumer group's lag and dead letters; False when Kafka cannot be reached (said too)."""
    from columnist.cli.deadletters import since_option
    from columnist.kafka.deadletters import read_dead_letters
    from columnist.kafka.lag import kafka_status

    try:
        lag = kafka_status(settings)
        letters = read_dead_letters(settings, since_option(since), group=settings.group, limit=1)
    except Exception as err:  # Kafka down is part of the status: said, then the exit code says it too
        typer.echo(f"kafka {settings.kafka}: unavailable ({' '.join(str(err).split())[:200] or type(err).__name__}); "
                   "workers need it, `tag` does not")
        return False
    typer.echo(f"kafka {settings.kafka}: consumer group {settings.group!r} lag {lag['lag']} "
               f"({lag['per_partition']}); {letters.matching} dead letters of this group in the last {since} "
               f"({lag['dead_letters']} on {settings.topic_deadletter} in all: `columnist deadletters`)")
    return True


def _migration_line(models: dict) -> str:
    """What the worker says of a model migration, in a line ('' when none runs)."""
    if not models.get("target") and not models.get("error"):
        return f"model: serving {models.get('serving', '?')}"
    job = models.get("reembed") or {}
    eta = f", about {job['eta_s']} s left" if job.get("eta_s") else ""
    progress = (f"; re-embed: {job.get('remaining')} images left, {job.get('embedded_here', 0)} by this worker at "
                f"{job.get('rate_img_s', 0)} img/s{eta}") if job else ""
    error = f"; error: {models['error']}" if models.get("error") else ""
    return (f"model: serving {models.get('serving')}, moving to {models.get('target') or '-'} (encoding with "
            f"{' and '.join(models.get('encoding_with', []))}){progress}{error}")


def register(app: typer.Typer) -> None:
    app.command()(worker)
    app.add_typer(publish_app, name="publish")
    app.command()(replay)
    app.command()(backfill)
    app.command()(status)
