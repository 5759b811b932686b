"""Consumer lag and dead-letter count, read from Kafka."""

from __future__ import annotations

import asyncio

from columnist.kafka import kafka_errors
from columnist.kafka.admin import partitions_of
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
                      for p in sorted(await partitions_of(consumer, settings.topic_images))]
        ends = await consumer.end_offsets(partitions)
        per_partition = {tp.partition: ends[tp] - (committed[tp].offset if tp in committed else 0) for tp in partitions}
        dead = TopicPartition(settings.topic_deadletter, 0)
        dead_end = (await consumer.end_offsets([dead]))[dead]
        dead_begin = (await consumer.beginning_offsets([dead]))[dead]
        return {"lag": sum(per_partition.values()), "per_partition": per_partition, "dead_letters": dead_end - dead_begin}
    finally:
        await consumer.stop()
        await admin.close()


def kafka_status(settings: Settings) -> dict:
    with kafka_errors(settings.kafka):
        return asyncio.run(read_kafka_status(settings))
