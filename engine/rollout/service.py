"""Rollouts as the command line runs them: durable (:mod:`engine.rollout.state`), on the
fleet simulator, with the outcome written back to the fleet inventory when the executor
stops (finished, halted, aborted or paused; after a crash, when it is resumed).

A rollout records which attestor re-attests its hosts (``{"kind": "memory"}``, or
``{"kind": "swtpm", "image": NAME}``: software TPMs against the image catalog's signed
manifests, :mod:`engine.rollout.attestation`), and a resumed rollout attests the same
way: one started on software TPMs is never resumed on the in-memory attestor."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.fleet import Fleet, FleetSnapshot
from engine.rollout import state, trace
from engine.rollout.errors import RolloutStateError
from engine.rollout.planner import Plan
from engine.rollout.ports import Attestor
from engine.rollout.runner import Runner, Summary
from engine.rollout.simulator import Failures, SimTimings, Simulator, attestor_for

AttestorFactory = Callable[[dict[str, Any], Plan, Failures], Attestor]
"""(the attestor a rollout recorded, its plan, its injected failures) -> the attestor."""


@dataclass(frozen=True)
class Options:
    db: Path
    fleet_db: Path | None = None
    """When set, the outcome is written back to this inventory."""
    pace_s: float = 0.0
    progress: Callable[[Runner], None] | None = None
    attestor: AttestorFactory | None = None
    """Makes the attestor a rollout recorded; None: only the in-memory one is known."""


def memory_attestor(spec: dict[str, Any], plan: Plan, failures: Failures) -> Attestor:
    """The in-memory attestor of a rollout that recorded ``{"kind": "memory"}``; any other
    kind is refused (never attested more weakly than it started)."""
    kind = spec.get("kind", "memory")
    if kind != "memory":
        raise RolloutStateError(f"this rollout re-attests its hosts with the {kind} attestor,"
                                " which is not available here",
                                tip="resume it where the image catalog it started from is"
                                    " (VIGIL_IMAGES_DB)")
    return attestor_for(failures, plan.target)


def start(opts: Options, plan: Plan, snapshot: FleetSnapshot, *, untrusted: list[str],
          failures: Failures | None = None, timings: SimTimings | None = None,
          trace_path: Path | None = None, attestor: dict[str, Any] | None = None
          ) -> tuple[str, Summary]:
    """Record and run a rollout; ``attestor`` is what it records of its attestor (the
    in-memory one by default), made by ``opts.attestor``."""
    with state.RolloutStore(opts.db) as store:
        rec = store.create(plan, snapshot, untrusted=untrusted, timings=timings or SimTimings(),
                           failures=failures or Failures(), executor="simulator",
                           trace_path=trace_path, attestor=attestor)
        trace.write(rec.trace, [trace.header(rec.id, plan, snapshot)])
        runner = _runner(opts, store, rec, snapshot, [])
        return rec.id, _drive(opts, runner, rec.id)


def resume(opts: Options, rollout_id: str, *, abort: bool = False) -> Summary:
    with state.RolloutStore(opts.db) as store:
        rec = store.get(rollout_id)
        if rec.status not in ("running", "paused", "planned"):
            raise RolloutStateError(f"rollout {rollout_id} is {rec.status}: there is nothing"
                                    f" to {'abort' if abort else 'resume'}")
        history = store.steps(rollout_id)
        snapshot = rec.snapshot()
        trace.write(rec.trace, [trace.header(rec.id, rec.plan, snapshot), *history])
        state.clear_request(opts.db, rollout_id)
        runner = _runner(opts, store, rec, snapshot, history, abort=abort)
        if not abort:
            runner.resume(recovered=rec.status != "paused")
        return _drive(opts, runner, rollout_id)


def pause(opts: Options, rollout_id: str) -> str:
    """``paused`` when no executor runs it (recorded now), ``requested`` otherwise."""
    try:
        store = state.RolloutStore(opts.db)
    except RolloutStateError:
        state.request(opts.db, rollout_id, "pause")
        return "requested"
    with store:
        rec = store.get(rollout_id)
        if rec.status == "paused":
            return "paused"
        if rec.status not in ("running", "planned"):
            raise RolloutStateError(f"rollout {rollout_id} is {rec.status}: it cannot be paused")
        steps = store.steps(rollout_id)
        t = float(steps[-1]["t"]) if steps else 0.0
        store.journal(rec).append([{"t": t, "type": "pause", "host": None}], "paused")
        return "paused"


def abort(opts: Options, rollout_id: str) -> tuple[str, Summary | None]:
    """Abort: hosts in flight finish their step and return to service. Done now when no
    executor runs the rollout; otherwise requested from the one that does."""
    try:
        state.RolloutStore(opts.db).close()
    except RolloutStateError:
        state.request(opts.db, rollout_id, "abort")
        return "requested", None
    return "aborted", resume(opts, rollout_id, abort=True)


def request_resume(opts: Options, rollout_id: str) -> bool:
    """Ask a running executor (still finishing hosts after a pause) to carry on; False
    when no executor runs it."""
    try:
        state.RolloutStore(opts.db).close()
    except RolloutStateError:
        state.request(opts.db, rollout_id, "resume")
        return True
    return False


def status(opts: Options, rollout_id: str | None) -> list[dict[str, Any]]:
    """Every rollout (or one): from the database, or from the live status files while an
    executor holds it."""
    try:
        store = state.RolloutStore(opts.db)
    except RolloutStateError:
        live = state.read_status(opts.db, rollout_id)
        for s in live:
            s["live"] = True
        return live
    with store:
        rows = store.rollouts() if rollout_id is None else [
            {k: v for k, v in vars(store.get(rollout_id)).items()
             if k in ("id", "created_at", "updated_at", "group", "target", "status", "steps")}]
        files = {s["id"]: s for s in state.read_status(opts.db, rollout_id)}
        for row in rows:
            if row["id"] in files:
                row["summary"] = files[row["id"]].get("summary")
            if row["status"] == "running":
                row["interrupted"] = True  # nobody holds the database: the executor stopped
        return rows


def _runner(opts: Options, store: state.RolloutStore, rec: state.RolloutRecord,
            snapshot: FleetSnapshot, history: list[dict[str, Any]], *,
            abort: bool = False) -> Runner:
    make = opts.attestor or memory_attestor
    attestor = make(rec.attestor, rec.plan, rec.failures)
    sim = Simulator({v.id: v for v in snapshot.vms}, rec.plan.policy.migration, attestor,
                    timings=rec.timings, failures=rec.failures, pace_s=opts.pace_s)
    last = [0.0]
    aborted = [not abort]

    def control() -> str | None:
        if not aborted[0]:
            aborted[0] = True
            return "abort"
        now = time.monotonic()
        if now - last[0] < 0.05:
            return None
        last[0] = now
        what = state.pending_request(opts.db, rec.id)
        if what:
            state.clear_request(opts.db, rec.id)
        return what

    def progress(r: Runner) -> None:
        if opts.progress is not None:
            opts.progress(r)
        now = time.monotonic()
        if now - last_status[0] >= 0.5:
            last_status[0] = now
            _write_status(opts, rec.id, r)

    last_status = [0.0]
    return Runner(rec.plan, snapshot, sim, store.journal(rec), untrusted=rec.untrusted,
                  history=history, control=control, progress=progress)


def _drive(opts: Options, runner: Runner, rollout_id: str) -> Summary:
    summary = runner.run()
    _write_status(opts, rollout_id, runner)
    if opts.fleet_db is not None:
        hosts, vms = runner.outcome()
        with Fleet.open(opts.fleet_db) as fleet:
            fleet.apply(hosts, vms)
    return summary


def _write_status(opts: Options, rollout_id: str, r: Runner) -> None:
    s = r.summary()
    state.write_status(opts.db, rollout_id, {
        "id": rollout_id, "group": r.plan.group, "target": r.plan.target, "status": s.status,
        "steps": None, "summary": {"t": s.t, "hosts": {k: len(v) for k, v in s.hosts.items()},
                                   "migrations": s.migrations,
                                   "failed_migrations": s.failed_migrations}})
