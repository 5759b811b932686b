"""A deadline on every call into an image tower (COLUMNIST_ENCODE_TIMEOUT).

A runtime stuck in native code cannot be interrupted from Python: a worker waiting on it
consumes nothing for ever while it looks alive (its Kafka heartbeats go on, its lag grows),
and `tag` hangs where Ctrl-C cannot reach it. So the call is timed on the thread that makes
it, from the moment it starts (time queued behind other work is not its), and when it
overruns, the process logs what it was doing, with the stuck thread's stack, and exits with
code 6: a worker's batch is not acked, so the worker its supervisor starts again takes it.

The line and the exit come from a timer thread, which needs the GIL; the runtimes release it
while they compute, and for one that would not, faulthandler (which needs no GIL) dumps the
stacks and exits with code 1 a little later.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import sys
import threading
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

_limit = {"seconds": 0.0, "batch_size": 32}
_doing = threading.local()
_exit = os._exit
"""How a process whose tower is stuck ends (its stuck thread cannot be joined; tests replace it)."""


def configure(seconds: float, batch_size: int) -> None:
    """Bound every tower call of this process: ``seconds`` for each ``batch_size`` inputs (0: none)."""
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
    seconds, size = _limit["seconds"], _limit["batch_size"]
    return seconds * max(1, -(-inputs // size)) if seconds else 0.0


@contextmanager
def bounded(model: str, inputs: int) -> Iterator[None]:
    """Around one call into ``model``'s image tower with ``inputs`` inputs."""
    limit = deadline(inputs)
    if not limit:
        yield
        return
    timer = threading.Timer(limit, _stuck, (model, inputs, limit, getattr(_doing, "what", None),
                                            threading.get_ident()))
    timer.daemon = True
    timer.start()
    faulthandler.dump_traceback_later(limit + BACKSTOP_S, exit=True, file=2)  # fd 2: a worker's sys.stderr is a
    # logging proxy without a file descriptor
    try:
        yield
    finally:
        timer.cancel()
        faulthandler.cancel_dump_traceback_later()


def _stuck(model: str, inputs: int, limit: float, what: str | None, thread: int) -> None:
    frame = sys._current_frames().get(thread)
    stack = "".join(traceback.format_stack(frame)) if frame is not None else "(gone)\n"
    log.critical("the image tower of %s has not answered %d inputs%s in %.1f s (COLUMNIST_ENCODE_TIMEOUT: %g s for "
                 "each %d): its runtime is stuck; exiting (code %d) for a supervisor to start the process again%s. "
                 "The stuck call:\n%s", model, inputs, f" of {printable(what, 300)}" if what else "", limit,
                 _limit["seconds"], _limit["batch_size"], TOWER_STUCK,
                 " (the batch, not acked, comes again)" if what else "", stack.rstrip())
    for handler in logging.getLogger().handlers:
        handler.flush()
    _exit(TOWER_STUCK)
