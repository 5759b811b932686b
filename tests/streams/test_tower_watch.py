"""The deadline on tower calls: a stuck call ends the process with code 6 and says what it was
doing; a call in time, or one queued behind other work, does not. The process's exit is the
one stand-in here (replaced, or pytest would end); the Kafka test of the worker exits for real."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from columnist import tower_watch
from columnist.errors import TOWER_STUCK


@pytest.fixture
def exits(monkeypatch):
    """The codes the process would have exited with; each exit releases the stuck call."""
    released, codes = threading.Event(), []
    monkeypatch.setattr(tower_watch, "_exit", lambda code: (codes.append(code), released.set()))
    yield codes, released
    tower_watch.configure(0, 32)


def stuck_call(released: threading.Event) -> None:
    with tower_watch.bounded("tiny-clip", 40):
        assert released.wait(10), "the deadline never came"


def test_a_call_past_its_deadline_ends_the_process_naming_its_batch_and_where_it_hangs(exits, caplog):
    codes, released = exits
    tower_watch.configure(0.05, 32)  # 40 inputs: two batches' worth, 0.1 s
    with caplog.at_level(logging.CRITICAL, "columnist.tower"):
        tower_watch.doing("batch of 40 events (partition 0, offset 7)", stuck_call)(released)
    assert codes == [TOWER_STUCK]
    line = caplog.records[-1].getMessage()
    assert "tiny-clip has not answered 40 inputs of batch of 40 events (partition 0, offset 7) in 0.1 s" in line
    assert "the batch, not acked, comes again" in line and "in stuck_call" in line  # the stuck thread's stack


def quick_call() -> str:
    with tower_watch.bounded("m", 8):
        return "done"


def test_a_call_in_time_or_queued_behind_other_work_is_not_stuck(exits):
    """The clock starts when the call does: a warm-up or a store call ahead of it on the work
    thread is not its time (it was, when the bound was kept by the event loop)."""
    codes, _ = exits
    tower_watch.configure(0.3, 32)
    with ThreadPoolExecutor(1) as work:  # the worker's one work thread
        work.submit(time.sleep, 0.5)  # longer than the deadline, ahead of the call
        assert work.submit(tower_watch.doing("a batch", quick_call)).result(5) == "done"
    timers = [t for t in threading.enumerate() if isinstance(t, threading.Timer)]
    for timer in timers:
        timer.join(5)  # cancelled: it ends without firing
    assert codes == [] and not any(t.is_alive() for t in timers)


def test_the_deadline_grows_with_the_inputs_and_zero_means_none(exits):
    tower_watch.configure(300, 32)
    assert [tower_watch.deadline(n) for n in (0, 1, 32, 33, 64 * 32)] == [300, 300, 300, 600, 300 * 64]
    tower_watch.configure(0, 32)
    assert tower_watch.deadline(1000) == 0
    before = threading.active_count()
    with tower_watch.bounded("m", 8):
        assert threading.active_count() == before  # no timer when unbounded


def test_a_process_whose_stderr_is_no_file_is_bounded_too(exits, monkeypatch):
    """Found in the worker: its sys.stderr is a logging proxy without a file descriptor, and
    arming the backstop there failed every batch (retried for ever)."""
    import io
    import sys

    monkeypatch.setattr(sys, "stderr", io.StringIO())
    tower_watch.configure(5, 32)
    assert quick_call() == "done"
