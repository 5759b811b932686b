"""One batch of image events -> prepared images for the pipeline, plus the events it rejects.

Runs off the event loop (it fetches and decodes). Each event is parsed, fetched, decoded
and preprocessed on its own, and any exception it raises, whatever its class, makes it a
rejected event with its reason: one bad event never costs its batch-mates.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

from columnist.streams.worker.events import parse_image_event
from columnist.streams.worker.fetch import FetchPolicy, WorkerOutOfResources, fetch
from columnist.streams.pipeline import PreparedImage, prepare

if TYPE_CHECKING:
    from columnist.models.encoder import Encoder


@dataclass(frozen=True)
class RawEvent:
    value: bytes | None
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
    batch_retries: int = 0
    """Attempts at a batch that failed as a whole (it is retried until stored, never skipped)."""
    # seconds spent per stage of ingest (where the time goes: `make bench`)
    fetch_decode_s: float = 0.0
    """Fetch, decode and preprocess."""
    encode_s: float = 0.0
    """Image tower and scoring."""
    write_s: float = 0.0


@dataclass
class Prepared:
    images: list[PreparedImage] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


def prepare_events(events: Sequence[RawEvent], encoder: "Encoder", policy: FetchPolicy, counters: Counters,
                   max_pixels: int) -> Prepared:
    out = Prepared()
    started = time.perf_counter()
    for event in events:
        image_id = None
        try:
            parsed = parse_image_event(event.value)
            image_id = parsed.image_id
            data = fetch(parsed.uri, policy)
            uri = parsed.uri if not parsed.uri.startswith("data:") else "data:"
            out.images.append(prepare(data, f"image {image_id!r} ({parsed.uri[:200]})", encoder, image_id, uri,
                                      parsed.collection, max_pixels))
        except WorkerOutOfResources:
            raise  # the worker's trouble, not the event's: the whole batch is retried
        except Exception as err:  # any failure of one event is that event's dead letter
            out.rejected.append(Rejected(event, err, image_id))
            continue
        counters.images_decoded += 1
    counters.fetch_decode_s += time.perf_counter() - started
    return out
