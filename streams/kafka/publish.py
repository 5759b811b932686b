"""Publishing events to Kafka from the CLI (any other producer, kcat included, works too)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Callable, Sequence

from columnist.kafka import kafka_errors
from columnist.kafka.events import image_event, vocab_event
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


def push_vocabulary(vocab: Vocabulary, settings: Settings) -> None:
    """The whole document, keyed by vocabulary name (the topic is compacted)."""
    with kafka_errors(settings.kafka):
        asyncio.run(_produce(settings, settings.topic_vocab, [(vocab.name.encode(), vocab_event(vocab))]))
