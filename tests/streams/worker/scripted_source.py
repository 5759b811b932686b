"""A scripted source for the Service's loop, in-process: a test double standing in for Kafka
(worker.sources.Source). It yields the script's batches in order, hands its vocabulary
documents (and model events) to the vocabulary feed, waits at its gates, and records acks and
dead letters."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import AsyncIterator, Awaitable, Callable

from columnist.records import RawEvent
from columnist.worker.sources import Batch


@dataclass
class Vocab:
    """A vocabulary document in the script. ``wait``: the next batch comes only once it is
    applied (or refused); without it, batches go on while it is being applied."""

    event: RawEvent
    wait: bool = True


@dataclass
class Gate:
    """A point in the script that waits for ``until()`` (an awaitable the test gives: an event
    the Service sets, bounded by a timeout) before the next item."""

    until: Callable[[], Awaitable]


class ScriptedSource:
    def __init__(self, *script: "list[RawEvent] | Vocab | Gate", on_ack: Callable[[int], None] | None = None):
        self.script = list(script)
        self.acked: list[int] = []
        """Positions in the script of the batches acked, in the order they were."""
        self.letters: list[dict] = []
        self.on_ack = on_ack
        self._queue: asyncio.Queue | None = None
        self._pending: list[asyncio.Event] = []

    @property
    def queue(self) -> asyncio.Queue:
        if self._queue is None:
            self._queue = asyncio.Queue()
        return self._queue

    def _ack(self, position: int) -> None:
        self.acked.append(position)
        if self.on_ack:
            self.on_ack(position)

    async def batches(self) -> AsyncIterator[Batch]:
        for position, item in enumerate(self.script):
            if isinstance(item, Gate):
                await item.until()
            elif isinstance(item, Vocab):
                handled = asyncio.Event()
                self._pending.append(handled)
                await self.queue.put((item.event, handled))
                if item.wait:
                    await handled.wait()
            else:
                yield Batch(list(item), ack=lambda position=position: self._ack(position))
        for handled in self._pending:  # the script ends once every document is handled
            await handled.wait()

    async def vocabularies(self) -> AsyncIterator[RawEvent]:
        while True:
            event, handled = await self.queue.get()
            try:
                yield event
            finally:
                handled.set()  # the consumer asked for the next one: this one is handled

    async def dead_letter(self, letter: bytes) -> None:
        self.letters.append(json.loads(letter))
