"""The worker's metrics and health, for Prometheus and orchestrators (prometheus_client).

Off by default; ``COLUMNIST_METRICS_PORT`` turns it on, on ``COLUMNIST_METRICS_BIND``
(127.0.0.1 unless a container network needs 0.0.0.0). ``GET /metrics`` is the Prometheus text
format: the worker's counters (read from its status: no SQL, nothing anyone can change),
histograms of batch and stage latency, the consumer group's lag, and the process's own
metrics (CPU, memory, open files). ``GET /health`` answers 200 once the worker is ready and
its broker has answered within ``unhealthy_after`` seconds, 503 otherwise, with the reason.
"""

from __future__ import annotations

import logging
import time
from typing import Awaitable, Callable

from prometheus_client import CollectorRegistry, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

log = logging.getLogger("columnist.worker")

COUNTERS = {
    "images_stored": "Images and videos written.",
    "images_decoded": "Images decoded and preprocessed.",
    "images_encoded": "Images (and video frames) encoded by the image tower.",
    "images_reused": "Images whose content was stored already (embedding reused).",
    "images_replaced": "Events that replaced a stored image with other content.",
    "images_failed": "Images that could not be used.",
    "images_deleted": "Images forgotten because their events said they are gone.",
    "events_superseded": "Events replaced by a later event for the same image in the same batch.",
    "events_unkeyed": "Image events taken without a Kafka key (one image's events are in order only on one partition).",
    "prompts_encoded": "Prompts encoded by the text tower.",
    "batches": "Ingest batches stored.",
    "batch_retries": "Attempts at batches that failed as a whole (retried, never skipped).",
    "store_retries": "ClickHouse writes retried.",
    "score_rows": "Score rows written by ingest.",
    "dead_letters": "Events sent to the dead-letter topic.",
    "replays": "Vocabulary changes applied.",
    "replay_chunks_written": "Replay chunks written by this worker.",
    "replayed_score_rows": "Score rows written by replays.",
    "reembedded": "Stored images embedded again by a model migration's job.",
    "sidecars_written": "XMP sidecars written beside the images (COLUMNIST_SIDECARS).",
}
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120)


class Timings:
    """Histograms the Service observes as it works (seconds per batch and per stage)."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        self.batch = Histogram("columnist_batch_seconds", "Seconds from a batch taken to it stored (decode, encode, "
                               "write).", buckets=LATENCY_BUCKETS, registry=self.registry)
        self.stage = Histogram("columnist_stage_seconds", "Seconds per ingest stage of a batch.", ["stage"],
                               buckets=LATENCY_BUCKETS, registry=self.registry)


class KafkaWatch:
    """When the broker last answered (the worker's status asks it, with the group's lag)."""

    def __init__(self, unhealthy_after: float):
        self.unhealthy_after = unhealthy_after
        self.last_answer = time.monotonic()

    def answered(self) -> None:
        self.last_answer = time.monotonic()

    def silent_for(self) -> float:
        return time.monotonic() - self.last_answer

    @property
    def healthy(self) -> bool:
        return self.silent_for() <= self.unhealthy_after


class _StatusCollector:
    """The worker's counters and gauges, from the status the last scrape fetched."""

    def __init__(self):
        self.status: dict = {}

    def collect(self):
        status = self.status
        ready = GaugeMetricFamily("columnist_ready", "1 once the worker serves.")
        ready.add_metric([], int(bool(status.get("ready"))))
        yield ready
        counters = status.get("counters", {})
        for name, help_text in COUNTERS.items():
            family = CounterMetricFamily(f"columnist_{name}", help_text)
            family.add_metric([], counters.get(name, 0))
            yield family
        if status.get("lag") is not None:
            lag = GaugeMetricFamily("columnist_consumer_lag", "Image events not yet committed by the consumer group.")
            lag.add_metric([], status["lag"])
            yield lag
        remaining = (status.get("models") or {}).get("reembed", {}).get("remaining")
        if remaining is not None:
            left = GaugeMetricFamily("columnist_reembed_remaining", "Stored images the model a migration moves to "
                                     "still lacks.")
            left.add_metric([], remaining)
            yield left
        versions = GaugeMetricFamily("columnist_vocabulary_version", "The applied version of each vocabulary.",
                                     labels=["vocabulary"])
        for vocab in status.get("vocabularies", []):
            versions.add_metric([vocab["name"]], vocab["version"])
        yield versions


def render(status: dict, timings: Timings | None = None) -> str:
    """The worker's status (and its histograms) in the Prometheus text format."""
    registry = timings.registry if timings else CollectorRegistry()
    collector = _StatusCollector()
    collector.status = status
    registry.register(collector)
    try:
        return generate_latest(registry).decode()
    finally:
        registry.unregister(collector)


class MetricsPage:
    def __init__(self, status: Callable[[], Awaitable[dict]], bind: str, port: int, timings: Timings | None = None,
                 watch: KafkaWatch | None = None):
        self.status, self.bind, self.port = status, bind, port
        self.timings = timings or Timings()
        self.watch = watch
        ProcessCollector(registry=self.timings.registry)
        self.runner = None

    async def start(self) -> None:
        from aiohttp import web

        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/health", self._health)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, self.bind, self.port).start()
        log.info("metrics on http://%s:%d/metrics", self.bind, self.port)

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def _metrics(self, request):
        from aiohttp import web

        return web.Response(body=render(await self.status(), self.timings).encode(),
                            content_type="text/plain", charset="utf-8")

    async def _health(self, request):
        from aiohttp import web

        status = await self.status()
        if not status.get("ready"):
            return web.json_response({"ready": False, "reason": "the worker is still starting"}, status=503)
        if self.watch is not None and not self.watch.healthy:
            return web.json_response({"ready": True, "healthy": False, "reason": "Kafka has not answered for "
                                      f"{self.watch.silent_for():.0f} s"}, status=503)
        return web.json_response({"ready": True, "healthy": True})
