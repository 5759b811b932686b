"""Real services for the stream tests: an Apache Kafka broker and worker processes.

Kafka comes from deploy/kafka (Maven-fetched jars, KRaft, 127.0.0.1, a free port, data in a
temporary folder), or from testcontainers when COLUMNIST_TEST_BACKEND=testcontainers and a
Docker engine is reachable (then ClickHouse is a container too). Each test gets its own
topics, consumer group, database and worker port, so tests share one broker safely.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid

import pytest

from deploy.local import LocalKafka, WorkerProcess, free_port, wait_until  # noqa: F401 - re-exported


@pytest.fixture(scope="session")
def kafka_backend(tmp_path_factory):
    """(bootstrap servers, ClickHouse DSN or None for a per-test embedded database)."""
    if os.environ.get("COLUMNIST_TEST_BACKEND") == "testcontainers":
        from testcontainers.clickhouse import ClickHouseContainer
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer() as kafka, ClickHouseContainer() as clickhouse:
            dsn = f"http://{clickhouse.username}:{clickhouse.password}@{clickhouse.get_container_host_ip()}:" \
                  f"{clickhouse.get_exposed_port(8123)}"
            yield kafka.get_bootstrap_server(), dsn
        return
    kafka = LocalKafka(tmp_path_factory.mktemp("kafka")).start()
    try:
        yield kafka.bootstrap, None
    finally:
        kafka.stop()


@pytest.fixture
def partitions() -> int:
    """Partitions of the test's images topic (a test module may override this fixture)."""
    return 2


@pytest.fixture
def stream_env(kafka_backend, tmp_path, partitions):
    """COLUMNIST_* settings of one isolated test: own topics, group, database, port."""
    from columnist.kafka.admin import create_topics
    from columnist.settings import Settings

    bootstrap, dsn = kafka_backend
    tag = uuid.uuid4().hex[:8]
    env = {
        "COLUMNIST_KAFKA": bootstrap,
        "COLUMNIST_DB": dsn or f"chdb://{tmp_path / 'db'}",
        "COLUMNIST_GROUP": f"columnist-test-{tag}",
        "COLUMNIST_TOPIC_IMAGES": f"test-{tag}.images",
        "COLUMNIST_TOPIC_VOCAB": f"test-{tag}.vocab",
        "COLUMNIST_TOPIC_DEADLETTER": f"test-{tag}.deadletter",
        "COLUMNIST_WORKER_PORT": str(free_port()),
        "COLUMNIST_IMAGE_ROOTS": str(tmp_path / "images"),
        "COLUMNIST_BATCH_WITHIN": "0.3",
        "COLUMNIST_REPLAY_CHUNKS": "8",
        "COLUMNIST_PARTITIONS": str(partitions),
    }
    (tmp_path / "images").mkdir()
    settings = Settings(**{k.removeprefix("COLUMNIST_").lower(): v for k, v in env.items()})
    asyncio.run(create_topics(settings))
    return env, settings


@pytest.fixture
def start_worker(stream_env, tmp_path):
    env, _ = stream_env
    workers: list[WorkerProcess] = []

    def start(**extra_env) -> WorkerProcess:
        worker = WorkerProcess({**env, **extra_env}, tmp_path / f"worker-{len(workers)}.log")
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


def produce(settings, topic: str, messages: list[tuple[bytes | None, bytes]], partition: int | None = None) -> None:
    """Send ``messages`` (key, value) as columnist publishes them, or all to one ``partition``."""
    from aiokafka import AIOKafkaProducer

    from columnist.kafka.publish import _produce

    async def to_one_partition():
        producer = AIOKafkaProducer(bootstrap_servers=settings.kafka, acks="all")
        await producer.start()
        try:
            await asyncio.gather(*[await producer.send(topic, value, key=key, partition=partition)
                                   for key, value in messages])
        finally:
            await producer.stop()

    asyncio.run(_produce(settings, topic, messages) if partition is None else to_one_partition())


def consume_all(settings, topic: str, expected: int, timeout: float = 30) -> list[dict]:
    """Read ``expected`` JSON messages from the start of ``topic``."""
    from aiokafka import AIOKafkaConsumer

    async def read():
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=settings.kafka, auto_offset_reset="earliest",
                                    enable_auto_commit=False, group_id=None)
        await consumer.start()
        out = []
        try:
            deadline = time.monotonic() + timeout
            while len(out) < expected and time.monotonic() < deadline:
                batch = await consumer.getmany(timeout_ms=500)
                out += [json.loads(m.value) for msgs in batch.values() for m in msgs]
        finally:
            await consumer.stop()
        return out

    return asyncio.run(read())


class StoppedClock:
    """time for columnist.watchdog, with a jump forward when the process 'is stopped'
    (SIGSTOP, a paused VM): its threads still sleep for real."""

    def __init__(self):
        self.stopped_for = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.stopped_for

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@pytest.fixture
def stopped_clock(monkeypatch) -> StoppedClock:
    """The watchdogs' clock, which the test moves on to stop the process."""
    from columnist import watchdog

    clock = StoppedClock()
    monkeypatch.setattr(watchdog, "time", clock)
    return clock
