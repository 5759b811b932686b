"""One batch of image events -> prepared images for the pipeline, plus the events it rejects.

Runs off the event loop (it fetches and decodes). Each event is parsed, fetched, decoded
and preprocessed on its own, and any exception it raises, whatever its class, makes it a
rejected event with its reason: one bad event never costs its batch-mates.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

from columnist.pipeline import BatchPreparer, ImageInput, PreparedImage, sha256_of
from columnist.worker.events import ImageEvent, parse_image_event
from columnist.worker.fetch import FetchPolicy, WorkerOutOfResources, fetch

if TYPE_CHECKING:
    from columnist.models.encoder import Encoder
    from columnist.store import Store

log = logging.getLogger("columnist.worker")


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
    images_reused: int = 0
    """Images whose content was already stored: their embedding is reused, nothing decoded."""
    images_replaced: int = 0
    """Events whose image_id was stored with other content (a re-publish replaces it)."""
    prompts_encoded: int = 0
    batches: int = 0
    score_rows: int = 0
    dead_letters: int = 0
    replays: int = 0
    replayed_score_rows: int = 0
    replay_chunks_written: int = 0
    """Replay chunks this worker wrote (workers sharing a store split a replay's chunks)."""
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


@dataclass
class _Fetched:
    index: int
    event: RawEvent
    parsed: ImageEvent
    data: bytes
    sha256: str


MAX_HELD_BYTES = 256 * 1024 * 1024
"""Fetched bytes held at once while their content is looked up in the store."""


def prepare_events(events: Sequence[RawEvent], encoder: "Encoder", policy: FetchPolicy, counters: Counters,
                   max_pixels: int, store: "Store | None" = None, threads: int = 0) -> Prepared:
    """Parse and fetch each event, look the fetched content up in ``store`` (known content is
    not decoded again), then decode and preprocess the rest, an event at a time."""
    out, rejected, fetched, held = Prepared(), [], [], 0
    started = time.perf_counter()
    for index, event in enumerate(events):
        item = _fetch(index, event, policy, rejected)
        if item is not None:
            fetched.append(item)
            held += len(item.data)
        if held > MAX_HELD_BYTES or index == len(events) - 1:
            _prepare_fetched(fetched, encoder, counters, max_pixels, store, out.images, rejected, threads)
            fetched, held = [], 0
    out.rejected = [r for _, r in sorted(rejected, key=lambda pair: pair[0])]
    counters.fetch_decode_s += time.perf_counter() - started
    return out


def _fetch(index: int, event: RawEvent, policy: FetchPolicy, rejected: list) -> _Fetched | None:
    image_id = None
    try:
        parsed = parse_image_event(event.value)
        image_id = parsed.image_id
        data = fetch(parsed.uri, policy)
        return _Fetched(index, event, parsed, data, sha256_of(data))
    except WorkerOutOfResources:
        raise  # the worker's trouble, not the event's: the whole batch is retried
    except Exception as err:  # any failure of one event is that event's dead letter
        rejected.append((index, Rejected(event, err, image_id)))
        return None


def _prepare_fetched(fetched: list[_Fetched], encoder: "Encoder", counters: Counters, max_pixels: int,
                     store: "Store | None", images: list[PreparedImage], rejected: list, threads: int = 0) -> None:
    if not fetched:
        return
    stored, known = {}, {}
    if store is not None:  # a store that cannot answer fails the batch (retried), not the events
        stored = store.stored_content(encoder.name, [f.parsed.image_id for f in fetched])
        known = store.known_images(encoder.name, [f.sha256 for f in fetched])
    preparer = BatchPreparer(encoder, known, max_pixels, threads)
    inputs = []
    for item in fetched:
        parsed = item.parsed
        if stored.get(parsed.image_id) not in (None, item.sha256):
            counters.images_replaced += 1
            log.info("image %r is re-published with other content (sha256 %s…): it replaces the stored one",
                     parsed.image_id[:200], item.sha256[:12])
        uri = parsed.uri if not parsed.uri.startswith("data:") else "data:"
        inputs.append(ImageInput(item.data, item.sha256, f"image {parsed.image_id!r} ({parsed.uri[:200]})",
                                 parsed.image_id, uri, parsed.collection))
    for item, outcome in zip(fetched, preparer.prepare_all(inputs)):
        if isinstance(outcome, Exception):  # any failure of one event is that event's dead letter
            rejected.append((item.index, Rejected(item.event, outcome, item.parsed.image_id)))
            continue
        images.append(outcome)
        if outcome.tensor is None:  # known content, or the same content earlier in the batch
            counters.images_reused += 1
        else:
            counters.images_decoded += 1
