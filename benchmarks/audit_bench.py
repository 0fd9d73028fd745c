"""Audit speed: `vigil audit verify` and `vigil audit report` over generated decision logs.

Two logs, each spread over one month (2026-01-01 to 2026-01-30):

* **small**: 1,000,000 decisions of small hosts (5 findings, ~6 KB per record);
* **large**: 10,000 decisions of real-size hosts (~1,300 findings, ~1 MB per record).

Every record is stored in full (nothing is deduplicated), with a signed checkpoint every
1,000 records, as the product writes them. The input documents are the decide benchmark's
(`decide_bench.document`), each record its own host, tenant, VM and time; the results,
metrics, labels and bundle are those of a real decision of the default bundle.

Generation takes the bulk path: the rows are made with the log's own hash definition
(``StoredRow.computed_hash``) and checkpoint statement and inserted into the log's schema
in Arrow batches. The bench first writes the first records again through the product's
writer (``DecisionLog.append``) and requires byte-identical rows and equal checkpoints, and
every measured verification is the product's own, which must pass. Logs are cached under
``--cache`` (default: $TMPDIR/vigil-audit-bench) by shape; a partial file is never used.

Measured, each in its own process (time, CPU time, records/s, MB/s of hashed record
bytes, peak RSS of that process, and the load average when it ended):

* ``vigil audit verify --log`` (the chain: every record's hash and link, every checkpoint);
* ``vigil audit report --from 2026-01-01 --to 2026-01-30`` over the small log (a month);
* the named peers over the same log: ``sha256sum`` of the DuckDB file, and a plain pass
  that reads the same columns from DuckDB and SHA-256s each record's bytes (the floor
  any check that reads the log must pay).

Targets on the 2-core reference machine: verification >= 50,000 records/s (small) and
>= 300 MB/s (large); the month's report <= 60 s with a peak RSS under 2 GiB.

    .venv/bin/python benchmarks/audit_bench.py [--small 1000000] [--large 10000]
        [--large-findings 1300] [--cache DIR] [--json]
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import duckdb  # noqa: E402
import pyarrow as pa  # noqa: E402

from engine.decide import (  # noqa: E402
    CHECKPOINT_TYP,
    GENESIS,
    Decider,
    DecisionLog,
    StoredRow,
    build_bundle,
    canonical_json,
    checkpoint_payload,
    embedded_evaluator,
    load_directory,
    opa_timestamp,
    read_bundle,
)
from engine.keys import load_signing_key, sign_compact  # noqa: E402

START = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
MONTH = dt.timedelta(days=30)
EVERY = 1000
GENERATOR = 1
"""Bumped when the generated records change (the cache key)."""
TARGET_SMALL_RPS = 50_000
TARGET_LARGE_MBPS = 300
TARGET_REPORT_S = 60
TARGET_REPORT_RSS = 2 << 30
COLUMNS = ("seq", "decision_id", "ts", "path", "input", "result", "bundle_revision",
           "evaluator", "metrics", "error", "labels", "prev_hash", "record_hash", "bundles",
           "attestation_sha256")
_MARK = re.compile(r'"@@(\w+)@@"')


@dataclass(frozen=True)
class Shape:
    name: str
    count: int
    findings: int
    hosts: int
    tenants: int

    @property
    def stem(self) -> str:
        return f"{self.name}-{self.count}x{self.findings}-g{GENERATOR}"


# --- generation ----------------------------------------------------------------------


def _keys(cache: Path) -> tuple[Path, Path]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    private, public = cache / "audit-key.pem", cache / "audit-key.pub.pem"
    if not (private.exists() and public.exists()):
        key = ec.generate_private_key(ec.SECP256R1())
        private.write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        public.write_bytes(key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


@dataclass
class Variant:
    """One input document as text pieces around its per-record fields, and the stored
    fields of a real decision of it."""

    pieces: list[str]
    path: str
    result_text: str
    bundle_revision: str | None
    evaluator: str
    metrics_text: str
    labels_text: str


def _variants(shape: Shape, scratch: Path) -> tuple[list[Variant], list[tuple[str, bytes, str]]]:
    """Two documents (patched configuration preparing / ready), each decided once by the
    default bundle through the real decider and log; and that bundle's archive."""
    from decide_bench import document

    policy = read_bundle("default bundle",
                         build_bundle(load_directory(ROOT / "engine" / "policies", ["vigil"])))
    evaluator = embedded_evaluator("regorus", policy, timeout=30.0)
    variants = []
    scratch.unlink(missing_ok=True)
    with DecisionLog(scratch) as log:
        decider = Decider(evaluator, log, clock=lambda: START)
        for ready in (False, True):
            doc = document(shape.findings, patched_ready=ready)
            decider.decide(doc)
            row = list(log.rows())[-1]
            doc["host"]["id"] = "@@host@@"
            doc["request"]["tenant"] = "@@tenant@@"
            doc["request"]["vm"]["name"] = "@@vm@@"
            doc["decision_time"] = {"rfc3339": "@@rfc3339@@", "ns": "@@ns@@"}
            doc["host"]["attestation"]["issued_at"] = "@@issued@@"
            doc["host"]["attestation"]["issued_at_ns"] = "@@issued_ns@@"
            variants.append(Variant(_MARK.split(canonical_json(doc)), row.path, row.result_text,
                                    row.bundle_revision, row.evaluator, row.metrics_text,
                                    row.labels_text))
        bundles = log.bundle_entries(policy.revision)
        origins = [(sha, archive, origin or "") for sha, archive, origin in bundles]
    evaluator.close()
    scratch.unlink(missing_ok=True)
    return variants, origins


def _fill(variant: Variant, values: dict[str, str]) -> str:
    pieces = variant.pieces
    out = [pieces[0]]
    for i in range(1, len(pieces), 2):
        out.append(values[pieces[i]])
        out.append(pieces[i + 1])
    return "".join(out)


def _record(shape: Shape, variants: list[Variant], seq: int) -> dict[str, Any]:
    """The append() arguments of record ``seq`` (1-based)."""
    step = MONTH / shape.count
    when = START + step * (seq - 1)
    ns = int(when.timestamp()) * 10**9 + when.microsecond * 1000
    issued = when - dt.timedelta(minutes=10)
    i = seq - 1
    variant = variants[i % 7 == 0]
    host = f"hv-{(i * 7919) % shape.hosts:05d}"
    tenant = f"tenant-{i % shape.tenants:03d}"
    values = {"host": f'"{host}"', "tenant": f'"{tenant}"', "vm": f'"vm-{i % 50_000:05d}"',
              "rfc3339": f'"{opa_timestamp(when)}"', "ns": str(ns),
              "issued": f'"{opa_timestamp(issued)}"', "issued_ns": str(ns - 600 * 10**9)}
    return {"decision_id": f"00000000-0000-4000-8000-{seq:012d}", "timestamp": when,
            "path": variant.path, "input_text": _fill(variant, values),
            "result_text": variant.result_text, "bundle_revision": variant.bundle_revision,
            "evaluator": variant.evaluator, "metrics_text": variant.metrics_text,
            "labels_text": variant.labels_text}


def _row(fields: dict[str, Any], seq: int, prev: str) -> tuple[StoredRow, int]:
    """The stored row of record ``seq`` after ``prev``, and its hashed bytes."""
    row = StoredRow(seq=seq, decision_id=fields["decision_id"],
                    timestamp=fields["timestamp"], path=fields["path"],
                    input_text=fields["input_text"], result_text=fields["result_text"],
                    bundle_revision=fields["bundle_revision"], evaluator=fields["evaluator"],
                    metrics_text=fields["metrics_text"], error=None,
                    labels_text=fields["labels_text"], prev_hash=prev, record_hash="",
                    bundles_text=None, attestation_sha256=None)
    body = row.body()
    return (dataclasses.replace(row, record_hash=row.computed_hash(prev)),
            len(prev) + len(body.encode()))


def _batch(rows: list[StoredRow]) -> pa.Table:
    data = {c: [] for c in COLUMNS}
    for row in rows:
        for column, value in zip(COLUMNS, (
                row.seq, row.decision_id, row.timestamp, row.path, row.input_text,
                row.result_text, row.bundle_revision, row.evaluator, row.metrics_text,
                row.error, row.labels_text, row.prev_hash, row.record_hash,
                row.bundles_text, row.attestation_sha256), strict=True):
            data[column].append(value)
    types = {"seq": pa.int64(), "ts": pa.timestamp("us", tz="UTC")}
    return pa.table({c: pa.array(v, type=types.get(c, pa.large_string()))
                     for c, v in data.items()})


def generate(shape: Shape, cache: Path, key_path: Path, *, check: int) -> dict[str, Any]:
    """The cached log of ``shape`` (made when missing) and its facts."""
    target = cache / f"{shape.stem}.duckdb"
    facts_path = cache / f"{shape.stem}.json"
    if target.exists() and facts_path.exists():
        return {**json.loads(facts_path.read_text()), "log": str(target), "cached": True}
    need = shape.count * (7_000 + shape.findings * 800) * 1.3
    free = shutil.disk_usage(cache).free
    if need > free * 0.8:
        raise SystemExit(f"error: the {shape.name} log needs about {need / 2**30:.1f} GiB, "
                         f"{free / 2**30:.1f} GiB are free under {cache} (lower --{shape.name}"
                         " or pick another --cache)")
    started = time.perf_counter()
    partial = cache / f"{shape.stem}.partial.duckdb"
    partial.unlink(missing_ok=True)
    variants, bundles = _variants(shape, cache / f"{shape.stem}.seed.duckdb")
    key = load_signing_key(key_path)
    with DecisionLog(partial) as log:  # the schema and the log's identity
        for sha, archive, origin in bundles:
            del sha
            assert variants[0].bundle_revision is not None
            log.record_bundle(variants[0].bundle_revision, archive, origin)
        log_id = log.log_id
    assert log_id is not None
    con = duckdb.connect(str(partial))
    prev, hashed, batch, checkpoints = GENESIS, 0, [], []
    size = 256 if shape.findings < 100 else 8
    for seq in range(1, shape.count + 1):
        row, nbytes = _row(_record(shape, variants, seq), seq, prev)
        prev, hashed = row.record_hash, hashed + nbytes
        batch.append(row)
        if seq % EVERY == 0:
            now = dt.datetime.now(dt.UTC)
            number = len(checkpoints) + 1
            token = sign_compact(checkpoint_payload(
                log_id=log_id, number=number, size=seq, head=prev,
                time_text=opa_timestamp(now), kid=key.kid, kind="periodic", every=EVERY),
                key, CHECKPOINT_TYP)
            checkpoints.append((number, seq, prev, now, key.kid, "periodic", token))
        if len(batch) >= size * 32 or seq == shape.count:
            con.register("arrow_rows", _batch(batch))
            con.execute(f"INSERT INTO decision_log ({', '.join(COLUMNS)})"
                        " SELECT * FROM arrow_rows")
            con.unregister("arrow_rows")
            batch = []
        if seq % 100_000 == 0 or (shape.findings >= 100 and seq % 1000 == 0):
            print(f"  {shape.name}: {seq} records generated "
                  f"({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    if checkpoints:
        con.executemany("INSERT INTO decision_checkpoints VALUES (?, ?, ?, ?, ?, ?, ?)",
                        checkpoints)
    con.execute("CHECKPOINT")
    con.close()
    _same_as_writer(shape, partial, variants, bundles, key_path, min(check, shape.count))
    facts = {"records": shape.count, "findings": shape.findings, "hashed_bytes": hashed,
             "checkpoints": len(checkpoints), "checked_against_writer": min(check, shape.count),
             "generated_s": round(time.perf_counter() - started, 1),
             "file_bytes": partial.stat().st_size}
    partial.replace(target)
    facts_path.write_text(json.dumps(facts))
    return {**facts, "log": str(target), "cached": False}


def _same_as_writer(shape: Shape, bulk: Path, variants: list[Variant],
                    bundles: list[tuple[str, bytes, str]], key_path: Path, count: int) -> None:
    """Write the first ``count`` records through DecisionLog.append and require the bulk
    log's rows to be byte-identical (and its checkpoints to sign the same heads)."""
    reference = bulk.with_suffix(".writer.duckdb")
    reference.unlink(missing_ok=True)
    with DecisionLog(reference, signing_key=load_signing_key(key_path),
                     checkpoint_every=EVERY) as log:
        for seq in range(1, count + 1):
            fields = _record(shape, variants, seq)
            log.append(decision_id=fields["decision_id"], timestamp=fields["timestamp"],
                       path=fields["path"], input_document=json.loads(fields["input_text"]),
                       result=json.loads(fields["result_text"]),
                       bundle_revision=fields["bundle_revision"],
                       evaluator=fields["evaluator"],
                       metrics=json.loads(fields["metrics_text"]), error=None,
                       labels=json.loads(fields["labels_text"]))
        written = list(log.rows("seq <= ?", [count]))
        signed = [(c.number, c.size, c.head, c.kind) for c in log.checkpoints()]
    with DecisionLog(bulk, read_only=True) as log:
        made = list(log.rows("seq <= ?", [count]))
        made_signed = [(c.number, c.size, c.head, c.kind) for c in log.checkpoints()
                       if c.size <= count]
    reference.unlink(missing_ok=True)
    if written != made or signed != made_signed:
        raise SystemExit(f"error: the bulk path's {shape.name} records differ from the "
                         "writer's (the generator is wrong)")


# --- measurement ---------------------------------------------------------------------


def _hwm(pid: int) -> int:
    """The process's peak resident set (VmHWM, bytes), 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def measure(argv: list[str], env: dict[str, str], out: Path) -> dict[str, Any]:
    """Run ``argv``; its wall time, peak RSS (VmHWM of its own process, read every
    10 ms: it does not count this process, which a child's rusage would) and CPU time
    (user + system, from its rusage: on a shared machine the wall time also counts the
    time other work held the cores)."""
    with out.open("wb") as sink, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        process = subprocess.Popen(argv, stdout=sink, stderr=err, env=env)
        peak = 0
        cpu = 0.0
        while True:
            peak = max(peak, _hwm(process.pid))
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                process.returncode = os.waitstatus_to_exitcode(status)
                cpu = usage.ru_utime + usage.ru_stime
                break
            time.sleep(0.01)
        elapsed = time.perf_counter() - started
        err.seek(0)
        text = err.read().decode(errors="replace").strip()
    if process.returncode != 0:
        raise SystemExit(f"error: {' '.join(argv[:6])} … exited {process.returncode}: "
                         f"{text[-400:]}")
    return {"seconds": round(elapsed, 2), "cpu_s": round(cpu, 2),
            "peak_rss_mib": round(peak / 2**20, 1), "loadavg": os.getloadavg()[0]}


def peer_floor(log: str) -> None:
    """The floor peer, run in its own process: read the hashed columns of every record
    from DuckDB (Arrow batches, in storage order: no sort) and SHA-256 each record's
    bytes; prints the count."""
    con = duckdb.connect(log, read_only=True)
    con.execute("SET arrow_large_buffer_size = true")
    reader = con.sql("SELECT prev_hash, decision_id, path, input, result, evaluator,"
                     " metrics, labels FROM decision_log").to_arrow_reader(64)
    count = 0
    for batch in reader:
        columns = [c.to_pylist() for c in batch.columns]
        for values in zip(*columns, strict=True):
            hashlib.sha256("".join(values).encode()).digest()
            count += 1
    print(count)


def _env(cache: Path, public: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"PYTHONPATH": str(ROOT), "VIGIL_AUDIT_VERIFICATION_KEYS": json.dumps(
        [str(public)]), "VIGIL_AUDIT_CHECKPOINT_EVERY": str(EVERY),
        "VIGIL_DB": str(cache / "no-pvdb.duckdb"),
        "VIGIL_IMAGES_DB": str(cache / "no-images.duckdb"),
        "VIGIL_ROLLOUT_DB": str(cache / "no-rollout.duckdb"),
        "VIGIL_DECISION_LOG_WAIT": "0"})
    env.pop("VIGIL_AUDIT_SIGNING_KEY", None)
    return env


def run_shape(shape: Shape, cache: Path, keys: tuple[Path, Path], *, check: int,
              report: bool) -> dict[str, Any]:
    facts = generate(shape, cache, keys[0], check=check)
    log, env = facts["log"], _env(cache, keys[1])
    cli = [sys.executable, "-m", "engine.cli.main", "audit"]
    megabytes = facts["hashed_bytes"] / 1e6
    rows: dict[str, Any] = {"facts": facts}

    def rates(m: dict[str, Any]) -> dict[str, Any]:
        return {**m, "records_per_s": round(facts["records"] / m["seconds"]),
                "mb_per_s": round(megabytes / m["seconds"], 1)}

    verify = measure([*cli, "verify", "--log", log, "--json"], env, cache / "verify.json")
    found = json.loads((cache / "verify.json").read_text())
    if not found["verified"] or found["records"] != facts["records"] or \
            len(found["checkpoints"]) != facts["checkpoints"]:
        raise SystemExit(f"error: the {shape.name} log did not verify as generated")
    rows["verify"] = rates(verify)
    rows["sha256sum"] = rates(measure(["sha256sum", log], env, cache / "sha256sum.txt"))
    rows["floor"] = rates(measure([sys.executable, __file__, "--peer-floor", log], env,
                                  cache / "floor.txt"))
    if report:
        out = cache / f"{shape.stem}.report.json"
        measured = measure([*cli, "report", "--from", START.date().isoformat(), "--to",
                            (START + MONTH - dt.timedelta(days=1)).date().isoformat(),
                            "--as-of", "2026-03-01", "--log", log, "--out", str(out)],
                           env, cache / "report.stdout")
        summary = json.loads(out.read_text())["summary"]
        if summary["decisions"] != facts["records"]:
            raise SystemExit(f"error: the report counted {summary['decisions']} decisions, "
                             f"the log holds {facts['records']}")
        rows["report"] = {**rates(measured), "decisions": summary["decisions"],
                          "report_bytes": out.stat().st_size}
        out.unlink()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=1_000_000,
                        help="decisions of small hosts (0: skip)")
    parser.add_argument("--small-findings", type=int, default=5)
    parser.add_argument("--large", type=int, default=10_000,
                        help="decisions of real-size hosts (0: skip)")
    parser.add_argument("--large-findings", type=int, default=1300)
    parser.add_argument("--check", type=int, default=1100,
                        help="records written again through the product's writer to check "
                             "the bulk path (small; the large log checks a tenth as many)")
    parser.add_argument("--cache", type=Path,
                        default=Path(tempfile.gettempdir()) / "vigil-audit-bench")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--peer-floor", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer_floor:
        peer_floor(args.peer_floor)
        return 0
    if min(args.small, args.large, args.small_findings, args.large_findings) < 0:
        print("error: counts are not negative", file=sys.stderr)
        return 2
    args.cache.mkdir(parents=True, exist_ok=True)
    keys = _keys(args.cache)
    results: dict[str, Any] = {"machine": platform.platform(), "cpus": os.cpu_count(),
                               "python": platform.python_version(),
                               "duckdb": duckdb.__version__}
    if args.small:
        results["small"] = run_shape(Shape("small", args.small, args.small_findings, 5000,
                                           200), args.cache, keys, check=args.check,
                                     report=True)
    if args.large:
        results["large"] = run_shape(Shape("large", args.large, args.large_findings, 500,
                                           50), args.cache, keys,
                                     check=max(1, args.check // 100), report=False)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    _print(results)
    return 0


def _print(results: dict[str, Any]) -> None:
    print(f"{results['machine']}, {results['cpus']} CPUs, Python {results['python']}, "
          f"DuckDB {results['duckdb']}")
    for name in ("small", "large"):
        if name not in results:
            continue
        r = results[name]
        f = r["facts"]
        print(f"\n{name}: {f['records']} records, {f['findings']} findings each, "
              f"{f['hashed_bytes'] / f['records'] / 1e3:.1f} KB per record, "
              f"{f['hashed_bytes'] / 1e9:.2f} GB hashed, file {f['file_bytes'] / 1e9:.2f} GB, "
              f"{f['checkpoints']} checkpoints ({'cached' if f['cached'] else 'generated'}"
              f" in {f['generated_s']} s; {f['checked_against_writer']} records checked "
              "byte for byte against the product's writer)")
        print(f"  {'what':<34} {'s':>8} {'CPU s':>8} {'records/s':>10} {'MB/s':>8} "
              f"{'peak RSS MiB':>13} {'load':>5}")
        for key, label in (("verify", "vigil audit verify"),
                           ("report", "vigil audit report (the month)"),
                           ("sha256sum", "peer: sha256sum of the DuckDB file"),
                           ("floor", "peer: DuckDB scan + sha256 floor")):
            if key in r:
                m = r[key]
                print(f"  {label:<34} {m['seconds']:>8} {m['cpu_s']:>8} "
                      f"{m['records_per_s']:>10} {m['mb_per_s']:>8} {m['peak_rss_mib']:>13} "
                      f"{m['loadavg']:>5.2f}")
        if name == "small":
            v = r["verify"]["records_per_s"]
            print(f"  target verify >= {TARGET_SMALL_RPS} records/s: "
                  f"{'met' if v >= TARGET_SMALL_RPS else 'MISSED'} ({v})")
            rep = r["report"]
            ok = rep["seconds"] <= TARGET_REPORT_S and \
                rep["peak_rss_mib"] * 2**20 < TARGET_REPORT_RSS
            print(f"  target report <= {TARGET_REPORT_S} s, < 2 GiB: "
                  f"{'met' if ok else 'MISSED'} ({rep['seconds']} s, "
                  f"{rep['peak_rss_mib']} MiB)")
        else:
            v = r["verify"]["mb_per_s"]
            print(f"  target verify >= {TARGET_LARGE_MBPS} MB/s: "
                  f"{'met' if v >= TARGET_LARGE_MBPS else 'MISSED'} ({v})")


if __name__ == "__main__":
    raise SystemExit(main())
