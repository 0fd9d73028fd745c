"""PVDB benchmark: full, unchanged and incremental ingest of a CVE JSON 5 corpus, and
``affecting`` latency for 50-component hosts.

Steps (each on the same DuckDB file, created fresh for step 1):

1. full ingest of a generated corpus (``gen_cve5_corpus.py``, default 300,000 records);
2. re-ingest of the unchanged corpus: must write 0 records (``report.changed``);
3. incremental ingest of 1,000 changed records (same ids, later ``dateUpdated``):
   ``counts['cve5'].updated`` must be 1,000;
4. ``Pvdb.affecting`` for realistic 50-component hosts (Linux kernel + products of the
   corpus), on a fresh read-only connection: the first query (loads the match index) is
   timed apart from the steady-state p50 / p99 / mean over ``--queries`` queries.
5. The real Linux kernel CNA corpus (``../shared/data/feeds/kernel_cna_full``, every record
   the CNA had published, with the kernel release dates), when present: ingest into a fresh
   file (the per-line fix history is derived and stored at its end), the history read as
   stored against derived again (its peer: what a query paid before it was stored), and
   ``affecting`` with estimates on for kernel hosts, first time a host is asked and again.

Usage::

    .venv/bin/python benchmarks/pvdb_bench.py [--count 300000] [--workdir DIR] [--json]

The corpus and the mutated records are kept in ``--workdir`` (default
``$TMPDIR/vigil-pvdb-bench``) and reused when already generated with the same
``--count`` / ``--seed``. This is a benchmark, not a test: targets are reported as
pass/fail, never asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import datetime as dt
import functools
import io
import os
import platform
import pstats
import random
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import duckdb
import orjson

try:  # run as a script (benchmarks/ on sys.path) or as ``python -m benchmarks.pvdb_bench``
    import gen_cve5_corpus as gen
except ImportError:  # pragma: no cover - depends on how the script is started
    from benchmarks import gen_cve5_corpus as gen

from engine.config import load_settings
from engine.predict import estimator_for
from engine.pvdb import Component, IngestReport, Pvdb

TARGET_FULL_S = 120.0
TARGET_INCREMENTAL_S = 3.0
TARGET_P99_MS = 5.0
TARGET_COVERAGE_SHARE = 0.10
"""Coverage (which sources cover each component) must not cost the query path more."""
AS_OF = dt.datetime(2026, 8, 1, tzinfo=dt.UTC)
"""Fixed query date, so fix-availability filtering is reproducible."""


def _log(quiet: bool, message: str) -> None:
    if not quiet:
        print(message, file=sys.stderr, flush=True)


def machine_info() -> dict[str, Any]:
    cpu_model = None
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_gib = None
    with contextlib.suppress(ValueError, OSError, AttributeError):
        mem_gib = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model,
        "memory_gib": mem_gib,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "orjson": orjson.__version__,
        "loadavg_start": _loadavg(),
    }


def _loadavg() -> list[float] | None:
    """1/5/15-minute load averages: other work on the machine skews every figure."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def _du(path: Path) -> int:
    total = 0
    for p in (path, path.with_name(path.name + ".wal")):
        if p.exists():
            total += p.stat().st_size
    return total


def _ensure_corpus(folder: Path, count: int, seed: int, mutate: int | None, jobs: int | None,
                   regenerate: bool, quiet: bool) -> dict[str, Any]:
    if not regenerate and gen.corpus_ready(folder, count, seed, mutate):
        marker = gen.read_marker(folder) or {}
        _log(quiet, f"reusing {folder} ({marker.get('files', '?'):,} files)")
        return {**marker, "path": str(folder), "reused": True}
    what = f"{mutate:,} changed records" if mutate else f"{count:,} records"
    _log(quiet, f"generating {what} into {folder} …")
    marker = gen.generate(folder, count, seed, mutate=mutate, jobs=jobs, quiet=quiet)
    return {**marker, "path": str(folder), "reused": False}


def _timed_ingest(db: Pvdb, sources: list[str],
                  profile: Path | None = None) -> tuple[IngestReport, float]:
    profiler = cProfile.Profile() if profile else None
    started = time.perf_counter()
    if profiler:
        profiler.enable()
    report = db.ingest(sources)
    if profiler:
        profiler.disable()
    wall = time.perf_counter() - started
    if profiler and profile:
        profiler.dump_stats(str(profile))
    return report, wall


def _counts(report: IngestReport) -> dict[str, int]:
    c = report.counts.get("cve5")
    return {
        "added": c.added if c else 0,
        "updated": c.updated if c else 0,
        "unchanged": c.unchanged if c else 0,
        "stale": c.stale if c else 0,
        "problems": len(report.problems),
        "changed": report.changed,
    }


# --- hosts -------------------------------------------------------------------------------


def _component(p: gen.Product, rng: random.Random) -> Component:
    version = p.sample_version(rng)
    if p.style == "rpm":
        major = rng.choice((8, 9))
        version = f"{version}-{rng.randint(1, 40)}.el{major}_{rng.randint(0, 6)}"
        return Component(kind=p.kind, version=version,
                         purl=f"pkg:rpm/redhat/{p.package}@{version}?distro=el{major}")
    purl_type = p.purl_type
    if purl_type and p.package:
        return Component(kind=p.kind, version=version,
                         purl=f"pkg:{purl_type}/{p.package}@{version}")
    return Component(kind=p.kind, vendor=p.vendor or "n/a", product=p.product or p.package,
                     version=version)


def build_hosts(products: Sequence[gen.Product], n_hosts: int, size: int,
                seed: int) -> list[list[Component]]:
    """``n_hosts`` hosts of ``size`` components: a Linux kernel on a stable branch plus
    ``size - 1`` distinct products drawn uniformly from the head of the corpus catalogue
    (real vendor/product pairs, Red Hat rpm streams as purls, synthetic products)."""
    rng = random.Random(f"hosts:{seed}")
    usable = [p for p in products if (p.product or p.package)]
    branches = ["5.10", "5.15", "6.1", "6.6", "6.12", "6.16"]
    hosts = []
    for _ in range(n_hosts):
        branch = rng.choice(branches)
        top = gen.KERNEL_BRANCHES[branch][0]
        kernel = Component(kind="kernel", vendor="linux", product="linux_kernel",
                           version=f"{branch}.{rng.randint(top // 3, top)}")
        chosen: dict[int, gen.Product] = {}
        while len(chosen) < size - 1:
            p = rng.choice(usable)
            chosen.setdefault(id(p), p)
        hosts.append([kernel, *(_component(p, rng) for p in chosen.values())])
    return hosts


def _summary(values: Sequence[float]) -> dict[str, Any]:
    """Latency figures (ms) of a subset of the queries."""
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50_ms": round(_percentile(values, 0.5), 3),
            "p99_ms": round(_percentile(values, 0.99), 3),
            "mean_ms": round(statistics.fmean(values), 3)}


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


class _Timed:
    """Wraps a function of the query path and sums the time spent in it (the coverage
    part of ``affecting``, measured inside the same queries it is a share of)."""

    def __init__(self, owner: Any, name: str) -> None:
        self.owner, self.name = owner, name
        self.inner = getattr(owner, name)
        self.seconds = 0.0
        self.calls = 0

    def __enter__(self) -> _Timed:
        inner = self.inner

        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started
                self.calls += 1

        setattr(self.owner, self.name, timed)
        return self

    def __exit__(self, *exc: object) -> None:
        setattr(self.owner, self.name, self.inner)


def bench_query(db_path: Path, settings: Any, hosts: list[list[Component]], queries: int,
                budget_s: float, quiet: bool) -> dict[str, Any]:
    from engine.pvdb import coverage as coverage_mod
    from engine.pvdb import query as query_mod

    with _Timed(query_mod, "_coverage") as per_component, \
            _Timed(coverage_mod, "load") as at_load:
        result = _bench_query(db_path, settings, hosts, queries, budget_s, quiet)
    spent_ms = result.pop("_first_seen_total_ms") + result["first_ms"]
    cov_ms = (per_component.seconds + at_load.seconds) * 1000
    result["coverage"] = {
        "per_component_ms": round(per_component.seconds * 1000, 2),
        "per_component_calls": per_component.calls,
        "index_load_ms": round(at_load.seconds * 1000, 2),
        "first_time_queries_ms": round(spent_ms, 1),
        "share": round(cov_ms / spent_ms, 4) if spent_ms else None,
    }
    if result["coverage"]["share"] is not None:
        result["coverage"]["pass"] = result["coverage"]["share"] <= TARGET_COVERAGE_SHARE
    return result


def _bench_query(db_path: Path, settings: Any, hosts: list[list[Component]], queries: int,
                 budget_s: float, quiet: bool) -> dict[str, Any]:
    opened = time.perf_counter()
    db = Pvdb.open(db_path, read_only=True, settings=settings)
    open_s = time.perf_counter() - opened
    try:
        estimator = estimator_for(db, AS_OF)
        affecting: Callable[..., Any] = functools.partial(db.affecting, estimator=estimator)
        started = time.perf_counter()
        first = affecting(hosts[0], as_of=AS_OF)
        first_ms = (time.perf_counter() - started) * 1000
        _log(quiet, f"  first query {first_ms:.1f} ms: {len(first.findings)} findings, "
                    f"{len(first.undetermined)} undetermined")
        findings: dict[int, tuple[int, int]] = {0: (len(first.findings),
                                                    len(first.undetermined))}
        latencies: list[float] = []
        first_seen: list[float] = []
        repeated: list[float] = []
        loop_started = time.perf_counter()
        for q in range(queries):
            h = q % len(hosts)
            started = time.perf_counter()
            answer = affecting(hosts[h], as_of=AS_OF)
            latencies.append((time.perf_counter() - started) * 1000)
            (repeated if q >= len(hosts) else first_seen).append(latencies[-1])
            findings.setdefault(h, (len(answer.findings), len(answer.undetermined)))
            if time.perf_counter() - loop_started > budget_s and q + 1 < queries:
                _log(quiet, f"  query budget of {budget_s:.0f} s spent after {q + 1} queries")
                break
        kernel_only = affecting(hosts[0][:1], as_of=AS_OF)
    finally:
        db.close()
    per_host = [f for f, _ in findings.values()]
    return {
        "hosts": len(hosts),
        "components_per_host": len(hosts[0]),
        "queries": len(latencies),
        "queries_requested": queries,
        "budget_s": budget_s,
        "open_ms": round(open_s * 1000, 2),
        "first_ms": round(first_ms, 2),
        "p50_ms": round(_percentile(latencies, 0.50), 3),
        "p99_ms": round(_percentile(latencies, 0.99), 3),
        "mean_ms": round(statistics.fmean(latencies), 3) if latencies else None,
        "max_ms": round(max(latencies), 3) if latencies else None,
        "first_seen_hosts": _summary(first_seen),
        "_first_seen_total_ms": sum(first_seen),
        "repeated_hosts": _summary(repeated),
        "host0_findings": findings[0][0],
        "host0_undetermined": findings[0][1],
        "host0_kernel": hosts[0][0].version,
        "host0_kernel_findings": len(kernel_only.findings),
        "findings_min": min(per_host),
        "findings_median": statistics.median(per_host),
        "findings_max": max(per_host),
        "undetermined_median": statistics.median(u for _, u in findings.values()),
    }


# --- the run -------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict[str, Any]:
    quiet = args.quiet
    workdir: Path = args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    corpus_dir = workdir / f"corpus-{args.count}-s{args.seed}"
    mutated_dir = workdir / f"mutated-{args.count}-s{args.seed}-{args.mutate}"
    db_path = workdir / "pvdb-bench.duckdb"
    result: dict[str, Any] = {"machine": machine_info(), "targets": {
        "full_ingest_s": TARGET_FULL_S, "reingest_changed": 0,
        "incremental_s": TARGET_INCREMENTAL_S, "query_p99_ms": TARGET_P99_MS,
    }}
    result["corpus"] = _ensure_corpus(corpus_dir, args.count, args.seed, None, args.jobs,
                                      args.regenerate, quiet)
    result["mutated"] = _ensure_corpus(mutated_dir, args.count, args.seed, args.mutate,
                                       args.jobs, args.regenerate, quiet)
    settings = load_settings(db=db_path, offline=True)
    result["settings"] = {"ingest_batch": settings.ingest_batch, "db": str(db_path)}
    done_marker = db_path.with_name(db_path.name + ".done.json")
    built_from = {"count": args.count, "seed": args.seed, "mutate": args.mutate,
                  "generator_version": gen.GENERATOR_VERSION}
    if args.query_only:
        try:
            ready = orjson.loads(done_marker.read_bytes()) == built_from
        except (OSError, orjson.JSONDecodeError):
            ready = False
        if not ready:
            raise SystemExit(f"--query-only needs {db_path} built by a full run with the same "
                             "--count/--seed/--mutate; run without --query-only first")
        _log(quiet, f"--query-only: reusing {db_path}")
        for step in ("full_ingest", "reingest", "incremental"):
            result[step] = {"skipped": "--query-only"}
    else:
        done_marker.unlink(missing_ok=True)
        _ingest_steps(result, db_path, settings, corpus_dir, mutated_dir, args, quiet)
        done_marker.write_bytes(orjson.dumps(built_from))

    # 4. affecting latency
    if args.skip_query:
        result["query"] = {"skipped": "--skip-query"}
    else:
        ctx_products = gen.build_catalogue(gen.load_templates(args.templates), args.seed)
        hosts = build_hosts(ctx_products, args.hosts, args.components, args.seed)
        _log(quiet, f"affecting: {args.queries} queries over {len(hosts)} hosts of "
                    f"{args.components} components …")
        try:
            query = bench_query(db_path, settings, hosts, args.queries, args.query_budget,
                                quiet)
        except Exception as exc:  # a benchmark reports a broken engine, it does not die
            query = {"error": f"Pvdb.affecting failed: {exc!r}"}
            _log(quiet, "  " + "".join(traceback.format_exception(exc)).strip())
        if "p99_ms" in query:
            query["pass"] = query["p99_ms"] <= TARGET_P99_MS
        result["query"] = query
    if args.skip_real:
        result["real"] = {"skipped": "--skip-real"}
    else:
        result["real"] = bench_real(args.shared_data, args.workdir, quiet)
    result["db_bytes"] = _du(db_path)
    result["machine"]["loadavg_end"] = _loadavg()
    return result


def _ingest_steps(result: dict[str, Any], db_path: Path, settings: Any, corpus_dir: Path,
                  mutated_dir: Path, args: argparse.Namespace, quiet: bool) -> None:
    for p in (db_path, db_path.with_name(db_path.name + ".wal")):
        p.unlink(missing_ok=True)

    # 1. full ingest into a fresh file
    _log(quiet, f"full ingest of {corpus_dir} …")
    opened = time.perf_counter()
    db = Pvdb.open(db_path, settings=settings)
    open_s = time.perf_counter() - opened
    try:
        report, wall = _timed_ingest(db, [str(corpus_dir)], args.profile)
    finally:
        db.close()
    counts = _counts(report)
    records = counts["added"] + counts["updated"] + counts["unchanged"] + counts["stale"]
    result["full_ingest"] = {
        "seconds": round(wall, 3), "report_seconds": round(report.seconds, 3),
        "open_seconds": round(open_s, 3), "records": records,
        "records_per_s": round(records / wall) if wall else None,
        "documents": report.documents, **counts, "db_bytes": _du(db_path),
        "problem_samples": [str(p) for p in report.problems[:5]],
        "pass": wall <= TARGET_FULL_S and counts["problems"] == 0,
    }
    _log(quiet, f"  {wall:.1f} s, {counts}")
    if args.profile:
        result["full_ingest"]["profile"] = str(args.profile)

    # 2. unchanged re-ingest (a new connection, as a second CLI run would have)
    _log(quiet, "re-ingest of the unchanged corpus …")
    db = Pvdb.open(db_path, settings=settings)
    try:
        generation_before = db.generation
        report, wall = _timed_ingest(db, [str(corpus_dir)])
        generation_after = db.generation
    finally:
        db.close()
    counts = _counts(report)
    result["reingest"] = {
        "seconds": round(wall, 3), **counts,
        "generation_unchanged": generation_before == generation_after,
        "pass": report.changed == 0,
    }
    _log(quiet, f"  {wall:.1f} s, {counts}")

    # 3. incremental ingest of the changed records
    _log(quiet, f"incremental ingest of {mutated_dir} …")
    db = Pvdb.open(db_path, settings=settings)
    try:
        report, wall = _timed_ingest(db, [str(mutated_dir)])
    finally:
        db.close()
    counts = _counts(report)
    result["incremental"] = {
        "seconds": round(wall, 3), "records": args.mutate, **counts,
        "pass": wall <= TARGET_INCREMENTAL_S and counts["updated"] == args.mutate,
    }
    _log(quiet, f"  {wall:.2f} s, {counts}")


REAL_HOSTS = ("6.6.30", "6.1.90", "5.15.160", "6.12.1")


def bench_real(shared: Path, workdir: Path, quiet: bool) -> dict[str, Any]:
    """Step 5 (see the module docstring)."""
    from engine.pvdb import history as hist

    feeds = shared / "feeds"
    sources = [str(p) for p in sorted((feeds / "kernel_cna_full").glob("*.zip"))]
    sources.append(str(feeds / "releases"))
    if len(sources) < 2:
        return {"skipped": f"no kernel CNA corpus under {feeds}"}
    db_path = workdir / "real-kernel.duckdb"
    for p in (db_path, db_path.with_name(db_path.name + ".wal")):
        p.unlink(missing_ok=True)
    settings = load_settings(db=db_path, offline=True)
    _log(quiet, f"real kernel CNA corpus: ingest of {', '.join(sources)} …")
    with Pvdb.open(db_path, settings=settings) as db:
        t0 = time.perf_counter()
        report = db.ingest(sources)
        ingest_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        derived = hist.derive(db._con, db._match_index())
        derive_s = time.perf_counter() - t0
    out: dict[str, Any] = {
        "ingest_seconds": round(ingest_s, 2), "documents": report.documents,
        "problems": len(report.problems), "line_fixes": len(derived.fixes),
        "history_derive_seconds": round(derive_s, 2),
    }
    hosts = [[Component(kind="kernel", vendor="linux", product="linux_kernel", version=v)]
             for v in REAL_HOSTS]
    with Pvdb.open(db_path, settings=settings, read_only=True) as db:
        t0 = time.perf_counter()
        stored = db.history()
        out["history_read_seconds"] = round(time.perf_counter() - t0, 3)
        out["history_identical"] = stored.fixes == derived.fixes
        estimator = estimator_for(db, AS_OF)
        first: list[float] = []
        again: list[float] = []
        findings: list[int] = []
        estimated: list[int] = []
        for host in hosts:
            t0 = time.perf_counter()
            answer = db.affecting(host, as_of=AS_OF, estimator=estimator)
            first.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            db.affecting(host, as_of=AS_OF, estimator=estimator)
            again.append((time.perf_counter() - t0) * 1000)
            findings.append(len(answer.findings))
            estimated.append(sum(f.fix.availability.basis.value == "estimated"
                                 for f in answer.findings))
    out.update({"hosts": list(REAL_HOSTS), "first_ms": [round(x, 1) for x in first],
                "again_ms": [round(x, 2) for x in again], "findings": findings,
                "estimated": estimated})
    _log(quiet, f"  ingest {ingest_s:.1f} s; history derive {derive_s:.2f} s, "
                f"read {out['history_read_seconds']:.3f} s")
    return out


def _fmt_s(x: float | None) -> str:
    return "-" if x is None else f"{x:,.2f} s"


def render(result: dict[str, Any]) -> str:
    m = result["machine"]
    c = result["corpus"]
    out = io.StringIO()
    w = out.write
    w(f"machine : {m['cpu_count']} CPU ({m['cpu_model']}), {m['memory_gib']} GiB, "
      f"Python {m['python']}, DuckDB {m['duckdb']}, orjson {m['orjson']}\n")
    w(f"          {m['platform']}; load average {m['loadavg_start']} at start, "
      f"{m.get('loadavg_end')} at end\n")
    gen_note = "reused" if c.get("reused") else f"generated in {c.get('seconds', 0):.1f} s"
    w(f"corpus  : {c.get('files', 0):,} CVE JSON 5 files, {c.get('bytes', 0) / 2**30:.2f} GiB"
      f" ({c.get('kernel_records', 0):,} kernel CNA, {c.get('rejected_records', 0):,} "
      f"rejected, {c.get('products', 0):,} products), {gen_note}; {c['path']}\n")
    w(f"batch   : {result['settings']['ingest_batch']} records per transaction; "
      f"DB {result['db_bytes'] / 2**20:,.0f} MiB\n\n")

    rows: list[tuple[str, str, str, str]] = []

    def verdict(ok: bool | None) -> str:
        return "-" if ok is None else ("PASS" if ok else "FAIL")

    f = result["full_ingest"]
    r = result["reingest"]
    i = result["incremental"]
    if "skipped" in f:
        rows.append(("ingest steps", "n/a", "", f["skipped"]))
    else:
        rows.append(("full ingest", _fmt_s(f["seconds"]), f"<= {TARGET_FULL_S:.0f} s",
                     verdict(f["pass"])))
        rows.append(("  records/s", f"{f['records_per_s']:,}", "", ""))
        rows.append(("  added / problems", f"{f['added']:,} / {f['problems']:,}",
                     "0 problems", ""))
        rows.append(("unchanged re-ingest", _fmt_s(r["seconds"]), "", ""))
        rows.append(("  records written (report.changed)", f"{r['changed']:,}", "0",
                     verdict(r["pass"])))
        rows.append(("  unchanged", f"{r['unchanged']:,}", "", ""))
        rows.append((f"incremental ingest ({i['records']:,} changed)", _fmt_s(i["seconds"]),
                     f"<= {TARGET_INCREMENTAL_S:.0f} s", verdict(i["pass"])))
        rows.append(("  counts['cve5'].updated", f"{i['updated']:,}", f"{i['records']:,}",
                     verdict(i["updated"] == i["records"])))
    q = result["query"]
    if "skipped" in q or "error" in q:
        rows.append(("affecting", "n/a", f"p99 <= {TARGET_P99_MS:.0f} ms",
                     q.get("skipped") or "FAIL: " + q["error"]))
    else:
        rows.append((f"affecting, {q['components_per_host']}-component host", "", "", ""))
        rows.append(("  first query (index load)", f"{q['first_ms']:,.1f} ms", "", ""))
        rows.append(("  p50", f"{q['p50_ms']:,.2f} ms", "", ""))
        rows.append(("  p99", f"{q['p99_ms']:,.2f} ms", f"<= {TARGET_P99_MS:.0f} ms",
                     verdict(q["pass"])))
        rows.append(("  mean / max", f"{q['mean_ms']:,.2f} / {q['max_ms']:,.2f} ms", "", ""))
        for label, key in (("first time a host is asked", "first_seen_hosts"),
                           ("host asked again", "repeated_hosts")):
            part = q.get(key) or {}
            if part.get("n"):
                rows.append((f"  {label} (n={part['n']}) p50/p99",
                             f"{part['p50_ms']:,.2f} / {part['p99_ms']:,.2f} ms", "", ""))
        cov = q.get("coverage") or {}
        if cov.get("share") is not None:
            cov_ms = cov["per_component_ms"] + cov["index_load_ms"]
            rows.append(("  coverage's share of first-time queries",
                         f"{cov['share'] * 100:.2f} % ({cov_ms:,.1f}"
                         f" of {cov['first_time_queries_ms']:,.0f} ms)",
                         f"<= {TARGET_COVERAGE_SHARE * 100:.0f} %", verdict(cov.get("pass"))))
        rows.append(("  queries / hosts", f"{q['queries']} / {q['hosts']}", "",
                     "" if q["queries"] == q["queries_requested"]
                     else f"budget of {q['budget_s']:.0f} s reached"))
        rows.append(("  findings, host 0", f"{q['host0_findings']:,} "
                     f"(+{q['host0_undetermined']:,} undetermined)", "", ""))
        rows.append((f"  findings, kernel {q['host0_kernel']} alone",
                     f"{q['host0_kernel_findings']:,}", "", ""))
        rows.append(("  findings per host min/median/max",
                     f"{q['findings_min']:,} / {q['findings_median']:,} / "
                     f"{q['findings_max']:,}", "", ""))
    real = result.get("real") or {}
    if "skipped" in real:
        rows.append(("real kernel CNA corpus", "n/a", "", real["skipped"]))
    elif real:
        rows.append((f"real kernel CNA corpus ({real['documents']:,} documents)",
                     _fmt_s(real["ingest_seconds"]), "", f"{real['problems']} problems"))
        rows.append((f"  history: {real['line_fixes']:,} line fixes, read as stored",
                     _fmt_s(real["history_read_seconds"]), "", ""))
        rows.append(("  history derived again (the peer: what a query paid before)",
                     _fmt_s(real["history_derive_seconds"]), "",
                     "identical" if real["history_identical"] else "DIFFERENT"))
        for host, a, b, n, e in zip(real["hosts"], real["first_ms"], real["again_ms"],
                                    real["findings"], real["estimated"], strict=True):
            rows.append((f"  affecting kernel {host}: first / again",
                         f"{a:,.0f} / {b:,.1f} ms", "", f"{n:,} findings, {e:,} estimated"))
    widths = [max(len(row[k]) for row in rows) for k in range(4)]
    header = ("measure", "value", "target", "result")
    widths = [max(wd, len(h)) for wd, h in zip(widths, header, strict=True)]
    line = "  ".join(h.ljust(wd) for h, wd in zip(header, widths, strict=True)).rstrip()
    w(line + "\n" + "-" * len(line) + "\n")
    for row in rows:
        w(f"{row[0].ljust(widths[0])}  {row[1].rjust(widths[1])}  "
          f"{row[2].ljust(widths[2])}  {row[3]}\n".rstrip() + "\n")
    if f.get("problem_samples"):
        w("\nfirst problems:\n" + "".join(f"  {p}\n" for p in f["problem_samples"]))
    return out.getvalue()


def _print_profile(path: Path, limit: int = 30) -> None:
    for key in ("cumulative", "tottime"):
        buf = io.StringIO()
        pstats.Stats(str(path), stream=buf).sort_stats(key).print_stats(limit)
        print(f"\n--- full ingest profile by {key} ({path}) ---", file=sys.stderr)
        print(buf.getvalue(), file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=300_000, help="records in the corpus")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workdir", type=Path,
                        default=Path(tempfile.gettempdir()) / "vigil-pvdb-bench",
                        help="where the corpus, mutated records and DuckDB file live")
    parser.add_argument("--mutate", type=int, default=1000,
                        help="changed records for the incremental ingest")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--query-budget", type=float, default=120.0, metavar="SECONDS",
                        help="stop the steady-state queries after this long (slow engines)")
    parser.add_argument("--hosts", type=int, default=20, help="distinct hosts queried")
    parser.add_argument("--components", type=int, default=50, help="components per host")
    parser.add_argument("--jobs", type=int, default=None, help="generator processes")
    parser.add_argument("--templates", type=Path, default=gen.DEFAULT_TEMPLATES)
    parser.add_argument("--regenerate", action="store_true",
                        help="regenerate the corpus even when one is present")
    parser.add_argument("--skip-query", action="store_true")
    parser.add_argument("--skip-real", action="store_true",
                        help="leave out step 5 (the real kernel CNA corpus)")
    parser.add_argument("--shared-data", type=Path, default=Path(os.environ.get(
        "VIGIL_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")),
        help="the public data folder holding feeds/kernel_cna_full (step 5)")
    parser.add_argument("--query-only", action="store_true",
                        help="skip the ingest steps and query the DB of an earlier full run")
    parser.add_argument("--profile", type=Path, default=None, metavar="OUT.prof",
                        help="run the full ingest under cProfile (slower) and save the stats")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--json-out", type=Path, default=None, metavar="FILE",
                        help="also write the JSON figures to FILE")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    args = parser.parse_args(argv)
    if args.count < 1 or not 0 < args.mutate <= args.count or args.queries < 1 \
            or args.hosts < 1 or args.components < 1:
        parser.error("--count, --mutate, --queries, --hosts and --components must be "
                     "positive (and --mutate <= --count)")
    result = run(args)
    text = orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n"
    if args.json_out:
        args.json_out.write_text(text, encoding="utf-8")
    if args.json:
        sys.stdout.write(text)
    else:
        sys.stdout.write(render(result))
    if args.profile:
        _print_profile(args.profile)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
