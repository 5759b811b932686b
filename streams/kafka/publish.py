"""Publishing events to Kafka from the CLI (any other producer, kcat included, works too)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Callable, Sequence

from columnist.kafka import kafka_errors
from columnist.kafka.events import delete_event, image_event, vocab_event
from columnist.settings import Settings
from columnist.vocab.schema import Vocabulary


async def _produce(settings: Settings, topic: str, messages: Sequence[tuple[bytes, bytes]],
                   on_sent: Callable[[int], None] | None = None) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka, acks="all", linger_ms=5,
                                request_timeout_ms=15_000, **settings.kafka_client_options())
    try:
        await producer.start()  # inside the try: a broker that is down still gets the client closed
        for start in range(0, len(messages), 500):
            chunk = messages[start:start + 500]
            futures = [await producer.send(topic, key=key, value=value) for key, value in chunk]
            await asyncio.gather(*futures)
            if on_sent:
                on_sent(len(chunk))
    finally:
        await producer.stop()


def publish_images(files: Sequence[tuple[str, Path]], settings: Settings, collection: str = "",
                   on_sent: Callable[[int], None] | None = None) -> int:
    """One ingest event per file, keyed by image_id, with an absolute file:// URI."""
    messages = [(image_id.encode(), image_event(image_id, Path(os.path.abspath(path)).as_uri(), collection))
                for image_id, path in files]
    with kafka_errors(settings.kafka):
        asyncio.run(_produce(settings, settings.topic_images, messages, on_sent))
    return len(messages)


def publish_changes(files: Sequence[tuple[str, Path]], deleted: Sequence[str], settings: Settings,
                    collection: str = "") -> None:
    """Ingest events for ``files`` and delete events for ``deleted`` image ids (`columnist watch`)."""
    messages = [(image_id.encode(), image_event(image_id, Path(os.path.abspath(path)).as_uri(), collection))
                for image_id, path in files] + [(image_id.encode(), delete_event(image_id)) for image_id in deleted]
    with kafka_errors(settings.kafka):
        asyncio.run(_produce(settings, settings.topic_images, messages))


def push_vocabulary(vocab: Vocabulary, settings: Settings) -> None:
    """The whole document, keyed by vocabulary name (the topic is compacted)."""
    with kafka_errors(settings.kafka):
        asyncio.run(_produce(settings, settings.topic_vocab, [(vocab.name.encode(), vocab_event(vocab))]))


def publish_vocab_record(settings: Settings, value: bytes, key: bytes | None = None) -> None:
    """A record on the vocabulary topic, which every worker reads (a model event by default)."""
    from columnist.kafka.events import MODEL_KEY

    with kafka_errors(settings.kafka):
        asyncio.run(_produce(settings, settings.topic_vocab, [(key or MODEL_KEY, value)]))


async def _latest_documents(settings: Settings) -> dict[str, bytes]:
    """The newest record of each key on the vocabulary topic (it is compacted: small)."""
    from columnist.kafka.reading import records_to_end

    latest: dict[str, bytes] = {}
    async for message in records_to_end(settings, settings.topic_vocab):
        if message.key is not None and message.value is not None:
            latest[message.key.decode("utf-8", "replace")] = message.value
    return latest


def pushed_vocabulary(name: str, settings: Settings) -> "Vocabulary | None":
    """The newest valid document of ``name`` on the vocabulary topic (what workers apply)."""
    from columnist.errors import ColumnistError
    from columnist.kafka.events import parse_vocab_event
    from columnist.vocab.schema import vocabulary_from_dict

    with kafka_errors(settings.kafka):
        raw = asyncio.run(_latest_documents(settings)).get(name)
    if raw is None:
        return None
    try:
        event = parse_vocab_event(raw)
        return vocabulary_from_dict(event.document, f"the newest {name!r} on {settings.topic_vocab}")
    except ColumnistError:
        return None  # a refused document: workers keep what they had
