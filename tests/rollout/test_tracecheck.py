"""The trace checker proves the example trace's promises from the trace alone, and
catches each promise broken in a mutated copy."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from engine.rollout import trace, tracecheck
from engine.rollout.example import FAILED_MIGRATION_VM, ROLLED_BACK_HOST
from engine.rollout.example import run as run_example
from tests.conftest import ROOT

EXAMPLE = ROOT / "docs" / "rollout-example.trace.ndjson"


@pytest.fixture(scope="module")
def events() -> list[dict[str, Any]]:
    return trace.read(EXAMPLE)


def test_example_trace_holds_its_promises(events: list[dict[str, Any]]) -> None:
    report = tracecheck.check(events)
    assert report.ok, report.violations[:5]
    head = events[0]
    assert len(head["hosts"]) == 50 and len(head["vms"]) == 1000
    assert report.max_unavailable_seen <= head["max_unavailable"]
    kinds = [e["type"] for e in events]
    assert kinds[-1] == "end" and events[-1]["status"] == "completed"
    failed = [e for e in events if e["type"] == "migrate_failed"]
    assert [e["vm"] for e in failed] == [FAILED_MIGRATION_VM]
    rollback = [e for e in events if e["type"] == "rollback"]
    assert [e["host"] for e in rollback] == [ROLLED_BACK_HOST]
    assert all(e["downtime_ms"] <= 300.0 for e in events if e["type"] == "migrate_end")


def test_example_trace_is_what_the_command_writes(tmp_path: Path,
                                                  events: list[dict[str, Any]]) -> None:
    out = tmp_path / "again.ndjson"
    run_example(out)
    assert out.read_bytes() == EXAMPLE.read_bytes()


def _first(events: list[dict[str, Any]], kind: str, **match: Any) -> int:
    return next(i for i, e in enumerate(events)
                if e["type"] == kind and all(e.get(k) == v for k, v in match.items()))


def _mutations(events: list[dict[str, Any]]) -> dict[str, tuple[list[dict[str, Any]], str]]:
    out: dict[str, tuple[list[dict[str, Any]], str]] = {}

    ev = copy.deepcopy(events)  # a VM shows up on a second host
    i = _first(ev, "migrate_end")
    ev.insert(i + 1, {**ev[i], "t": ev[i]["t"]})
    out["duplicated migrate_end"] = (ev, "no migration of VM")

    ev = copy.deepcopy(events)  # a migration starts from a host the VM is not on
    i = _first(ev, "migrate_start")
    ev[i]["from"] = ev[i]["to"]
    out["wrong source"] = (ev, "not another known host")

    ev = copy.deepcopy(events)  # reimage before the last VM left
    i = _first(ev, "reimage_start")
    host = ev[i]["host"]
    j = max(k for k in range(i) if ev[k]["type"] == "migrate_end" and ev[k]["from"] == host)
    ev.insert(j, ev.pop(i) | {"t": ev[j]["t"]})
    out["reimage with VMs"] = (ev, "host still has VMs on it")

    ev = copy.deepcopy(events)  # back in service without attest_ok
    i = _first(ev, "attest_ok")
    del ev[i]
    out["uncordon without attest_ok"] = (ev, "without attest_ok after its reimage")

    ev = copy.deepcopy(events)  # the rolled-back host uncordoned on its failed attestation
    i = _first(ev, "rollback", host=ROLLED_BACK_HOST)
    j = _first(ev[i:], "attest_ok", host=ROLLED_BACK_HOST) + i
    del ev[j]
    del ev[i]
    out["rolled-back host without attest_ok"] = (ev, "without attest_ok")

    ev = copy.deepcopy(events)  # budget exceeded
    ev[0] = {**ev[0], "max_unavailable": 2}
    out["max-unavailable"] = (ev, "max-unavailable is 2")

    ev = copy.deepcopy(events)  # a downtime over the limit
    i = _first(ev, "migrate_end")
    ev[i]["downtime_ms"] = 1200.0
    out["downtime"] = (ev, "over the 300 ms limit")

    ev = copy.deepcopy(events)  # a VM lost: its migration never ends
    i = _first(ev, "migrate_end")
    del ev[i]
    out["lost migration"] = (ev, "migrating to or from it")
    return out


@pytest.mark.parametrize("name", ["duplicated migrate_end", "wrong source", "reimage with VMs",
                                  "uncordon without attest_ok",
                                  "rolled-back host without attest_ok", "max-unavailable",
                                  "downtime", "lost migration"])
def test_mutated_traces_fail(events: list[dict[str, Any]], name: str) -> None:
    mutated, expected = _mutations(events)[name]
    report = tracecheck.check(mutated)
    assert not report.ok
    assert any(expected in v for v in report.violations), report.violations[:3]


def test_command_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert tracecheck.main([str(EXAMPLE)]) == 0
    assert "all promises hold" in capsys.readouterr().out
    bad = tmp_path / "bad.ndjson"
    trace.write(bad, trace.read(EXAMPLE)[1:])
    assert tracecheck.main([str(bad)]) == 1
