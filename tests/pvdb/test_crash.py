"""A real ingest process killed mid-write leaves the live PVDB exactly as it was (the
ingest writes the next generation beside it), and running the ingest again completes it
with nothing lost or duplicated. While an ingest runs, readers in other processes keep
answering from the live generation, and see the new one once it is switched in."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

from engine.pvdb import Component, Pvdb
from engine.pvdb.schema import FACT_TABLES
from tests.pvdb.records import cve5_record, kernel_affected, write_json

pytestmark = pytest.mark.slow

RECORDS = 12000
KERNEL = Component(kind="kernel", vendor="linux", product="linux_kernel", version="5.10.1")


def _corpus(folder: Path, first: int = 0, count: int = RECORDS) -> None:
    for i in range(first, first + count):
        fixes = [f"6.{1 + i % 5}.{10 + i % 40}", f"5.{10 + i % 5}.{100 + i % 90}"]
        write_json(folder / f"{i // 1000}" / f"CVE-2025-{10000 + i}.json",
                   cve5_record(f"CVE-2025-{10000 + i}", affected=kernel_affected("4.19", fixes)))


def _ingest_cmd(db: Path, corpus: Path) -> list[str]:
    return [sys.executable, "-m", "engine.cli.main", "feeds", "ingest", str(corpus),
            "--db", str(db), "--json"]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    env["VIGIL_INGEST_BATCH"] = "100"
    return env


def _snapshot(path: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every fact table's rows, sorted, without ingest times."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        out = {
            table: sorted(con.execute(f"SELECT * FROM {table}").fetchall(), key=repr)
            for table in FACT_TABLES
        }
        out["records"] = sorted(con.execute(
            "SELECT source, record_id, content_hash, modified FROM records").fetchall())
        return out
    finally:
        con.close()


def _wait_for_batches(proc: subprocess.Popen[bytes], staging: Path, threshold: int) -> None:
    """Until the next generation's WAL holds ``threshold`` bytes of committed batches."""
    wal = staging.with_name(staging.name + ".wal")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if wal.exists() and wal.stat().st_size > threshold:
            return
        time.sleep(0.005)
    assert proc.poll() is None, "ingest finished before it could be killed: grow RECORDS"


def test_kill_during_ingest_leaves_the_live_pvdb_then_resume(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    _corpus(first, 0, 2000)
    _corpus(second, 2000, RECORDS)
    env = _env()
    reference = tmp_path / "reference.duckdb"
    for corpus in (first, second):
        subprocess.run(_ingest_cmd(reference, corpus), env=env, check=True,
                       capture_output=True)

    victim = tmp_path / "victim.duckdb"
    subprocess.run(_ingest_cmd(victim, first), env=env, check=True, capture_output=True)
    before = _snapshot(victim)
    proc = subprocess.Popen(_ingest_cmd(victim, second), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for_batches(proc, victim.with_name(victim.name + ".next"), 1_000_000)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _snapshot(victim) == before  # the live file: untouched, consistent
    with Pvdb.open(victim, read_only=True) as db:
        assert len(db.affecting([KERNEL]).findings) == 2000

    rerun = subprocess.run(_ingest_cmd(victim, second), env=env, capture_output=True)
    assert rerun.returncode == 0, rerun.stderr.decode()
    assert _snapshot(victim) == _snapshot(reference)
    assert not victim.with_name(victim.name + ".next").exists()


READER = """
import sys, time, json
from pathlib import Path
from engine.pvdb import Component, Pvdb
kernel = Component(kind="kernel", vendor="linux", product="linux_kernel", version="5.10.1")
path, stop = Path(sys.argv[1]), Path(sys.argv[2])
seen, slowest, failures = [], 0.0, []
while not stop.exists():
    started = time.monotonic()
    try:
        with Pvdb.open(path, read_only=True) as db:
            found = len(db.affecting([kernel]).findings)
            seen.append((time.time(), found))
    except Exception as exc:
        failures.append(repr(exc))
    slowest = max(slowest, time.monotonic() - started)
print(json.dumps({"seen": seen, "slowest": slowest, "failures": failures}))
"""


def test_readers_answer_while_an_ingest_runs_and_then_see_its_generation(
        tmp_path: Path) -> None:
    import json

    first, second = tmp_path / "first", tmp_path / "second"
    _corpus(first, 0, 2000)
    _corpus(second, 2000, RECORDS)
    env = _env()
    db_path = tmp_path / "pvdb.duckdb"
    subprocess.run(_ingest_cmd(db_path, first), env=env, check=True, capture_output=True)
    stop = tmp_path / "stop"
    reader = subprocess.Popen([sys.executable, "-c", READER, str(db_path), str(stop)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    while not list(tmp_path.glob("pvdb.duckdb.lock")) and reader.poll() is None:
        time.sleep(0.01)  # (the first ingest made it) the reader is up once it answers
    started = time.time()
    ingest = subprocess.run(_ingest_cmd(db_path, second), env=env, capture_output=True)
    ended = time.time()
    assert ingest.returncode == 0, ingest.stderr.decode()
    # the reader goes on until it has seen the new generation a few times
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with Pvdb.open(db_path, read_only=True) as db:
            if len(db.affecting([KERNEL]).findings) == 2000 + RECORDS:
                break
    time.sleep(1.0)
    stop.touch()
    out, err = reader.communicate(timeout=120)
    assert reader.returncode == 0, err.decode()
    answer = json.loads(out)
    assert answer["failures"] == []
    counts = [found for _, found in answer["seen"]]
    assert counts[-1] == 2000 + RECORDS  # the new generation, once switched in
    assert set(counts) <= {2000, 2000 + RECORDS}  # never a half-written one
    # while the ingest ran, the reader kept answering from the live generation...
    during = [found for when, found in answer["seen"] if started < when < ended]
    assert during.count(2000) >= 3
    # ...and no query of it waited for the ingest: each took a fraction of its run
    assert answer["slowest"] < (ended - started) / 2
