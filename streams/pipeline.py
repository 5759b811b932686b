"""The embed-and-score pipeline, shared by the worker and the batch tagger.

Two steps. ``prepare`` turns one image's bytes into what the image tower needs (decode,
upright RGB, preprocess) and keeps nothing else: a batch holds small tensors; at most one
image over LARGE_DECODE_PIXELS is decoded at a time, beside at most DEFAULT_DECODE_THREADS - 1
smaller ones. An image whose content (sha256) is already stored for the
model is not decoded at all: its stored embedding is reused. ``embed_and_score`` encodes
the rest of a batch and scores every attribute of every vocabulary given; the store writes
the result as one batch.
"""

from __future__ import annotations

import hashlib
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Sequence

from columnist.models.images import DEFAULT_MAX_PIXELS, decode, decoded_pixels
from columnist.models.sessions import cpu_count
from columnist.vocab.scoring import score_vocabulary

if TYPE_CHECKING:
    import numpy as np

    from columnist.models.encoder import Encoder
    from columnist.vocab.schema import Vocabulary
    from columnist.vocab.scoring import Scores

Texts = dict[str, "np.ndarray"]
"""One unit-length text embedding per base attribute code of a vocabulary."""


@dataclass(frozen=True)
class ImageRecord:
    image_id: str
    uri: str
    collection: str
    width: int
    height: int
    sha256: str


@dataclass(frozen=True)
class KnownImage:
    """Content the store already holds for this model: its size and embedding."""

    width: int
    height: int
    embedding: "np.ndarray"


@dataclass(frozen=True)
class PreparedImage:
    record: ImageRecord
    tensor: "np.ndarray | None"
    """What the image tower takes; None when ``embedding`` is already known, or when the
    same content is prepared once already in this batch."""
    embedding: "np.ndarray | None" = None


@dataclass
class ScoredBatch:
    """What one batch of images produced: metadata, embeddings and each vocabulary's scores."""

    model: str
    images: list[ImageRecord]
    embeddings: "np.ndarray"
    scores: list[tuple["Vocabulary", "Scores"]]


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
            max_pixels: int = DEFAULT_MAX_PIXELS, known: KnownImage | None = None,
            sha256: str | None = None) -> PreparedImage:
    """Decode and preprocess one image, or reuse ``known`` content without decoding; raise
    ImageError (naming ``name``) when it cannot be used."""
    sha256 = sha256 or sha256_of(data)
    if known is not None:
        record = ImageRecord(image_id, uri, collection, known.width, known.height, sha256)
        return PreparedImage(record, None, known.embedding)
    at_least = 2 * encoder.image_size  # JPEGs are decoded at the size needed
    large = decoded_pixels(data, at_least) > LARGE_DECODE_PIXELS
    with _large_decode if large else nullcontext():
        decoded = decode(data, name, max_pixels, at_least=at_least)
        record = ImageRecord(image_id, uri, collection, decoded.width, decoded.height, sha256)
        return PreparedImage(record, encoder.prepare_image(decoded.image))


@dataclass(frozen=True)
class ImageInput:
    """One image of a batch, as read: its bytes and what it will be stored as."""

    data: bytes
    sha256: str
    name: str
    """How errors name it (file path, or image id and URI)."""
    image_id: str
    uri: str
    collection: str = ""


class BatchPreparer:
    """Prepares the images of one batch: content the store knows is not decoded, the same
    content twice in the batch is decoded once, and new contents are decoded on ``threads``
    threads (Pillow releases the GIL while it decodes and resizes, so both cores work). The
    worker and the tagger both use it."""

    def __init__(self, encoder: "Encoder", known: dict[str, KnownImage], max_pixels: int = DEFAULT_MAX_PIXELS,
                 threads: int = 0):
        self.encoder, self.known, self.max_pixels = encoder, known, max_pixels
        self.threads = threads or min(DEFAULT_DECODE_THREADS, cpu_count())
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
                done = dict(zip(new, pool.map(self._attempt, new.values())))
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
            return PreparedImage(replace(first.record, image_id=item.image_id, uri=item.uri,
                                         collection=item.collection), None, first.embedding)
        return prepare(item.data, item.name, self.encoder, item.image_id, item.uri, item.collection,
                       self.max_pixels, self.known.get(item.sha256), item.sha256)


def embed_and_score(prepared: Sequence[PreparedImage], vocabularies: Sequence[tuple["Vocabulary", Texts]],
                    encoder: "Encoder") -> ScoredBatch:
    """Encode each content of the batch once (known embeddings are reused), then score."""
    import numpy as np

    tensors: dict[str, "np.ndarray"] = {}
    for p in prepared:
        if p.embedding is None and p.tensor is not None:
            tensors.setdefault(p.record.sha256, p.tensor)
    encoded = dict(zip(tensors, encoder.encode_prepared(list(tensors.values())))) if tensors else {}
    embeddings = np.stack([p.embedding if p.embedding is not None else encoded[p.record.sha256] for p in prepared])
    scores = [(vocab, score_vocabulary(embeddings, texts, vocab, encoder.logit_scale, encoder.source,
                                       encoder.calibration))
              for vocab, texts in vocabularies]
    return ScoredBatch(encoder.name, [p.record for p in prepared], embeddings, scores)


def encoded_count(prepared: Sequence[PreparedImage]) -> int:
    """How many images of ``prepared`` go through the image tower (the others reuse an embedding)."""
    return len({p.record.sha256 for p in prepared if p.embedding is None and p.tensor is not None})
