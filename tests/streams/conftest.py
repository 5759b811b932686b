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
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.conftest import REPO

KAFKA_SH = REPO / "deploy" / "kafka" / "kafka.sh"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float, what: str, interval: float = 0.2):
    """Poll ``predicate`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


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
    port = free_port()
    env = {**os.environ, "KAFKA_DATA": str(tmp_path_factory.mktemp("kafka")), "KAFKA_PORT": str(port),
           "KAFKA_CONTROLLER_PORT": str(free_port()), "PYTHON": sys.executable,
           "COLUMNIST_KAFKA": f"127.0.0.1:{port}"}
    started = subprocess.run([str(KAFKA_SH), "up"], env=env, capture_output=True, text=True, timeout=600)
    assert started.returncode == 0, f"local Kafka did not start:\n{started.stdout}\n{started.stderr}"
    try:
        yield f"127.0.0.1:{port}", None
    finally:
        subprocess.run([str(KAFKA_SH), "down"], env=env, capture_output=True, timeout=120)


@pytest.fixture
def stream_env(kafka_backend, tmp_path):
    """COLUMNIST_* settings of one isolated test: own topics, group, database, port."""
    from streams.kafka_admin import create_topics
    from streams.settings import Settings

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
    }
    (tmp_path / "images").mkdir()
    settings = Settings(**{k.removeprefix("COLUMNIST_").lower(): v for k, v in env.items()})
    asyncio.run(create_topics(settings))
    return env, settings


class WorkerProcess:
    """A `columnist worker` subprocess; its pages answer on 127.0.0.1."""

    def __init__(self, env: dict, log_path: Path, extra_env: dict | None = None):
        from streams.reader import WorkerClient

        self.env = {**os.environ, **env, **(extra_env or {})}
        self.log_path = log_path
        self.client = WorkerClient(int(env["COLUMNIST_WORKER_PORT"]), timeout=30)
        self.log = open(log_path, "ab")
        self.process = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"], cwd=REPO, env=self.env,
                                        stdout=self.log, stderr=subprocess.STDOUT)

    def status(self) -> dict | None:
        try:
            return self.client.status()
        except (ConnectionError, OSError, ValueError):
            return None

    def wait_ready(self, timeout: float = 90) -> dict:
        def ready():
            if self.process.poll() is not None:
                raise AssertionError(f"worker exited with {self.process.returncode}; log:\n{self.tail()}")
            status = self.status()
            return status if status and status["ready"] else None
        return wait_until(ready, timeout, "the worker to become ready")

    def query(self, sql: str) -> list[list]:
        return self.client.query(sql)[1]

    def scalar(self, sql: str):
        return self.query(sql)[0][0]

    def counters(self) -> dict:
        return self.client.status()["counters"]

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def wait_exit(self, timeout: float = 60) -> int:
        return self.process.wait(timeout=timeout)

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM, then SIGKILL if shutdown hangs (a known Faust behaviour)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


@pytest.fixture
def start_worker(stream_env, tmp_path):
    env, _ = stream_env
    workers: list[WorkerProcess] = []

    def start(**extra_env) -> WorkerProcess:
        worker = WorkerProcess(env, tmp_path / "worker.log", {k: str(v) for k, v in extra_env.items()})
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.stop()


def produce(settings, topic: str, messages: list[tuple[bytes | None, bytes]]) -> None:
    from streams.publish import _produce

    asyncio.run(_produce(settings, topic, messages))


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
