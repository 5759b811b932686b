"""Deadlines on calls that may never return, looked at by one thread, not counting stops.

A call into native code (a runtime, a decoder) cannot be interrupted from Python; what a
process can do is notice that one overran its deadline and end itself (tower_watch,
decode_watch say how). One thread per kind of call looks at the calls under way POLL_S
apart: a timer thread per call cost 0.2 ms (3% of a core at 150 images/s).

Time the process was stopped (Ctrl-Z, SIGSTOP, a paused container or VM) is not the call's:
a call must not be blamed for it. A wake more than OVERSLEPT_S late means the process did
not run meanwhile, and every deadline moves on by the time beyond it (a starved host's calls
still age by that much a wake); a stop the process knows of (its own terminal stop) is
discounted exactly. The watchdog needs the GIL, so a call stuck holding it is not seen here
(tower_watch keeps faulthandler's timer for that).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any, Callable

POLL_S = 0.25
OVERSLEPT_S = 1.0
"""A watchdog's wake this much late means the process was stopped (or not run): deadlines move
on by the time beyond it."""
LONGEST_S = 1e7
"""The longest deadline kept (about four months): any larger setting, infinity included, is as good as none."""

_all: list["Watchdog"] = []


class Watchdog:
    """The calls of one kind under way, each with its deadline (time.monotonic()) and details;
    ``overrun(call, details)`` is called on the watchdog's thread for the first call to
    overrun (it ends the process); ``stopping()`` before a terminal stop, ``moved()`` after
    deadlines moved for a stop."""

    def __init__(self, name: str, overrun: Callable[[object, tuple], None],
                 moved: Callable[[], None] = lambda: None, stopping: Callable[[], None] = lambda: None):
        self.name, self.overrun, self.moved, self.stopping = name, overrun, moved, stopping
        self.lock = threading.RLock()  # re-entered by a signal handler (tower_watch's Ctrl-Z) on a thread holding it
        self.under_way: dict[object, list] = {}
        """Each call under way: [deadline, *details]."""
        self._thread: threading.Thread | None = None
        self._woke = 0.0
        self._paused = False
        """A terminal stop is under way: ``discount`` will move the deadlines on, exactly."""
        _all.append(self)

    def begin(self, seconds: float, *details: Any) -> object:
        """A call that may take ``seconds`` starts now; the token ``end`` takes."""
        call = object()
        with self.lock:
            self.under_way[call] = [time.monotonic() + min(seconds, LONGEST_S), *details]
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

    def latest(self) -> float | None:
        """The latest deadline under way (None when no call is)."""
        with self.lock:
            return max((entry[0] for entry in self.under_way.values()), default=None)

    def pause(self) -> None:
        """The process is about to stop (Ctrl-Z): no deadline is looked at until ``discount``."""
        with self.lock:
            self._paused = True
        self.stopping()

    def discount(self, seconds: float) -> None:
        """The process was stopped for ``seconds`` just now: every deadline moves on by them,
        and the watchdog's next wake does not count them again."""
        with self.lock:
            for entry in self.under_way.values():
                entry[0] += seconds
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
        """One wake: move the deadlines on if the process was stopped since the last, then
        hand the first call past its deadline (if any, and still under way) to ``overrun``."""
        now = time.monotonic()
        with self.lock:
            gap, self._woke = now - self._woke, now
            if self._paused:  # woken by the resumed process before its handler: it discounts the stop
                return
            stopped = gap - POLL_S - OVERSLEPT_S
            if stopped > 0:  # the process was stopped: its calls were not running
                for entry in self.under_way.values():
                    entry[0] += stopped
            late = [(entry[0], call) for call, entry in self.under_way.items() if entry[0] <= now]
        if stopped > 0:
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


def stop_on_terminal_stop() -> None:
    """Ctrl-Z (SIGTSTP) stops the process as it would by default, every watchdog told before
    and after (the stop comes once the main thread runs Python again: in `tag`, once the tower
    call under way returns). Only the main thread can set it; a handler the program set for
    SIGTSTP, or SIGTSTP ignored, is left as it is. The embedded ClickHouse engine (chdb) takes
    SIGTSTP for its own debugging when it loads, unseen by Python's signal module, and Ctrl-Z
    then did nothing at all: a store's opening calls this again."""
    if not hasattr(signal, "SIGTSTP") or threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTSTP) in (signal.SIG_DFL, _terminal_stop):
        signal.signal(signal.SIGTSTP, _terminal_stop)


def _terminal_stop(signum: int, frame: object, stop: Callable[[], None] = lambda: os.kill(os.getpid(), signal.SIGTSTP)
                   ) -> None:
    for watchdog in _all:
        watchdog.pause()
    stopped = time.monotonic()
    signal.signal(signal.SIGTSTP, signal.SIG_DFL)
    try:
        stop()  # the default action: stopped here until SIGCONT
    finally:
        signal.signal(signal.SIGTSTP, _terminal_stop)
        discount_all(time.monotonic() - stopped)


def _forget_after_fork() -> None:
    for watchdog in _all:
        watchdog.forget()


os.register_at_fork(after_in_child=_forget_after_fork)
