"""Durable rollouts: killed with SIGKILL mid-rollout and resumed, no step is redone or
lost; pause and abort through the state database."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from engine.fleet import synthetic
from engine.rollout import (
    MemoryJournal,
    RolloutPolicy,
    Runner,
    Simulator,
    StaticTargets,
    plan,
    service,
    state,
    tracecheck,
)
from engine.rollout.simulator import Failures, attestor_for
from tests.conftest import ROOT

START = dt.datetime(2024, 6, 3, 22, 0, tzinfo=dt.UTC)
FAILURES = Failures(migrations={"vm-0000015": 1}, attestation=["hv-00004"])

CHILD = """
import datetime as dt, sys
from pathlib import Path
from engine.fleet import synthetic
from engine.rollout import RolloutPolicy, StaticTargets, plan, service
from engine.rollout.simulator import Failures, attestor_for
failures = Failures.model_validate_json(sys.argv[2])
snap = synthetic(20, 10, seed=5)
p = plan(snap, "group-1", StaticTargets({"group-1": "v2"}), attestor_for(failures, "v2"),
         RolloutPolicy(max_unavailable="20%"),
         start_at=dt.datetime(2024, 6, 3, 22, 0, tzinfo=dt.UTC))
service.start(service.Options(Path(sys.argv[1]), pace_s=0.004), p, snap, untrusted=[],
              failures=failures)
"""


def _reference(rec: state.RolloutRecord) -> list[dict[str, Any]]:
    snap = rec.snapshot()
    attestor = attestor_for(rec.failures, rec.plan.target)
    sim = Simulator({v.id: v for v in snap.vms}, rec.plan.policy.migration, attestor,
                    timings=rec.timings, failures=rec.failures)
    journal = MemoryJournal()
    Runner(rec.plan, snap, sim, journal).run()
    return journal.events


def test_kill_9_mid_rollout_then_resume(tmp_path: Path) -> None:
    db = tmp_path / "rollouts.duckdb"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(db), FAILURES.model_dump_json()],
                             env=env, cwd=ROOT)
    folder = state.side_dir(db)
    deadline = time.monotonic() + 60
    traces: list[Path] = []
    while time.monotonic() < deadline:
        traces = list(folder.glob("*.trace.ndjson")) if folder.exists() else []
        if traces and traces[0].read_bytes().count(b"\n") > 150:
            break
        assert child.poll() is None, "the rollout finished before it could be killed"
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    assert child.wait(10) == -signal.SIGKILL
    rollout_id = traces[0].name.split(".")[0]

    opts = service.Options(db)
    [row] = service.status(opts, rollout_id)
    assert row["status"] == "running" and row["interrupted"]
    done_before = row["steps"]
    assert done_before > 0

    summary = service.resume(opts, rollout_id)
    assert summary.status == "completed"
    assert summary.hosts["rolled_back"] == ["hv-00004"]
    with state.RolloutStore(db) as store:
        rec = store.get(rollout_id)
        steps = store.steps(rollout_id)
    resumed = [e for e in steps if e["type"] == "resume"]
    assert len(resumed) == 1 and resumed[0]["recovered"]
    # exactly the steps of the same rollout run without interruption: none redone, none lost
    assert [e for e in steps if e["type"] != "resume"] == _reference(rec)
    report = tracecheck.check_file(rec.trace)
    assert report.ok, report.violations
    assert report.events == len(steps)


def test_pause_resume_abort_without_an_executor(tmp_path: Path) -> None:
    db = tmp_path / "r.duckdb"
    snap = synthetic(12, 6, seed=2)
    p = plan(snap, "group-1", StaticTargets({"group-1": "v2"}), attestor_for(FAILURES, "v2"),
             RolloutPolicy(max_unavailable="25%"), start_at=START)
    opts = service.Options(db)
    rid, summary = _paused_start(opts, p, snap)
    assert summary.status == "paused"
    assert service.pause(opts, rid) == "paused"
    summary = service.resume(opts, rid)
    assert summary.status == "completed"
    assert service.status(opts, rid)[0]["status"] == "completed"
    # aborting a paused rollout: nothing in flight, so it ends at once
    rid, summary = _paused_start(opts, p, snap)
    state_, summary2 = service.abort(opts, rid)
    assert state_ == "aborted" and summary2 is not None and summary2.status == "aborted"
    with state.RolloutStore(db) as store:
        assert [e["type"] for e in store.steps(rid)][-2:] == ["abort", "end"]
        assert tracecheck.check_file(store.get(rid).trace).ok


def _paused_start(opts: service.Options, p: Any, snap: Any) -> tuple[str, Any]:
    original = service._runner

    def with_pause(*args: Any, **kwargs: Any) -> Runner:
        r = original(*args, **kwargs)
        calls = {"n": 0}

        def control() -> str | None:
            calls["n"] += 1
            return "pause" if calls["n"] == 5 else None

        r.control = control
        return r

    service._runner = with_pause  # type: ignore[assignment]
    try:
        return service.start(opts, p, snap, untrusted=[], failures=FAILURES)
    finally:
        service._runner = original  # type: ignore[assignment]
