"""The deadline on tower calls: a stuck call ends the process with code 6 and says what it was
doing; a call in time, one queued behind other work, or one ending as its deadline comes does
not. The process's exit and faulthandler's timer are the stand-ins here (replaced, or pytest
would end); the Kafka test of the worker exits for real."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from columnist import tower_watch
from columnist.errors import TOWER_STUCK


@pytest.fixture
def exits(monkeypatch):
    """The codes the process would have exited with; each exit releases the stuck call, and
    holds the watchdog (as a real exit would end it) until the test is over."""
    released, over, codes = threading.Event(), threading.Event(), []
    monkeypatch.setattr(tower_watch, "_exit", lambda code: (codes.append(code), released.set(), over.wait(30)))
    yield codes, released
    over.set()


class Backstop:
    """Records what is asked of faulthandler's one timer (a stand-in: the real one ends pytest)."""

    def __init__(self):
        self.armed: list[float | None] = []

    def dump_traceback_later(self, timeout, exit, file):
        self.armed.append(timeout)

    def cancel_dump_traceback_later(self):
        self.armed.append(None)


@pytest.fixture
def backstop(monkeypatch):
    fake = Backstop()
    monkeypatch.setattr(tower_watch, "faulthandler", fake)
    return fake


def stuck_call(released: threading.Event) -> None:
    with tower_watch.bounded("tiny-clip", 40):
        assert released.wait(10), "the deadline never came"


def quick_call() -> str:
    with tower_watch.bounded("m", 8):
        return "done"


def test_a_call_past_its_deadline_ends_the_process_naming_its_batch_and_where_it_hangs(exits, caplog):
    codes, released = exits
    tower_watch.configure(0.05, 32)  # 40 inputs: two batches' worth, 0.1 s
    with caplog.at_level(logging.CRITICAL, "columnist.tower"):
        tower_watch.doing("batch of 40 events (partition 0, offset 7)", stuck_call)(released)
    assert codes == [TOWER_STUCK]
    line = caplog.records[-1].getMessage()
    assert "tiny-clip has not answered 40 inputs of batch of 40 events (partition 0, offset 7) in 0.1 s" in line
    assert "a worker's batch is not acked" in line and "in stuck_call" in line  # the stuck thread's stack


def test_a_commands_stuck_call_names_no_batch(exits, caplog):
    codes, released = exits
    tower_watch.configure(0.05, 32)
    with caplog.at_level(logging.CRITICAL, "columnist.tower"):
        stuck_call(released)  # tag's calls name no batch
    assert codes == [TOWER_STUCK] and "has not answered 40 inputs in 0.1 s" in caplog.records[-1].getMessage()


def test_the_clock_starts_when_the_call_does_not_when_it_is_queued(monkeypatch, exits):
    """Time queued behind a warm-up or a store call on the work thread is not the call's."""
    ahead_done, started_at = threading.Event(), []
    begin = tower_watch._watchdog.begin

    def clock(*args):
        started_at.append(ahead_done.is_set())
        return begin(*args)

    monkeypatch.setattr(tower_watch._watchdog, "begin", clock)
    tower_watch.configure(60, 32)
    with ThreadPoolExecutor(1) as work:  # the worker's one work thread
        work.submit(ahead_done.set)
        assert work.submit(tower_watch.doing("a batch", quick_call)).result(5) == "done"
    assert started_at == [True] and exits[0] == []


def test_overlapping_calls_keep_the_backstop_armed_for_the_latest_deadline(backstop):
    tower_watch.configure(100, 32)
    with tower_watch.bounded("m", 64):  # 200 s
        with tower_watch.bounded("m", 1):  # 100 s, ends first
            pass
        assert backstop.armed[-1] is not None and backstop.armed[-1] > 200  # still armed for the first
    assert backstop.armed[-1] is None  # cancelled once none is under way


def test_a_failing_call_leaves_nothing_armed(backstop, exits):
    tower_watch.configure(100, 32)
    with pytest.raises(ValueError):
        with tower_watch.bounded("m", 1):
            raise ValueError("the runtime's own error")
    assert backstop.armed[-1] is None and not tower_watch._watchdog.under_way


def test_the_deadline_grows_with_the_inputs_and_zero_means_none(monkeypatch):
    tower_watch.configure(300, 32)
    assert [tower_watch.deadline(n) for n in (0, 1, 32, 33, 64 * 32)] == [300, 300, 300, 600, 300 * 64]
    tower_watch.configure(float("inf"), 32)  # "no limit" written as infinity: the longest kept
    assert tower_watch.deadline(320) == tower_watch.LONGEST_S
    tower_watch.configure(0, 32)
    assert tower_watch.deadline(1000) == 0
    monkeypatch.setattr(tower_watch._watchdog, "begin", None)  # nothing watched when unbounded
    assert quick_call() == "done"


def test_a_process_whose_stderr_is_no_file_is_bounded_too(monkeypatch):
    """Found in the worker: its sys.stderr is a logging proxy without a file descriptor, and
    arming the backstop there failed every batch (retried for ever)."""
    import io
    import sys

    monkeypatch.setattr(sys, "stderr", io.StringIO())
    tower_watch.configure(5, 32)
    assert quick_call() == "done"


def test_a_stop_is_not_counted_against_a_call_and_ctrl_z_cancels_the_backstop_meanwhile(exits, backstop, monkeypatch,
                                                                                          stopped_clock):
    """Ctrl-Z (SIGTSTP) during a call: faulthandler's timer, which cannot tell a stopped
    process from a stuck one, is cancelled before the process stops, and armed again when it
    is resumed, as far from the call's deadline as before; the deadline's watchdog does not
    count that time either, nor (beyond a wake) a stop it was not told of."""
    import signal

    from columnist import watchdog

    monkeypatch.setattr(watchdog, "POLL_S", 0.02)
    monkeypatch.setattr(signal, "signal", lambda *args: None)  # the test process keeps its own handlers
    tower_watch.configure(20, 32)

    def stopped_for_an_hour():
        backstop.armed.append("stopped")
        stopped_clock.stopped_for += 3600

    with tower_watch.bounded("m", 8):
        left = tower_watch._watchdog.seconds_left()
        watchdog._terminal_stop(signal.SIGTSTP, None, stop=stopped_for_an_hour)
        assert backstop.armed[-3:-1] == [None, "stopped"]  # cancelled, then stopped
        assert left - 0.5 < tower_watch._watchdog.seconds_left() <= left  # the hour was not the call's
        assert left - 0.5 + tower_watch.BACKSTOP_S < backstop.armed[-1] <= left + tower_watch.BACKSTOP_S  # re-armed
        stopped_clock.stopped_for += 30  # then a SIGSTOP it is not told of: the watchdog sees it
        assert not exits[1].wait(0.3)
        assert tower_watch._watchdog.seconds_left() > left - watchdog.POLL_S - watchdog.OVERSLEPT_S - 1
    assert exits[0] == []
