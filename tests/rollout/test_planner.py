"""The planner: waves under max-unavailable, VMs that must fit, non-migratable VMs held,
refusals with their reason."""

from __future__ import annotations

import pytest

from engine.fleet import HostState
from engine.rollout import (
    MemoryAttestor,
    NonMigratableAction,
    PolicyError,
    RolloutPolicy,
    RolloutRefused,
    StaticTargets,
    Window,
    plan,
)
from engine.rollout.policy import amount
from engine.rollout.precopy import precopy
from tests.rollout.fleets import fleet

TARGETS = StaticTargets({"g": "v2"})
OK = MemoryAttestor()


def test_waves_canary_then_budget() -> None:
    snap = fleet(10, {f"h{i}": [(2, 4096)] * 3 for i in range(1, 11)})
    p = plan(snap, "g", TARGETS, OK, RolloutPolicy(max_unavailable="30%"))
    assert p.max_unavailable == 3
    assert [len(w) for w in p.waves] == [1, 3, 3, 3]
    assert p.vms_to_move == 30
    assert p.migrations_planned >= 30


def test_already_unavailable_hosts_use_the_budget() -> None:
    snap = fleet(10, states={"h1": HostState.FAILED})
    p = plan(snap, "g", TARGETS, OK, RolloutPolicy(max_unavailable=3, canary=0))
    assert p.already_unavailable == ["h1"]
    assert [len(w) for w in p.waves] == [2, 2, 2, 2, 1]
    assert p.skipped[0].host == "h1"
    with pytest.raises(RolloutRefused, match="already out of service"):
        plan(snap, "g", TARGETS, OK, RolloutPolicy(max_unavailable=1))


def test_vms_that_cannot_fit_refuse_the_rollout() -> None:
    # two hosts, each three quarters full: draining either leaves no room for its VMs
    snap = fleet(2, {"h1": [(4, 48000)], "h2": [(4, 48000)]})
    with pytest.raises(RolloutRefused) as info:
        plan(snap, "g", TARGETS, OK)
    msg = info.value.summary
    assert "wave 1 (h1): VM h1-vm0 (4 vCPUs, 48000 MiB) on h1 fits on no other" in msg
    assert "the most free is 17536 MiB and 12 vCPUs on h2" in msg


def test_untrusted_and_unapproved_hosts_are_not_destinations() -> None:
    snap = fleet(3, {"h1": [(4, 40000)]})
    assert plan(snap, "g", TARGETS, OK).migrations_planned >= 1
    with pytest.raises(RolloutRefused, match="fits on no other"):
        plan(snap, "g", TARGETS, MemoryAttestor(untrusted={"h2", "h3"}))
    only_target = StaticTargets({"g": "v2"}, approved={"g": []})
    with pytest.raises(RolloutRefused, match="no host is attested, compliant and in service"):
        plan(snap, "g", only_target, OK, RolloutPolicy(canary=0, max_unavailable=3))


def test_anti_affinity_is_kept() -> None:
    snap = fleet(3, {"h1": [(1, 1024)], "h2": [(1, 1024)]},
                 anti_affinity={"db": ["h1-vm0", "h2-vm0"]})
    # h1's VM may go to h3 only (h2 holds its sibling); the same for h2's
    assert plan(snap, "g", TARGETS, OK, RolloutPolicy(canary=0, max_unavailable=1))
    with pytest.raises(RolloutRefused, match="anti-affinity group db"):
        # with h3 in the same wave as h1, h1's VM has nowhere to go
        plan(fleet(3, {"h1": [(1, 1024)], "h2": [(1, 1024)]},
                   anti_affinity={"db": ["h1-vm0", "h2-vm0"]}, vcpus=16),
             "g", TARGETS, OK, RolloutPolicy(canary=0, max_unavailable=2))


def test_non_migratable_vms_hold_their_host() -> None:
    snap = fleet(4, {"h1": [(1, 1024), (1, 1024)], "h2": [(1, 1024)], "h3": [(1, 1024)]},
                 non_migratable={"h1-vm1": None, "h2-vm0": "skip-host",
                                 "h3-vm0": "ask-tenant"})
    p = plan(snap, "g", TARGETS, OK)
    held = {x.host: (x.action, [v.vm for v in x.vms]) for x in p.held}
    assert held == {"h1": (NonMigratableAction.WAIT, ["h1-vm1"]),
                    "h2": (NonMigratableAction.SKIP_HOST, ["h2-vm0"]),
                    "h3": (NonMigratableAction.ASK_TENANT, ["h3-vm0"])}
    assert [h for w in p.waves for h in w] == ["h4"]


def test_non_converging_vm_is_warned_about() -> None:
    snap = fleet(3, {"h1": [(1, 1024)]}, dirty={"h1-vm0": 200.0})
    p = plan(snap, "g", TARGETS, OK)
    assert any("h1-vm0" in w and "will not converge" in w for w in p.warnings)


def test_amounts_and_windows() -> None:
    assert amount("10%", 50, what="x") == 5
    assert amount("1%", 50, what="x") == 1
    assert amount(7, 50, what="x") == 7
    with pytest.raises(PolicyError):
        amount("ten", 50, what="x")
    with pytest.raises(PolicyError):
        Window.parse("25:00-04:00")
    import datetime as dt

    w = Window.parse("22:00-04:00")
    at = dt.datetime(2024, 6, 3, 12, 0, tzinfo=dt.UTC)
    assert w.opening(at) == dt.datetime(2024, 6, 3, 22, 0, tzinfo=dt.UTC)
    late = dt.datetime(2024, 6, 4, 1, 0, tzinfo=dt.UTC)
    assert w.opening(late) == late
    weekend = Window.parse("sat,sun 00:00-06:00")
    assert weekend.opening(at) == dt.datetime(2024, 6, 8, 0, 0, tzinfo=dt.UTC)


def test_precopy_rule() -> None:
    from engine.rollout import MigrationSettings

    m = MigrationSettings()
    idle = precopy(4096, 0.0, m)
    assert idle.converged and idle.rounds == 2 and idle.downtime_ms == 0.0
    busy = precopy(4096, 64.0, m)  # each round resends half of the previous one
    assert busy.converged and busy.downtime_ms <= 300.0
    assert busy.duration_s == pytest.approx(32 + 16 + 8 + 4 + 2 + 1 + 0.5 + 0.25, abs=0.01)
    never = precopy(4096, 128.0, m)
    assert not never.converged and "no progress" in (never.reason or "")
    assert never.duration_s == pytest.approx(32 + 150)
    big = precopy(16384, 127.0, m)  # converges too slowly: completion timeout 150 s/GiB
    assert not big.converged and big.duration_s == pytest.approx(150 * 16)
