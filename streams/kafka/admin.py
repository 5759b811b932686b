"""Kafka administration: wait for a broker, create columnist's topics explicitly.

Topics are never auto-created: an auto-created source topic and a changelog can disagree on
partitions (Faust then stops with PartitionsMismatch), so every topic is made here with its
partition count. ``python -m columnist.kafka.admin wait-and-create`` is what
``deploy/kafka/kafka.sh up`` runs.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from columnist.settings import Settings, get_settings


def topic_specs(settings: Settings) -> list[tuple[str, int, dict]]:
    """(name, partitions, config) of every topic columnist uses."""
    return [
        (settings.topic_images, settings.partitions, {}),
        (settings.topic_vocab, 1, {"cleanup.policy": "compact"}),
        (settings.topic_deadletter, 1, {}),
    ]


async def partitions_of(consumer, topic: str) -> set[int]:
    """A topic's partitions as ``consumer`` knows them, asking the broker when it does not
    yet (aiokafka learns a topic's partitions lazily)."""
    known = consumer.partitions_for_topic(topic)
    if not known:
        await consumer._client.force_metadata_update()
        known = consumer.partitions_for_topic(topic)
    return set(known or ())


async def wait_until_ready(bootstrap: str, timeout: float, options: dict | None = None) -> list[str]:
    """List topics until the broker answers; return them. Raises TimeoutError."""
    import logging

    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaError

    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)  # refused connections are expected here
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=5000, **(options or {}))
        try:
            await admin.start()
            return await admin.list_topics()
        except (KafkaError, OSError) as err:
            last_error = err
            await asyncio.sleep(0.5)  # the broker is still starting; ask again
        finally:
            await admin.close()
    raise TimeoutError(f"Kafka at {bootstrap} did not answer within {timeout:.0f} s: {last_error!r}")


async def group_client_ids(settings: Settings) -> list[str]:
    """The Kafka client ids of the consumer group's current members."""
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka, request_timeout_ms=10_000,
                                **settings.kafka_client_options())
    await admin.start()
    try:
        responses = await admin.describe_consumer_groups([settings.group])
    finally:
        await admin.close()
    ids = []
    for response in responses:
        for group in response.groups:
            members = group[-2] if isinstance(group[-1], int) else group[-1]  # v3+ ends with authorized operations
            ids += [member[1] for member in members]
    return ids


async def create_topics(settings: Settings) -> list[str]:
    """Create the topics that do not exist yet; return the names created."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka, **settings.kafka_client_options())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new = [NewTopic(name, partitions, 1, topic_configs=config)
               for name, partitions, config in topic_specs(settings) if name not in existing]
        if new:
            await admin.create_topics(new)
        return [t.name for t in new]
    finally:
        await admin.close()


async def _wait_and_create(settings: Settings, timeout: float) -> None:
    await wait_until_ready(settings.kafka, timeout, settings.kafka_client_options())
    created = await create_topics(settings)
    print(f"kafka ready at {settings.kafka}; topics created: {', '.join(created) or 'none (all exist)'}")


def main() -> None:
    parser = argparse.ArgumentParser(description="Wait for Kafka and create columnist's topics.")
    parser.add_argument("command", choices=["wait-and-create"])
    parser.add_argument("--timeout", type=float, default=120)
    args = parser.parse_args()
    try:
        asyncio.run(_wait_and_create(get_settings(), args.timeout))
    except TimeoutError as err:
        raise SystemExit(str(err)) from None


if __name__ == "__main__":
    main()
