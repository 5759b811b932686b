"""Retrying with backoff, in one place (tenacity underneath).

A worker does not give up on what is not its input's fault: ClickHouse or Kafka away, a
batch that failed as a whole. It waits, longer each time up to a ceiling, logs each attempt,
and goes on. Cancellation (the worker stopping) is never retried: it is a BaseException.
"""

from __future__ import annotations

import logging
from typing import Awaitable, Callable, TypeVar

T = TypeVar("T")

log = logging.getLogger("columnist.worker")


def _always(err: BaseException) -> bool:
    return isinstance(err, Exception)


def _policy(what: str, retry_if: Callable[[BaseException], bool], on_retry: Callable[[], None] | None,
            first: float, ceiling: float) -> dict:
    from tenacity import retry_if_exception, wait_exponential

    def report(state) -> None:
        if on_retry:
            on_retry()
        error = state.outcome.exception()
        log.warning("%s failed (attempt %d): %s: %s; again in %.1f s", what, state.attempt_number,
                    type(error).__name__, " ".join(str(error).split())[:500], state.next_action.sleep)

    return dict(wait=wait_exponential(multiplier=first, max=ceiling), reraise=True,
                retry=retry_if_exception(retry_if), before_sleep=report)


async def until_done(job: Callable[[], Awaitable[T]], what: str, on_retry: Callable[[], None] | None = None,
                     retry_if: Callable[[BaseException], bool] = _always, first: float = 0.2,
                     ceiling: float = 30.0) -> T:
    """Await ``job()`` until it succeeds (or fails with what ``retry_if`` refuses to retry)."""
    from tenacity import AsyncRetrying

    async for attempt in AsyncRetrying(**_policy(what, retry_if, on_retry, first, ceiling)):
        with attempt:
            return await job()
    raise AssertionError("unreachable")  # pragma: no cover


def until_done_blocking(job: Callable[[], T], what: str, retry_if: Callable[[BaseException], bool] = _always,
                        first: float = 0.5, ceiling: float = 30.0) -> T:
    """``job()`` until it succeeds, for the blocking start-up of a worker (before its event loop)."""
    from tenacity import Retrying

    for attempt in Retrying(**_policy(what, retry_if, None, first, ceiling)):
        with attempt:
            return job()
    raise AssertionError("unreachable")  # pragma: no cover


class Backoff:
    """Delays for a reconnect loop that cannot be a retried call (a generator that yields
    what it reads): ``first`` doubling up to ``ceiling``, back to ``first`` on ``reset``."""

    def __init__(self, first: float = 0.5, ceiling: float = 30.0):
        self.first, self.ceiling, self.delay = first, ceiling, first

    def next(self) -> float:
        delay, self.delay = self.delay, min(self.delay * 2, self.ceiling)
        return delay

    def reset(self) -> None:
        self.delay = self.first
