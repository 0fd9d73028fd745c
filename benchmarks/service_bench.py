"""Admission decisions through the running service: admissions/s, p50 / p99.

Starts ``vigil serve`` (uvicorn on 127.0.0.1) on a fleet whose hosts carry attestation
results cached in the results folder (cached attestation: no host is challenged), the
default policy and a PVDB, and drives ``POST /v1/admission`` with KubeVirt
``VirtualMachineInstance`` CREATE reviews from a separate process (``wrk`` when it is on
PATH, else an asynchronous ``httpx`` client in this one; ``--concurrency`` requests in
flight), bounded by ``--count`` and ``--seconds``. Every admission is recorded in the
decision log (no dry runs).

Scenarios: **real-size** hosts, the 50-component hosts of ``pvdb_bench.py`` on its
benchmark PVDB (run that first; ``$TMPDIR/vigil-pvdb-bench``), and **small** hosts (one
kernel, a few findings) on the same PVDB. The host the gate decides on is named with its
number of findings. The peer, in the same run and with the same client: a bare OPA
server (``.tools/bin/opa run --server`` with the default bundle) answering
``data.vigil.decision.result`` for a decision document, what a fleet's OPA would be asked
per request.

Targets on the 2-core reference machine: >= 1,000 admissions/s with p99 <= 20 ms on
real-size hosts.

    .venv/bin/python benchmarks/service_bench.py [--count 6000] [--seconds 20] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_hosts  # noqa: E402

from engine.api import TokenStore  # noqa: E402
from engine.attest import (  # noqa: E402
    AttestationResult,
    TrustVector,
    VerifierId,
    sign_result,
)
from engine.config import load_settings  # noqa: E402
from engine.decide import (  # noqa: E402
    build_bundle,
    load_directory,
)
from engine.fleet import Fleet, load_inventory  # noqa: E402
from engine.keys import load_signing_key  # noqa: E402
from engine.model import Component, ImageRef  # noqa: E402
from engine.pvdb import Pvdb  # noqa: E402

TARGET_RATE = 1000.0
TARGET_P99_MS = 20.0
OPA = ROOT / ".tools" / "bin" / "opa"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _review(n: int) -> dict[str, Any]:
    name = f"web-{n}"
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": str(uuid.uuid4()),
        "kind": {"group": "kubevirt.io", "version": "v1", "kind": "VirtualMachineInstance"},
        "resource": {"group": "kubevirt.io", "version": "v1",
                     "resource": "virtualmachineinstances"},
        "name": name, "namespace": "acme", "operation": "CREATE",
        "userInfo": {"username": "kubernetes-admin"},
        "object": {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
                   "metadata": {"name": name, "namespace": "acme",
                                "labels": {"app": "web"}},
                   "spec": {"domain": {"cpu": {"cores": 2},
                                       "resources": {"requests": {"memory": "4Gi"}},
                                       "devices": {"disks": [{"name": "root",
                                                              "disk": {"bus": "virtio"}}]}},
                            "volumes": [{"name": "root", "containerDisk": {
                                "image": "quay.io/containerdisks/fedora:40"}}]}},
        "dryRun": False}}


async def _drive(url: str, path: str, body: Any, count: int, seconds: float,
                 concurrency: int, headers: dict[str, str]) -> dict[str, Any]:
    """``count`` POSTs (at most ``seconds``), ``concurrency`` in flight."""
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    sent = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits,
                                 headers=headers) as client:
        async def worker() -> None:
            nonlocal sent
            while sent < count and time.perf_counter() < deadline:
                n = sent
                sent += 1
                payload = body(n) if callable(body) else body
                t0 = time.perf_counter()
                r = await client.post(path, json=payload)
                latencies.append(time.perf_counter() - t0)
                answer = r.json()
                key = str(r.status_code)
                if "response" in answer:
                    key = "allowed" if answer["response"]["allowed"] else "denied"
                statuses[key] = statuses.get(key, 0) + 1

        for _ in range(min(20, count)):  # warm the connections
            await client.post(path, json=body(0) if callable(body) else body)
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {"requests": len(latencies), "seconds": round(elapsed, 2),
            "per_second": round(len(latencies) / elapsed),
            "p50_ms": round(statistics.median(latencies) * 1000, 2),
            "p99_ms": round(latencies[min(len(latencies) - 1,
                                          int(len(latencies) * 0.99))] * 1000, 2),
            "answers": statuses}


_WRK_SCRIPT = """
local body_file, limit, authorization = "%s", %d, "%s"
local f = io.open(body_file, "rb"); wrk.body = f:read("*a"); f:close()
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
if authorization ~= "" then wrk.headers["Authorization"] = authorization end
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) sent = 0 end
function request()
  sent = sent + 1
  if sent > limit then wrk.thread:stop() end
  return wrk.format()
end
function done(summary, latency, requests)
  io.write(string.format(
    '{"requests": %%d, "micros": %%d, "p50_us": %%d, "p99_us": %%d, "errors": %%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    summary.errors.status + summary.errors.connect + summary.errors.read
    + summary.errors.write + summary.errors.timeout))
end
"""


def _drive_wrk(url: str, path: str, body: Any, count: int, seconds: float,
               concurrency: int, work: Path, headers: dict[str, str]) -> dict[str, Any]:
    """The same with wrk (one thread, ``concurrency`` connections, each thread stopping
    after its share of ``count``)."""
    payload = work / f"body-{uuid.uuid4().hex}.json"
    payload.write_text(json.dumps(body(0) if callable(body) else body))
    script = work / "post.lua"
    warm = work / "warm.lua"
    auth = headers.get("Authorization", "")
    warm.write_text(_WRK_SCRIPT % (payload, min(count, 200), auth))
    # warm-up (not timed): connections, the posture and the decision path's caches
    subprocess.run(["wrk", "-t1", f"-c{concurrency}", "-d2s", "-s", str(warm), url + path],
                   capture_output=True, text=True, timeout=60)
    script.write_text(_WRK_SCRIPT % (payload, count, auth))
    run = subprocess.run(["wrk", "-t1", f"-c{concurrency}", f"-d{max(1, int(seconds))}s",
                          "-s", str(script), url + path], capture_output=True, text=True,
                         timeout=seconds + 60)
    line = next((x for x in run.stdout.splitlines() if x.startswith('{"requests"')), None)
    if line is None:
        raise SystemExit(f"wrk gave no figures: {run.stdout} {run.stderr}")
    got = json.loads(line)
    elapsed = got["micros"] / 1e6
    return {"requests": got["requests"], "seconds": round(elapsed, 2),
            "per_second": round(got["requests"] / elapsed),
            "p50_ms": round(got["p50_us"] / 1000, 2), "p99_ms": round(got["p99_us"] / 1000, 2),
            "answers": {"errors or non-2xx": got["errors"]}, "client": "wrk"}


def _load(url: str, path: str, body: Any, args: argparse.Namespace, work: Path,
          headers: dict[str, str] | None = None) -> dict[str, Any]:
    if args.client == "wrk":
        return _drive_wrk(url, path, body, args.count, args.seconds, args.concurrency, work,
                          headers or {})
    return {**asyncio.run(_drive(url, path, body, args.count, args.seconds,
                                 args.concurrency, headers or {})), "client": "httpx"}


def _wait(url: str, path: str, proc: subprocess.Popen[bytes], seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server ended ({proc.returncode}) before it answered")
        try:
            if httpx.get(url + path, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url}{path} did not answer within {seconds} s")


def _fleet(work: Path, db_path: Path, hosts: list[list[Component]]
           ) -> tuple[dict[str, str], dict[str, str]]:
    """Fleet inventory, signed cached results, keys, the API server's service token; the
    environment of the service and the headers of its admissions."""
    work.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "engine.cli.main", "attest", "keygen", "--out",
                    str(work / "verifier.pem")], check=True, capture_output=True,
                   env={**os.environ, "PYTHONPATH": str(ROOT)})
    key = load_signing_key(work / "verifier.pem")
    results = work / "results"
    results.mkdir(exist_ok=True)
    # the first host has the most room: the gate decides on it
    inventory = {"hosts": [{"id": f"hv-{i:03d}", "group": "rack-a", "vcpus": 512 - i,
                            "memory_mib": 2**21, "image_version": "2026.07.1"}
                           for i in range(len(hosts))], "vms": []}
    (work / "fleet.json").write_text(json.dumps(inventory))
    with Fleet.open(work / "fleet.duckdb") as fleet:
        fleet.replace(load_inventory(work / "fleet.json"), source="bench")
    for i, components in enumerate(hosts):
        result = AttestationResult.build(
            host_id=f"hv-{i:03d}", verifier=VerifierId(developer="vigil"),
            trust_vector=TrustVector(instance_identity=2, hardware=2, executables=2,
                                     configuration=2),
            failures=[], nonce=b"\x01" * 32,
            image=ImageRef(name="hv-base", version="2026.07.1"), components=components,
            ak_name=None, inventory=None, issued_at=dt.datetime.now(dt.UTC))
        (results / f"hv-{i:03d}.jwt").write_text(sign_result(result, key))
    (work / "none.toml").write_text("")
    with TokenStore(work / "tokens.sqlite3") as tokens:
        token, _ = tokens.create("kube-apiserver", "service")
    return {"VIGIL_CONFIG": str(work / "none.toml"), "VIGIL_DB": str(db_path),
            "VIGIL_TOKENS_DB": str(work / "tokens.sqlite3"),
            "VIGIL_DECISION_LOG": str(work / "decisions.duckdb"),
            "VIGIL_FLEET_DB": str(work / "fleet.duckdb"),
            "VIGIL_ATTEST_RESULTS": str(results),
            "VIGIL_ATTEST_RESULT_VERIFICATION_KEY": str(work / "verifier.pub.pem"),
            "VIGIL_ATTEST_RESULT_TTL": "86400", "VIGIL_EVALUATOR": os.environ.get(
                "VIGIL_EVALUATOR", "regorus"), "PYTHONPATH": str(ROOT)}, \
        {"Authorization": f"Bearer {token}"}


def _service(name: str, work: Path, db_path: Path, hosts: list[list[Component]],
             args: argparse.Namespace) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    fleet_env, headers = _fleet(work, db_path, hosts)
    env.update(fleet_env)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli.main", "serve", "--port",
                             str(port)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        _wait(url, "/readyz", proc)
        t0 = time.perf_counter()
        first = httpx.post(url + "/v1/admission", json=_review(0), headers=headers,
                           timeout=120).json()
        cold_ms = round((time.perf_counter() - t0) * 1000, 1)
        with Pvdb.open(db_path, read_only=True, settings=load_settings(db=db_path)) as db:
            findings = len(db.affecting(hosts[0], as_of=dt.datetime.now(dt.UTC)).findings)
        figures = _load(url, "/v1/admission", _review, args, work, headers)
        if figures["client"] == "wrk":  # wrk reads no bodies: what the service answered
            last = httpx.post(url + "/v1/admission", json=_review(1), headers=headers,
                              timeout=30).json()
            figures["answers"]["allowed"] = last["response"]["allowed"]
        return {"scenario": name, "decided_host_findings": findings, "cold_first_ms": cold_ms,
                "first_allowed": first["response"]["allowed"], **figures,
                "within_target": figures["per_second"] >= TARGET_RATE
                and figures["p99_ms"] <= TARGET_P99_MS}
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def _opa(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The bare OPA server on the default bundle, asked for a decision document."""
    bundle = work / "vigil.tar.gz"
    bundle.write_bytes(build_bundle(load_directory(ROOT / "engine" / "policies", ["vigil"])))
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([str(OPA), "run", "--server", f"--addr=127.0.0.1:{port}",
                             "--log-level=error", "--bundle", str(bundle)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    document = {"input": {
        "schema_version": 2, "stage": "decision",
        "request": {"tenant": "acme", "vm": {"name": "web-1", "vcpus": 2, "memory_mib": 4096,
                                             "flavor": None, "labels": {"app": "web"}},
                    "requested_patch_level": None, "requested_image": None,
                    "patch_level_met": None},
        "host": {"id": "hv-000", "attestation": {
            "status": "affirming", "issued_at": "2026-01-01T00:00:00Z",
            "issued_at_ns": 1767225600000000000, "age_seconds": 600, "verifier_id": "vigil",
            "image": {"name": "hv-base", "version": "2026.07.1"},
            "trust_vector": {"instance_identity": 2, "configuration": 2, "executables": 2,
                             "file_system": 0, "hardware": 2, "runtime_opaque": 0,
                             "storage_opaque": 0, "sourced_data": 0}, "failures": []}},
        "patched_configuration": {"state": "none", "image": None, "attested": False,
                                  "attestation_status": None},
        "decision_time": {"rfc3339": "2026-01-01T00:10:00Z", "ns": 1767226200000000000},
        "posture": {"digest": "sha256:0", "decision_id": None,
                    "counts": {"deny": 0, "patch": 0, "delay": 0, "warn": 3000},
                    "facts": {"delay_recheck": None}}}}
    try:
        _wait(url, "/health?bundles", proc)
        figures = _load(url, "/v1/data/vigil/decision/result", document, args, work)
        return {"scenario": "bare OPA server (decision document)", **figures}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path,
                        default=bench_hosts.DEFAULT_WORKDIR)
    parser.add_argument("--count", type=int, default=6000, help="admissions per scenario")
    parser.add_argument("--seconds", type=float, default=20.0, help="per scenario, at most")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--hosts", type=int, default=4, help="real-size hosts in the fleet")
    parser.add_argument("--pool", type=int, default=20,
                        help="benchmark hosts to choose the fleet's from")
    parser.add_argument("--client", choices=("wrk", "httpx"),
                        default="wrk" if shutil.which("wrk") else "httpx",
                        help="load generator (default: wrk when on PATH)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    db_path = bench_hosts.pvdb_path(args.workdir)
    if db_path is None:
        return 2
    with Pvdb.open(db_path, read_only=True, settings=load_settings(db=db_path)) as db:
        # the decided host (the fleet's first): the one nearest the median real host;
        # a small host: one component of those hosts with a few findings
        real, few = bench_hosts.real_and_small(db, args.pool, args.hosts,
                                               dt.datetime.now(dt.UTC))
    small = [few] * 2
    rows = []
    with tempfile.TemporaryDirectory(prefix="vigil-service-bench-") as tmp:
        work = Path(tmp)
        rows.append(_service("real-size hosts", work / "real", db_path, real, args))
        rows.append(_service("small hosts", work / "small", db_path, small, args))
        if OPA.is_file():
            rows.append(_opa(work, args))
    out = {"load": os.getloadavg(), "concurrency": args.concurrency, "client": args.client,
           "evaluator": os.environ.get("VIGIL_EVALUATOR", "regorus"),
           "targets": {"per_second": TARGET_RATE, "p99_ms": TARGET_P99_MS}, "rows": rows}
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"{'scenario':<38} {'findings':>8} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7}  answers")
    for r in rows:
        print(f"{r['scenario']:<38} {r.get('decided_host_findings', ''):>8} "
              f"{r['per_second']:>7} {r['p50_ms']:>7} {r['p99_ms']:>7}  {r['answers']}")
    print(f"load average {os.getloadavg()}, client {args.client}, concurrency "
          f"{args.concurrency}, evaluator {out['evaluator']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
