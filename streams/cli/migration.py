"""``columnist model migrate | compare | cutover | retire``: moving a store to another model
(columnist.model_change), by hand on a store this process opens, or through the workers."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from columnist.cli.common import DbOption, VocabOption

PublishOption = typer.Option(False, "--publish", help="Send it to the running workers (through Kafka's vocabulary "
                                                      "topic) instead of doing it here.")


def migrate(
    to: str = typer.Option(..., "--to", metavar="MODEL", help="The model to move to: a built-in name, a pulled "
                                                              "OWNER/NAME or a model directory."),
    db: Optional[str] = DbOption,
    root: List[Path] = typer.Option([], "--root", metavar="DIR", help="Read stored images only under these folders "
                                    "(default: $COLUMNIST_IMAGE_ROOTS, else wherever you can read)."),
    publish: bool = PublishOption,
) -> None:
    """Start (or resume) moving the store to another model.

    New images are encoded with both models from now on, and every stored image is read again
    from its URI and embedded by the new model, in checkpointed chunks (Ctrl-C and run it again
    to resume). The views keep serving the current model until `columnist model cutover`."""
    from rich.console import Console

    from columnist import model_change
    from columnist.cli.common import settings, store_or_exit
    from columnist.models.registry import load_encoder
    from columnist.prompt_cache import PromptCache
    from columnist.store import migration
    from columnist.vocab.prompts import text_embeddings
    from columnist.worker.fetch import fetch, policy_from

    config = settings()
    if publish:
        _publish(config, {"action": "migrate", "to": to})
        return
    target = load_encoder(to, config.threads, config.batch_size, runtime=config.runtime)
    store = store_or_exit(db, "migrate")
    console = Console(stderr=True)
    try:
        state = model_change.begin(store, target, to)
        migration.forget_missing(store, target.name)  # by hand, what could not be read is tried again
        prompts = PromptCache(target, store)
        vocabularies = [(v, text_embeddings(prompts, v)) for v in store.applied_vocabularies()]
        policy = policy_from(config, roots=[r.resolve() for r in root] or config.roots or [Path("/")])
        job = model_change.Reembedder(store, target, lambda: vocabularies, lambda uri: fetch(uri, policy),
                                      config.image_limits, config.batch_size)
        remaining = job.remaining()  # a scan of every image: once
        console.print(f"moving {store.dsn} from {state.serving} to {target.name}: {remaining} images and "
                      "videos to embed", highlight=False, markup=False)
        with _progress(console) as progress:
            task = progress.add_task(f"re-embedding with {target.name}", total=remaining)
            report = job.run(on_images=lambda n: progress.advance(task, n))
        found = model_change.coverage(store, target.name)
    except KeyboardInterrupt:
        store.close()
        from columnist.cli.common import fail
        from columnist.errors import INTERRUPTED

        fail("interrupted: what was embedded is kept; run the same command again to resume", INTERRUPTED)
    store.close()
    typer.echo(f"embedded {report.images} images and videos with {target.name} ({report.score_rows} scores; "
               f"{report.chunks_skipped} of {report.chunks} chunks were done before)")
    for image_id, reason in report.missing[:20]:
        typer.echo(f"  not read again: {image_id}: {reason}", err=True)
    if report.missing:
        typer.echo(f"{len(report.missing)} images could not be read again: they keep {state.serving}'s scores "
                   "until they are published again", err=True)
    if found.complete:
        typer.echo(f"{target.name} covers every image: see what changes with `columnist model compare`, then "
                   f"`columnist model cutover --to {to}`")
    else:
        typer.echo(f"{target.name} lacks {found.lacking} images; cutover waits for them (or --force)")


def _progress(console):
    """A bar with images done, their rate and the time left."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeRemainingColumn
    from rich.text import Text

    class Rate(ProgressColumn):
        def render(self, task) -> Text:
            return Text(f"{task.speed:.1f} img/s" if task.speed else "")

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), Rate(), TimeRemainingColumn(),
                    console=console)


def compare(
    vocab: Optional[str] = VocabOption,
    db: Optional[str] = DbOption,
    html_out: Optional[Path] = typer.Option(None, "--html", metavar="FILE", help="Write a page of the images each "
                                            "attribute gains and loses, with thumbnails."),
    examples: int = typer.Option(6, metavar="N", min=0, max=1000, help="Example images per change and attribute."),
) -> None:
    """What moving to the new model changes, per attribute.

    Images accepted by both (kept), only by the new one (gained), only by the old one (lost),
    and how the two models' scores correlate."""
    from columnist import model_change
    from columnist.cli.common import fail, store_or_exit, vocabulary_in
    from columnist.cli.output import print_rows
    from columnist.store import migration

    store = store_or_exit(db, "workbench")
    try:
        state = model_change.current_state(store)
        old, new = (state.serving, state.target) if state.target else (state.previous, state.serving)
        if not old:
            fail("no migration to compare: columnist model migrate --to MODEL first", 3)
        vocabulary = vocabulary_in(store, vocab)
        codes = [a.code for a in vocabulary.attributes] + [d.code for d in vocabulary.derived]
        accepts = [vocabulary.thresholds_for(vocabulary.entry(c)).accept for c in codes]
        changes = migration.compare(store, vocabulary.name, old, new, codes, accepts, examples)
        uris = store.image_uris([i for c in changes for i in c.gained_ids + c.lost_ids]) if html_out else {}
    finally:
        store.close()
    typer.echo(f"{vocabulary.name} v{vocabulary.version}: {old} -> {new}, over the images both scored")
    print_rows(["attribute", "kept", "gained", "lost", "images", "correlation"],
               [[c.attribute, c.kept, c.gained, c.lost, c.images, f"{c.correlation:.3f}"] for c in changes])
    if html_out:
        from columnist.workbench.gallery import Scored, Section, write_html

        sections = []
        for c in changes:
            if c.gained or c.lost:
                sections.append(Section(f"{c.attribute}: gained (accepted by {new} only)",
                                        [Scored(i, float("nan"), float("nan")) for i in c.gained_ids], c.gained))
                sections.append(Section(f"{c.attribute}: lost (accepted by {old} only)",
                                        [Scored(i, float("nan"), float("nan")) for i in c.lost_ids], c.lost))
        write_html(html_out, f"{vocabulary.name}: {old} → {new}", sections, uris,
                   {"vocabulary": f"{vocabulary.name} v{vocabulary.version}", "from": old, "to": new})
        typer.echo(f"wrote {html_out}", err=True)


def cutover(
    to: str = typer.Option(..., "--to", metavar="MODEL", help="The model to serve: the one the store moves to, or "
                                                              "the one it served before (to undo a cutover)."),
    force: bool = typer.Option(False, "--force", help="Cut over although some images lack the model (they leave "
                                                      "the views until they are embedded)."),
    db: Optional[str] = DbOption,
    publish: bool = PublishOption,
) -> None:
    """Switch every view to another model in one step.

    A query sees one model's scores or the other's, never a mix. Refused until the model
    covers every image (unless --force)."""
    from columnist import model_change
    from columnist.cli.common import settings, store_or_exit

    if publish:
        _publish(settings(), {"action": "cutover", "to": to, "force": force})
        return
    store = store_or_exit(db, "migrate")
    try:
        state, found = model_change.cutover(store, to, force)
    finally:
        store.close()
    lacking = f" ({found.lacking} images lack it: --force)" if found.lacking else ""
    typer.echo(f"the views now read {state.serving}{lacking}; {state.previous} is kept until "
               f"`columnist model retire {state.previous_ref}` (undo: `columnist model cutover --to "
               f"{state.previous_ref}`)")


def retire(
    model: str = typer.Argument(..., metavar="MODEL", help="The model to delete the rows of (not the serving one)."),
    db: Optional[str] = DbOption,
    publish: bool = PublishOption,
) -> None:
    """Delete a model's embeddings, scores and prompts, once the store no longer serves it."""
    from columnist import model_change
    from columnist.cli.common import settings, store_or_exit

    if publish:
        _publish(settings(), {"action": "retire", "model": model})
        return
    store = store_or_exit(db, "migrate")
    try:
        report = model_change.retire(store, model)
    finally:
        store.close()
    rows = ", ".join(f"{n} {table}" for table, n in report.rows.items() if n)
    typer.echo(f"retired {model}: deleted {rows}; {report.freed_bytes / 1e6:.1f} MB freed")


def _publish(settings, command: dict) -> None:
    """The command as a model event on the vocabulary topic, which every worker reads."""
    from columnist.cli.common import fail
    from columnist.errors import BadInput
    from columnist.kafka.events import model_event, parse_model_event
    from columnist.kafka.publish import publish_vocab_record
    from columnist.models.registry import lasting_ref

    for key in ("to", "model"):
        if command.get(key):
            command[key] = lasting_ref(command[key])  # the workers read it from their own directories
    event = model_event(command)
    try:
        parse_model_event(event)  # what the workers would refuse is refused here
    except BadInput as err:
        fail(f"not sent: {err}", 2)
    publish_vocab_record(settings, event)
    typer.echo(f"sent to the workers on {settings.topic_vocab}: {command['action']} (their logs and `columnist "
               "status` say how it goes)")


def register(model_app: typer.Typer) -> None:
    model_app.command("migrate")(migrate)
    model_app.command("compare")(compare)
    model_app.command("cutover")(cutover)
    model_app.command("retire")(retire)
