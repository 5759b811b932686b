"""The worker's metrics and health, for Prometheus and orchestrators.

Counters only, read from the worker's status: no SQL, no store access, nothing anyone can
change. Off by default; ``COLUMNIST_METRICS_PORT`` turns it on, on ``COLUMNIST_METRICS_BIND``
(127.0.0.1 unless a container network needs 0.0.0.0). ``GET /metrics`` is the Prometheus
text format, ``GET /health`` answers 200 once the worker is ready (503 before).
"""

from __future__ import annotations

import logging
from typing import Awaitable, Callable

log = logging.getLogger("columnist.worker")

COUNTERS = {
    "images_decoded": "Images decoded and preprocessed.",
    "images_encoded": "Images encoded by the image tower.",
    "images_reused": "Images whose content was stored already (embedding reused).",
    "images_replaced": "Events that replaced a stored image with other content.",
    "prompts_encoded": "Prompts encoded by the text tower.",
    "batches": "Ingest batches stored.",
    "batch_retries": "Attempts at batches that failed as a whole (retried, never skipped).",
    "store_retries": "ClickHouse writes retried.",
    "score_rows": "Score rows written by ingest.",
    "dead_letters": "Events sent to the dead-letter topic.",
    "replays": "Vocabulary changes applied.",
    "replay_chunks_written": "Replay chunks written by this worker.",
    "replayed_score_rows": "Score rows written by replays.",
}
STAGES = {"fetch_decode_s": "fetch_decode", "encode_s": "encode", "write_s": "write"}


def render(status: dict) -> str:
    """The worker's status in the Prometheus text exposition format."""
    lines = ["# HELP columnist_ready 1 once the worker serves.", "# TYPE columnist_ready gauge",
             f"columnist_ready {int(bool(status.get('ready')))}"]
    counters = status.get("counters", {})
    for name, help_text in COUNTERS.items():
        lines += [f"# HELP columnist_{name}_total {help_text}", f"# TYPE columnist_{name}_total counter",
                  f"columnist_{name}_total {counters.get(name, 0)}"]
    lines += ["# HELP columnist_stage_seconds_total Seconds spent per ingest stage.",
              "# TYPE columnist_stage_seconds_total counter"]
    lines += [f'columnist_stage_seconds_total{{stage="{stage}"}} {counters.get(key, 0.0):.6f}'
              for key, stage in STAGES.items()]
    if status.get("lag") is not None:
        lines += ["# HELP columnist_consumer_lag Image events not yet committed by the consumer group.",
                  "# TYPE columnist_consumer_lag gauge", f"columnist_consumer_lag {status['lag']}"]
    lines += ["# HELP columnist_vocabulary_version The applied version of each vocabulary.",
              "# TYPE columnist_vocabulary_version gauge"]
    lines += [f'columnist_vocabulary_version{{vocabulary="{v["name"]}"}} {v["version"]}'
              for v in status.get("vocabularies", [])]
    return "\n".join(lines) + "\n"


class MetricsPage:
    def __init__(self, status: Callable[[], Awaitable[dict]], bind: str, port: int):
        self.status, self.bind, self.port = status, bind, port
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

        return web.Response(text=render(await self.status()), content_type="text/plain", charset="utf-8")

    async def _health(self, request):
        from aiohttp import web

        ready = bool((await self.status()).get("ready"))
        return web.json_response({"ready": ready}, status=200 if ready else 503)
