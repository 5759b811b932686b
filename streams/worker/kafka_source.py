"""Kafka as a source of the Service's loop (worker.sources.Source), through Faust.

Faust's ``stream.take_events`` acknowledges a taken batch in a ``finally``: when the agent is
cancelled at shutdown in the middle of a retry, and before the batch behind it is stored. So
each event's message is held (one more reference) while its batch is processed, and released
by the batch's ``ack`` only after it is stored: an unfinished batch is never committed, and
Kafka delivers it again to the next worker. Vocabulary documents are read outside the
consumer group, by every worker (worker.vocabulary_feed); dead letters go to their topic.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, AsyncIterator

from columnist.records import RawEvent
from columnist.settings import Settings
from columnist.worker.sources import Batch
from columnist.worker.vocabulary_feed import follow_vocabularies

if TYPE_CHECKING:
    import faust


class KafkaSource:
    def __init__(self, stream: "faust.StreamT", settings: Settings, dead_letters: "faust.TopicT"):
        self.stream, self.settings, self.topic = stream, settings, dead_letters

    async def batches(self) -> AsyncIterator[Batch]:
        async for events in self.stream.take_events(self.settings.batch_size, within=self.settings.batch_within):
            for event in events:
                event.message.incref()  # held until stored: the finally in take_events must not ack it
            raw = [RawEvent(e.message.value, e.message.partition, e.message.offset, e.message.key) for e in events]
            yield Batch(raw, ack=_acker(events))

    def vocabularies(self) -> AsyncIterator[RawEvent]:
        return follow_vocabularies(self.settings)

    async def dead_letter(self, letter: bytes) -> None:
        await self.topic.send(value=letter)


def _acker(events: list[Any]):
    def ack() -> None:
        for event in events:
            event.ack()  # our reference: the last of the two acks (ours or take_events') commits
    return ack
