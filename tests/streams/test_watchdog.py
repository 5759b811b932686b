"""The watchdog under the tower's and the decoders' deadlines: the first call past its deadline
is handed on, a call that ended never is, and time the process was stopped is not counted.
Its wakes are driven by hand here (``look``) on a clock the test moves."""

from __future__ import annotations

import pytest

from columnist import watchdog


class Clock:
    """time for the watchdog module: a monotonic clock the test moves (the watchdog threads
    of other tests, which share the module, still sleep for real)."""

    def __init__(self):
        import time

        self.now, self.sleep = 1000.0, time.sleep

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = Clock()
    monkeypatch.setattr(watchdog, "time", fake)
    return fake


@pytest.fixture
def dog(monkeypatch):
    """A watchdog whose thread never wakes by itself (the test calls ``look``)."""
    overruns, moves = [], []
    monkeypatch.setattr(watchdog, "_all", [])  # the other tests' watchdogs are not this test's
    made = watchdog.Watchdog("test-watchdog", lambda call, details: overruns.append(details),
                             moved=lambda: moves.append(True))
    monkeypatch.setattr(watchdog.threading, "Thread", Idle)
    return made, overruns, moves


def wake_for(made: watchdog.Watchdog, clock: Clock, seconds: float) -> None:
    """Ordinary wakes, POLL_S apart, for ``seconds``."""
    for _ in range(round(seconds / watchdog.POLL_S)):
        clock.now += watchdog.POLL_S
        made.look()


class Idle:
    def __init__(self, **kwargs):
        pass

    def start(self):
        pass


def test_the_first_call_past_its_deadline_is_handed_on_with_what_it_was(clock, dog):
    made, overruns, _ = dog
    made.begin(5, "b.jpg")
    made.begin(3, "a.jpg")
    later = made.begin(60, "c.jpg")
    wake_for(made, clock, 2.75)
    assert overruns == []
    wake_for(made, clock, 2.5)
    assert overruns[0] == ("a.jpg",) and set(overruns) == {("a.jpg",)}  # b.jpg is late too now: a.jpg was first
    assert made.details(later) == ("c.jpg",) and made.seconds_left() == pytest.approx(60 - 5.25)


def test_a_call_that_ended_is_never_handed_on(clock, dog):
    made, overruns, _ = dog
    made.end(made.begin(1, "done.jpg"))
    wake_for(made, clock, 10)
    assert overruns == [] and made.seconds_left() is None


def test_a_wake_far_too_late_moves_every_deadline_on_by_the_time_the_process_was_stopped(clock, dog):
    made, overruns, moves = dog
    call = made.begin(3, "x")
    made.look()
    clock.now += 3600  # a stop of an hour between two wakes
    made.look()
    assert overruns == [] and moves == [True]
    assert made.seconds_left() == pytest.approx(3 - watchdog.POLL_S - watchdog.OVERSLEPT_S)
    wake_for(made, clock, 1.5)  # ordinary wakes after it: 1.25 s of the hour was counted
    assert overruns == [] and moves == [True]
    wake_for(made, clock, 0.5)
    assert overruns[0] == ("x",)
    made.end(call)


def test_a_stop_the_process_was_told_of_is_discounted_once_whoever_wakes_first(clock, dog):
    made, overruns, moves = dog
    made.begin(3, "x")
    made.look()
    made.pause()  # Ctrl-Z: the handler is told before the process stops
    clock.now += 600
    made.look()  # the watchdog woke before the handler did
    assert overruns == [] and moves == []
    watchdog.discount_all(600)  # the handler measured the stop
    made.look()  # and the watchdog's next wake does not count it again
    assert made.seconds_left() == pytest.approx(3) and overruns == [] and moves == [True]


def test_a_forked_child_watches_none_of_its_parents_calls(clock, dog):
    made, _, _ = dog
    made.begin(3, "x")
    watchdog._forget_after_fork()
    assert made.seconds_left() is None and made.under_way == {}
