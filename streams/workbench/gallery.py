"""Seeing what a column means: `columnist try` (an ad-hoc description over every stored
embedding) and `columnist gallery` (one attribute's accepted, tentative and rejected images),
both with an HTML page of thumbnails (the template is page.html beside this module)."""

from __future__ import annotations

import base64
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
    from columnist.records import ImageLimits
    from columnist.store import Store


@dataclass(frozen=True)
class Scored:
    image_id: str
    score: float
    logit: float


@dataclass(frozen=True)
class Section:
    """A heading and the first of its images; ``total`` is how many there are in all."""

    heading: str
    items: list[Scored]
    total: int


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


def gallery_sections(store: "Store", vocab: Vocabulary, code: str, count: int) -> list[Section]:
    """Accepted (best first), tentative (closest to a threshold first), rejected (nearest misses first)."""
    thresholds = vocab.thresholds_for(vocab.entry(code))
    scored = [Scored(*row) for row in store.attribute_scores(vocab.name, code)]
    if not scored:
        raise LookupError(f"attribute {code!r} has no scores yet")
    accepted = sorted((r for r in scored if r.score >= thresholds.accept), key=lambda r: -r.score)
    rejected = sorted((r for r in scored if r.score <= thresholds.reject), key=lambda r: -r.score)
    tentative = sorted((r for r in scored if thresholds.reject < r.score < thresholds.accept),
                       key=lambda r: min(thresholds.accept - r.score, r.score - thresholds.reject))
    return [Section(f"accepted (score ≥ {thresholds.accept})", accepted[:count], len(accepted)),
            Section("tentative (closest to a threshold first)", tentative[:count], len(tentative)),
            Section(f"rejected (score ≤ {thresholds.reject}; nearest misses first)", rejected[:count], len(rejected))]


def caption(image_id: str, uri: str) -> str:
    """What a person calls the item: the file's name (decoded), a frame as "clip.mp4 at 3.0 s"."""
    from columnist.models.video import parse_frame_id

    frame = parse_frame_id(image_id)
    name = unquote(urlparse(uri).path.rsplit("/", 1)[-1]) if uri else ""
    if frame:
        return f"{name or frame[0]} at {frame[1]:.1f} s"
    return name or image_id


def thumbnail(image_id: str, uri: str, size: int = 160, limits: "ImageLimits | None" = None,
              digests: dict | None = None) -> str | None:
    """A data: URI of a small JPEG of the image (or the video frame) at a file:// ``uri``, or None.
    The file is read within ``limits`` (the settings' by default): bytes, pixels, decoding time.
    ``digests`` keeps each file's content hash for a page (a video's frames: one hash a video,
    not one a frame of up to COLUMNIST_MAX_VIDEO_BYTES)."""
    from PIL import Image

    from columnist import decode_watch
    from columnist.files import file_uri_path, read_regular_file
    from columnist.models.images import ImageError, open_image
    from columnist.models.video import VideoError, VideoLimits, frame_at, parse_frame_id
    from columnist.settings import get_settings

    if not uri.startswith("file:"):
        return None
    path = Path(file_uri_path(urlparse(uri).path))
    frame = parse_frame_id(image_id)
    limits = limits or get_settings().image_limits
    try:
        seen = path.stat()
        data = read_regular_file(path, limits.max_video_bytes if frame else limits.max_bytes)
        sha256 = _digest(data, (str(path), seen.st_ino, seen.st_size, seen.st_mtime_ns), digests)
        if decode_watch.refused(sha256):  # the file was changed since it was stored, into one that hangs its decoder
            return None
        with decode_watch.decoding(str(path), sha256, limits.decode_deadline(video=bool(frame))):
            if frame:
                image = frame_at(data, frame[1], VideoLimits(max_pixels=limits.max_pixels), size)
            else:
                image = open_image(data, str(path), limits.max_pixels)
    except (OSError, ImageError, VideoError):
        return None
    image.thumbnail((size, size), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def _digest(data: bytes, key: tuple, digests: dict | None) -> str:
    """sha256_of ``data``, kept in ``digests`` under the file's identity (path, inode, size,
    mtime) when the bytes read are as long as the file was."""
    from columnist.pipeline import sha256_of

    if digests is None or len(data) != key[2]:
        return sha256_of(data)
    if key not in digests:
        digests[key] = sha256_of(data)
    return digests[key]


@dataclass(frozen=True)
class Tile:
    image_id: str
    caption: str
    score: float
    logit: float
    preview: str | None
    link: str | None


def write_html(path: Path, title: str, sections: list[Section], uris: dict[str, str],
               about: dict[str, str] | None = None) -> None:
    """A page of thumbnails in a grid, each with its name, id and score, linked to the full
    image where it is a local file; ``about`` (model, vocabulary, thresholds…) heads the page."""
    from datetime import datetime, timezone

    import jinja2

    from columnist.models.video import parse_frame_id
    from columnist.settings import get_settings

    limits, digests = get_settings().image_limits, {}

    def tile(item: Scored) -> Tile:
        uri = uris.get(item.image_id, "")
        preview = thumbnail(item.image_id, uri, limits=limits, digests=digests)
        link = uri + item.image_id[item.image_id.rfind("#t="):] if parse_frame_id(item.image_id) else uri
        return Tile(item.image_id, caption(item.image_id, uri), item.score, item.logit, preview,
                    link if preview and uri.startswith("file:") else None)

    environment = jinja2.Environment(loader=jinja2.PackageLoader("columnist.workbench", "."),
                                     autoescape=True, undefined=jinja2.StrictUndefined)
    page = environment.get_template("page.html").render(
        title=title, about={**(about or {}), "made": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")},
        sections=[{"heading": s.heading, "total": s.total, "tiles": [tile(i) for i in s.items]} for s in sections])
    path.write_text(page, encoding="utf-8")
