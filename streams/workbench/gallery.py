"""Seeing what a column means: `columnist try` (an ad-hoc description over every stored
embedding) and `columnist gallery` (one attribute's accepted, tentative and rejected images),
both with an HTML page of thumbnails."""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence
from urllib.parse import unquote, urlparse

from columnist.vocab.prompts import prompt_ensemble
from columnist.vocab.schema import Vocabulary
from columnist.vocab.scoring import clip_logits, sigmoid

if TYPE_CHECKING:
    import numpy as np

    from columnist.models.encoder import Encoder
    from columnist.store import Store


@dataclass(frozen=True)
class Scored:
    image_id: str
    score: float
    logit: float


@dataclass
class TryResult:
    """An ad-hoc description's score for every stored embedding (arrays, not objects: 100k+)."""

    ids: list[str]
    scores: "np.ndarray"
    logits: "np.ndarray"

    def _pick(self, order) -> list[Scored]:
        return [Scored(self.ids[i], float(self.scores[i]), float(self.logits[i])) for i in order]

    def top(self, count: int) -> list[Scored]:
        import numpy as np

        return self._pick(np.argsort(-self.scores, kind="stable")[:count])

    def borderline(self, count: int, around: float = 0.5) -> list[Scored]:
        import numpy as np

        return self._pick(np.argsort(np.abs(self.scores - around), kind="stable")[:count])


def try_description(store: "Store", encoder: "Encoder", vocab: Vocabulary, description: str,
                    templates: Sequence[str] | None = None) -> TryResult:
    """Score ``description`` against every stored embedding: one matrix product, no decoding.
    Uses the vocabulary-wide templates and calibration."""
    text = prompt_ensemble(encoder, [t.format(description=description) for t in (templates or vocab.templates)])
    ids, embeddings = store.read_embeddings(encoder.name)
    if not ids:
        raise LookupError(f"no stored embeddings for model {encoder.name!r}: tag or ingest images first")
    logits = clip_logits(embeddings, text, encoder.logit_scale)
    return TryResult(ids, sigmoid(logits, vocab.calibration.centre, vocab.calibration.scale), logits)


def gallery_sections(store: "Store", vocab: Vocabulary, code: str, count: int) -> list[tuple[str, list[Scored]]]:
    """Accepted (best first), tentative (closest to a threshold first), rejected (nearest misses first)."""
    thresholds = vocab.thresholds_for(vocab.entry(code))
    scored = [Scored(*row) for row in store.attribute_scores(vocab.name, code)]
    if not scored:
        raise LookupError(f"attribute {code!r} has no scores yet")
    accepted = sorted((r for r in scored if r.score >= thresholds.accept), key=lambda r: -r.score)
    rejected = sorted((r for r in scored if r.score <= thresholds.reject), key=lambda r: -r.score)
    tentative = sorted((r for r in scored if thresholds.reject < r.score < thresholds.accept),
                       key=lambda r: min(thresholds.accept - r.score, r.score - thresholds.reject))
    return [(f"accepted (score ≥ {thresholds.accept}): {len(accepted)}", accepted[:count]),
            (f"tentative (closest to a threshold first): {len(tentative)}", tentative[:count]),
            (f"rejected (score ≤ {thresholds.reject}; nearest misses first): {len(rejected)}", rejected[:count])]


def thumbnail(uri: str, size: int = 160) -> str | None:
    """A data: URI of a small JPEG of the image at a file:// ``uri``, or None."""
    from PIL import Image

    from columnist.models.images import ImageError, open_image

    if not uri.startswith("file:"):
        return None
    path = Path(unquote(urlparse(uri).path))
    try:
        image = open_image(path.read_bytes(), str(path))
    except (OSError, ImageError):
        return None
    image.thumbnail((size, size), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def write_html(path: Path, title: str, sections: list[tuple[str, list[Scored]]], uris: dict[str, str],
               about: dict[str, str] | None = None) -> None:
    """A page of thumbnails in a grid, each with its id and score, linked to the full image
    where it is a local file; ``about`` (model, vocabulary, thresholds…) heads the page."""
    from datetime import datetime, timezone

    about = {**(about or {}), "made": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    parts = [f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;margin:1.5em}dl{display:grid;grid-template-columns:max-content auto;"
             "gap:2px 12px;font-size:13px;color:#444}dt{font-weight:bold}.grid{display:grid;gap:10px;"
             "grid-template-columns:repeat(auto-fill,minmax(170px,1fr))}figure{margin:0;font-size:12px;"
             "word-break:break-all}img{max-width:160px;max-height:160px;display:block}"
             ".missing{width:160px;height:100px;background:#eee;color:#888;display:flex;align-items:center;"
             "justify-content:center}</style>", f"<h1>{html.escape(title)}</h1><dl>",
             *(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in about.items()), "</dl>"]
    for heading, items in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2><div class='grid'>")
        for item in items:
            uri = uris.get(item.image_id, "")
            source = thumbnail(uri)
            picture = (f"<img src='{source}' alt='{html.escape(item.image_id)}'>" if source
                       else "<div class='missing'>no preview</div>")
            if source and uri.startswith("file:"):
                picture = f"<a href='{html.escape(uri)}'>{picture}</a>"
            parts.append(f"<figure class='image' data-image-id='{html.escape(item.image_id)}'>{picture}"
                         f"<figcaption>{html.escape(item.image_id)}<br>score {item.score:.4f} · logit {item.logit:.3f}"
                         f"</figcaption></figure>")
        parts.append("</div>")
    path.write_text("\n".join(parts))
