"""A deadline on every call into an image tower (COLUMNIST_ENCODE_TIMEOUT).

A runtime stuck in native code cannot be interrupted from Python: a worker waiting on it
consumes nothing for ever while it looks alive (its Kafka heartbeats go on, its lag grows),
and a command hangs where Ctrl-C cannot reach it. So each call is timed on the thread that
makes it, from the moment it starts (time queued behind other work is not its), and when it
overruns, the process logs what it was doing, with the stuck thread's stack, and exits with
code 6: a worker's batch is not acked, so the worker its supervisor starts again takes it.

The line and the exit come from a watchdog thread (columnist.watchdog), which needs the GIL
and does not count time the process was stopped; the runtimes release the GIL while they
compute, and for one that would not, faulthandler (which needs no GIL) dumps the stacks and
exits with code 1 BACKSTOP_S later. faulthandler keeps one such timer per process: it is armed
for the latest deadline of the calls under way, and cancelled when none is. It cannot tell a
stopped process from a stuck one, so a terminal stop (Ctrl-Z: SIGTSTP) cancels it until the
process is resumed; a stop it is not told of (SIGSTOP, a paused container) longer than the
time to the latest deadline and BACKSTOP_S ends the process with code 1 when it is resumed.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import threading
from contextlib import contextmanager
from functools import wraps
from typing import Callable, Iterator, TypeVar

from columnist import watchdog
from columnist.errors import TOWER_STUCK
from columnist.printable import printable
from columnist.watchdog import LONGEST_S, flush_logs, stack_of

T = TypeVar("T")
log = logging.getLogger("columnist.tower")

BACKSTOP_S = 30.0
"""Seconds after the deadline at which faulthandler ends a process whose timer could not run."""

_limit: dict = {}
_doing = threading.local()
_exit = os._exit
"""How a process whose tower is stuck ends (its stuck thread cannot be joined; tests replace it)."""


def configure(seconds: float, batch_size: int) -> None:
    """Bound every tower call of this process: ``seconds`` for each ``batch_size`` inputs (0: none).
    Unconfigured, a process takes COLUMNIST_ENCODE_TIMEOUT and COLUMNIST_BATCH_SIZE. Called on
    the main thread, it also takes Ctrl-Z (watchdog.stop_on_terminal_stop)."""
    _limit.update(seconds=seconds, batch_size=batch_size)
    watchdog.stop_on_terminal_stop()


def doing(what: str, function: Callable[..., T]) -> Callable[..., T]:
    """``function``, saying while it runs that the tower calls it makes are for ``what`` (the
    batch a stuck call would name)."""
    @wraps(function)
    def labelled(*args, **kwargs) -> T:
        before, _doing.what = getattr(_doing, "what", None), what
        try:
            return function(*args, **kwargs)
        finally:
            _doing.what = before
    return labelled


def deadline(inputs: int) -> float:
    """Seconds a call with ``inputs`` inputs may take (0: unbounded)."""
    if not _limit:
        from columnist.settings import get_settings

        settings = get_settings()
        configure(settings.encode_timeout, settings.batch_size)
    seconds, size = _limit["seconds"], _limit["batch_size"]
    return min(seconds * max(1, -(-inputs // size)), LONGEST_S) if seconds else 0.0


@contextmanager
def bounded(model: str, inputs: int) -> Iterator[None]:
    """Around one call into ``model``'s image tower with ``inputs`` inputs."""
    limit = deadline(inputs)
    if not limit:
        yield
        return
    call = _watchdog.begin(limit, model, inputs, limit, getattr(_doing, "what", None), threading.get_ident())
    _arm_backstop()
    try:
        yield
    finally:
        _watchdog.end(call)
        _arm_backstop()


def _arm_backstop() -> None:
    """faulthandler's one timer, for the latest deadline under way (fd 2: a worker's sys.stderr
    is a logging proxy without a file descriptor). Under the watchdog's lock, so that arming and
    cancelling never cross."""
    with _watchdog.lock:
        left = _watchdog.seconds_left()
        if left is not None:
            faulthandler.dump_traceback_later(max(left + BACKSTOP_S, 0.001), exit=True, file=2)
        else:
            faulthandler.cancel_dump_traceback_later()


def _cancel_backstop() -> None:
    """Before the process stops for Ctrl-Z: a stopped process is not a stuck one."""
    with _watchdog.lock:
        faulthandler.cancel_dump_traceback_later()


def _stuck(call: object, details: tuple) -> None:
    model, inputs, limit, what, thread = details
    try:
        stack = stack_of(thread)
        log.critical("the image tower of %s has not answered %d inputs%s in %.1f s (COLUMNIST_ENCODE_TIMEOUT: %g s "
                     "for each %d): its runtime is stuck; exiting with code %d (a worker's batch is not acked and "
                     "comes again to the worker its supervisor starts; a command run again resumes). The stuck "
                     "call:\n%s", printable(model, 200), inputs, f" of {printable(what, 300)}" if what else "", limit,
                     _limit["seconds"], _limit["batch_size"], TOWER_STUCK, stack)
        flush_logs()
    finally:
        _exit(TOWER_STUCK)


_watchdog = watchdog.Watchdog("columnist-tower-watchdog", _stuck, moved=_arm_backstop, stopping=_cancel_backstop)
"""Each tower call under way, with its model, inputs, deadline, batch and thread."""
