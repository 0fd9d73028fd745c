"""Candidate hosts (constraints, the decision memo, spread) and the fleet launcher
(placed once, refused when it cannot fit, retried when the host is to be patched)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from engine.fleet import VM, Fleet, FleetSnapshot, Host, HostState
from engine.provision import (
    Constraints,
    DecisionMemo,
    FleetFile,
    FleetLauncher,
    LaunchError,
    LaunchOrder,
    candidates,
)

HOSTS = (
    Host("a", "g", 8, 8192, "1", labels={"zone": "x"}),
    Host("b", "g", 8, 8192, "1", labels={"zone": "y"}),
    Host("c", "g", 8, 8192, "2", labels={"zone": "x"}),
    Host("d", "g", 8, 8192, "1", state=HostState.CORDONED),
)
SNAPSHOT = FleetSnapshot(HOSTS, (VM("v1", "t", "s", "a", 6, 1024),))


def test_constraints_rule_hosts_out_and_say_why() -> None:
    got = candidates(SNAPSHOT, Constraints(vcpus=4, memory_mib=1024, image_version="1",
                                           host_labels={"zone": "x"}))
    assert got.candidates == ()
    why = got.why_none()
    assert "1 host(s) are not in service" in why
    assert "lack the required labels zone=x" in why
    assert "do not run the requested image version 1" in why
    assert "have not 4 vCPUs" in why


def test_spread_then_the_memo_first() -> None:
    want = Constraints(vcpus=1, memory_mib=1)
    assert [c.host.id for c in candidates(SNAPSHOT, want).candidates] == ["b", "c", "a"]
    memo = DecisionMemo()
    memo.remember("b", dt.datetime.now(dt.UTC), "reject")
    memo.remember("a", dt.datetime.now(dt.UTC), "admit")
    assert [c.host.id for c in candidates(SNAPSHOT, want, memo).candidates] == ["a", "c", "b"]


@pytest.fixture
def fleet(tmp_path: Path) -> FleetFile:
    with Fleet.open(tmp_path / "fleet.duckdb") as f:
        f.replace(SNAPSHOT, source="test")
    return FleetFile(tmp_path / "fleet.duckdb")


def _order(host: str, vcpus: int = 1, version: str | None = "1", **kw: object) -> LaunchOrder:
    return LaunchOrder(request_id="r1", tenant="t", vm_name="web", vcpus=vcpus,
                       memory_mib=512, host=host, image_version=version, **kw)  # type: ignore[arg-type]


def test_a_launch_places_once(fleet: FleetFile) -> None:
    launcher = FleetLauncher(fleet)
    first = launcher.launch(_order("b"))
    again = launcher.launch(_order("b"))
    assert (first.again, again.again) == (False, True)
    snap = fleet.snapshot()
    assert not isinstance(snap, str)
    assert [(v.id, v.host, v.labels["vigil.io/vm-name"]) for v in snap.vms
            if v.id == "r1"] == [("r1", "b", "web")]


def test_a_launch_that_cannot_fit_fails_for_good(fleet: FleetFile) -> None:
    with pytest.raises(LaunchError, match="no room") as info:
        FleetLauncher(fleet).launch(_order("a", vcpus=4))
    assert not info.value.retry
    with pytest.raises(LaunchError, match="not in service"):
        FleetLauncher(fleet).launch(_order("d"))


def test_a_host_on_another_version_is_retried_after_its_patch(fleet: FleetFile) -> None:
    with pytest.raises(LaunchError, match="patched first") as info:
        FleetLauncher(fleet).launch(_order("b", version="2", patch_host_first=True))
    assert info.value.retry
