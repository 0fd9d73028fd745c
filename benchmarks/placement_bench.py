"""End-to-end placement on PVDB-sized hosts: affecting, input document, decision.

Uses the database and hosts of ``pvdb_bench.py`` (run that first; it keeps them in
``$TMPDIR/vigil-pvdb-bench``): 50-component hosts with thousands of findings each. Per
host it times the PVDB question (first time and again), building the input document and
the default policy's decision (validation, evaluation, verdict) with each in-process
evaluator that finishes within ``--timeout``; rego-cpp is skipped above
``--regopy-max`` vulnerabilities (it is quadratic). Decisions are not logged.

    .venv/bin/python benchmarks/placement_bench.py [--hosts 5] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import gen_cve5_corpus as gen  # noqa: E402
import pvdb_bench  # noqa: E402

from engine.attest.result import ResultSummary  # noqa: E402
from engine.config import load_settings  # noqa: E402
from engine.decide import (  # noqa: E402
    EMBEDDED,
    Decider,
    PatchedConfiguration,
    RequestFacts,
    VmShape,
    build_input,
    embedded_evaluator,
    load_directory,
)
from engine.model import ImageRef  # noqa: E402
from engine.predict import estimator_for  # noqa: E402
from engine.pvdb import Pvdb  # noqa: E402


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path,
                        default=Path(tempfile.gettempdir()) / "vigil-pvdb-bench")
    parser.add_argument("--hosts", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--regopy-max", type=int, default=1000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    db_path = args.workdir / "pvdb-bench.duckdb"
    if not db_path.exists():
        print(f"no benchmark PVDB at {db_path}: run benchmarks/pvdb_bench.py first",
              file=sys.stderr)
        return 2
    hosts = pvdb_bench.build_hosts(
        gen.build_catalogue(gen.load_templates(gen.DEFAULT_TEMPLATES), 1), args.hosts, 50, 1)
    policy = load_directory(ROOT / "engine" / "policies", ["vigil"])
    deciders = {name: Decider(embedded_evaluator(name, policy, timeout=args.timeout))
                for name in EMBEDDED}
    request = RequestFacts(tenant="acme", vm=VmShape(name="web-1", vcpus=2, memory_mib=4096))
    attestation = ResultSummary(status="affirming", issued_at=pvdb_bench.AS_OF,
                                verifier_id="vigil",
                                image=ImageRef(name="hv-base", version="2026.07.1"),
                                trust_vector={}, failures=[], components=[])
    rows: list[dict[str, Any]] = []
    with Pvdb.open(db_path, read_only=True, settings=load_settings()) as db:
        estimator = estimator_for(db, pvdb_bench.AS_OF)
        db.affecting(hosts[0][:1], as_of=pvdb_bench.AS_OF)  # load the match index
        for components in hosts:
            t0 = time.perf_counter()
            report = db.affecting(components, as_of=pvdb_bench.AS_OF, estimator=estimator)
            t1 = time.perf_counter()
            db.affecting(components, as_of=pvdb_bench.AS_OF, estimator=estimator)
            t2 = time.perf_counter()
            document = build_input(request, "hv-0001", attestation, report,
                                   PatchedConfiguration(state="none"),
                                   pvdb_bench.AS_OF).to_json()
            t3 = time.perf_counter()
            row: dict[str, Any] = {
                "findings": len(report.findings), "undetermined": len(report.undetermined),
                "affecting_first_ms": _ms(t1 - t0), "affecting_again_ms": _ms(t2 - t1),
                "build_input_ms": _ms(t3 - t2)}
            for name, decider in deciders.items():
                if name == "regopy" and len(report.findings) > args.regopy_max:
                    row[f"decide_{name}_ms"] = None
                    continue
                times = []
                for _ in range(3):
                    t = time.perf_counter()
                    verdict = decider.decide(document)
                    times.append(time.perf_counter() - t)
                row[f"decide_{name}_ms"] = _ms(statistics.median(times))
                row[f"verdict_{name}"] = verdict.verdict if not verdict.fail_closed else \
                    f"reject ({verdict.reasons[0].rule})"
            rows.append(row)
    for decider in deciders.values():
        decider.close()
    if args.json:
        print(json.dumps({"hosts": rows}, indent=2))
        return 0
    print(f"{'findings':>8} {'undet':>6} {'affecting 1st':>13} {'again':>7} {'input':>7} "
          f"{'decide regorus':>14} {'decide regopy':>13}  verdict")
    for r in rows:
        regopy = "skipped" if r["decide_regopy_ms"] is None else f"{r['decide_regopy_ms']} ms"
        print(f"{r['findings']:>8} {r['undetermined']:>6} {r['affecting_first_ms']:>10} ms "
              f"{r['affecting_again_ms']:>4} ms {r['build_input_ms']:>4} ms "
              f"{r['decide_regorus_ms']:>11} ms {regopy:>13}  {r['verdict_regorus']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
