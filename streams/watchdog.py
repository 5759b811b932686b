"""Deadlines on calls that may never return, looked at by one thread, not counting stops.

A call into native code (a runtime, a decoder) cannot be interrupted from Python; what a
process can do is notice that one overran its deadline and end itself (tower_watch,
decode_watch say how). One thread per kind of call looks at the calls under way POLL_S
apart: a timer thread per call cost 0.2 ms (3% of a core at 150 images/s).

Time the process was stopped (Ctrl-Z, SIGSTOP, a paused container or VM) is not the call's:
a call must not be blamed for it. Deadlines are kept on a running clock, time.monotonic()
less the time the process is known to have been stopped. A wake more than OVERSLEPT_S late
means the process did not run meanwhile, and the time beyond that is added to the stopped
time (a starved host's calls still age by that much a wake). A terminal stop (Ctrl-Z: SIGTSTP)
is taken here: each watchdog is told before the process stops, and the time it was stopped
is added exactly after. The watchdog needs the GIL, so a call stuck holding it is not seen
here (tower_watch keeps faulthandler's timer for that).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
import traceback
from typing import Any, Callable

POLL_S = 0.25
OVERSLEPT_S = 1.0
"""A watchdog's wake this much late means the process was stopped (or not run)."""
LONGEST_S = 1e7
"""The longest deadline kept (about four months): any larger setting, infinity included, is as good as none."""

_all: list["Watchdog"] = []


class Watchdog:
    """The calls of one kind under way, each with its deadline and details. ``overrun(call,
    details)`` is called on the watchdog's thread for the first call past its deadline (it ends
    the process); ``stopping()`` before a terminal stop; ``moved()`` after a stop moved the
    deadlines on."""

    def __init__(self, name: str, overrun: Callable[[object, tuple], None],
                 moved: Callable[[], None] = lambda: None, stopping: Callable[[], None] = lambda: None):
        self.name, self.overrun, self.moved, self.stopping = name, overrun, moved, stopping
        self.lock = threading.RLock()  # re-entered by the Ctrl-Z handler on a thread holding it
        self.under_way: dict[object, list] = {}
        """Each call under way: [deadline on the running clock, *details]."""
        self.stopped = 0.0
        """Seconds the process is known to have been stopped: running clock = monotonic - stopped."""
        self._thread: threading.Thread | None = None
        self._woke = 0.0
        self._paused = False
        """A terminal stop is under way: ``discount`` adds it, exactly."""
        _all.append(self)

    def begin(self, seconds: float, *details: Any) -> object:
        """A call that may take ``seconds`` starts now; the token ``end`` takes."""
        call = object()
        with self.lock:
            # the stopped time is read before the clock: a Ctrl-Z handled between the two
            # readings lengthens this call's deadline, never shortens it
            self.under_way[call] = [-self.stopped + time.monotonic() + min(seconds, LONGEST_S), *details]
            if self._thread is None:
                self._woke = time.monotonic()
                self._thread = threading.Thread(target=self._watch, name=self.name, daemon=True)
                self._thread.start()
        return call

    def end(self, call: object) -> None:
        with self.lock:
            self.under_way.pop(call, None)

    def details(self, call: object) -> tuple | None:
        """What ``begin`` was told of ``call``, or None once it has ended."""
        with self.lock:
            entry = self.under_way.get(call)
        return tuple(entry[1:]) if entry is not None else None

    def seconds_left(self) -> float | None:
        """Seconds until the latest deadline under way (None when no call is)."""
        with self.lock:
            latest = max((entry[0] for entry in self.under_way.values()), default=None)
            return None if latest is None else latest - (time.monotonic() - self.stopped)

    def pause(self) -> None:
        """The process is about to stop (Ctrl-Z): no deadline is looked at until ``discount``."""
        with self.lock:
            self._paused = True
        self.stopping()

    def discount(self, seconds: float) -> None:
        """The process was stopped for ``seconds`` just now: they are not the calls', and the
        watchdog's next wake does not count them again."""
        with self.lock:
            self.stopped += seconds
            self._woke, self._paused = time.monotonic(), False
        self.moved()

    def forget(self) -> None:
        """A forked child has none of its parent's threads: neither its calls nor its watchdog."""
        self.under_way.clear()
        self._thread, self._paused = None, False
        self.lock = threading.RLock()

    def _watch(self) -> None:
        while True:
            time.sleep(POLL_S)
            self.look()

    def look(self) -> None:
        """One wake: count a stop since the last (if it came far too late), then hand the
        first call past its deadline (if any, and still under way) to ``overrun``."""
        with self.lock:
            now = time.monotonic()
            if self._paused:  # woken by the resumed process before its Ctrl-Z handler: it adds the stop
                return
            late_by = now - self._woke - POLL_S - OVERSLEPT_S
            self._woke = now
            if late_by > 0:  # the process was stopped: its calls were not running
                self.stopped += late_by
            running = now - self.stopped
            late = [(entry[0], call) for call, entry in self.under_way.items() if entry[0] <= running]
        if late_by > 0:
            self.moved()
        if late:
            call = min(late, key=lambda overdue: overdue[0])[1]  # the first to overrun its deadline
            details = self.details(call)
            if details is not None:  # it ended as its deadline came
                self.overrun(call, details)


def discount_all(seconds: float) -> None:
    """A stop of ``seconds`` the process knows of, for every watchdog."""
    for watchdog in _all:
        watchdog.discount(seconds)


def stack_of(thread: int) -> str:
    """Where ``thread`` is (what an overrun call's line shows)."""
    frame = sys._current_frames().get(thread)
    return "".join(traceback.format_stack(frame)).rstrip() if frame is not None else "(gone)"


def flush_logs() -> None:
    """Before an exit that skips Python's own clean-up (os._exit)."""
    for handler in logging.getLogger().handlers:
        handler.flush()


# -- Ctrl-Z ------------------------------------------------------------------------------

def stop_on_terminal_stop() -> None:
    """Ctrl-Z (SIGTSTP) stops the process as it would by default, every watchdog told before
    and after. The stop comes once the main thread runs Python again: at once in a worker (its
    event loop), in a command once the native call under way returns (in `tag`, a tower call,
    about a second). Only the main thread can set it; a handler the program set for SIGTSTP,
    or SIGTSTP ignored, is kept. The embedded ClickHouse engine (chdb) takes SIGTSTP for its
    own debugging when it loads, unseen by Python's signal module, and Ctrl-Z then did nothing
    at all: a store's opening calls this again, which also puts back what the program had set."""
    if not hasattr(signal, "SIGTSTP") or threading.current_thread() is not threading.main_thread():
        return
    recorded = signal.getsignal(signal.SIGTSTP)
    if recorded in (signal.SIG_DFL, _terminal_stop):
        signal.signal(signal.SIGTSTP, _terminal_stop)
    elif recorded is not None:  # the program's own handler, or SIG_IGN: what Python says is set
        signal.signal(signal.SIGTSTP, recorded)


_stopping = threading.Event()
"""Set while the handler stops the process (a second Ctrl-Z meanwhile does not stop it twice)."""


def _terminal_stop(signum: int, frame: object, stop: Callable[[], None] = lambda: os.kill(os.getpid(), signal.SIGTSTP)
                   ) -> None:
    if _stopping.is_set():
        return
    _stopping.set()
    stopped = time.monotonic()
    try:
        for watchdog in _all:
            watchdog.pause()
        signal.signal(signal.SIGTSTP, signal.SIG_DFL)
        stop()  # the default action: stopped here until SIGCONT
    finally:
        signal.signal(signal.SIGTSTP, _terminal_stop)
        _stopping.clear()
        discount_all(time.monotonic() - stopped)


def _forget_after_fork() -> None:
    for watchdog in _all:
        watchdog.forget()
    _stopping.clear()


os.register_at_fork(after_in_child=_forget_after_fork)
