"""A deadline on every call into an image tower (COLUMNIST_ENCODE_TIMEOUT).

A runtime stuck in native code cannot be interrupted from Python: a worker waiting on it
consumes nothing for ever while it looks alive (its Kafka heartbeats go on, its lag grows),
and a command hangs where Ctrl-C cannot reach it. So each call is timed on the thread that
makes it, from the moment it starts (time queued behind other work is not its), and when it
overruns, the process logs what it was doing, with the stuck thread's stack, and exits with
code 6: a worker's batch is not acked, so the worker its supervisor starts again takes it.

The line and the exit come from a timer thread, which needs the GIL; the runtimes release it
while they compute, and for one that would not, faulthandler (which needs no GIL) dumps the
stacks and exits with code 1 a little later. faulthandler keeps one such timer per process:
it is armed for the latest deadline of the calls under way, and cancelled when none is.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import sys
import threading
import time
import traceback
from contextlib import contextmanager
from functools import wraps
from typing import Callable, Iterator, TypeVar

from columnist.errors import TOWER_STUCK
from columnist.printable import printable

T = TypeVar("T")
log = logging.getLogger("columnist.tower")

BACKSTOP_S = 30.0
"""Seconds after the deadline at which faulthandler ends a process whose timer could not run."""

LONGEST_S = 1e7
"""The longest deadline kept (about four months): any larger setting, infinity included, is as good as none."""

_limit: dict = {}
_doing = threading.local()
_under_way: dict[object, float] = {}
"""Each call under way: its deadline (time.monotonic())."""
_lock = threading.Lock()
_exit = os._exit
"""How a process whose tower is stuck ends (its stuck thread cannot be joined; tests replace it)."""


def configure(seconds: float, batch_size: int) -> None:
    """Bound every tower call of this process: ``seconds`` for each ``batch_size`` inputs (0: none).
    Unconfigured, a process takes COLUMNIST_ENCODE_TIMEOUT and COLUMNIST_BATCH_SIZE."""
    _limit.update(seconds=seconds, batch_size=batch_size)


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
    call = object()
    timer = threading.Timer(limit, _stuck, (call, model, inputs, limit, getattr(_doing, "what", None),
                                            threading.get_ident()))
    timer.daemon = True
    try:
        _begin(call, limit)
        timer.start()
        yield
    finally:
        timer.cancel()
        _end(call)


def _begin(call: object, limit: float) -> None:
    with _lock:
        _under_way[call] = time.monotonic() + limit
        _arm_backstop()


def _end(call: object) -> None:
    with _lock:
        _under_way.pop(call, None)
        _arm_backstop()


def _arm_backstop() -> None:
    """faulthandler's one timer, for the latest deadline under way (fd 2: a worker's sys.stderr
    is a logging proxy without a file descriptor)."""
    if _under_way:
        faulthandler.dump_traceback_later(max(_under_way.values()) - time.monotonic() + BACKSTOP_S, exit=True, file=2)
    else:
        faulthandler.cancel_dump_traceback_later()


def _stuck(call: object, model: str, inputs: int, limit: float, what: str | None, thread: int) -> None:
    with _lock:
        if call not in _under_way:  # it returned as the deadline came
            return
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


def stack_of(thread: int) -> str:
    """Where ``thread`` is (what a stuck call's line shows)."""
    frame = sys._current_frames().get(thread)
    return "".join(traceback.format_stack(frame)).rstrip() if frame is not None else "(gone)"


def flush_logs() -> None:
    """Before an exit that skips Python's own clean-up (os._exit)."""
    for handler in logging.getLogger().handlers:
        handler.flush()
