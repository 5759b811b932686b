"""Starting a worker, and its Faust wiring.

Start-up runs in the order that fails early, cheaply and without disturbing anyone: the
settings and the vocabulary file, the model, the store (waited for while ClickHouse is
unavailable; refused when another process owns it or it holds another model's embeddings),
the control socket (refused while another worker answers on it), the metrics port, and only
then Kafka (waited for while the broker is away) and the consumer group. A worker that cannot
start says why in a line and exits with its code (errors.py), before any rebalance.

Faust only adapts Kafka to the Service's loop (worker.kafka_source): the ``ingest`` agent runs
``Service.run``, which owns batching, holding and acking. Faust's own web server is off; the
control page (worker.control) is on a Unix socket only its user can reach, /metrics and
/health (worker.metrics) only when COLUMNIST_METRICS_PORT asks for them.
"""

from __future__ import annotations

import asyncio
import logging
import socket

import faust

from columnist.errors import ConfigurationError
from columnist.kafka import KafkaUnavailable
from columnist.retry import until_done_blocking
from columnist.settings import Settings
from columnist.worker.control import ControlPage
from columnist.worker.fetch import policy_from
from columnist.worker.kafka_source import KafkaSource
from columnist.worker.log_throttle import throttle_handlers
from columnist.worker.metrics import KafkaWatch, MetricsPage
from columnist.worker.service import Service

log = logging.getLogger("columnist.worker")


class PortTaken(ConfigurationError):
    """The metrics port is in use."""


def build_service(settings: Settings) -> Service:
    """The Service with what it works with, started: the configured vocabulary, the model,
    the store (waited for while ClickHouse is unavailable) and the fetch policy."""
    from columnist.models.registry import load_encoder
    from columnist.store import StoreUnavailable, connect
    from columnist.vocab import load_vocabulary_arg

    configured = load_vocabulary_arg(settings.vocab)
    encoder = load_encoder(settings.model, settings.threads, settings.batch_size, settings.runtime)
    unavailable = lambda err: isinstance(err, StoreUnavailable)  # noqa: E731
    store = until_done_blocking(lambda: connect(settings.db, settings.cluster), f"opening ClickHouse at {settings.db}",
                                retry_if=unavailable)
    service = Service(store, encoder, configured, policy_from(settings), settings)
    until_done_blocking(service.start, "starting the worker on its store", retry_if=unavailable)
    return service


def check_port_free(bind: str, port: int) -> None:
    with socket.socket() as probe:
        try:
            probe.bind((bind, port))
        except OSError as err:
            raise PortTaken(f"the metrics port {bind}:{port} (COLUMNIST_METRICS_PORT) is taken: {err.strerror}; "
                            "choose another, or 0 for none") from None


def wait_for_kafka(settings: Settings) -> None:
    """Until the broker answers: a worker is a service, it waits for its broker."""
    from columnist.kafka.admin import wait_until_ready

    def answered() -> None:
        try:
            asyncio.run(wait_until_ready(settings.kafka, 10, settings.kafka_client_options()))
        except TimeoutError as err:
            raise KafkaUnavailable(f"Kafka at {settings.kafka} does not answer") from err

    until_done_blocking(answered, f"reaching Kafka at {settings.kafka}",
                        retry_if=lambda err: isinstance(err, KafkaUnavailable), first=1.0)


def create_app(settings: Settings, service: Service, control: ControlPage, metrics: MetricsPage | None) -> faust.App:
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
        broker_client_id=client_id(settings),
    )
    images = app.topic(settings.topic_images, value_serializer="raw", key_serializer="raw")
    dead_letters = app.topic(settings.topic_deadletter, value_serializer="raw", key_serializer="raw")

    @app.task
    async def pages() -> None:
        throttle_handlers()  # Faust has set up its logging by now
        await control.start()
        if metrics:
            await metrics.start()

    @app.on_before_shutdown.connect
    async def stop(app, **kwargs) -> None:
        await control.stop()
        if metrics:
            await metrics.stop()

    @app.agent(images, name="ingest")
    async def ingest(stream):
        await service.run(KafkaSource(stream, settings, dead_letters))

    return app


def client_id(settings: Settings) -> str:
    """The worker's Kafka client id names its store: an embedded database is this host's path,
    a server is its DSN (members of one group writing to one server share an id)."""
    import hashlib

    from columnist.store.clickhouse import normalise_dsn

    dsn = normalise_dsn(settings.db)
    where = f"{socket.gethostname()}:{dsn}" if dsn.startswith("chdb:") else dsn.split("@")[-1]
    return f"columnist-store-{hashlib.sha256(where.encode()).hexdigest()[:12]}"


def warn_about_other_stores(settings: Settings) -> None:
    """Members of one consumer group share out the images: each must write to the same store.
    Warn when a member already in the group writes elsewhere (two embedded databases, say)."""
    from columnist.kafka.admin import group_client_ids

    try:
        others = {c for c in asyncio.run(group_client_ids(settings)) if c.startswith("columnist-store-")}
    except Exception as err:  # noqa: BLE001 - a warning that cannot be given is logged, not fatal
        log.info("could not list the members of consumer group %r: %s", settings.group, err)
        return
    mine = client_id(settings)
    if others - {mine}:
        log.warning("another member of consumer group %r writes to a different store (%s): the images of the group "
                    "are split between the stores. Give each store its own group (COLUMNIST_GROUP), or share one "
                    "ClickHouse server (COLUMNIST_DB=http://...)", settings.group, ", ".join(sorted(others - {mine})))


def _credentials(settings: Settings):
    """Faust's form of the Kafka security settings (Settings.kafka_client_options)."""
    options = settings.kafka_client_options()
    if settings.kafka_sasl_mechanism:
        return faust.SASLCredentials(username=settings.kafka_username, password=settings.kafka_password,
                                     ssl_context=options.get("ssl_context"), mechanism=settings.kafka_sasl_mechanism)
    if "ssl_context" in options:
        return faust.SSLCredentials(options["ssl_context"])
    return None


def run_worker(settings: Settings, loglevel: str = "info") -> None:
    """Run the worker in this process until SIGTERM/SIGINT; fail before joining the consumer
    group when it cannot work (a ColumnistError with its exit code)."""
    from faust.worker import Worker

    from columnist.store.clickhouse import normalise_dsn

    logging.basicConfig(level=loglevel.upper(), format="[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s")
    throttle_handlers()
    normalise_dsn(settings.db)
    control = ControlPage(lambda: service.status(), lambda: service.ready, settings)
    control.claim()
    if settings.metrics_port:
        check_port_free(settings.metrics_bind, settings.metrics_port)
    service = build_service(settings)

    watch = KafkaWatch(settings.kafka_unhealthy_after)

    async def status_with_lag() -> dict:
        """The status and the consumer group's lag (one Kafka round trip per scrape)."""
        from columnist.kafka.lag import read_kafka_status

        try:
            lag = (await asyncio.wait_for(read_kafka_status(settings), 10))["lag"]
            watch.answered()
        except Exception:  # Kafka unreachable: the other metrics still count
            lag = None
        return {**await service.status(), "lag": lag}

    metrics = MetricsPage(status_with_lag, settings.metrics_bind, settings.metrics_port, service.timings, watch) \
        if settings.metrics_port else None
    wait_for_kafka(settings)
    warn_about_other_stores(settings)
    Worker(create_app(settings, service, control, metrics), loglevel=loglevel).execute_from_commandline()
