"""End-to-end placement on PVDB-sized hosts: affecting, input documents, decision.

Uses the database and hosts of ``pvdb_bench.py`` (run that first; it keeps them in
``$TMPDIR/vigil-pvdb-bench``): 50-component hosts with thousands of findings each. Per
host and in-process evaluator it times, through :func:`engine.provision.decide_placement`
(decisions not logged):

* **cold**: the first placement, which asks the PVDB (its answer already cached, as after
  any earlier query of the day), builds the posture document and judges the host's
  posture (input schema version 2), then decides the request;
* **warm**: ``--repeat`` further placements of other VMs on the same host (the posture
  kept): posture key, decision document, the request's evaluation and the composition;
  p50 / p99;
* **whole**: the version 1 path for comparison, the whole document built
  (``build_input``) and decided in one evaluation.

rego-cpp is skipped above ``--regopy-max`` vulnerabilities (it is quadratic). The
target: a warm placement p99 <= 10 ms on a real-size host.

    .venv/bin/python benchmarks/placement_bench.py [--hosts 5] [--repeat 300] [--json]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_hosts  # noqa: E402
import pvdb_bench  # noqa: E402

from engine.attest import AttestationResult, TrustVector, VerifierId  # noqa: E402
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
from engine.provision import decide_placement  # noqa: E402
from engine.pvdb import Pvdb  # noqa: E402

TARGET_WARM_P99_MS = 10.0


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path,
                        default=Path(tempfile.gettempdir()) / "vigil-pvdb-bench")
    parser.add_argument("--hosts", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=300)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--regopy-max", type=int, default=1000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    db_path = args.workdir / "pvdb-bench.duckdb"
    if not db_path.exists():
        print(f"no benchmark PVDB at {db_path}: run benchmarks/pvdb_bench.py first",
              file=sys.stderr)
        return 2
    hosts = bench_hosts.hosts(args.hosts)
    policy = load_directory(ROOT / "engine" / "policies", ["vigil"])
    evaluators = {name: embedded_evaluator(name, policy, timeout=args.timeout)
                  for name in EMBEDDED}
    now = pvdb_bench.AS_OF + dt.timedelta(hours=9)
    rows: list[dict[str, Any]] = []
    with Pvdb.open(db_path, read_only=True, settings=load_settings()) as db:
        db.affecting(hosts[0][:1], as_of=now)  # load the match index
        estimator = estimator_for(db, now)
        for n, components in enumerate(hosts):
            host_id = f"hv-{n:04d}"
            result = AttestationResult.build(
                host_id=host_id, verifier=VerifierId(developer="vigil"),
                trust_vector=TrustVector(instance_identity=2, hardware=2, executables=2,
                                         configuration=2),
                failures=[], nonce=b"\x01" * 32,
                image=ImageRef(name="hv-base", version="2026.07.1"), components=components,
                ak_name=None, inventory=None, issued_at=now - dt.timedelta(minutes=10))
            t0 = time.perf_counter()
            report = db.affecting(components, as_of=now, estimator=estimator)
            row: dict[str, Any] = {"findings": len(report.findings),
                                   "undetermined": len(report.undetermined),
                                   "affecting_first_ms": _ms(time.perf_counter() - t0)}
            for name, evaluator in evaluators.items():
                if name == "regopy" and len(report.findings) > args.regopy_max:
                    row[name] = None
                    continue
                decider = Decider(evaluator)
                t0 = time.perf_counter()
                first = decide_placement(
                    decider, db, RequestFacts(tenant="acme", vm=VmShape(
                        name="web-0", vcpus=2, memory_mib=4096)), result,
                    patched=PatchedConfiguration(state="none"), now=now)
                cold = time.perf_counter() - t0
                warm: list[float] = []
                for i in range(args.repeat):
                    request = RequestFacts(tenant="acme", vm=VmShape(
                        name=f"web-{i + 1}", vcpus=2, memory_mib=4096))
                    t0 = time.perf_counter()
                    verdict = decide_placement(decider, db, request, result,
                                               patched=PatchedConfiguration(state="none"),
                                               now=now + dt.timedelta(milliseconds=i)).verdict
                    warm.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                whole_doc = build_input(RequestFacts(tenant="acme", vm=VmShape(
                    name="web-x", vcpus=2, memory_mib=4096)), host_id, result.summary(),
                    report, PatchedConfiguration(state="none"), now)
                t1 = time.perf_counter()
                whole = decider.decide(whole_doc)
                t2 = time.perf_counter()
                assert whole.decision == verdict.decision == first.verdict.decision, name
                row[name] = {
                    "cold_ms": _ms(cold), "warm_p50_ms": _ms(statistics.median(warm)),
                    "warm_p99_ms": _ms(_p99(warm)),
                    "warm_p99_within_target": _p99(warm) * 1000 <= TARGET_WARM_P99_MS,
                    "whole_build_ms": _ms(t1 - t0), "whole_decide_ms": _ms(t2 - t1),
                    "verdict": verdict.verdict, "warnings": len(verdict.warnings)}
            rows.append(row)
    for evaluator in evaluators.values():
        evaluator.close()
    report_json = {"load": os.getloadavg(), "target_warm_p99_ms": TARGET_WARM_P99_MS,
                   "repeat": args.repeat, "hosts": rows}
    if args.json:
        print(json.dumps(report_json, indent=2))
        return 0
    print(f"{'findings':>8} {'evaluator':>9} {'cold ms':>8} {'warm p50':>9} {'warm p99':>9} "
          f"{'whole: input':>12} {'decide':>8}  verdict (warnings)")
    for r in rows:
        for name in EMBEDDED:
            c = r[name]
            if c is None:
                print(f"{r['findings']:>8} {name:>9}  skipped (quadratic)")
                continue
            print(f"{r['findings']:>8} {name:>9} {c['cold_ms']:>8} {c['warm_p50_ms']:>9} "
                  f"{c['warm_p99_ms']:>9} {c['whole_build_ms']:>12} {c['whole_decide_ms']:>8}"
                  f"  {c['verdict']} ({c['warnings']})")
    print(f"load average {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
