"""The Faust app: topics, the two agents, and the worker's loopback HTTP pages.

- ``ingest``: image events in batches (``take_events``), handed to the Service; Faust acks
  a batch only after the agent returns from it, i.e. after the ClickHouse write.
- ``vocabularies``: whole vocabulary documents, one at a time.
- ``/status/`` and ``/query/`` on 127.0.0.1: how the CLI reads an embedded (chdb)
  database while this worker owns it.
"""

from __future__ import annotations

import logging

import faust
from faust.web import View

from streams.ingest import RawEvent
from streams.service import Service
from streams.settings import Settings

log = logging.getLogger("columnist.worker")


def create_app(settings: Settings) -> tuple[faust.App, Service]:
    app = faust.App(
        settings.group,
        broker=f"kafka://{settings.kafka}",
        store="memory://",
        web_enabled=True,
        web_bind="127.0.0.1",
        web_host="127.0.0.1",
        web_port=settings.worker_port,
        consumer_auto_offset_reset="earliest",
        topic_allow_declare=False,  # topics are created explicitly (streams.kafka_admin)
        topic_disable_leader=True,
        broker_commit_interval=1.0,
        broker_session_timeout=settings.session_timeout,
        broker_heartbeat_interval=min(3.0, settings.session_timeout / 3),
    )
    images = app.topic(settings.topic_images, value_serializer="raw", key_serializer="raw")
    vocabularies = app.topic(settings.topic_vocab, value_serializer="raw", key_serializer="raw")
    dead_letters = app.topic(settings.topic_deadletter, value_serializer="raw", key_serializer="raw")

    async def send_dead_letter(value: bytes) -> None:
        await dead_letters.send(value=value)

    service = Service(settings, send_dead_letter)

    @app.task
    async def start() -> None:
        await service.start()

    @app.agent(images, name="ingest")
    async def ingest(stream):
        await service.started.wait()
        async for events in stream.take_events(settings.batch_size, within=settings.batch_within):
            await service.ingest([RawEvent(e.message.value, e.message.partition, e.message.offset) for e in events])

    @app.agent(vocabularies, name="vocabularies")
    async def apply_vocabularies(stream):
        await service.started.wait()
        async for event in stream.events():
            await service.vocabulary_event(RawEvent(event.message.value, event.message.partition, event.message.offset))

    @app.page("/status/")
    async def status(web, request):
        return web.json(await service.status())

    @app.page("/query/")
    class Query(View):
        async def post(self, request):
            from streams.output import plain

            body = await request.json()
            try:
                columns, rows = await service.query(body["sql"])
            except Exception as err:  # the database's message is what the user needs
                return self.json({"error": str(err)}, status=400)
            return self.json({"columns": columns, "rows": [[plain(v) for v in row] for row in rows]})

    return app, service


def run_worker(settings: Settings, loglevel: str = "info") -> None:
    """Run the worker in this process until SIGTERM/SIGINT."""
    from faust.worker import Worker

    app, _ = create_app(settings)
    Worker(app, loglevel=loglevel).execute_from_commandline()
