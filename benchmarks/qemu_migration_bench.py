"""Real live migrations of the QEMU backend's guest, back and forth between two hosts.

    .venv/bin/python benchmarks/qemu_migration_bench.py [MIGRATIONS] [PARALLEL]

Launches PARALLEL guests (64 MiB, 16 MiB working set dirtied 100 times a second) on h1
and migrates each MIGRATIONS times between h1 and h2, PARALLEL at once, at QEMU's
default limits (300 ms downtime, 128 MiB/s). Prints QEMU's own figures per migration
(downtime, total time, RAM sent, rounds) as p50 / max, beside what the fleet simulator's
pre-copy model predicts for the same guest described by its dirty rate.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
from pathlib import Path

from engine.rollout import MemoryAttestor, Op, QemuExecutor, QemuSettings
from engine.rollout.policy import MigrationSettings
from engine.rollout.precopy import precopy


def main(migrations: int = 20, parallel: int = 1) -> None:
    settings, m = QemuSettings(), MigrationSettings()
    with tempfile.TemporaryDirectory(prefix="vq-", dir="/tmp") as run, \
            QemuExecutor(Path(run), m, MemoryAttestor(), settings=settings) as ex:
        vms = [f"vm-{i}" for i in range(parallel)]
        ex.launch_all((vm, "h1") for vm in vms)
        for _ in range(migrations):
            for vm in vms:
                here = ex.host_of(vm)
                ex.start(Op("migrate", str(here), ex.now(), vm=vm,
                            dst="h2" if here == "h1" else "h1"))
            while ex.in_flight():
                got = ex.advance(None)
                assert got is not None
                for c in got[1]:
                    assert c.ok, c.reason
        recs = ex.migrations
    load = os.getloadavg()[0]
    print(f"{len(recs)} live migrations of a {settings.memory_mib} MiB TCG guest"
          f" ({settings.dirty_mib} MiB working set, {settings.tick_hz} Hz), {parallel} at"
          f" once, limits {m.downtime_limit_ms:g} ms / {m.bandwidth_mibps:g} MiB/s;"
          f" load {load:.2f}")
    for label, values in (("downtime ms", [r.downtime_ms for r in recs]),
                          ("total time ms", [r.total_time_ms for r in recs]),
                          ("RAM sent MiB", [r.transferred_bytes / 2**20 for r in recs]),
                          ("rounds", [float(r.dirty_syncs) for r in recs])):
        print(f"  {label:<14} p50 {statistics.median(values):8.1f}   max {max(values):8.1f}")
    rate = settings.dirty_mib * settings.tick_hz
    model = precopy(settings.memory_mib, rate, m)
    print(f"simulator model for the same guest at its dirty rate ({rate} MiB/s):"
          f" {'converges' if model.converged else 'does not converge'}"
          f" ({model.reason or f'{model.downtime_ms:.1f} ms downtime'}); the model counts"
          f" every write as new dirty memory, QEMU resends the {settings.dirty_mib} MiB"
          f" working set once per round")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
