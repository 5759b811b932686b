"""The embed-and-score pipeline, shared by the worker and the batch tagger.

Two steps. ``prepare`` turns one image's bytes into what the image tower needs (decode,
upright RGB, preprocess) and keeps nothing else: a batch holds small tensors, never more
than one full-size decoded image. An image whose content (sha256) is already stored for the
model is not decoded at all: its stored embedding is reused. ``embed_and_score`` encodes
the rest of a batch and scores every attribute of every vocabulary given; the store writes
the result as one batch.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Sequence

from columnist.models.images import DEFAULT_MAX_PIXELS, decode
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


def prepare(data: bytes, name: str, encoder: "Encoder", image_id: str, uri: str, collection: str = "",
            max_pixels: int = DEFAULT_MAX_PIXELS, known: KnownImage | None = None,
            sha256: str | None = None) -> PreparedImage:
    """Decode and preprocess one image, or reuse ``known`` content without decoding; raise
    ImageError (naming ``name``) when it cannot be used."""
    sha256 = sha256 or sha256_of(data)
    if known is not None:
        record = ImageRecord(image_id, uri, collection, known.width, known.height, sha256)
        return PreparedImage(record, None, known.embedding)
    decoded = decode(data, name, max_pixels, at_least=2 * encoder.image_size)  # JPEGs at the size needed
    record = ImageRecord(image_id, uri, collection, decoded.width, decoded.height, sha256)
    return PreparedImage(record, encoder.prepare_image(decoded.image))


class BatchPreparer:
    """Prepares the images of one batch: content the store knows is not decoded, and the same
    content twice in the batch is decoded once (the worker and the tagger both use it)."""

    def __init__(self, encoder: "Encoder", known: dict[str, KnownImage], max_pixels: int = DEFAULT_MAX_PIXELS):
        self.encoder, self.known, self.max_pixels = encoder, known, max_pixels
        self.first: dict[str, PreparedImage] = {}

    def reuses(self, sha256: str) -> bool:
        """Whether content with this hash will be prepared without decoding."""
        return sha256 in self.known or sha256 in self.first

    def add(self, data: bytes, sha256: str, name: str, image_id: str, uri: str, collection: str = "") -> PreparedImage:
        """One image of the batch; raises ImageError (naming ``name``) when it cannot be used."""
        first = self.first.get(sha256)
        if first is not None:
            return PreparedImage(replace(first.record, image_id=image_id, uri=uri, collection=collection), None,
                                 first.embedding)
        prepared = prepare(data, name, self.encoder, image_id, uri, collection, self.max_pixels,
                           self.known.get(sha256), sha256)
        self.first[sha256] = prepared
        return prepared


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
    scores = [(vocab, score_vocabulary(embeddings, texts, vocab, encoder.logit_scale, encoder.source))
              for vocab, texts in vocabularies]
    return ScoredBatch(encoder.name, [p.record for p in prepared], embeddings, scores)


def encoded_count(prepared: Sequence[PreparedImage]) -> int:
    """How many images of ``prepared`` go through the image tower (the others reuse an embedding)."""
    return len({p.record.sha256 for p in prepared if p.embedding is None and p.tensor is not None})
