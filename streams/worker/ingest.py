"""One batch of image events -> prepared images for the pipeline, plus the events it rejects.

Runs off the event loop (it fetches and decodes). Each event is parsed and fetched on its
own, then the batch goes through the one batch path (pipeline.take_batch), the same as
`tag`'s: any exception one event raises, whatever its class, makes it a rejected event with
its reason; one bad event never costs its batch-mates.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

from columnist.kafka.events import ImageEvent, parse_image_event
from columnist.pipeline import sha256_of, take_batch
from columnist.records import Counters, ImageInput, ImageLimits, PreparedImage, RawEvent
from columnist.worker.fetch import FetchPolicy, WorkerOutOfResources, fetch

if TYPE_CHECKING:
    from columnist.models.encoder import Encoder
    from columnist.pipeline import SecondModel
    from columnist.store import IngestStore


@dataclass
class Rejected:
    event: RawEvent
    error: Exception
    image_id: str | None = None


@dataclass
class Prepared:
    images: list[PreparedImage] = field(default_factory=list)
    events: list[RawEvent] = field(default_factory=list)
    """The event each prepared image came from (its dead letter, should the model fail it)."""
    rejected: list[Rejected] = field(default_factory=list)
    second: list[PreparedImage] = field(default_factory=list)
    """The images prepared for the model a migration moves to (``second_model``), if one was set."""
    second_model: str = ""


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
                   limits: ImageLimits, store: "IngestStore | None" = None, second: "SecondModel | None" = None
                   ) -> Prepared:
    """Parse and fetch each event, then take the fetched ones through the batch path (known
    content is not decoded again), at most MAX_HELD_BYTES of fetched bytes at a time; with
    ``second``, the images taken are prepared for that model too."""
    out, rejected, fetched, held = Prepared(second_model=second.encoder.name if second else ""), [], [], 0
    started = time.perf_counter()
    for index, event in enumerate(events):
        item = _fetch(index, event, policy, rejected, counters)
        if item is not None:
            fetched.append(item)
            held += len(item.data)
        if held > MAX_HELD_BYTES or index == len(events) - 1:
            _take(fetched, encoder, counters, limits, store, out, rejected, second)
            fetched, held = [], 0
    out.rejected = [r for _, r in sorted(rejected, key=lambda pair: pair[0])]
    counters.fetch_decode_s += time.perf_counter() - started
    return out


def _fetch(index: int, event: RawEvent, policy: FetchPolicy, rejected: list, counters: Counters) -> _Fetched | None:
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
        counters.images_failed += 1
        return None


def _take(fetched: list[_Fetched], encoder: "Encoder", counters: Counters, limits: ImageLimits,
          store: "IngestStore | None", out: Prepared, rejected: list, second: "SecondModel | None") -> None:
    if not fetched:
        return
    inputs = [ImageInput(item.data, item.sha256, f"image {item.parsed.image_id!r} ({item.parsed.uri[:200]})",
                         item.parsed.image_id, item.parsed.uri if not item.parsed.uri.startswith("data:") else "data:",
                         item.parsed.collection) for item in fetched]
    taken = take_batch(inputs, encoder, store, counters, limits)  # a store that cannot answer: the batch is retried
    for position, error in taken.failed:
        item = fetched[position]
        rejected.append((item.index, Rejected(item.event, error, item.parsed.image_id)))
    out.images += taken.prepared
    out.events += [fetched[position].event for position in taken.prepared_from]
    if second is not None:
        out.second += second.take([inputs[position] for position in taken.prepared_from], store, limits)
