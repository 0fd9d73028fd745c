"""The QEMU backend: real pre-copy live migrations of running QEMU guests between
processes on loopback, alone and during a small rollout through the scheduler; a
destination that dies; a guest that dirties memory faster than the link sends."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.rollout import (
    Completion,
    Failures,
    MemoryAttestor,
    MemoryJournal,
    Op,
    QemuExecutor,
    QemuSettings,
    RolloutPolicy,
    Runner,
    StaticTargets,
    check_trace,
    plan,
    qemu_available,
)
from engine.rollout import trace as trace_file
from engine.rollout.policy import MigrationSettings
from tests.rollout.fleets import fleet

pytestmark = pytest.mark.slow

MakeExecutor = Callable[..., QemuExecutor]


@pytest.fixture
def make_executor() -> Iterator[MakeExecutor]:
    """Executors in a short run directory (QMP socket paths are limited to 107 bytes),
    every QEMU process stopped and the directory removed afterwards, pass or fail."""
    why = qemu_available()
    if why is not None:
        pytest.skip(why)
    made: list[QemuExecutor] = []
    run = Path(tempfile.mkdtemp(prefix="vq-", dir="/tmp"))

    def make(migration: MigrationSettings | None = None, **kw: Any) -> QemuExecutor:
        ex = QemuExecutor(run / str(len(made)), migration or MigrationSettings(),
                          kw.pop("attestor", MemoryAttestor()), **kw)
        made.append(ex)
        return ex

    try:
        yield make
    finally:
        for ex in made:
            ex.close()
        shutil.rmtree(run, ignore_errors=True)


def _until_done(ex: QemuExecutor, limit_s: float = 120.0) -> list[Completion]:
    """Every completion of what is in flight (the backend bounds each migration itself;
    this bounds the test too)."""
    out: list[Completion] = []
    deadline = time.monotonic() + limit_s
    while ex.in_flight():
        assert time.monotonic() < deadline, "operations still in flight"
        got = ex.advance(ex.now() + 1.0)
        assert got is not None
        out.extend(got[1])
    return out


def _advances(ex: QemuExecutor, vm: str, past: int, limit_s: float = 30.0) -> int:
    """Wait until the guest's counter passes ``past``; return it."""
    deadline = time.monotonic() + limit_s
    while (now := ex.counter(vm)) <= past:
        assert time.monotonic() < deadline, f"the guest of {vm} stopped counting at {now}"
        time.sleep(0.05)
    return now


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_a_running_guest_live_migrates_to_another_process(make_executor: MakeExecutor) -> None:
    ex = make_executor()
    ex.launch("vm-a", "h1")
    assert ex.status("vm-a") == "running" and ex.guest_name("vm-a") == "vm-a"
    before = _advances(ex, "vm-a", 0)
    src_pid = ex.pid("vm-a")

    ex.start(Op("migrate", "h1", ex.now(), vm="vm-a", dst="h2"))
    [c] = _until_done(ex)

    assert c.ok, c.reason
    assert c.downtime_ms > 0
    details = dict(c.details or {})
    assert details["qemu_status"] == "completed"
    assert details["total_time_ms"] >= c.downtime_ms
    # at least the working set was sent, and at least one round before the final copy
    assert details["transferred_bytes"] >= ex.settings.dirty_mib * 2**20
    assert details["dirty_syncs"] >= 2
    assert ex.host_of("vm-a") == "h2" and ex.guests("h1") == [] and ex.guests("h2") == ["vm-a"]
    assert ex.pid("vm-a") != src_pid and _gone(src_pid)
    # the destination runs the same guest: its memory came along and it keeps counting
    assert ex.status("vm-a") == "running" and ex.guest_name("vm-a") == "vm-a"
    after = ex.counter("vm-a")
    assert after >= before
    _advances(ex, "vm-a", after)
    [rec] = ex.migrations
    assert (rec.vm, rec.src, rec.dst, rec.ok, rec.downtime_ms) == ("vm-a", "h1", "h2", True,
                                                                   c.downtime_ms)


def test_a_dead_destination_fails_the_migration_and_the_guest_keeps_running(
        make_executor: MakeExecutor) -> None:
    ex = make_executor(failures=Failures(migrations={"vm-a": 1}))
    ex.launch("vm-a", "h1")
    src_pid = ex.pid("vm-a")
    before = _advances(ex, "vm-a", 0)

    ex.start(Op("migrate", "h1", ex.now(), vm="vm-a", dst="h2"))
    [c] = _until_done(ex)

    assert not c.ok and not c.permanent
    assert "destination" in (c.reason or "")
    assert c.downtime_ms == 0
    assert ex.host_of("vm-a") == "h1" and ex.pid("vm-a") == src_pid
    assert ex.guests("h2") == []  # the destination process is gone
    assert ex.status("vm-a") == "running"
    _advances(ex, "vm-a", max(before, ex.counter("vm-a")))
    # the next attempt (not injected) goes through
    ex.start(Op("migrate", "h1", ex.now(), vm="vm-a", dst="h2", attempt=1, serial=1))
    [c] = _until_done(ex)
    assert c.ok, c.reason
    assert ex.host_of("vm-a") == "h2" and _gone(src_pid)
    assert [r.ok for r in ex.migrations] == [False, True]


def test_a_guest_dirtying_faster_than_the_link_is_cancelled_and_stays(
        make_executor: MakeExecutor) -> None:
    # 4 MiB dirtied 100 times a second; 1 MiB/s × 300 ms leaves 0.3 MiB per switchover
    slow = MigrationSettings(bandwidth_mibps=1, progress_timeout_s=2)
    ex = make_executor(slow, settings=QemuSettings(min_completion_timeout_s=4))
    ex.launch("vm-a", "h1")
    ex.start(Op("migrate", "h1", ex.now(), vm="vm-a", dst="h2"))
    [c] = _until_done(ex)
    assert not c.ok and c.permanent
    assert "timeout" in (c.reason or "") or "no progress" in (c.reason or "")
    assert (c.details or {})["qemu_status"] == "cancelled"
    assert ex.host_of("vm-a") == "h1" and ex.status("vm-a") == "running"
    assert ex.guests("h2") == []
    _advances(ex, "vm-a", ex.counter("vm-a"))


def test_a_host_running_a_guest_is_not_reimaged(make_executor: MakeExecutor) -> None:
    ex = make_executor()
    ex.launch("vm-a", "h1")
    ex.start(Op("reimage", "h1", ex.now(), version="v2"))
    ex.start(Op("reimage", "h2", ex.now(), version="v2"))
    by_host = {c.op.host: c for c in _until_done(ex)}
    assert not by_host["h1"].ok and "vm-a" in (by_host["h1"].reason or "")
    assert by_host["h2"].ok
    assert ex.version("h1") is None and ex.version("h2") == "v2"


def test_closing_mid_migration_stops_every_process(make_executor: MakeExecutor) -> None:
    ex = make_executor(MigrationSettings(bandwidth_mibps=1))  # a migration of many seconds
    ex.launch_all([("vm-a", "h1"), ("vm-b", "h1")])
    ex.start(Op("migrate", "h1", ex.now(), vm="vm-a", dst="h2"))
    deadline = time.monotonic() + 30
    while ex.guests("h2") != ["vm-a"]:  # the destination process is up
        assert time.monotonic() < deadline
        assert ex.advance(ex.now() + 0.05) is not None
    running = ex.processes()
    assert sorted(running) == ["vm-a@h1", "vm-a@h2", "vm-b@h1"]
    ex.close()
    assert all(_gone(pid) for pid in running.values())
    assert ex.processes() == {} and ex.guests("h1") == ex.guests("h2") == []


def test_a_migration_handed_back_for_a_guest_this_executor_does_not_run_fails(
        make_executor: MakeExecutor) -> None:
    ex = make_executor()  # e.g. a new executor after a crash: it adopts no processes
    ex.start(Op("migrate", "h1", 12.5, vm="vm-a", dst="h2", attempt=0, serial=0))
    [c] = _until_done(ex)
    assert not c.ok and c.permanent and "does not run under this executor" in (c.reason or "")
    assert c.t >= 12.5  # the clock moved to the operation's original start
    assert ex.guests("h2") == []


def test_a_small_rollout_live_migrates_real_guests_and_its_trace_holds(
        make_executor: MakeExecutor, tmp_path: Path) -> None:
    snap = fleet(3, {"h1": [(1, 1024), (1, 1024)], "h2": [(1, 1024)]})
    att = MemoryAttestor()
    policy = RolloutPolicy(max_unavailable=1, canary=1,
                           migration=MigrationSettings(retry_backoff_s=0.2))
    p = plan(snap, "g", StaticTargets({"g": "v2"}), att, policy)
    # the first attempt of h1-vm0 loses its destination mid-migration
    ex = make_executor(p.policy.migration, attestor=att,
                       failures=Failures(migrations={"h1-vm0": 1}))
    ex.launch_fleet(snap, "g")
    journal = MemoryJournal()
    runner = Runner(p, snap, ex, journal)
    summary = runner.run()

    assert summary.status == "completed", summary
    assert sorted(summary.hosts["done"]) == ["h1", "h2", "h3"]
    assert summary.failed_migrations == 1 and summary.retried_migrations == 1
    assert summary.migrations >= 3
    path = tmp_path / "qemu.trace.ndjson"
    trace_file.write(path, [trace_file.header("r-qemu", p, snap), *journal.events])
    report = check_trace(path)
    assert report.ok, report.violations
    assert report.migrations == summary.migrations
    ends = [e for e in journal.events if e["type"] == "migrate_end"]
    assert len(ends) == summary.migrations
    assert all(e["downtime_ms"] > 0 and e["qemu_status"] == "completed"
               and e["transferred_bytes"] > 0 for e in ends)
    assert summary.max_downtime_ms == max(e["downtime_ms"] for e in ends)
    [failed] = [e for e in journal.events if e["type"] == "migrate_failed"]
    assert failed["vm"] == "h1-vm0" and not failed["final"]
    assert "destination" in failed["reason"]
    # every guest runs where the scheduler says it is, and only there
    _, moved = runner.outcome()
    where = {v.id: moved.get(v.id, v.host) for v in snap.vms}
    for vm, host in where.items():
        assert ex.host_of(vm) == host and ex.status(vm) == "running"
        assert ex.guest_name(vm) == vm
    assert sorted(vm for h in ("h1", "h2", "h3") for vm in ex.guests(h)) == sorted(where)
    assert all(ex.version(h) == "v2" for h in ("h1", "h2", "h3"))
