"""The provisioning scheduler sleeps until the next due time or a wake-up; it reads the
store for what is due only when something is due, after a tick, or when asked."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

from engine.provision.provisioner import Provisioner, Scheduler

NOW = dt.datetime(2026, 7, 1, 12, 0, tzinfo=dt.UTC)
WAIT = 30.0  # a bound for a hung scheduler, never a timing the test relies on


class _Provisioner:
    """What the scheduler uses of a provisioner, the store reads and ticks counted."""

    wake = Provisioner.wake
    take_wakes = Provisioner.take_wakes

    def __init__(self, due: dt.datetime | None = None) -> None:
        self.woken = threading.Event()
        self._wakes: list[dt.datetime | None] = []
        self._wake_lock = threading.Lock()
        self.due = due
        self.reads = 0
        self.ticked = threading.Event()
        self.taken = threading.Semaphore(0)
        self.ticks: list[dt.datetime] = []

    def clock(self) -> dt.datetime:
        return NOW

    def next_due(self) -> dt.datetime | None:
        self.reads += 1
        return self.due

    def tick(self) -> dict[str, Any]:
        self.ticks.append(NOW)
        self.due = None  # settled
        self.ticked.set()
        return {}

    def took(self) -> None:
        assert self.taken.acquire(timeout=WAIT), "the scheduler did not wake"


def _scheduler(p: _Provisioner) -> Scheduler:
    real = p.take_wakes

    def counted() -> tuple[bool, dt.datetime | None]:
        out = real()
        p.taken.release()
        return out

    p.take_wakes = counted  # type: ignore[method-assign]
    sched = Scheduler(p, poll=3600)  # type: ignore[arg-type]
    sched.start()
    p.took()  # the scheduler's own first take, at its start
    return sched


def test_a_wake_up_with_a_due_time_is_acted_on_at_once() -> None:
    p = _Provisioner()
    sched = _scheduler(p)
    try:
        p.wake(NOW - dt.timedelta(seconds=1))  # a request due now (poll is an hour)
        assert p.ticked.wait(WAIT)
        assert p.ticks == [NOW]
        assert p.reads == 2  # at start, and after the tick
    finally:
        sched.stop()


def test_wake_ups_for_later_times_do_not_read_the_store() -> None:
    p = _Provisioner()
    sched = _scheduler(p)
    try:
        for minutes in (30, 20, 40, 10):
            p.wake(NOW + dt.timedelta(minutes=minutes))
            p.took()
        assert p.reads == 1 and not p.ticks
        p.wake()  # no time named: what is due is read again
        p.took()
        p.wake(NOW + dt.timedelta(minutes=50))  # the next loop has read it by now
        p.took()
        assert p.reads == 2 and not p.ticks
    finally:
        sched.stop()


def test_something_due_at_start_is_ticked() -> None:
    p = _Provisioner(due=NOW - dt.timedelta(minutes=5))
    sched = Scheduler(p, poll=3600)  # type: ignore[arg-type]
    sched.start()
    try:
        assert p.ticked.wait(WAIT)
        assert p.ticks == [NOW]
    finally:
        sched.stop()
