"""The Faust app: the ingest agent, the vocabulary feed, the control and metrics pages.

- ``ingest``: image events in batches (``take_events``), handed to the Service in two
  halves: a batch is fetched and decoded while the previous one is encoded and written (so
  decoding and inference overlap). A batch counts as done only when every event of it is
  stored or dead-lettered (the Service retries what fails for the whole batch). ``take_events`` acknowledges a batch in a
  ``finally``, even when the agent is cancelled at shutdown in the middle of a retry, and
  before the batch behind it is stored; so each event's message is held (one more reference)
  while its batch is processed and released only after it is stored: an unfinished batch is never committed and Kafka delivers
  it again to the next worker.
- vocabularies: every worker reads the whole vocabulary topic outside the consumer group
  (worker.vocabulary_feed), so each one switches its own ingest path; the Service applies
  each document or dead-letters it.
- the control page (worker.control) on a Unix socket only its user can reach: how the CLI
  reads an embedded (chdb) database while this worker owns it. Faust's own web server is off;
  /metrics and /health (worker.metrics) only when COLUMNIST_METRICS_PORT asks for them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal

import faust

from columnist.settings import Settings
from columnist.worker.control import ControlPage
from columnist.worker.fetch import FetchPolicy
from columnist.worker.ingest import RawEvent
from columnist.worker.metrics import MetricsPage
from columnist.worker.service import Service
from columnist.worker.vocabulary_feed import follow_vocabularies

log = logging.getLogger("columnist.worker")



async def build_service(settings: Settings, send_dead_letter) -> Service:
    """The Service with what it works with: the configured vocabulary, the model, the store
    (retried while ClickHouse is unavailable) and the fetch policy."""
    from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential

    from columnist.models.registry import load_encoder
    from columnist.store import StoreUnavailable, connect
    from columnist.vocab import load_vocabulary_arg

    configured = load_vocabulary_arg(settings.vocab)
    encoder = await asyncio.to_thread(load_encoder, settings.model, settings.threads, settings.batch_size,
                                     settings.runtime)
    async for attempt in AsyncRetrying(wait=wait_exponential(multiplier=0.5, max=30), reraise=True,
                                       retry=retry_if_exception_type(StoreUnavailable),
                                       before_sleep=lambda state: log.warning(
                                           "ClickHouse at %s unavailable (attempt %d): %s", settings.db,
                                           state.attempt_number, state.outcome.exception())):
        with attempt:
            store = await asyncio.to_thread(connect, settings.db, settings.cluster)
    policy = FetchPolicy(settings.roots, settings.allowed_hosts, settings.max_image_bytes, settings.http_timeout,
                         settings.allow_hard_links)
    return Service(store, encoder, configured, policy, send_dead_letter, settings)


def create_app(settings: Settings) -> faust.App:
    datadir = settings.run_path / "faust"  # tables live in memory; Faust only wants the folder to exist
    datadir.mkdir(parents=True, exist_ok=True, mode=0o700)
    app = faust.App(
        settings.group,
        broker=f"kafka://{settings.kafka}",
        store="memory://",
        datadir=datadir,
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        topic_allow_declare=False,  # topics are created explicitly (columnist.kafka.admin)
        topic_disable_leader=True,
        broker_commit_interval=1.0,
        broker_session_timeout=settings.session_timeout,
        broker_heartbeat_interval=min(3.0, settings.session_timeout / 3),
        broker_credentials=_credentials(settings),
    )
    images = app.topic(settings.topic_images, value_serializer="raw", key_serializer="raw")
    dead_letters = app.topic(settings.topic_deadletter, value_serializer="raw", key_serializer="raw")
    built: list[Service] = []  # the Service, once start() has built it
    ready = asyncio.Event()

    async def send_dead_letter(value: bytes) -> None:
        await dead_letters.send(value=value)

    async def status() -> dict:
        return await built[0].status() if built else {"ready": False}

    control = ControlPage(status, ready, settings)
    async def status_with_lag() -> dict:
        """The status and the consumer group's lag (one Kafka round trip per scrape)."""
        from columnist.kafka.lag import read_kafka_status

        try:
            lag = (await asyncio.wait_for(read_kafka_status(settings), 10))["lag"]
        except Exception:  # Kafka unreachable: the other metrics still count
            lag = None
        return {**await status(), "lag": lag}

    metrics = MetricsPage(status_with_lag, settings.metrics_bind, settings.metrics_port) \
        if settings.metrics_port else None

    @app.task
    async def start() -> None:
        """Build and start the Service; a configuration that cannot work (a bad vocabulary
        file, an unknown model) stops the worker with the reason."""
        await control.start()
        if metrics:
            await metrics.start()
        try:
            built.append(await build_service(settings, send_dead_letter))
            await built[0].start()
        except Exception as err:
            log.critical("worker cannot start: %s: %s", type(err).__name__, err)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        ready.set()

    @app.on_before_shutdown.connect
    async def stop(app, **kwargs) -> None:
        await control.stop()
        if metrics:
            await metrics.stop()

    @app.agent(images, name="ingest")
    async def ingest(stream):
        await ready.wait()
        service = built[0]
        storing: asyncio.Future | None = None  # the previous batch, encoded and written meanwhile

        async def store_and_release(events, raw, prepared) -> None:
            await service.store_prepared(raw, prepared)
            for event in events:
                event.ack()  # our reference: the last of the two acks (ours or take_events') commits

        try:
            async for events in stream.take_events(settings.batch_size, within=settings.batch_within):
                for event in events:
                    event.message.incref()  # held until stored: the finally in take_events must not ack it
                raw = [RawEvent(e.message.value, e.message.partition, e.message.offset) for e in events]
                prepared = await service.prepare(raw)  # decoding this batch while the previous one encodes
                if storing is not None:
                    await storing  # batches are stored in order, one behind the other
                storing = asyncio.ensure_future(store_and_release(events, raw, prepared))
            if storing is not None:
                await storing
        finally:
            if storing is not None and not storing.done():
                storing.cancel()  # its messages stay held: not committed, delivered again

    @app.task
    async def vocabularies() -> None:
        await ready.wait()
        await follow_vocabularies(settings, built[0].vocabulary_event)

    return app


def _credentials(settings: Settings):
    """Faust's form of the Kafka security settings (Settings.kafka_client_options)."""
    options = settings.kafka_client_options()
    if settings.kafka_sasl_mechanism:
        return faust.SASLCredentials(username=settings.kafka_username, password=settings.kafka_password,
                                     ssl_context=options.get("ssl_context"), mechanism=settings.kafka_sasl_mechanism)
    if "ssl_context" in options:
        return faust.SSLCredentials(options["ssl_context"])
    return None


def check_configuration(settings: Settings) -> None:
    """What can be checked before joining the consumer group: the DSN, the vocabulary file,
    the model directory. A mistake here ends the command with a message, not a rebalance."""
    from columnist.models.registry import resolve_model_dir
    from columnist.store.clickhouse import normalise_dsn
    from columnist.vocab import load_vocabulary_arg

    normalise_dsn(settings.db)
    load_vocabulary_arg(settings.vocab)
    if settings.model != "mock":
        resolve_model_dir(settings.model)


def run_worker(settings: Settings, loglevel: str = "info") -> None:
    """Run the worker in this process until SIGTERM/SIGINT."""
    from faust.worker import Worker

    check_configuration(settings)
    app = create_app(settings)
    Worker(app, loglevel=loglevel).execute_from_commandline()
