"""The vocabulary workbench: `columnist calibrate`, `columnist try`, `columnist gallery`."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from columnist.cli.common import DbOption, ModelOption, VocabOption, utf8_text



def _context(db, model, vocab):
    """(store, encoder, vocabulary) for a workbench command."""
    from columnist.models.registry import load_encoder
    from columnist.cli.common import settings, store_or_exit, vocabulary_in

    config = settings()
    encoder = load_encoder(model or config.model, config.threads, config.batch_size, runtime=config.runtime)
    store = store_or_exit(db, "workbench")
    return store, encoder, vocabulary_in(store, vocab)


def calibrate(
    vocab: Optional[str] = VocabOption,
    sample: int = typer.Option(10_000, help="Stored embeddings to sample."),
    labels: Optional[Path] = typer.Option(None, help="CSV of human labels: image_id,attribute,label (0/1)."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write a PNG: logit histograms with the sigmoid."),
    per_attribute: bool = typer.Option(False, "--per-attribute", help="Also suggest a centre/scale per attribute."),
    write: bool = typer.Option(False, "--write", help="Write the suggestion into the vocabulary file."),
    db: Optional[str] = DbOption,
    model: Optional[str] = ModelOption,
) -> None:
    """Logit statistics per attribute on stored embeddings, and a fitted sigmoid centre and scale."""
    from columnist.workbench import calibrate as cal
    from columnist.cli.common import fail
    from columnist.cli.output import print_rows

    store, encoder, vocabulary = _context(db, model, vocab)
    try:
        _, logits = cal.sample_logits(store, encoder, vocabulary, sample)
        print_rows(["attribute", "min", "mean", "max", "std", "accepted", "tentative", "rejected"],
                   cal.statistics_rows(vocabulary, logits, encoder.calibration))
        if labels:
            reports, vocab_wide = cal.fit_from_labels(store, encoder, vocabulary, cal.read_labels(labels)), None
            print_rows(["attribute", "labels", "centre", "scale", "log-loss before", "log-loss after"],
                       [[r.code, r.labels, f"{r.fit.centre:.3f}", f"{r.fit.scale:.3f}", f"{r.loss_before:.4f}",
                         f"{r.loss_after:.4f}"] for r in reports])
        else:
            vocab_wide, reports = cal.fit_unlabelled(logits, per_attribute)
            typer.echo(f"suggested from the logit distribution (two-Gaussian mixture, {len(next(iter(logits.values())))} "
                       f"images x {len(logits)} attributes): centre {vocab_wide.centre:.3f}, scale {vocab_wide.scale:.3f}")
    except (LookupError, ValueError) as err:
        fail(str(err))
    finally:
        store.close()
    typer.echo("\n# paste into the vocabulary:\n" + cal.calibration_yaml(vocab_wide, reports))
    if plot:
        by_code = {r.code: r for r in reports}
        cal.plot(plot, vocabulary, [by_code.get(c) or cal.AttributeReport(c, v) for c, v in logits.items()], vocab_wide,
                 model=encoder.calibration)
        typer.echo(f"wrote {plot}")
    if write and vocab_wide is not None and encoder.calibration is not None:
        typer.echo(f"note: {encoder.name} brings its own calibration (a learned logit bias), which comes before a "
                   "vocabulary-wide one; fit per attribute (--per-attribute or --labels) to change its scores",
                   err=True)
    if write:
        source = Path(vocab or "")
        if not source.is_file():
            fail("--write needs --vocab FILE (a built-in vocabulary is not edited in place)")
        updated = cal.write_calibration(source, vocab_wide, reports, len(next(iter(logits.values()))))
        typer.echo(f"wrote the calibration into {source} (still valid: {len(updated.codes)} attributes); to re-score "
                   f"from the stored embeddings, bump its version, then `columnist replay --vocab {source}` (a store "
                   f"you tag into) or `columnist vocab push {source}` (the workers')")


def try_(
    description: str = typer.Argument(..., help="An ad-hoc description, e.g. 'a spacecraft window or porthole'.",
                                      callback=utf8_text),
    template: List[str] = typer.Option([], "--template", help="Prompt template(s) with {description}.",
                                       callback=utf8_text),
    top: int = typer.Option(10, min=1, max=10_000, help="How many top and borderline images to show."),
    html_out: Optional[Path] = typer.Option(None, "--html", help="Write a page of thumbnails with scores."),
    vocab: Optional[str] = VocabOption,
    db: Optional[str] = DbOption,
    model: Optional[str] = ModelOption,
) -> None:
    """Score a description against every stored embedding (one matrix product) before adding it.
    Piped: TSV (list, image_id, score, logit)."""
    import sys

    from columnist.cli.common import fail
    from columnist.vocab.schema import check_template
    from columnist.workbench.gallery import Section, try_description, write_html
    from columnist.cli.output import print_rows, write_tsv

    if not description.strip():
        fail("give a description to try, e.g. 'a spacecraft window or porthole'", 2)
    for text in template:  # as a vocabulary's templates are checked
        try:
            check_template(text)
        except ValueError as err:
            fail(f"--template: {err}", 2)
    store, encoder, vocabulary = _context(db, model, vocab)
    try:
        results = try_description(store, encoder, vocabulary, description, template or None)
        best, borderline = results.top(top), results.borderline(top)
        uris = store.image_uris([r.image_id for r in best + borderline]) if html_out else {}
    except LookupError as err:
        fail(str(err))
    finally:
        store.close()
    rows = lambda items: [[r.image_id, f"{r.score:.4f}", f"{r.logit:.3f}"] for r in items]  # noqa: E731
    piped = not sys.stdout.isatty()
    typer.echo(f"{description!r} over {len(results.ids)} stored embeddings (centre {vocabulary.calibration.centre}, "
               f"scale {vocabulary.calibration.scale}):", err=piped)
    if piped:  # one TSV, each row saying which list it is in
        listed = [("top", row) for row in rows(best)] + [("borderline", row) for row in rows(borderline)]
        write_tsv(["list", "image_id", "score", "logit"], [[name, *row] for name, row in listed])
    else:
        print_rows(["top image", "score", "logit"], rows(best))
        print_rows(["borderline image", "score", "logit"], rows(borderline))
    if html_out:
        sections = [Section("top", best, len(results.ids)), Section("borderline (score nearest 0.5)", borderline,
                                                                         len(results.ids))]
        write_html(html_out, f"try: {description}", sections, uris, {
            "model": encoder.name, "vocabulary": f"{vocabulary.name} v{vocabulary.version}",
            "templates": " | ".join(template or vocabulary.templates),
            "calibration": f"centre {vocabulary.calibration.centre}, scale {vocabulary.calibration.scale}",
            "images scored": str(len(results.ids))})
        typer.echo(f"wrote {html_out}", err=piped)


def gallery(
    attribute: str = typer.Option(..., "--attribute", help="The attribute code."),
    out: Path = typer.Option(..., "--out", help="The HTML file to write."),
    count: int = typer.Option(24, help="Images per section."),
    vocab: Optional[str] = VocabOption,
    db: Optional[str] = DbOption,
) -> None:
    """Thumbnails of an attribute's accepted, tentative and rejected images with their scores."""
    from columnist.cli.common import fail, store_or_exit, vocabulary_in
    from columnist.workbench.gallery import gallery_sections, write_html

    store = store_or_exit(db, "workbench")
    vocabulary = vocabulary_in(store, vocab)
    if attribute not in vocabulary.codes:
        store.close()
        fail(f"vocabulary {vocabulary.name!r} v{vocabulary.version} has no attribute {attribute!r}", 2)
    try:
        sections = gallery_sections(store, vocabulary, attribute, count)
        uris = store.image_uris([r.image_id for section in sections for r in section.items])
    except LookupError as err:
        fail(str(err))
    finally:
        store.close()
    thresholds = vocabulary.thresholds_for(vocabulary.entry(attribute))
    write_html(out, f"{attribute}: {vocabulary.entry(attribute).label or attribute}", sections, uris, {
        "vocabulary": f"{vocabulary.name} v{vocabulary.version}",
        "thresholds": f"accept ≥ {thresholds.accept}, reject ≤ {thresholds.reject}"})
    typer.echo(f"wrote {out}: " + "; ".join(f"{s.heading.split(' (')[0]} {len(s.items)} of {s.total}"
                                            for s in sections))


def search(
    phrase: str = typer.Argument(..., metavar="TEXT", help="What to look for, in words: 'a rocket on the launch pad'.",
                                 callback=utf8_text),
    top: int = typer.Option(20, min=1, max=100_000, metavar="N", help="How many images (or video frames) to show."),
    html_out: Optional[Path] = typer.Option(None, "--html", metavar="FILE", help="Write a page of thumbnails too."),
    vocab: Optional[str] = VocabOption,
    db: Optional[str] = DbOption,
    model: Optional[str] = ModelOption,
) -> None:
    """The stored images and video frames a free-text description fits best, with a calibrated
    probability; ranked in ClickHouse, and kept so SQL can rank by it: SELECT * FROM
    columnist.search(phrase = 'TEXT'). Works through a worker that owns the database too."""
    import sys

    from columnist.cli.common import fail, settings, vocabulary_in
    from columnist.cli.output import print_rows, shown, write_tsv
    from columnist.cli.reader import Reader
    from columnist.models.registry import load_encoder
    from columnist.prompt_cache import PromptCache
    from columnist.store.search import count_sql, inline_ranking, search_sql, sql_string
    from columnist.workbench.search import encode_phrase

    if not phrase.strip():
        fail("give a phrase to search for, e.g. 'a rocket on the launch pad'", 2)
    config = settings()
    reader = Reader(db or config.db, config)
    try:
        encoder = load_encoder(model or config.model, config.threads, config.batch_size, runtime=config.runtime)
        if reader.store is not None:
            vocabulary = vocabulary_in(reader.store, vocab)
            found = encode_phrase(phrase, encoder, PromptCache(encoder, reader.store), vocabulary)
            reader.store.save_search_phrase(encoder.name, found.text, found.embedding, found.logit_scale, found.centre,
                                            found.scale)
            columns, rows = reader.store.query(search_sql(top), {"phrase": found.text})
        else:  # the worker owns the database: its page reads, the phrase is encoded here
            from columnist.vocab import load_vocabulary_arg

            found = encode_phrase(phrase, encoder, encoder, load_vocabulary_arg(vocab or config.vocab))
            columns, rows = reader.query(search_sql(top, inline_ranking(found.embedding, found.logit_scale, found.centre, found.scale, encoder.name)))
        searched = reader.query(count_sql(encoder.name))[1][0][0] if html_out else len(rows)
    finally:
        reader.close()
    if not sys.stdout.isatty():
        write_tsv(["rank", *columns], [[rank, *row] for rank, row in enumerate(rows, start=1)])
    else:
        print_rows(["rank", "probability", "logit", "image"], [[rank, p, lg, image_id]
                                                              for rank, (image_id, p, lg, _) in enumerate(rows, 1)])
        typer.echo(f"{phrase!r}: probability = sigmoid((logit - {found.centre:g}) / {found.scale:g}); rank by it in "
                   f"SQL with the view columnist.search(phrase = {shown(sql_string(found.text))})", err=True)
    if html_out:
        from columnist.workbench.gallery import Scored, Section, write_html

        shown = [Scored(image_id, float(p), float(lg)) for image_id, p, lg, _ in rows]
        write_html(html_out, f"search: {phrase}", [Section("best first", shown, searched)],
                   {image_id: uri for image_id, _, _, uri in rows},
                   {"model": encoder.name, "calibration": f"centre {found.centre:g}, scale {found.scale:g}"})
        typer.echo(f"wrote {html_out}", err=True)


def register(app: typer.Typer) -> None:
    app.command()(calibrate)
    app.command("try")(try_)
    app.command()(search)
    app.command()(gallery)
