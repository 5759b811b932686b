"""The records that cross layers: what a source hands the service, what an image becomes on
its way to the store, what a batch counts.

This module imports nothing of columnist, so every layer may use it (records, errors and
settings are the bottom layer; see the package docstring). Arrays are numpy arrays, named in
strings so that importing the records does not import numpy.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


# -- limits ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ImageLimits:
    """What one image may cost. The defaults are the settings' defaults (COLUMNIST_MAX_IMAGE_BYTES,
    _MAX_IMAGE_PIXELS, _DECODE_THREADS)."""

    max_bytes: int = 50_000_000
    """Largest file (or data: payload, or http body) read."""
    max_pixels: int = 60_000_000
    """Largest image, width x height from its header, refused before decoding (~ 8000 x 7500)."""
    decode_threads: int = 0
    """Threads decoding a batch's new images (0: one per core, at most 4)."""
    max_video_bytes: int = 256_000_000
    """Largest video file read (held in memory while its frames are sampled)."""
    video_frames: int = 64
    """Frames kept of one video at most."""
    video_interval: float = 2.0
    """Seconds between frames kept (scene changes add frames between)."""
    video_seconds: float = 600.0
    """Seconds of one video decoded at most (the rest is not sampled)."""
    video_deadline: float = 120.0
    """Seconds of wall time one video's decoding may take."""
    decode_timeout: float = 300.0
    """Seconds one file's decoding may take (beyond a video's deadline) before its decoder is
    taken as stuck (columnist.decode_watch); 0: no limit."""

    def decode_deadline(self, video: bool) -> float:
        """Seconds decoding one file may take (0: no limit): a video has its own deadline on top."""
        return self.decode_timeout and self.decode_timeout + (self.video_deadline if video else 0.0)


# -- what comes in ---------------------------------------------------------------------------

@dataclass(frozen=True)
class RawEvent:
    """An event as a source delivers it: the bytes, and where it sits (for its dead letter)."""

    value: bytes | None
    partition: int | None = None
    offset: int | None = None
    key: bytes | None = None


@dataclass(frozen=True)
class ImageInput:
    """One image of a batch, as read: its bytes and what it will be stored as."""

    data: bytes
    sha256: str
    name: str
    """How errors name it (a file path, or the image id and URI)."""
    image_id: str
    uri: str
    collection: str = ""


# -- what an image becomes --------------------------------------------------------------------

@dataclass(frozen=True)
class ImageRecord:
    """The ``images`` row of one image or video."""

    image_id: str
    uri: str
    collection: str
    width: int
    height: int
    sha256: str
    kind: str = "image"
    """'image' (a still: photo, RAW, ...) or 'video'."""
    duration: float = 0.0
    """Seconds, for a video."""
    frames: int = 0
    """Frames sampled, for a video."""


@dataclass(frozen=True)
class FrameRecord:
    """One sampled frame of a video: its own id (``<video id>#t=<seconds>``) and time."""

    video_id: str
    frame_id: str
    seconds: float


@dataclass(frozen=True)
class KnownImage:
    """Content the store already holds for a model: its size and embedding."""

    width: int
    height: int
    embedding: "np.ndarray"


@dataclass(frozen=True)
class PreparedFrame:
    record: FrameRecord
    tensor: "np.ndarray"


@dataclass(frozen=True)
class PreparedImage:
    record: ImageRecord
    tensor: "np.ndarray | None"
    """What the image tower takes; None when ``embedding`` is already known, when the same
    content is prepared once already in this batch, or for a video (its frames have them)."""
    embedding: "np.ndarray | None" = None
    frames: tuple[PreparedFrame, ...] = ()
    """A video's sampled frames, in time order."""


@dataclass(frozen=True)
class ModelCalibration:
    """A model's own default sigmoid centre and scale (SigLIP's learned bias: centre = -bias,
    scale 1); vocabularies use it for attributes that set none of their own."""

    centre: float
    scale: float = 1.0
    source: str = ""


@dataclass(frozen=True)
class ModelState:
    """Which model a store's views read, and where a migration stands. Each model is named as
    its embeddings are (the encoder's name) and by what loads it (``*_ref``: a built-in name,
    a pulled repository id or a folder)."""

    serving: str
    serving_ref: str
    target: str = ""
    """The model a migration moves to ('' when none runs): new images are encoded with both."""
    target_ref: str = ""
    previous: str = ""
    """The model served before the last cutover, kept (and a cutover back possible) until it is retired."""
    previous_ref: str = ""
    retired: tuple[str, ...] = ()
    """Models whose rows were deleted (a worker still configured with one follows the store)."""

    @property
    def migrating(self) -> bool:
        return bool(self.target)

    def models(self) -> list[str]:
        """Every model whose rows the store keeps, serving first."""
        return [m for m in (self.serving, self.target, self.previous) if m]


@dataclass
class Scores:
    """One vocabulary's scores for a batch of images, per attribute code (logits are NaN for
    derived attributes)."""

    vocab_name: str
    vocab_version: int
    scores: dict[str, "np.ndarray"] = field(default_factory=dict)
    logits: dict[str, "np.ndarray"] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def codes(self) -> list[str]:
        return list(self.scores)


@dataclass
class ScoredBatch:
    """What one batch produced. Rows are written in this order, the ``images`` rows last (a
    reader joins on them: an image row means the rest is there): embeddings (of images and
    video frames), scores (of images, frames, and videos: the maximum over their frames), the
    frames of each video, then the images and videos themselves."""

    model: str
    images: list[ImageRecord]
    embedded: list[tuple[str, str]]
    """(id, content sha256) of each embedding row: images and video frames."""
    embeddings: "np.ndarray"
    scored: list[str]
    """The ids each Scores array runs over: images, frames, then videos."""
    scores: list[Scores]
    frames: list[FrameRecord] = field(default_factory=list)

    @classmethod
    def of_images(cls, model: str, images: list[ImageRecord], embeddings: "np.ndarray",
                  scores: list[Scores]) -> "ScoredBatch":
        """A batch of stills only: one embedding and one score row per image."""
        return cls(model, images, [(i.image_id, i.sha256) for i in images], embeddings,
                   [i.image_id for i in images], scores)

    def joins(self, other: "ScoredBatch") -> bool:
        """Whether ``other`` can be written in one set of statements with this batch: the same
        model, and scored with the same vocabularies (names, versions, attributes)."""
        def shape(batch: "ScoredBatch") -> list:
            return [(s.vocab_name, s.vocab_version, s.codes, [s.sources[c] for c in s.codes]) for s in batch.scores]
        return self.model == other.model and shape(self) == shape(other)

    @classmethod
    def merged(cls, batches: "list[ScoredBatch]") -> "ScoredBatch":
        """Batches that all ``joins`` the first, as one (rows in the batches' order)."""
        import numpy as np

        first = batches[0]
        if len(batches) == 1:
            return first
        scores = [Scores(s.vocab_name, s.vocab_version,
                         {c: np.concatenate([b.scores[n].scores[c] for b in batches]) for c in s.codes},
                         {c: np.concatenate([b.scores[n].logits[c] for b in batches]) for c in s.codes},
                         dict(s.sources)) for n, s in enumerate(first.scores)]
        return cls(first.model, [i for b in batches for i in b.images], [e for b in batches for e in b.embedded],
                   np.concatenate([b.embeddings for b in batches]), [i for b in batches for i in b.scored], scores,
                   [f for b in batches for f in b.frames])


# -- what a run counts -------------------------------------------------------------------------

@dataclass
class Counters:
    """What the worker (since it started) or a `tag` run has done; the worker serves them on
    /status and /metrics."""

    images_stored: int = 0
    """Images written (new content, reused content and re-publishes alike)."""
    images_decoded: int = 0
    images_encoded: int = 0
    """Images that went through the image tower (the rest reused a stored embedding)."""
    images_reused: int = 0
    """Images whose content was already stored: their embedding is reused, nothing decoded."""
    images_replaced: int = 0
    """Events whose image_id was stored with other content (a re-publish replaces it)."""
    images_unchanged: int = 0
    """Skipped: stored before under the same id with the same content (tag)."""
    images_deleted: int = 0
    """Images forgotten because their events said so (a file deleted or moved away)."""
    events_superseded: int = 0
    """Events a later event for the same image id in the same batch replaced (not processed)."""
    events_unkeyed: int = 0
    """Image events taken without a Kafka key, or with an empty one (in order only on a topic of
    one partition)."""
    images_failed: int = 0
    """Images that could not be used (dead letters, or tag's 'failed' lines)."""
    prompts_encoded: int = 0
    batches: int = 0
    score_rows: int = 0
    dead_letters: int = 0
    replays: int = 0
    replayed_score_rows: int = 0
    replay_chunks_written: int = 0
    """Replay chunks this process wrote (workers sharing a store split a replay's chunks)."""
    sidecars_written: int = 0
    """XMP sidecars the worker wrote (COLUMNIST_SIDECARS)."""
    reembedded: int = 0
    """Stored images embedded again by a model migration's job (this process's share)."""
    store_retries: int = 0
    batch_retries: int = 0
    """Attempts at a batch that failed as a whole (it is retried until stored, never skipped)."""
    fetch_decode_s: float = 0.0
    """Seconds spent fetching, decoding and preprocessing."""
    encode_s: float = 0.0
    """Seconds in the image tower and scoring."""
    write_s: float = 0.0

    def add(self, more: "Counters") -> None:
        """Add ``more``'s counts to these: a run's or a batch attempt's, counted apart by the
        thread that did the work, added once it is done (under a lock: several threads add).
        Only the counts ``more`` has are touched: a thread counting another one meanwhile with
        ``+=`` (the worker's sidecars, its prompts) loses nothing to a count this did not change."""
        with _ADDING:
            for each in fields(more):
                if value := getattr(more, each.name):
                    setattr(self, each.name, getattr(self, each.name) + value)


_ADDING = threading.Lock()
