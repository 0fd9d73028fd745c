"""The benchmark hosts, shared by ``placement_bench.py`` and ``service_bench.py``: the
50-component hosts of ``pvdb_bench.py`` (a Linux kernel and products of the generated
corpus), on its benchmark PVDB (``$TMPDIR/vigil-pvdb-bench``, run ``pvdb_bench.py``
first)."""

from __future__ import annotations

import datetime as dt
import sys
import tempfile
from pathlib import Path

import gen_cve5_corpus as gen
import pvdb_bench

from engine.model import Component
from engine.pvdb import Pvdb

DEFAULT_WORKDIR = Path(tempfile.gettempdir()) / "vigil-pvdb-bench"
MEDIAN_FINDINGS = 3621
"""Findings of the median real host of the PVDB benchmark."""


def pvdb_path(workdir: Path) -> Path | None:
    """The benchmark PVDB in ``workdir``, or None (said on stderr) when not built."""
    db_path = workdir / "pvdb-bench.duckdb"
    if not db_path.exists():
        print(f"no benchmark PVDB at {db_path}: run benchmarks/pvdb_bench.py first",
              file=sys.stderr)
        return None
    return db_path


def hosts(count: int, *, size: int = 50, seed: int = 1) -> list[list[Component]]:
    """``count`` benchmark hosts of ``size`` components (the same for the same seed)."""
    return pvdb_bench.build_hosts(
        gen.build_catalogue(gen.load_templates(gen.DEFAULT_TEMPLATES), 1), count, size, seed)


def real_and_small(db: Pvdb, pool: int, count: int, now: dt.datetime
                   ) -> tuple[list[list[Component]], list[Component]]:
    """``count`` real-size hosts from ``pool`` benchmark hosts, those nearest the median
    real host's findings first, and one small host: the component of those hosts with
    about 5 findings."""
    chosen = hosts(pool)
    sizes = [len(db.affecting(h, as_of=now).findings) for h in chosen]
    order = sorted(range(len(chosen)), key=lambda i: abs(sizes[i] - MEDIAN_FINDINGS))
    few = min((c for h in chosen for c in h[1:]),
              key=lambda c: abs(len(db.affecting([c], as_of=now).findings) - 5))
    return [chosen[i] for i in order[:count]], [few]
