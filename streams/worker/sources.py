"""Where a worker's events come from, and where its dead letters go.

A source is a small interface (as in quixstreams and bytewax); the Service owns the loop
(Service.run). ``batches()`` yields batches of raw image events, each with its ``ack``, which
the Service calls once every event of the batch is stored or dead-lettered, and never
otherwise; ``vocabularies()`` yields every vocabulary document, for ever (every worker hears
every one); ``dead_letter`` takes what could not be used. Kafka through Faust is one source
(worker.kafka_source); the tests drive the same loop with a scripted one, in-process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import AsyncIterator, Callable, Protocol

from columnist.records import RawEvent


@dataclass
class Batch:
    events: list[RawEvent]
    ack: Callable[[], None]
    """Called once, after every event of the batch is stored or dead-lettered."""


class Source(Protocol):
    def batches(self) -> AsyncIterator[Batch]:
        """Batches of image events, in order, until the source ends (or for ever)."""
        ...

    def vocabularies(self) -> AsyncIterator[RawEvent]:
        """Every vocabulary document, oldest first; a new one as soon as it is pushed."""
        ...

    async def dead_letter(self, letter: bytes) -> None:
        """Keep a dead letter (kafka.events.dead_letter) where people can read it."""
        ...
