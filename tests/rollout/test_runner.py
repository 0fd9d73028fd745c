"""The scheduler over the fleet simulator: per-host cycle, rollbacks, timeouts, limits,
pause and abort."""

from __future__ import annotations

from collections import Counter
from typing import Any

from engine.fleet import synthetic
from engine.rollout import (
    Failures,
    MemoryAttestor,
    MemoryJournal,
    RolloutPolicy,
    Runner,
    Simulator,
    StaticTargets,
    plan,
)
from engine.rollout.policy import MigrationSettings
from tests.rollout.fleets import fleet

TARGETS = StaticTargets({"g": "v2"})


def run(snap: Any, attestor: MemoryAttestor | None = None, policy: RolloutPolicy | None = None,
        failures: Failures | None = None, control: Any = None,
        group: str = "g") -> tuple[Any, list[dict[str, Any]]]:
    attestor = attestor or MemoryAttestor()
    targets = TARGETS if group == "g" else StaticTargets({group: "v2"})
    p = plan(snap, group, targets, attestor, policy)
    sim = Simulator({v.id: v for v in snap.vms}, p.policy.migration, attestor,
                    failures=failures or Failures())
    journal = MemoryJournal()
    summary = Runner(p, snap, sim, journal, control=control).run()
    return summary, journal.events


def test_every_host_cycles_in_order() -> None:
    snap = fleet(4, {"h1": [(2, 4096)] * 3, "h2": [(2, 4096)]})
    summary, events = run(snap, policy=RolloutPolicy(max_unavailable=1))
    assert summary.status == "completed"
    assert sorted(summary.hosts["done"]) == ["h1", "h2", "h3", "h4"]
    h1 = [e["type"] for e in events if e["host"] == "h1" and e["type"] != "migrate_end"]
    assert h1[0] == "cordon" and h1[-4:] == ["reimage_start", "reimage_end", "attest_ok",
                                             "uncordon"]
    assert summary.migrations >= 4
    assert 0 < summary.max_downtime_ms <= 300.0
    assert summary.max_unavailable_seen == 1


def test_attestation_failure_rolls_back_and_failures_halt_the_wave() -> None:
    snap = fleet(6, {f"h{i}": [(1, 2048)] for i in range(1, 7)})
    att = MemoryAttestor(fail={("h2", "v2")})
    summary, events = run(snap, att, RolloutPolicy(max_unavailable=2, canary=0))
    assert summary.status == "completed"
    assert summary.hosts["rolled_back"] == ["h2"]
    h2 = [(e["type"], e.get("version")) for e in events if e["host"] == "h2"]
    assert ("attest_failed", "v2") in h2 and ("rollback", "v1") in h2
    assert h2[-2:] == [("attest_ok", "v1"), ("uncordon", "v1")]
    # both hosts of the first wave fail: more than the threshold of 1 -> halted
    att = MemoryAttestor(fail={("h1", "v2"), ("h2", "v2")})
    summary, _ = run(snap, att, RolloutPolicy(max_unavailable=2, canary=0))
    assert summary.status == "halted" and "wave 1" in (summary.reason or "")
    assert sorted(summary.hosts["pending"]) == ["h3", "h4", "h5", "h6"]


def test_lost_host_and_failed_rollback_stay_out_of_service() -> None:
    snap = fleet(4, {"h1": [(1, 2048)]})
    summary, events = run(snap, MemoryAttestor(fail={"h3"}),
                          RolloutPolicy(max_unavailable=2, canary=0, failure_threshold=5),
                          Failures(no_boot=["h1"]))
    assert sorted(summary.hosts["failed"]) == ["h1", "h3"]
    assert "did not come back" in summary.failure_reasons["h1"]
    assert not any(e["type"] == "uncordon" and e["host"] in ("h1", "h3") for e in events)


def test_non_converging_vm_times_out_and_host_keeps_its_version() -> None:
    snap = fleet(3, {"h1": [(1, 4096), (1, 1024)]}, dirty={"h1-vm0": 128.0})
    summary, events = run(snap, policy=RolloutPolicy(max_unavailable=1, canary=0,
                                                     failure_threshold=3))
    failed = [e for e in events if e["type"] == "migrate_failed"]
    assert len(failed) == 1 and failed[0]["final"] and "no progress" in failed[0]["reason"]
    start = next(e for e in events if e["type"] == "migrate_start" and e["vm"] == "h1-vm0")
    assert failed[0]["t"] - start["t"] == 1.0 + 32 + 150  # setup + round 1 + progress timeout
    assert summary.hosts["drain_failed"] == ["h1"]
    assert sorted(summary.hosts["done"]) == ["h2", "h3"]


def test_injected_migration_failure_is_retried() -> None:
    snap = fleet(3, {"h1": [(1, 2048)]})
    summary, events = run(snap, failures=Failures(migrations={"h1-vm0": 2}))
    assert [e["attempt"] for e in events if e["type"] == "migrate_failed"] == [1, 2]
    assert summary.retried_migrations == 1 and summary.status == "completed"


def test_parallel_migration_limits() -> None:
    snap = synthetic(40, 10, seed=3)
    summary, events = run(snap, policy=RolloutPolicy(max_unavailable="25%"), group="group-1")
    assert summary.status == "completed"
    live: Counter[str] = Counter()
    most, most_host = 0, 0
    for e in events:
        if e["type"] == "migrate_start":
            live[e["from"]] += 1
        elif e["type"] in ("migrate_end", "migrate_failed"):
            live[e["from"]] -= 1
        most = max(most, sum(live.values()))
        most_host = max(most_host, max(live.values(), default=0))
    assert most == 5 and most_host == 2
    assert summary.max_unavailable_seen <= 10


def test_pause_then_abort_between_steps() -> None:
    snap = fleet(6, {f"h{i}": [(1, 2048)] * 2 for i in range(1, 7)})
    calls = {"n": 0}

    def control() -> str | None:
        calls["n"] += 1
        return "pause" if calls["n"] >= 4 else None

    summary, events = run(snap, policy=RolloutPolicy(max_unavailable=2), control=control)
    assert summary.status == "paused"
    assert summary.hosts["in_flight"] == []
    assert summary.hosts["pending"]
    # nothing starts after the pause
    t_pause = next(e["t"] for e in events if e["type"] == "pause")
    assert not any(e["type"] == "cordon" and e["t"] > t_pause for e in events)

    def abort_soon() -> str | None:
        calls["n"] += 1
        return "abort" if calls["n"] >= 6 else None

    calls["n"] = 0
    summary, events = run(snap, policy=RolloutPolicy(max_unavailable=2, canary=0,
                                                     migration=MigrationSettings(
                                                         parallel_outbound_per_host=1)),
                          control=abort_soon)
    assert summary.status == "aborted"
    assert events[-1]["type"] == "end" and events[-1]["status"] == "aborted"
    assert summary.hosts["in_flight"] == []


def test_prefer_target_sends_vms_to_updated_hosts_so_they_move_once() -> None:
    import dataclasses

    from engine.fleet import FleetSnapshot

    # h2 is already on the target but fuller than h3, which is still to be updated
    base = fleet(3, {"h1": [(2, 8192)], "h2": [(2, 32768)]})
    snap = FleetSnapshot(tuple(dataclasses.replace(h, image_version="v2") if h.id == "h2"
                               else h for h in base.hosts), base.vms, base.anti_affinity)
    moves = {}
    for prefer in (True, False):
        policy = RolloutPolicy(max_unavailable=1, canary=0, prefer_target=prefer)
        p = plan(snap, "g", TARGETS, MemoryAttestor(), policy)
        assert p.waves == [["h1"], ["h3"]] and p.up_to_date == ["h2"]
        summary, events = run(snap, policy=policy)
        assert summary.status == "completed"
        moves[prefer] = [(e["vm"], e["from"], e["to"]) for e in events
                         if e["type"] == "migrate_end"]
        assert p.migrations_planned == len(moves[prefer])
    # preferred: onto h2, on the target version, where it stays
    assert moves[True] == [("h1-vm0", "h1", "h2")]
    # by free memory alone: onto h3, the emptiest, which is drained in the next wave
    assert moves[False] == [("h1-vm0", "h1", "h3"), ("h1-vm0", "h3", "h1")]
