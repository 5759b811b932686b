"""``columnist watch``: folders that publish themselves to the workers."""

from __future__ import annotations

from pathlib import Path
from typing import List

import typer

from columnist.cli.common import utf8_text


def watch(
    folders: List[Path] = typer.Argument(..., metavar="FOLDERS...", help="The folders to watch (recursively)."),
    collection: str = typer.Option("", help="Collection name: it also namespaces image ids, as with publish images.",
                                   callback=utf8_text),
    settle: float = typer.Option(2.0, metavar="SECONDS", help="A file is published once its size and time have not "
                                 "changed for this long (a copy in progress is not taken half-way)."),
) -> None:
    """Publish every photo or video that appears or changes under the folders, and the deletion
    of every one that goes, until stopped (Ctrl-C).

    At start it publishes what changed while it was not running (it remembers what it
    published in ~/.columnist/watch), so a restart does not publish the whole tree again."""
    import signal
    import threading

    from columnist.cli.common import fail, settings
    from columnist.errors import INTERRUPTED
    from columnist.tagger import skipped_summary
    from columnist.watch import run

    if not 0 <= settle <= 3600:  # NaN fails this too: nothing would ever settle
        fail(f"--settle {settle}: between 0 and 3600 seconds", 2)
    missing = [str(f) for f in folders if not f.is_dir()]
    if missing:
        fail(f"not a folder: {', '.join(missing)}", 3)
    config = settings()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def ready(caught) -> None:
        skipped = f"; skipped: {skipped_summary(caught.skipped)}" if caught.skipped else ""
        typer.echo(f"caught up: {caught.images} published, {caught.deleted} deletions{skipped}; watching "
                   f"{', '.join(map(str, folders))} (Ctrl-C stops)", err=True)
    try:
        totals = run(folders, collection, config, settle, stop, ready)
    except KeyboardInterrupt:
        stop.set()
        fail("stopped", INTERRUPTED)
    skipped = f"; skipped: {skipped_summary(totals.skipped)}" if totals.skipped else ""  # each also named in the log
    typer.echo(f"stopped: {totals.images} images and {totals.deleted} deletions published{skipped}", err=True)


def register(app: typer.Typer) -> None:
    app.command()(watch)
