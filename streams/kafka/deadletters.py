"""Reading the dead-letter topic: what the workers could not use, and why.

Each dead letter (kafka.events.dead_letter) holds the original event (bounded), the error
class and reason, where the event sat, the worker, its consumer group and the time. Reading is
outside any consumer group, from the topic's start (or the first offset at or after a time),
and bounded: at most ``limit`` letters are kept, the newest.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import datetime

from columnist.kafka import kafka_errors
from columnist.settings import Settings


@dataclass
class DeadLetters:
    letters: list[dict] = field(default_factory=list)
    """The newest matching letters, oldest first."""
    matching: int = 0
    """All matching letters (``letters`` holds at most the limit)."""
    reasons: Counter = field(default_factory=Counter)
    """Matching letters counted by kind of reason (the error class and the reason's first words)."""


def kind_of_reason(letter: dict) -> str:
    """'FetchError: outside the image roots' from a letter: the class and what the reason says
    after the name of the thing (which differs in every letter)."""
    reason = str(letter.get("reason", ""))
    after_name = reason.split(": ", 1)[-1] if ": " in reason else reason
    words = " ".join(after_name.split()[:6])
    return f"{letter.get('error', '?')}: {words}"


def read_dead_letters(settings: Settings, since: datetime | None = None, contains: str = "", group: str | None = None,
                      limit: int = 100) -> DeadLetters:
    with kafka_errors(settings.kafka):
        return asyncio.run(_read(settings, since, contains.lower(), group, limit))


async def _read(settings: Settings, since: datetime | None, contains: str, group: str | None, limit: int) -> DeadLetters:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from columnist.kafka.admin import partitions_of

    found = DeadLetters()
    newest: deque = deque(maxlen=limit)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka, group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest", request_timeout_ms=15_000,
                                **settings.kafka_client_options())
    try:
        await consumer.start()
        partitions = [TopicPartition(settings.topic_deadletter, p)
                      for p in sorted(await partitions_of(consumer, settings.topic_deadletter))]
        if not partitions:
            return found
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        starts = await consumer.offsets_for_times({tp: int(since.timestamp() * 1000) for tp in partitions}) \
            if since else {}
        for tp in partitions:
            if since and starts.get(tp) is not None:
                consumer.seek(tp, starts[tp].offset)
            elif since:
                consumer.seek(tp, ends[tp])  # nothing that recent
            else:
                await consumer.seek_to_beginning(tp)
        remaining = {tp for tp in partitions if ends[tp] > await consumer.position(tp)}
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=2_000)
            for tp, messages in batch.items():
                for message in messages:
                    _take(message.value, contains, group, found, newest)
                    if message.offset + 1 >= ends[tp]:
                        remaining.discard(tp)
            if not batch:
                break
    finally:
        await consumer.stop()
    found.letters = list(newest)
    return found


def _take(value: bytes | None, contains: str, group: str | None, found: DeadLetters, newest: deque) -> None:
    try:
        letter = json.loads(value or b"{}")
    except ValueError:
        letter = {"error": "?", "reason": "a dead letter that is not JSON"}
    if not isinstance(letter, dict):
        return
    if group is not None and letter.get("group", "") not in (group, ""):
        return
    haystack = " ".join(str(letter.get(k, "")) for k in ("reason", "error", "image_id", "worker", "event")).lower()
    if contains and contains not in haystack:
        return
    found.matching += 1
    found.reasons[kind_of_reason(letter)] += 1
    newest.append(letter)
