"""The one batch path, shared by the worker and `columnist tag`: look up, prepare, reuse,
split, count; then embed and score.

A batch arrives as ``ImageInput``s (bytes already read: from events by the worker, from files
by tag). ``take_batch`` asks the store which ids are stored with this content (tag skips them)
and which contents it knows for the model (their embedding is reused, nothing decoded), then
``BatchPreparer`` decodes and preprocesses each new content once, keeping only the tensors:
at most one image over LARGE_DECODE_PIXELS is decoded at a time, beside at most
DEFAULT_DECODE_THREADS - 1 smaller ones. Any failure of one image is that image's.
``embed_and_score`` encodes the rest and scores every attribute of every vocabulary given;
the store writes the result as one batch.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Sequence

from columnist import decode_watch, faults, tower_watch
from columnist.errors import BadInput
from columnist.models import media, video
from columnist.models.images import ImageError, decode, decoded_pixels
from columnist.models.machine import cpu_count
from columnist.printable import printable
from columnist.records import (Counters, FrameRecord, ImageInput, ImageLimits, ImageRecord, KnownImage,
                               PreparedFrame, PreparedImage, ScoredBatch)
from columnist.vocab.scoring import score_vocabulary

if TYPE_CHECKING:
    import numpy as np

    from columnist.models.encoder import Encoder
    from columnist.store import IngestStore
    from columnist.vocab.schema import Vocabulary

log = logging.getLogger("columnist.pipeline")

Texts = dict[str, "np.ndarray"]
"""One unit-length text embedding per base attribute code of a vocabulary."""



class ModelOutputError(BadInput):
    """The image tower answered with another number of rows than it was given images: every
    image of that batch fails with this reason (retrying the same batch would answer the same)."""


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


DEFAULT_DECODE_THREADS = 4
"""At most this many decode threads by default (each may hold an image of up to
LARGE_DECODE_PIXELS decoded pixels at once)."""

LARGE_DECODE_PIXELS = 16_000_000
"""Images decoded at more pixels than this (after JPEG draft scaling) are decoded one at a
time: a batch of big PNG scans must not hold several full-size copies at once."""

_large_decode = threading.Lock()


def prepare(data: bytes, name: str, encoder: "Encoder", image_id: str, uri: str, collection: str = "",
            limits: ImageLimits = ImageLimits(), known: KnownImage | None = None,
            sha256: str | None = None) -> PreparedImage:
    """Decode and preprocess one image or video, or reuse ``known`` content without decoding;
    raise ImageError (naming ``name``) when it cannot be used."""
    sha256 = sha256 or sha256_of(data)
    if known is not None:
        record = ImageRecord(image_id, uri, collection, known.width, known.height, sha256)
        return PreparedImage(record, None, known.embedding)
    if decode_watch.refused(sha256):
        raise ImageError(name, "decoding this content overran COLUMNIST_DECODE_TIMEOUT before and ended the process; "
                               f"it is not decoded again (listed in {decode_watch.stuck_file()})")
    kind = media.kind_of(data, uri if not uri.startswith("data:") else "")
    if kind != media.VIDEO and len(data) > limits.max_bytes:
        raise ImageError(name, f"{len(data):,} bytes, over the limit of {limits.max_bytes:,} for images")
    at_least = encoder.image_size  # decoded at the size needed where the codec allows
    if kind == media.VIDEO:
        with _large_decode, decode_watch.decoding(name, sha256, limits.decode_deadline(video=True)):  # one at a time
            return _prepare_video(data, name, encoder, ImageRecord(image_id, uri, collection, 0, 0, sha256, "video"),
                                  limits, 2 * at_least)  # frames scaled to twice the model's side
    deadline = limits.decode_deadline(video=False)
    with decode_watch.decoding(name, sha256, deadline):  # reading a header is decoding too
        large = decoded_pixels(data, at_least, limits.max_pixels) > LARGE_DECODE_PIXELS
    with _large_decode if large else nullcontext(), decode_watch.decoding(name, sha256, deadline):  # once its turn came
        decoded = decode(data, name, limits.max_pixels, at_least=at_least, kind=kind)
        record = ImageRecord(image_id, uri, collection, decoded.width, decoded.height, sha256)
        return PreparedImage(record, encoder.prepare_image(decoded.image))


def _prepare_video(data: bytes, name: str, encoder: "Encoder", record: ImageRecord, limits: ImageLimits,
                   at_least: int) -> PreparedImage:
    """A video's sampled frames, each prepared for the image tower as it is decoded."""
    try:
        sampled = video.sample(data, video.VideoLimits(limits.max_pixels, limits.video_frames, limits.video_interval,
                                                       limits.video_seconds, limits.video_deadline), at_least)
    except video.VideoError as err:
        raise ImageError(name, str(err)) from None
    frames = tuple(PreparedFrame(FrameRecord(record.image_id, video.frame_id(record.image_id, seconds), seconds),
                                 encoder.prepare_image(image)) for seconds, image in sampled.frames)
    if sampled.truncated_at is not None:
        log.info("%s: %d frames sampled up to %.1f s of %.1f s (COLUMNIST_VIDEO_FRAMES, _VIDEO_SECONDS, "
                 "_VIDEO_DEADLINE)", printable(name), len(frames), sampled.truncated_at, sampled.duration)
    return PreparedImage(replace(record, width=sampled.width, height=sampled.height, duration=sampled.duration,
                                 frames=len(frames)), None, None, frames)


class BatchPreparer:
    """Prepares the images of one batch: content the store knows is not decoded, the same
    content twice in the batch is decoded once, and new contents are decoded on ``threads``
    threads (Pillow releases the GIL while it decodes and resizes, so both cores work). The
    worker and the tagger both use it."""

    def __init__(self, encoder: "Encoder", known: dict[str, KnownImage], limits: ImageLimits = ImageLimits()):
        self.encoder, self.known, self.limits = encoder, known, limits
        self.threads = limits.decode_threads or min(DEFAULT_DECODE_THREADS, cpu_count())
        self.first: dict[str, PreparedImage] = {}

    def reuses(self, sha256: str) -> bool:
        """Whether content with this hash will be prepared without decoding."""
        return sha256 in self.known or sha256 in self.first

    def prepare_all(self, items: Sequence[ImageInput]) -> list[PreparedImage | Exception]:
        """Each item's PreparedImage, or the exception that makes it unusable (in order)."""
        new = {}
        for item in items:
            if not self.reuses(item.sha256):
                new.setdefault(item.sha256, item)
        if len(new) > 1 and self.threads > 1:
            with ThreadPoolExecutor(min(self.threads, len(new)), thread_name_prefix="columnist-decode") as pool:
                done = dict(zip(new, pool.map(self._attempt, new.values()), strict=True))
        else:
            done = {sha256: self._attempt(item) for sha256, item in new.items()}
        results: list[PreparedImage | Exception] = []
        seen: set[str] = set()
        for item in items:
            outcome = done.get(item.sha256)
            if item.sha256 not in seen and isinstance(outcome, PreparedImage):
                self.first[item.sha256] = outcome  # the first item of new content: its own result
            elif not isinstance(outcome, Exception):
                outcome = self._attempt(item)  # known content, or a copy of content prepared above
            elif item.sha256 in seen and isinstance(outcome, ImageError):
                outcome = ImageError(item.name, outcome.reason)  # the same content failed: said of this image
            seen.add(item.sha256)
            results.append(outcome)
        return results

    def _attempt(self, item: ImageInput) -> PreparedImage | Exception:
        try:
            return self.add(item)
        except Exception as err:  # any failure of one image is that image's (the caller names it)
            return err

    def add(self, item: ImageInput) -> PreparedImage:
        """One image of the batch; raises ImageError (naming it) when it cannot be used."""
        first = self.first.get(item.sha256)
        if first is not None:
            frames = tuple(PreparedFrame(FrameRecord(item.image_id, video.frame_id(item.image_id, f.record.seconds),
                                                     f.record.seconds), f.tensor) for f in first.frames)
            return PreparedImage(replace(first.record, image_id=item.image_id, uri=item.uri,
                                         collection=item.collection), None, first.embedding, frames)
        return prepare(item.data, item.name, self.encoder, item.image_id, item.uri, item.collection,
                       self.limits, self.known.get(item.sha256), item.sha256)


def embed_and_score(prepared: Sequence[PreparedImage], vocabularies: Sequence[tuple["Vocabulary", Texts]],
                    encoder: "Encoder") -> ScoredBatch:
    """Encode each content of the batch once (images, and videos' frames; known embeddings are
    reused), score every row, and score each video with the maximum over its frames.
    ModelOutputError when the tower does not answer one finite row per input."""
    import numpy as np

    rows: list[tuple[str, str]] = []  # (id, content key) of each embedding row
    tensors: dict[str, "np.ndarray"] = {}
    known: dict[str, "np.ndarray"] = {}
    for p in prepared:
        for key, row_id, tensor in _rows_of(p):
            rows.append((row_id, key))
            if p.embedding is not None and not p.frames:
                known[key] = p.embedding
            elif tensor is not None:
                tensors.setdefault(key, tensor)
    encoded = _encode(encoder, tensors)
    embeddings = np.stack([known[key] if key in known else encoded[key] for _, key in rows]) if rows \
        else np.zeros((0, encoder.dim), np.float32)
    position = {row_id: n for n, (row_id, _) in enumerate(rows)}
    videos = [p for p in prepared if p.frames]
    scores = []
    for vocab, texts in vocabularies:
        each = score_vocabulary(embeddings, texts, vocab, encoder.logit_scale, encoder.source, encoder.calibration)
        for video_ in videos:  # a video's score: the maximum over its frames
            frames = [position[f.record.frame_id] for f in video_.frames]
            for code in each.codes:
                each.scores[code] = np.append(each.scores[code], each.scores[code][frames].max())
                each.logits[code] = np.append(each.logits[code], np.max(each.logits[code][frames]))
        scores.append(each)
    return ScoredBatch(encoder.name, [p.record for p in prepared], rows, embeddings,
                       [row_id for row_id, _ in rows] + [v.record.image_id for v in videos], scores,
                       [f.record for v in videos for f in v.frames])


def embed_and_score_isolating(prepared: Sequence[PreparedImage], vocabularies: Sequence[tuple["Vocabulary", Texts]],
                              encoder: "Encoder") -> tuple[ScoredBatch | None, list[tuple[int, Exception]]]:
    """embed_and_score, and when the batch fails, each image on its own: one whose own
    encoding fails is that image's failure (its position, why), the others are scored together
    (None when none is left). When every image fails on its own, a blank image tells who is at
    fault: it encodes, or the model answers it wrongly too (ModelOutputError: the same batch
    would get the same answer again), and the images fail; it raises anything else, and the
    model is at fault: the batch's error is raised, and the batch retried as a whole."""
    try:
        return embed_and_score(prepared, vocabularies, encoder), []
    except Exception as batch_error:  # noqa: BLE001 - one image's fault or the model's: found out below
        failed = []
        for position, image in enumerate(prepared):
            try:
                embed_and_score([image], vocabularies, encoder)
            except Exception as err:  # noqa: BLE001 - any failure of one image is that image's
                failed.append((position, err))
        if len(failed) < len(prepared):
            bad = {position for position, _ in failed}
            return embed_and_score([p for n, p in enumerate(prepared) if n not in bad], vocabularies, encoder), failed
        try:
            embed_and_score([_blank(encoder)], vocabularies, encoder)
        except ModelOutputError:
            pass
        except Exception:  # noqa: BLE001 - the model's trouble, not the images'
            raise batch_error from None
        return None, failed


def _blank(encoder: "Encoder") -> PreparedImage:
    """A black image, prepared: what any working model encodes."""
    from PIL import Image

    tensor = encoder.prepare_image(Image.new("RGB", (encoder.image_size, encoder.image_size)))
    return PreparedImage(ImageRecord("blank", "", "", encoder.image_size, encoder.image_size, "blank"), tensor)


def _rows_of(p: PreparedImage):
    """(content key, id, tensor) of the embedding rows an item brings: itself, or a video's frames."""
    if p.frames:
        return [(f"{p.record.sha256}#t={f.record.seconds:.3f}", f.record.frame_id, f.tensor) for f in p.frames]
    return [(p.record.sha256, p.record.image_id, p.tensor)]


def _encode(encoder: "Encoder", tensors: dict[str, "np.ndarray"]) -> dict[str, "np.ndarray"]:
    import numpy as np

    if not tensors:
        return {}
    with tower_watch.bounded(encoder.name, len(tensors)):
        faults.point("encode")
        answer = encoder.encode_prepared(list(tensors.values()))
    finite = answer.shape == (len(tensors), encoder.dim) and bool(np.isfinite(answer).all())
    if not finite or (np.linalg.norm(answer, axis=1) < 0.5).any():
        problem = "not finite" if answer.shape == (len(tensors), encoder.dim) and not finite else \
            "zero vectors" if finite else f"{tuple(answer.shape)}"
        raise ModelOutputError(f"model {printable(encoder.name)} answered {problem} for {len(tensors)} images of "
                               f"{encoder.dim} dimensions; the model is broken (check it: columnist model check)")
    return dict(zip(tensors, answer, strict=True))


def encoded_count(prepared: Sequence[PreparedImage]) -> int:
    """How many inputs of ``prepared`` go through the image tower (images and frames; the
    others reuse an embedding)."""
    return len({key for p in prepared if p.embedding is None for key, _, tensor in _rows_of(p) if tensor is not None})


@dataclass
class TakenBatch:
    """A batch after look-up and preparation: what goes on to the encoder, and what does not."""

    prepared: list[PreparedImage] = field(default_factory=list)
    prepared_from: list[int] = field(default_factory=list)
    """The position in the inputs of each prepared image."""
    failed: list[tuple[int, Exception]] = field(default_factory=list)
    """(position in the inputs, why) of each image that cannot be used."""
    unchanged: list[int] = field(default_factory=list)
    """Positions of inputs stored before under the same id with the same content (skipped
    when the caller asked for ``skip_unchanged``)."""


def take_batch(inputs: Sequence[ImageInput], encoder: "Encoder", store: "IngestStore | None", counters: Counters,
               limits: ImageLimits = ImageLimits(), skip_unchanged: bool = False, force: bool = False) -> TakenBatch:
    """Look the batch up in ``store`` (a store that cannot answer fails the whole batch:
    StoreUnavailable, retried by the caller), then prepare the rest and count.

    ``skip_unchanged``: an id stored with the same content is left out (tag's incremental
    re-run); otherwise it is written again. ``force``: nothing is looked up, everything is
    decoded and encoded again."""
    taken = TakenBatch()
    ids = [item.image_id for item in inputs]
    stored = store.stored_content(encoder.name, ids) if store is not None and not force and inputs else {}
    wanted: list[int] = []
    for position, item in enumerate(inputs):
        before = stored.get(item.image_id)
        if before == item.sha256 and skip_unchanged:
            taken.unchanged.append(position)
            continue
        if before not in (None, item.sha256):
            counters.images_replaced += 1
            log.info("image %s is stored with other content: the new content (sha256 %s…) replaces it",
                     printable(item.image_id), item.sha256[:12])
        wanted.append(position)
    counters.images_unchanged += len(taken.unchanged)
    known = store.known_images(encoder.name, [inputs[p].sha256 for p in wanted]) \
        if store is not None and not force and wanted else {}
    preparer = BatchPreparer(encoder, known, limits)
    outcomes = preparer.prepare_all([inputs[p] for p in wanted])
    for position, outcome in zip(wanted, outcomes, strict=True):
        if isinstance(outcome, Exception):
            taken.failed.append((position, outcome))
            continue
        taken.prepared.append(outcome)
        taken.prepared_from.append(position)
        if outcome.tensor is None:  # known content, or the same content earlier in the batch
            counters.images_reused += 1
        else:
            counters.images_decoded += 1
    counters.images_failed += len(taken.failed)
    return taken


@dataclass
class SecondModel:
    """The model a running migration moves to (model_change): every batch written meanwhile is
    encoded and scored with it too, so that it covers new images as they arrive. Its rows are
    written before the batch's own (an image row still means every model's rows are there)."""

    encoder: "Encoder"
    vocabularies: list[tuple["Vocabulary", Texts]]
    failed: int = 0
    """Images the first model took and this one could not (the re-embed job finds them again)."""

    def take(self, inputs: Sequence[ImageInput], store: "IngestStore | None", limits: ImageLimits) -> list[PreparedImage]:
        """The inputs the first model took, prepared for this one (content it knows is reused)."""
        taken = take_batch(inputs, self.encoder, store, Counters(), limits)
        for position, error in taken.failed:
            self.failed += 1
            log.warning("%s: not prepared for %s (the migration's re-embed tries it again): %s",
                        printable(inputs[position].name), self.encoder.name, printable(error, 300))
        return taken.prepared

    def score(self, prepared: Sequence[PreparedImage]) -> ScoredBatch | None:
        if not prepared:
            return None
        try:
            return embed_and_score(prepared, self.vocabularies, self.encoder)
        except ModelOutputError as err:  # the re-embed job tries these again, and notes them
            self.failed += len(prepared)
            log.warning("%s", err)
            return None
