"""One batch of image events -> a scored batch for the store, plus the events it rejects.

Runs off the event loop (it decodes and encodes). Each event is parsed, fetched and decoded
on its own; a bad one is rejected with its reason and the rest of the batch goes on.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

from models.images import ImageError, open_image
from streams.events import EventError, parse_image_event
from streams.fetch import FetchError, FetchPolicy, fetch
from streams.store import ImageRecord, ScoredBatch
from vocab.scoring import score_vocabulary

if TYPE_CHECKING:
    import numpy as np

    from models.encoder import Encoder
    from vocab.schema import Vocabulary


@dataclass(frozen=True)
class RawEvent:
    value: bytes
    partition: int | None = None
    offset: int | None = None


@dataclass
class Rejected:
    event: RawEvent
    error: Exception
    image_id: str | None = None


@dataclass
class Counters:
    """What the worker has done since it started (served on /status)."""

    images_decoded: int = 0
    images_encoded: int = 0
    prompts_encoded: int = 0
    batches: int = 0
    score_rows: int = 0
    dead_letters: int = 0
    replays: int = 0
    replayed_score_rows: int = 0
    store_retries: int = 0
    # seconds spent per stage of ingest (where the time goes: `make bench`)
    fetch_decode_s: float = 0.0
    encode_s: float = 0.0
    score_s: float = 0.0
    write_s: float = 0.0


@dataclass
class IngestResult:
    batch: ScoredBatch | None
    rejected: list[Rejected] = field(default_factory=list)


def process_events(
    events: Sequence[RawEvent], vocab: "Vocabulary", texts: dict[str, "np.ndarray"], encoder: "Encoder",
    policy: FetchPolicy, counters: Counters,
) -> IngestResult:
    records, images, rejected = [], [], []
    started = time.perf_counter()
    for event in events:
        image_id = None
        try:
            parsed = parse_image_event(event.value)
            image_id = parsed.image_id
            data = fetch(parsed.uri, policy)
            image = open_image(data, f"image {image_id!r} ({parsed.uri[:200]})")
        except (EventError, FetchError, ImageError) as err:
            rejected.append(Rejected(event, err, image_id))
            continue
        counters.images_decoded += 1
        records.append(ImageRecord(image_id=image_id, uri=parsed.uri if not parsed.uri.startswith("data:") else "data:",
                                   collection=parsed.collection, width=image.width, height=image.height,
                                   sha256=hashlib.sha256(data).hexdigest()))
        images.append(image)
    decoded = time.perf_counter()
    counters.fetch_decode_s += decoded - started
    if not images:
        return IngestResult(None, rejected)
    embeddings = encoder.encode_images(images)
    counters.images_encoded += len(images)
    encoded = time.perf_counter()
    counters.encode_s += encoded - decoded
    scores = score_vocabulary(embeddings, texts, vocab, encoder.logit_scale, encoder.source)
    counters.score_s += time.perf_counter() - encoded
    return IngestResult(ScoredBatch(encoder.name, vocab, records, embeddings, scores), rejected)
