"""The Faust app: topics, the two agents, and the worker's control page.

- ``ingest``: image events in batches (``take_events``), handed to the Service.
  The Service returns only when every event of the batch is stored or dead-lettered (it
  retries what fails for the whole batch). ``take_events`` acknowledges a batch in a
  ``finally``, even when the agent is cancelled at shutdown in the middle of a retry; so each
  event's message is held (one more reference) while its batch is processed and released
  only after the Service returned: an unfinished batch is never committed and Kafka delivers
  it again to the next worker.
- ``vocabularies``: whole vocabulary documents, one at a time; the Service dead-letters
  any it cannot apply.
- the control page (streams.control) on 127.0.0.1, behind a secret: how the CLI reads an
  embedded (chdb) database while this worker owns it. Faust's own web server is off.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile

import faust

from streams.control import ControlPage
from streams.ingest import RawEvent
from streams.service import Service
from streams.settings import Settings



def create_app(settings: Settings) -> tuple[faust.App, Service]:
    datadir = tempfile.mkdtemp(prefix="columnist-faust-")  # tables live in memory: nothing here outlives us
    atexit.register(shutil.rmtree, datadir, ignore_errors=True)
    app = faust.App(
        settings.group,
        broker=f"kafka://{settings.kafka}",
        store="memory://",
        datadir=datadir,
        web_enabled=False,
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
    control = ControlPage(service, settings)

    @app.task
    async def start() -> None:
        await control.start()
        await service.start()

    @app.on_before_shutdown.connect
    async def stop(app, **kwargs) -> None:
        await control.stop()

    @app.agent(images, name="ingest")
    async def ingest(stream):
        await service.started.wait()
        async for events in stream.take_events(settings.batch_size, within=settings.batch_within):
            for event in events:
                event.message.incref()  # held until stored: the finally in take_events must not ack it
            await service.ingest([RawEvent(e.message.value, e.message.partition, e.message.offset) for e in events])
            for event in events:
                event.message.decref()

    @app.agent(vocabularies, name="vocabularies")
    async def apply_vocabularies(stream):
        await service.started.wait()
        async for event in stream.events():
            await service.vocabulary_event(RawEvent(event.message.value, event.message.partition, event.message.offset))

    return app, service


def run_worker(settings: Settings, loglevel: str = "info") -> None:
    """Run the worker in this process until SIGTERM/SIGINT."""
    from faust.worker import Worker

    app, _ = create_app(settings)
    Worker(app, loglevel=loglevel).execute_from_commandline()
