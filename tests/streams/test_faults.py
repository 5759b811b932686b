"""Fault injection: what each action does at its point (the fault tests rely on them)."""

from __future__ import annotations

import pytest

from columnist import faults


@pytest.fixture
def injected(monkeypatch):
    def inject(spec: str) -> None:
        monkeypatch.setattr(faults, "_FAULTS", faults._parse(spec))
        monkeypatch.setattr(faults, "_hits", faults.Counter())
    return inject


def test_fail_raises_the_first_n_times_only(injected):
    injected("fail:store_write:2")
    for _ in range(2):
        with pytest.raises(faults.InjectedFault):
            faults.point("store_write")
    faults.point("store_write")
    faults.point("another_point")


def test_slow_waits_its_milliseconds_every_time(injected, monkeypatch):
    waits = []
    monkeypatch.setattr("time.sleep", waits.append)  # a test double: the clock is not waited on
    injected("slow:store_write:30")
    faults.point("store_write")
    faults.point("store_write")
    faults.point("after_embeddings")
    assert waits == [0.03, 0.03]
