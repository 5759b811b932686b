"""Reading a topic to its end, once: what `deadletters` and `vocab push` need (no consumer
group, nothing committed; a record arriving meanwhile may or may not be read)."""

from __future__ import annotations

from typing import TYPE_CHECKING, AsyncIterator

if TYPE_CHECKING:
    from columnist.settings import Settings


async def records_to_end(settings: "Settings", topic: str, since_ms: int | None = None) -> AsyncIterator:
    """Every record of ``topic`` (from the first at or after ``since_ms`` when given) up to the
    end each partition had when asked; stops early when the broker sends nothing for 2 s."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from columnist.kafka.admin import partitions_of

    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest", request_timeout_ms=15_000,
                                **settings.kafka_client_options())
    try:
        await consumer.start()
        partitions = [TopicPartition(topic, p) for p in sorted(await partitions_of(consumer, topic))]
        if not partitions:
            return
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        starts = await consumer.offsets_for_times({tp: since_ms for tp in partitions}) if since_ms is not None else {}
        for tp in partitions:
            if since_ms is None:
                await consumer.seek_to_beginning(tp)
            else:  # nothing that recent: from the end
                consumer.seek(tp, starts[tp].offset if starts.get(tp) is not None else ends[tp])
        remaining = {tp for tp in partitions if ends[tp] > await consumer.position(tp)}
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=2_000)
            for tp, messages in batch.items():
                for message in messages:
                    yield message
                    if message.offset + 1 >= ends[tp]:
                        remaining.discard(tp)
            if not batch:
                break  # nothing more arrives: what was read is what there is
    finally:
        await consumer.stop()
