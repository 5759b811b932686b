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
    from columnist.kafka.reading import records_to_end

    found = DeadLetters()
    newest: deque = deque(maxlen=limit)
    since_ms = int(since.timestamp() * 1000) if since else None
    async for message in records_to_end(settings, settings.topic_deadletter, since_ms):
        _take(message.value, contains, group, found, newest)
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
