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

from columnist.kafka.events import ImageEvent, check_key, parse_image_event
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
    deleted: list[str] = field(default_factory=list)
    """Image ids whose events say they are gone (their rows are deleted with the batch)."""
    second: list[PreparedImage] = field(default_factory=list)
    """The images prepared for the model a migration moves to (``second_model``), if one was set."""
    second_model: str = ""
    model: str = ""
    """The model it was prepared for (looked up, preprocessed): a batch the store's cutover
    overtook is prepared again for the model then served."""


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
    out = Prepared(second_model=second.encoder.name if second else "", model=encoder.name)
    rejected, fetched, held = [], [], 0
    started = time.perf_counter()
    parsed = _parse_all(events, rejected, counters)
    for index, event in enumerate(events):
        item = None
        if index in parsed and parsed[index].deleted:
            out.deleted.append(parsed[index].image_id)
        elif index in parsed:
            item = _fetch(index, event, parsed[index], policy, rejected, counters)
        if item is not None:
            fetched.append(item)
            held += len(item.data)
        if held > MAX_HELD_BYTES or index == len(events) - 1:
            _take(fetched, encoder, counters, limits, store, out, rejected, second)
            fetched, held = [], 0
    out.rejected = [r for _, r in sorted(rejected, key=lambda pair: pair[0])]
    counters.fetch_decode_s += time.perf_counter() - started
    return out


def _parse_all(events: Sequence[RawEvent], rejected: list, counters: Counters) -> dict[int, ImageEvent]:
    """Each event parsed (a failure is its dead letter); of several events for one image id,
    only the last counts (they are in order: one id, one partition), so a file stored then
    deleted, or deleted then stored again, within a batch ends as its last event says."""
    parsed: dict[int, ImageEvent] = {}
    for index, event in enumerate(events):
        one = None
        try:
            one = parse_image_event(event.value)
            check_key(event.key, one.image_id, "image_id", "`columnist publish`")
            parsed[index] = one
            counters.events_unkeyed += not event.key  # taken: in order only on one partition (the service warns)
        except Exception as err:  # any failure of one event is that event's dead letter
            rejected.append((index, Rejected(event, err, one.image_id if one else None)))
            counters.images_failed += 1
    last = {one.image_id: index for index, one in parsed.items()}
    superseded = [index for index, one in parsed.items() if last[one.image_id] != index]
    counters.events_superseded += len(superseded)
    return {index: one for index, one in parsed.items() if index not in superseded}


def _fetch(index: int, event: RawEvent, parsed: ImageEvent, policy: FetchPolicy, rejected: list,
           counters: Counters) -> _Fetched | None:
    try:
        data = fetch(parsed.uri, policy)
        return _Fetched(index, event, parsed, data, sha256_of(data))
    except WorkerOutOfResources:
        raise  # the worker's trouble, not the event's: the whole batch is retried
    except Exception as err:  # any failure of one event is that event's dead letter
        rejected.append((index, Rejected(event, err, parsed.image_id)))
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
