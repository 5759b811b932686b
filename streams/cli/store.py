"""`columnist store check [--repair]`: what a crash or a kill -9 left, found and mended."""

from __future__ import annotations

from typing import Optional

import typer

from columnist.cli.common import DbOption, ModelOption, settings

store_app = typer.Typer(help="Check a store, and mend what a crash left.", no_args_is_help=True)


@store_app.command("check")
def check(
    repair: bool = typer.Option(False, "--repair", help="Delete orphans and removed attributes' scores; re-score "
                                                        "missing and stale scores from the stored embeddings."),
    db: Optional[str] = DbOption,
    model: Optional[str] = ModelOption,
    grace: int = typer.Option(600, help="Orphans younger than this many seconds may be a write in progress and are "
                                        "left alone."),
) -> None:
    """Orphan embeddings and scores, images and videos without their embeddings, and per applied
    vocabulary the images missing a score, stale scores and scores of removed attributes, for the
    model the store serves. Exits 1 when it finds something (with --repair: something it cannot
    mend)."""
    from rich.console import Console
    from rich.table import Table

    from columnist.cli.common import store_or_exit
    from columnist.printable import printable
    from columnist.store import check_model
    from columnist.store import check as checks

    config = settings()
    store = store_or_exit(db, "repair")
    console = Console()
    try:
        vocabularies = store.applied_vocabularies()
        state, models = store.model_state(), store.embedding_models()  # the model the views read, mid-migration too
        model_name = (state.serving if state else "") or (models[0] if models else model or config.model)
        found = checks.find(store, model_name, vocabularies, grace)
        table = Table("what", "found", title=f"columnist store check: {store.dsn} (model {model_name})")
        for label, value in (("orphan embeddings (no images row)", found.orphan_embeddings),
                             ("orphan scores (no images row)", found.orphan_scores),
                             ("images without an embedding", found.images_without_embedding),
                             ("images whose embedding is of other content", found.content_differs),
                             ("videos missing a frame's embedding", found.videos_missing_frames)):
            table.add_row(label, f"{value:,}")
        for v in found.vocabularies:
            table.add_row(f"{v.name} v{v.version}: images missing a score", f"{v.missing:,}")
            table.add_row(f"{v.name} v{v.version}: stale scores", f"{v.stale:,}")
            table.add_row(f"{v.name} v{v.version}: scores of removed attributes", f"{v.removed:,}")
        console.print(table)
        for label, ids in found.examples.items():
            if ids:
                console.print(f"{label}, e.g.: {', '.join(printable(i) for i in ids)}", highlight=False,
                              soft_wrap=True, markup=False)
        unmendable = found.images_without_embedding or found.content_differs or found.videos_missing_frames
        if unmendable:
            console.print("images and videos without an embedding of their content cannot be mended here: publish "
                          "or tag them again")
        if not repair:
            if not found.clean:
                console.print("run again with --repair to mend what can be mended")
                raise typer.Exit(1)
            return
        from columnist.models.registry import load_encoder
        from columnist.prompt_cache import PromptCache
        from columnist.vocab.prompts import text_embeddings

        encoder = load_encoder(model or config.model, config.threads, config.batch_size, runtime=config.runtime)
        check_model(store, encoder.name)
        prompts = PromptCache(encoder, store)
        replayer = store.replayer(encoder.name, encoder.logit_scale, encoder.source, model_calibration=encoder.calibration)
        done = checks.mend(store, replayer, vocabularies, lambda v: text_embeddings(prompts, v), encoder.name, grace)
        for label, value in done.items():
            console.print(f"{label}: {value:,}")
    finally:
        store.close()
    if unmendable:  # what --repair could not mend is still there
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.add_typer(store_app, name="store")
