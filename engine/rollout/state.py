"""Durable rollout state in DuckDB (setting ``rollout_db``): one row per rollout (its
plan, the fleet snapshot it started from, the injected failures, which attestor
re-attests its hosts, its status) and one row per step (the events of the trace). Each
scheduler step is one transaction: the step's events and the rollout's new status commit
together, so a process killed at any moment leaves the last complete step, and a resumed
rollout carries on from it.

Beside the database, in ``<rollout_db>.d/``: each rollout's trace (``ID.trace.ndjson``,
rewritten from the steps on resume), its live status (``ID.status.json``, readable while
the executor holds the database) and control requests (``ID.control``: pause, resume,
abort), which a running executor reads between steps.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import orjson

from engine.fleet import FleetSnapshot, parse_inventory, to_document
from engine.migrations import StateFile
from engine.rollout import trace
from engine.rollout.errors import RolloutNotFound, RolloutStateError
from engine.rollout.planner import Plan
from engine.rollout.runner import Event
from engine.rollout.simulator import Failures, SimTimings

_MIGRATIONS = {
    1: """
CREATE TABLE IF NOT EXISTS rollouts (
    rollout_id VARCHAR PRIMARY KEY,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL,
    host_group VARCHAR NOT NULL,
    target VARCHAR NOT NULL,
    status VARCHAR NOT NULL,
    executor VARCHAR NOT NULL,
    plan JSON NOT NULL,
    snapshot JSON NOT NULL,
    untrusted JSON NOT NULL,
    timings JSON NOT NULL,
    failures JSON NOT NULL,
    trace VARCHAR NOT NULL,
    steps INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS steps (
    rollout_id VARCHAR NOT NULL,
    seq INTEGER NOT NULL,
    t DOUBLE NOT NULL,
    type VARCHAR NOT NULL,
    host VARCHAR,
    event JSON NOT NULL,
    PRIMARY KEY (rollout_id, seq)
);
""",
    # which attestor re-attests the hosts (the in-memory one, or software TPMs against
    # the image catalog's manifests): a resumed rollout must attest as it started
    2: """
ALTER TABLE rollouts ADD COLUMN attestor JSON DEFAULT '{"kind": "memory"}';
""",
}

ACTIVE = frozenset({"running", "paused"})


@dataclass(frozen=True)
class RolloutRecord:
    id: str
    created_at: dt.datetime
    updated_at: dt.datetime
    group: str
    target: str
    status: str
    executor: str
    steps: int
    trace: Path
    plan: Plan
    untrusted: list[str]
    timings: SimTimings
    failures: Failures
    _snapshot: str
    attestor: dict[str, Any] = field(default_factory=lambda: {"kind": "memory"})
    """Which attestor re-attests the hosts: ``{"kind": "memory"}`` or ``{"kind": "swtpm",
    "image": NAME}`` (software TPMs against the image catalog's manifests)."""

    def snapshot(self) -> FleetSnapshot:
        return parse_inventory(self._snapshot.encode(), f"rollout {self.id} snapshot")


def side_dir(db: Path) -> Path:
    return db.with_name(db.name + ".d")


class RolloutStore(StateFile):
    """The rollout state file: rollouts, their plans and journals."""

    MIGRATIONS = _MIGRATIONS
    NAME = "the rollout state"
    SETTING = "VIGIL_ROLLOUT_DB"
    ERROR = RolloutStateError

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._con = duckdb.connect(str(path))
        except duckdb.IOException as exc:
            raise RolloutStateError(
                f"the rollout state {path} is in use (a rollout is running): {exc}",
                tip="wait for it, or use `vigil rollout status|pause|abort`, which work"
                    " while it runs") from exc
        except (duckdb.Error, OSError) as exc:
            raise RolloutStateError(f"cannot open the rollout state {path}: {exc}") from exc
        self._migrate()

    def create(self, plan: Plan, snapshot: FleetSnapshot, *, untrusted: list[str],
               timings: SimTimings, failures: Failures, executor: str,
               trace_path: Path | None = None,
               attestor: dict[str, Any] | None = None) -> RolloutRecord:
        rollout_id = "r-" + uuid.uuid4().hex[:10]
        path = trace_path or side_dir(self.path) / f"{rollout_id}.trace.ndjson"
        now = dt.datetime.now(dt.UTC)
        self._con.execute(
            "INSERT INTO rollouts VALUES (?, ?, ?, ?, ?, 'planned', ?, ?, ?, ?, ?, ?, ?, 0, ?)",
            [rollout_id, now, now, plan.group, plan.target, executor, plan.model_dump_json(),
             orjson.dumps(to_document(snapshot)).decode(), orjson.dumps(untrusted).decode(),
             timings.model_dump_json(), failures.model_dump_json(), str(path.resolve()),
             orjson.dumps(attestor or {"kind": "memory"}).decode()])
        return self.get(rollout_id)

    def get(self, rollout_id: str) -> RolloutRecord:
        row = self._con.execute("SELECT * FROM rollouts WHERE rollout_id = ?",
                                [rollout_id]).fetchone()
        if row is None:
            raise RolloutNotFound(f"rollout {rollout_id} does not exist",
                                  tip="list rollouts with `vigil rollout status`")
        return _record(row)

    def rollouts(self) -> list[dict[str, Any]]:
        rows = self._con.execute("SELECT rollout_id, created_at, updated_at, host_group, target,"
                                 " status, steps FROM rollouts ORDER BY created_at").fetchall()
        keys = ("id", "created_at", "updated_at", "group", "target", "status", "steps")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def steps(self, rollout_id: str) -> list[Event]:
        rows = self._con.execute("SELECT event FROM steps WHERE rollout_id = ? ORDER BY seq",
                                 [rollout_id]).fetchall()
        return [orjson.loads(r[0]) for r in rows]

    def journal(self, record: RolloutRecord) -> DuckJournal:
        return DuckJournal(self._con, record)


class DuckJournal:
    """A :class:`~engine.rollout.runner.Journal` writing steps to DuckDB, then the trace."""

    def __init__(self, con: duckdb.DuckDBPyConnection, record: RolloutRecord) -> None:
        self._con, self.record = con, record
        row = con.execute("SELECT count(*) FROM steps WHERE rollout_id = ?",
                          [record.id]).fetchone()
        self.seq = int(row[0]) if row else 0

    def append(self, events: list[Event], status: str) -> None:
        con = self._con
        rows = [(self.record.id, self.seq + i, float(e["t"]), e["type"], e.get("host"),
                 orjson.dumps(e).decode()) for i, e in enumerate(events)]
        con.execute("BEGIN TRANSACTION")
        try:
            if rows:
                con.executemany("INSERT INTO steps VALUES (?, ?, ?, ?, ?, ?)", rows)
            con.execute("UPDATE rollouts SET status = ?, updated_at = ?, steps = ?"
                        " WHERE rollout_id = ?",
                        [status, dt.datetime.now(dt.UTC), self.seq + len(rows), self.record.id])
            con.execute("COMMIT")
        except duckdb.Error as exc:
            con.execute("ROLLBACK")
            raise RolloutStateError(f"recording a step of rollout {self.record.id} failed:"
                                    f" {exc}") from exc
        self.seq += len(rows)
        if events:
            with self.record.trace.open("ab") as f:
                f.write(b"".join(trace.line(e) for e in events))


def _record(r: tuple[Any, ...]) -> RolloutRecord:
    return RolloutRecord(
        id=r[0], created_at=r[1], updated_at=r[2], group=r[3], target=r[4], status=r[5],
        executor=r[6], plan=Plan.model_validate_json(r[7]), _snapshot=r[8],
        untrusted=orjson.loads(r[9]), timings=SimTimings.model_validate_json(r[10]),
        failures=Failures.model_validate_json(r[11]), trace=Path(r[12]), steps=int(r[13]),
        attestor=orjson.loads(r[14]) if r[14] else {"kind": "memory"})


# -- control and live status files -----------------------------------------------------------

def request(db: Path, rollout_id: str, what: str) -> None:
    """Ask a running executor to ``pause``, ``resume`` or ``abort`` between two steps."""
    folder = side_dir(db)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f"{rollout_id}.control.tmp"
    tmp.write_text(what)
    os.replace(tmp, folder / f"{rollout_id}.control")


def pending_request(db: Path, rollout_id: str) -> str | None:
    try:
        return (side_dir(db) / f"{rollout_id}.control").read_text().strip() or None
    except FileNotFoundError:
        return None


def clear_request(db: Path, rollout_id: str) -> None:
    (side_dir(db) / f"{rollout_id}.control").unlink(missing_ok=True)


def write_status(db: Path, rollout_id: str, status: dict[str, Any]) -> None:
    folder = side_dir(db)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f"{rollout_id}.status.json.tmp"
    tmp.write_bytes(orjson.dumps(status, option=orjson.OPT_INDENT_2))
    os.replace(tmp, folder / f"{rollout_id}.status.json")


def read_status(db: Path, rollout_id: str | None) -> list[dict[str, Any]]:
    folder = side_dir(db)
    pattern = f"{rollout_id}.status.json" if rollout_id else "*.status.json"
    return [orjson.loads(p.read_bytes()) for p in sorted(folder.glob(pattern))]
