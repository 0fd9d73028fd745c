"""The rollout's event trace: NDJSON, one event per line (documented in docs/rollout.md).

The first line (``type: plan``) states what the trace's promises are checked against: the
group's hosts with their state and version, where every VM of the group runs, the
max-unavailable budget and the downtime limit. Every later line is one step the rollout
took, in order, with its time ``t`` in seconds since the start.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from engine.fleet import FleetSnapshot
from engine.rollout.planner import Plan


def header(rollout_id: str, plan: Plan, snapshot: FleetSnapshot) -> dict[str, Any]:
    hosts = {h.id: {"state": h.state.value, "version": h.image_version}
             for h in snapshot.hosts if h.group == plan.group}
    return {"t": 0.0, "type": "plan", "host": None, "rollout": rollout_id,
            "group": plan.group, "target": plan.target,
            "start_at": plan.start_at.isoformat(),
            "max_unavailable": plan.max_unavailable,
            "downtime_limit_ms": plan.policy.migration.downtime_limit_ms,
            "hosts": hosts,
            "vms": {v.id: v.host for v in snapshot.vms if v.host in hosts}}


def line(event: dict[str, Any]) -> bytes:
    return orjson.dumps(event) + b"\n"


def write(path: Path, events: Iterable[dict[str, Any]]) -> None:
    """Write the whole trace atomically (a temporary file renamed over ``path``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        for e in events:
            f.write(line(e))
    os.replace(tmp, path)


def read(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(raw) for raw in path.read_bytes().splitlines() if raw.strip()]
