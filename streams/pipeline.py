"""The embed-and-score pipeline, shared by the worker and the batch tagger.

Two steps. ``prepare`` turns one image's bytes into what the image tower needs (decode,
upright RGB, preprocess) and keeps nothing else: a batch holds small tensors, never more
than one full-size decoded image. ``embed_and_score`` encodes a batch of prepared images and
scores every attribute of a vocabulary; the result is written by the store as one batch.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

from columnist.models.images import DEFAULT_MAX_PIXELS, open_image
from columnist.vocab.scoring import score_vocabulary

if TYPE_CHECKING:
    import numpy as np

    from columnist.models.encoder import Encoder
    from columnist.vocab.schema import Vocabulary
    from columnist.vocab.scoring import Scores


@dataclass(frozen=True)
class ImageRecord:
    image_id: str
    uri: str
    collection: str
    width: int
    height: int
    sha256: str


@dataclass(frozen=True)
class PreparedImage:
    record: ImageRecord
    tensor: "np.ndarray"


@dataclass
class ScoredBatch:
    """What one batch of images produced: metadata, embeddings and attribute scores."""

    model: str
    vocab: "Vocabulary"
    images: list[ImageRecord]
    embeddings: "np.ndarray"
    scores: "Scores"


def prepare(data: bytes, name: str, encoder: "Encoder", image_id: str, uri: str, collection: str = "",
            max_pixels: int = DEFAULT_MAX_PIXELS) -> PreparedImage:
    """Decode and preprocess one image; raise ImageError (naming ``name``) when it cannot be used."""
    image = open_image(data, name, max_pixels)
    record = ImageRecord(image_id=image_id, uri=uri, collection=collection, width=image.width,
                         height=image.height, sha256=hashlib.sha256(data).hexdigest())
    return PreparedImage(record, encoder.prepare_image(image))


def embed_and_score(prepared: Sequence[PreparedImage], vocab: "Vocabulary", texts: dict[str, "np.ndarray"],
                    encoder: "Encoder") -> ScoredBatch:
    embeddings = encoder.encode_prepared([p.tensor for p in prepared])
    scores = score_vocabulary(embeddings, texts, vocab, encoder.logit_scale, encoder.source)
    return ScoredBatch(encoder.name, vocab, [p.record for p in prepared], embeddings, scores)
