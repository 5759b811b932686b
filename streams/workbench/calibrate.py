"""`columnist calibrate`: logit statistics on stored embeddings, a fitted centre and scale,
the YAML to paste (or written into the file), and a picture of it all.

Everything runs on stored embeddings: the text tower encodes the prompts, one matrix product
gives every logit, no image is decoded.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from columnist.files import read_regular_file
from columnist.printable import printable
from columnist.vocab.calibration import LogisticFit, fit_labelled, suggest_unlabelled
from columnist.vocab.prompts import text_embeddings
from columnist.records import ModelCalibration
from columnist.vocab.schema import Vocabulary
from columnist.vocab.scoring import clip_logits, sigmoid, tier

if TYPE_CHECKING:
    import numpy as np

    from columnist.models.encoder import Encoder
    from columnist.store import Store


@dataclass
class AttributeReport:
    code: str
    logits: "np.ndarray"
    fit: LogisticFit | None = None
    loss_before: float | None = None
    loss_after: float | None = None
    labels: int = 0


def sample_logits(store: "Store", encoder: "Encoder", vocab: Vocabulary, sample: int,
                  image_ids: list[str] | None = None) -> tuple[list[str], dict[str, "np.ndarray"]]:
    """Logits of every base attribute for a sample of stored embeddings (or the given ids)."""
    ids, embeddings = store.read_embeddings(encoder.name, image_ids=image_ids,
                                            sample=None if image_ids is not None else sample)
    if not ids:
        raise LookupError(f"no stored embeddings for model {encoder.name!r}: tag or ingest images first")
    texts = text_embeddings(encoder, vocab)
    return ids, {code: clip_logits(embeddings, vector, encoder.logit_scale) for code, vector in texts.items()}


def statistics_rows(vocab: Vocabulary, logits: dict[str, "np.ndarray"], model: ModelCalibration | None = None) -> list[list]:
    """Per attribute: min, mean, max, std of the logit and the share of each tier now (with
    ``model``, the model's own calibration where an attribute sets none: SigLIP's bias)."""
    rows = []
    for code, values in logits.items():
        calibration = vocab.calibration_for(vocab.entry(code), model)
        thresholds = vocab.thresholds_for(vocab.entry(code))
        tiers = tier(sigmoid(values, calibration.centre, calibration.scale), thresholds.accept, thresholds.reject)
        shares = [f"{(tiers == t).mean():.0%}" for t in ("accepted", "tentative", "rejected")]
        rows.append([code, f"{values.min():.2f}", f"{values.mean():.2f}", f"{values.max():.2f}",
                     f"{values.std():.2f}", *shares])
    return rows


MAX_LABELS_BYTES = 100_000_000
"""A labels CSV: at most this many bytes (a few million labels)."""


def read_labels(path: Path) -> dict[str, dict[str, int]]:
    """CSV with columns image_id, attribute, label (0/1) -> {attribute: {image_id: label}}."""
    labels: dict[str, dict[str, int]] = {}
    try:
        text = read_regular_file(path, MAX_LABELS_BYTES).decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{printable(path)}: not UTF-8 text") from None
    for line, row in enumerate(csv.DictReader(io.StringIO(text, newline="")), start=2):
        try:
            value = int(row["label"])
            if value not in (0, 1):
                raise ValueError
            labels.setdefault(row["attribute"], {})[row["image_id"]] = value
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"{path}:{line}: expected columns image_id, attribute, label (0 or 1), got {row}") from None
    return labels


def fit_from_labels(store: "Store", encoder: "Encoder", vocab: Vocabulary, labels: dict[str, dict[str, int]]) -> list[AttributeReport]:
    import numpy as np

    unknown = sorted(set(labels) - {a.code for a in vocab.attributes})
    if unknown:
        raise ValueError(f"labels name attributes that are not base attributes of {vocab.name!r}: {', '.join(unknown)}")
    wanted = sorted({i for per in labels.values() for i in per})
    ids, logits = sample_logits(store, encoder, vocab, 0, image_ids=wanted)
    position = {image_id: n for n, image_id in enumerate(ids)}
    reports = []
    for code, per_image in labels.items():
        known = [i for i in per_image if i in position]
        values = logits[code][[position[i] for i in known]]
        truth = np.array([per_image[i] for i in known], np.float64)
        calibration = vocab.calibration_for(vocab.entry(code), encoder.calibration)
        fit, before, after = fit_labelled(values, truth, calibration.centre, calibration.scale)
        reports.append(AttributeReport(code, values, fit, before, after, len(known)))
    return reports


def fit_unlabelled(logits: dict[str, "np.ndarray"], per_attribute: bool) -> tuple[LogisticFit, list[AttributeReport]]:
    """The vocabulary-wide suggestion (all attributes' logits pooled), and per attribute."""
    import numpy as np

    pooled, _ = suggest_unlabelled(np.concatenate(list(logits.values())))
    reports = [AttributeReport(code, values, suggest_unlabelled(values)[0] if per_attribute else None)
               for code, values in logits.items()]
    return pooled, reports


def calibration_yaml(vocab_wide: LogisticFit | None, reports: list[AttributeReport]) -> str:
    lines = []
    if vocab_wide:
        lines.append(f"calibration: {{centre: {vocab_wide.centre:.3f}, scale: {vocab_wide.scale:.3f}}}")
    per = [r for r in reports if r.fit]
    if per:
        lines.append("# per attribute (inside each attribute entry):")
        lines += [f"#   {r.code}: calibration: {{centre: {r.fit.centre:.3f}, scale: {r.fit.scale:.3f}}}" for r in per]
    return "\n".join(lines)


def fit_source(report: AttributeReport | None, images: int) -> str:
    """How a fit was made, in words, for the vocabulary's ``calibration.source``."""
    if report is not None and report.labels:
        return f"labelled fit: {report.labels} labels, log-loss {report.loss_before:.3f} -> {report.loss_after:.3f}"
    return f"unlabelled fit: two-Gaussian mixture over {images} images"


def write_calibration(path: Path, vocab_wide: LogisticFit | None, reports: list[AttributeReport],
                      images: int = 0) -> Vocabulary:
    """Write the fits, with how each was made, into the vocabulary file, keeping its comments
    and layout, then validate the result (a file that would not load is never left behind)."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap

    from columnist.vocab.schema import load_vocabulary

    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap long descriptions
    yaml.indent(mapping=2, sequence=4, offset=2)  # the layout of the shipped vocabularies
    original = path.read_text()
    document = yaml.load(original)

    def block(fit: LogisticFit, report: AttributeReport | None) -> CommentedMap:
        mapping = CommentedMap(centre=round(fit.centre, 3), scale=round(fit.scale, 3),
                               source=fit_source(report, images))
        mapping.fa.set_flow_style()
        return mapping

    if vocab_wide:
        document["calibration"] = block(vocab_wide, None)
    fitted = {r.code: r for r in reports if r.fit}
    for entry in document["attributes"]:
        if entry["code"] in fitted:
            entry["calibration"] = block(fitted[entry["code"]].fit, fitted[entry["code"]])
    with open(path, "w") as handle:
        yaml.dump(document, handle)
    try:
        return load_vocabulary(path)
    except Exception:
        path.write_text(original)
        raise


def plot(path: Path, vocab: Vocabulary, reports: list[AttributeReport], vocab_wide: LogisticFit | None,
         max_panels: int = 48, model: ModelCalibration | None = None) -> None:
    """Histograms of logits per attribute with the sigmoid over them and thresholds marked."""
    import math

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    shown = reports[:max_panels]
    columns = min(6, len(shown))
    rows = math.ceil(len(shown) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 2.4 * rows), squeeze=False)
    for axis, report in zip(axes.flat, shown):
        entry = vocab.entry(report.code)
        current = vocab.calibration_for(entry, model)
        thresholds = vocab.thresholds_for(entry)
        fit = report.fit or vocab_wide
        low, high = float(report.logits.min()), float(report.logits.max())
        if fit:
            low, high = min(low, fit.centre - 3 * fit.scale), max(high, fit.centre + 3 * fit.scale)
        pad = 0.1 * (high - low or 1.0)
        xs = np.linspace(low - pad, high + pad, 300)
        axis.hist(report.logits, bins=40, range=(low - pad, high + pad), color="#9bb7d4")
        axis.set_xlim(low - pad, high + pad)
        twin = axis.twinx()
        twin.plot(xs, sigmoid(xs, current.centre, current.scale), color="#555555", lw=1, label="current")
        if fit:
            twin.plot(xs, sigmoid(xs, fit.centre, fit.scale), color="#d62728", lw=1.5, label="fitted")
            for level, style in ((thresholds.accept, "--"), (thresholds.reject, ":")):
                twin.axvline(fit.centre + fit.scale * math.log(level / (1 - level)), color="#d62728", ls=style, lw=0.8)
        twin.set_ylim(0, 1.02)
        twin.set_yticks([0, thresholds.reject, thresholds.accept, 1])
        axis.set_title(report.code + (f" ({report.labels} labels)" if report.labels else ""), fontsize=9)
        axis.tick_params(labelsize=7)
        twin.tick_params(labelsize=7)
    for axis in list(axes.flat)[len(shown):]:
        axis.axis("off")
    figure.suptitle(f"{vocab.name} v{vocab.version}: logit histograms (blue), sigmoid (grey: current, red: fitted), "
                    "fitted accept -- / reject ··· thresholds", fontsize=11)
    figure.tight_layout(rect=(0, 0, 1, 0.97))
    figure.savefig(path, dpi=90)
    plt.close(figure)
