"""Every worker reads every vocabulary document.

Image events are shared out among the workers of a consumer group, but a vocabulary change
concerns them all: each must switch its own ingest path. So the vocabulary topic is read
outside the group (a plain aiokafka consumer, no group id, every partition, from the
beginning) by every worker. Reading from the beginning at each start is how a new or
restarted worker catches up; documents it has applied already change nothing (same content
hash, or an older version applied before).
"""

from __future__ import annotations

import asyncio
import logging
from typing import AsyncIterator

from columnist.kafka.admin import partitions_of
from columnist.records import RawEvent
from columnist.retry import Backoff
from columnist.settings import Settings

log = logging.getLogger("columnist.worker")


async def follow_vocabularies(settings: Settings) -> AsyncIterator[RawEvent]:
    """Every message of the vocabulary topic, in order, for ever: after a lost connection it
    reconnects (with backoff) and goes on where it stopped."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.errors import KafkaError

    positions: dict[int, int] = {}  # partition -> next offset to read
    backoff = Backoff()
    while True:
        consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka, group_id=None, enable_auto_commit=False,
                                    auto_offset_reset="earliest", **settings.kafka_client_options())
        try:
            await consumer.start()
            partitions = await partitions_of(consumer, settings.topic_vocab)
            if not partitions:
                raise KafkaError(f"topic {settings.topic_vocab} has no partitions (was it created?)")
            assigned = [TopicPartition(settings.topic_vocab, p) for p in sorted(partitions)]
            consumer.assign(assigned)
            for tp in assigned:
                if tp.partition in positions:
                    consumer.seek(tp, positions[tp.partition])
                else:
                    await consumer.seek_to_beginning(tp)
            backoff.reset()
            async for message in consumer:
                yield RawEvent(message.value, message.partition, message.offset, message.key)
                positions[message.partition] = message.offset + 1
        except (KafkaError, OSError) as err:
            delay = backoff.next()
            log.warning("reading vocabularies from %s at %s failed: %s; again in %.1f s", settings.topic_vocab,
                        settings.kafka, err, delay)
            await asyncio.sleep(delay)  # backoff before reconnecting, not a synchronisation
        finally:
            await consumer.stop()
