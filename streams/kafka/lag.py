"""Consumer lag and dead-letter count, read from Kafka."""

from __future__ import annotations

import asyncio

from columnist.settings import Settings


async def read_kafka_status(settings: Settings) -> dict:
    import logging

    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # a broker that is down is reported below

    options = settings.kafka_client_options()
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka, request_timeout_ms=5000, **options)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka, request_timeout_ms=5000, **options)
    try:  # started inside the try: a broker that is down still gets both clients closed
        await admin.start()
        await consumer.start()
        committed = await admin.list_consumer_group_offsets(settings.group)
        partitions = [TopicPartition(settings.topic_images, p)
                      for p in sorted(consumer.partitions_for_topic(settings.topic_images) or
                                      await _partitions(consumer, settings.topic_images))]
        ends = await consumer.end_offsets(partitions)
        per_partition = {tp.partition: ends[tp] - (committed[tp].offset if tp in committed else 0) for tp in partitions}
        dead = TopicPartition(settings.topic_deadletter, 0)
        dead_end = (await consumer.end_offsets([dead]))[dead]
        dead_begin = (await consumer.beginning_offsets([dead]))[dead]
        return {"lag": sum(per_partition.values()), "per_partition": per_partition, "dead_letters": dead_end - dead_begin}
    finally:
        await consumer.stop()
        await admin.close()


async def _partitions(consumer, topic: str) -> set[int]:
    await consumer._client.force_metadata_update()  # aiokafka learns a topic's partitions lazily
    return consumer.partitions_for_topic(topic) or set()


def kafka_status(settings: Settings) -> dict:
    return asyncio.run(read_kafka_status(settings))
