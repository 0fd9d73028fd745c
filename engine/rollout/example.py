"""The example rollout of docs/rollout.md: 50 hosts of 20 VMs on the fleet simulator,
with one injected migration failure (retried) and one host whose re-attestation fails
(rolled back to its previous version).

    python -m engine.rollout.example docs/rollout-example.trace.ndjson
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

from engine.fleet import synthetic
from engine.rollout import trace
from engine.rollout.planner import plan
from engine.rollout.policy import RolloutPolicy
from engine.rollout.ports import StaticTargets
from engine.rollout.runner import MemoryJournal, Runner, Summary
from engine.rollout.simulator import Failures, Simulator, attestor_for

START = dt.datetime(2024, 6, 3, 22, 0, tzinfo=dt.UTC)
FAILED_MIGRATION_VM = "vm-0000107"
ROLLED_BACK_HOST = "hv-00017"


def run(out: Path) -> Summary:
    snap = synthetic(50, 20, version="2024.05.1", seed=11)
    failures = Failures(migrations={FAILED_MIGRATION_VM: 1}, attestation=[ROLLED_BACK_HOST])
    target = "2024.06.1"
    attestor = attestor_for(failures, target)
    p = plan(snap, "group-1", StaticTargets({"group-1": target}), attestor,
             RolloutPolicy(max_unavailable="10%"), start_at=START)
    sim = Simulator({v.id: v for v in snap.vms}, p.policy.migration, attestor,
                    failures=failures)
    journal = MemoryJournal()
    summary = Runner(p, snap, sim, journal).run()
    trace.write(out, [trace.header("example", p, snap), *journal.events])
    return summary


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/rollout-example.trace.ndjson")
    s = run(out)
    print(f"{out}: {s.status} in {s.t / 3600:.1f} simulated hours, {s.migrations} migrations"
          f" ({s.failed_migrations} failed, {s.retried_migrations} retried),"
          f" rolled back: {', '.join(s.hosts['rolled_back']) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
