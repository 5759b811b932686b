"""Repeated warnings once per interval, with a count (2,426 ERROR lines in 20 s without Kafka)."""

import logging

from columnist.worker.log_throttle import Throttle


def test_the_same_warning_passes_once_per_interval_and_then_says_how_many_were_held():
    throttle = Throttle(interval=30)
    records = [logging.LogRecord("aiokafka.conn", logging.ERROR, __file__, 1, "Unable connect to node %s", ("1",),
                                 None) for _ in range(500)]
    passed = [r for r in records if throttle.filter(r)]
    assert len(passed) == 1
    throttle.seen[("aiokafka.conn", "Unable connect to node %s")] = (0.0, 499)  # the interval is over
    late = logging.LogRecord("aiokafka.conn", logging.ERROR, __file__, 1, "Unable connect to node %s", ("1",), None)
    assert throttle.filter(late) and "Unable connect to node 1 (499 more like this in the last" in late.getMessage()
    own = logging.LogRecord("columnist.worker", logging.WARNING, __file__, 1, "dead letter: %s", ("x",), None)
    info = logging.LogRecord("aiokafka.conn", logging.INFO, __file__, 1, "connected", (), None)
    assert all(throttle.filter(r) for r in (own, own, info, info))  # columnist's own lines, and info, all pass
