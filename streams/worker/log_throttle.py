"""Repeated warnings logged once per interval, with a count.

Without its broker a worker's Kafka client repeats the same error several times a second
(2,426 ERROR lines in 20 seconds): the one line that matters drowns. A filter on the log
handlers lets the first of each (logger, message) pass, holds the same one back for
``interval`` seconds, and has the next one that passes say how many were held back.
"""

from __future__ import annotations

import logging
import time


class Throttle(logging.Filter):
    def __init__(self, interval: float = 30.0):
        super().__init__()
        self.interval = interval
        self.seen: dict[tuple[str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or record.name.startswith("columnist"):
            return True  # columnist's own lines each say something of their own (a dead letter names its event)
        key = (record.name, str(record.msg)[:200])
        now = time.monotonic()
        last, held = self.seen.get(key, (None, 0))
        if last is not None and now - last < self.interval:
            self.seen[key] = (last, held + 1)
            return False
        if held:
            record.msg = f"{record.msg} ({held} more like this in the last {now - last:.0f} s)"
        if len(self.seen) > 10_000:
            self.seen.clear()
        self.seen[key] = (now, 0)
        return True


def throttle_handlers(interval: float = 30.0) -> None:
    """Put one Throttle on every handler of the root logger (Faust installs its own handlers
    when it starts: called again then)."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, Throttle) for f in handler.filters):
            handler.addFilter(Throttle(interval))
