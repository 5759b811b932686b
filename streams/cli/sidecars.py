"""``columnist sidecars``: XMP sidecars beside the photos, with the attributes they are accepted for."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from columnist.cli.common import DbOption


def sidecars(
    root: List[Path] = typer.Option([], "--root", metavar="DIR", help="Write sidecars only in these folders (default: "
                                    "$COLUMNIST_IMAGE_ROOTS)."),
    vocab: List[str] = typer.Option([], "--vocab", metavar="NAME", help="Vocabularies whose attributes become "
                                    "keywords (default: every applied one)."),
    tier: str = typer.Option("accepted", metavar="TIER", help="'accepted', or 'tentative' for accepted and tentative."),
    naming: str = typer.Option("append", metavar="NAMING", help="A new sidecar's name: 'append' (IMG_0001.jpg.xmp: "
                               "digiKam, darktable) or 'replace' (IMG_0001.xmp: Lightroom)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List what would change; write nothing."),
    db: Optional[str] = DbOption,
) -> None:
    """Write or update each photo's XMP sidecar with the attributes it is accepted for.

    Keywords go into dc:subject and lr:hierarchicalSubject (columnist|vocabulary|label), the
    scores into columnist's own namespace. A later run removes the keywords columnist wrote
    that no longer hold and keeps every keyword a person wrote."""
    from rich.console import Console
    from rich.markup import escape

    from columnist.printable import printable

    from columnist import sidecars as xmp
    from columnist.cli.common import fail, settings, store_or_exit
    from columnist.errors import ConfigurationError

    if tier not in ("accepted", "tentative"):
        fail(f"--tier {tier!r}: choose accepted or tentative", 2)
    if naming not in xmp.NAMINGS:
        fail(f"--naming {naming!r}: choose {' or '.join(xmp.NAMINGS)}", 2)
    roots = [r.resolve() for r in root] or settings().roots
    if not roots:
        fail("name the folders sidecars may be written in: --root DIR (or COLUMNIST_IMAGE_ROOTS)", 2)
    missing = [str(r) for r in roots if not r.is_dir()]
    if missing:
        fail(f"not a folder: {', '.join(missing)}", 3)
    store = store_or_exit(db, "sidecars")
    try:
        names = list(vocab) or [v.name for v in store.applied_vocabularies()]
        run = xmp.write_all(store, roots, names, ["accepted"] + (["tentative"] if tier == "tentative" else []), naming,
                            dry_run, every_vocabulary=not vocab)
    except ConfigurationError as err:
        fail(str(err), err.exit_code)
    finally:
        store.close()
    console = Console(highlight=False, soft_wrap=True)
    verb = "would write" if dry_run else "wrote"
    def shown(text: object) -> str:  # file names and labels are data: no markup, no terminal controls
        return escape(printable(str(text), 500))

    for change in run.changes:
        if change.error:
            console.print(f"[red]not written[/red] {shown(change.sidecar)}: {shown(change.error)}")
            continue
        marks = " ".join([f"+{k}" for k in change.added] + [f"-{k}" for k in change.removed]) or "(scores)"
        console.print(f"{'new ' if change.created else ''}{shown(change.sidecar)}: {shown(marks)}")
    written = [c for c in run.changes if not c.error]
    errors = len(run.changes) - len(written)
    typer.echo(f"{run.images} stored images: {verb} {len(written)} sidecars "
               f"({sum(c.created for c in written)} new), {run.images - len(run.changes) - len(run.outside) - len(run.missing)}"
               f" already current, {errors} not valid XMP or not writable, {len(run.outside)} outside "
               f"{', '.join(map(str, roots))}, {len(run.missing)} whose file is gone", err=True)
    if errors:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command()(sidecars)
