"""Fault injection for the fault tests, switched on only by COLUMNIST_FAULTS.

``COLUMNIST_FAULTS="kill:after_embeddings:2,fail:store_write:3"`` makes the worker kill
itself with SIGKILL the 2nd time it reaches the point ``after_embeddings``, and raise
InjectedFault the first 3 times it reaches ``store_write``; ``hang:encode:2`` makes the 2nd
call into the image tower never return (a stuck runtime); ``stop:encode:1`` stops the process
(SIGSTOP: Ctrl-Z's uncatchable kin, a paused container) in its 1st tower call, until the test
sends SIGCONT; ``slow:store_write:30`` makes every write wait 30 ms first (a stand-in for a
ClickHouse server's round trips, which the embedded engine does not have). Points are named where they sit in the code. With the variable unset
every call is a dictionary lookup and nothing else.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter


class InjectedFault(ConnectionError):
    """A failure injected on purpose (it looks like a lost database connection)."""


def _parse(spec: str) -> dict[str, tuple[str, int]]:
    faults = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        action, point, count = item.split(":")
        faults[point] = (action, int(count))
    return faults


_FAULTS = _parse(os.environ.get("COLUMNIST_FAULTS", ""))
_hits: Counter = Counter()


def point(name: str) -> None:
    """Mark a fault point; does nothing unless COLUMNIST_FAULTS names it."""
    if name not in _FAULTS:
        return
    action, count = _FAULTS[name]
    _hits[name] += 1
    if action == "kill" and _hits[name] == count:
        os.kill(os.getpid(), signal.SIGKILL)
    if action == "stop" and _hits[name] == count:
        os.kill(os.getpid(), signal.SIGSTOP)
    if action == "hang" and _hits[name] == count:
        threading.Event().wait()  # for ever, as a runtime deadlocked in native code
    if action == "slow":
        time.sleep(count / 1000)
    if action == "fail" and _hits[name] <= count:
        raise InjectedFault(f"injected failure #{_hits[name]} at {name}")
