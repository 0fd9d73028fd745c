"""The service's provisioning request path, end to end, with a fresh attestation.

Three processes on loopback: a host agent over a software TPM (swtpm; it answers each
challenge with a real quote, event log and inventory), the service (``create_app`` under
uvicorn, ``attest_source=agent``: every request challenges the agent with a new nonce,
appraises the evidence in steps 1-6, asks the PVDB built from ``feeds/snapshot``, the
image catalog and the policy, stores the request and signs the tenant's report), and
this driver, which sends ``--requests`` sequential ``POST /v1/provisioning-requests``
(bounded by ``--seconds`` too) with httpx and reports p50/p99. Then the same with
``attest_source=cached`` (the result the first challenge left in the cache), and, as the
peer, the attestation alone in this process (collect evidence from the same swtpm and
appraise it, no HTTP, no policy). The agent is ``vigil agent serve``'s
(:func:`engine.attest.serve_agent`) and the service challenges it with
:func:`engine.attest.challenge_agent`; a run with a kept-alive client shows what the
client's per-challenge setup costs. The admission-rate part of the service benchmark is
another script.

    .venv/bin/python benchmarks/service_provision_bench.py [--requests 200] [--json]
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

HOST = "hv-042"
TARGET_P99_MS = 50.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ms(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    p99 = values[min(len(values) - 1, round(0.99 * (len(values) - 1)))]
    return {"n": len(values), "p50_ms": round(statistics.median(values) * 1000, 2),
            "p99_ms": round(p99 * 1000, 2), "mean_ms": round(statistics.fmean(values) * 1000, 2)}


# -- the agent process ------------------------------------------------------------------

def serve_agent(cfg: dict[str, Any]) -> None:
    """``vigil agent serve`` in process: the real agent over the swtpm."""
    from engine.attest import AgentConfig
    from engine.attest import serve_agent as serve
    from engine.attest.lab import AK_HANDLE, INVENTORY

    config = AgentConfig(host_id=HOST, tcti=cfg["tcti"], ak_handle=AK_HANDLE,
                         eventlog=Path(cfg["eventlog"]), inventory=lambda: INVENTORY)
    serve(config, port=cfg["port"],
          ready=lambda _: print("ready", file=sys.stderr, flush=True))


_CLIENT: Any = None


def pooled_challenge(endpoint: str, nonce: bytes, *, timeout: float) -> Any:
    """A client on one kept-alive connection pool, for comparison with
    :func:`engine.attest.challenge_agent` (a new client per challenge)."""
    import httpx

    from engine.attest import Evidence

    global _CLIENT
    if _CLIENT is None:
        _CLIENT = httpx.Client()
    r = _CLIENT.post(f"{endpoint}/v1/challenge",
                     json={"nonce": base64.b64encode(nonce).decode()}, timeout=timeout)
    r.raise_for_status()
    return Evidence.model_validate_json(r.content)


# -- the service process ----------------------------------------------------------------

def serve_service(cfg: dict[str, Any]) -> None:
    from engine.api import create_app
    from engine.config import load_settings
    from engine.provision import build

    settings = load_settings(**cfg["settings"])
    parts = build(settings, challenge=pooled_challenge if cfg.get("pooled") else None)
    _run(create_app(settings, parts=parts), cfg["port"])


def _run(app: Any, port: int) -> None:
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", access_log=False))
    original = server.startup

    async def startup(*args: Any, **kwargs: Any) -> None:
        await original(*args, **kwargs)
        print("ready", file=sys.stderr, flush=True)

    server.startup = startup  # type: ignore[method-assign]
    server.run()


def _child(mode: str, cfg: dict[str, Any], folder: Path) -> subprocess.Popen[str]:
    path = folder / f"{mode}.json"
    path.write_text(json.dumps(cfg, default=str))
    child = subprocess.Popen([sys.executable, __file__, f"--{mode}", str(path)],
                             stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT),
                                  "VIGIL_CONFIG": str(folder / "none.toml")})
    assert child.stderr is not None
    for line in child.stderr:
        if line.strip() == "ready":
            return child
    raise SystemExit(f"the {mode} process did not start (exit {child.wait()})")


# -- the driver -------------------------------------------------------------------------

def _world(folder: Path) -> tuple[dict[str, Any], Any, Path, Any]:
    from engine.api import TokenStore
    from engine.attest import (
        AkRegistry,
        NonceStore,
        ReferenceSet,
        Swtpm,
        Verifier,
        collect_evidence,
        load_certificates,
        manufacture,
        sign_manifest,
    )
    from engine.attest.lab import AK_HANDLE, COMPONENTS, IMAGE, INVENTORY, ec_key_pem, enroll_host
    from engine.attest.lab import key_pair as pair
    from engine.attest.simboot import hypervisor_boot
    from engine.attest.verify import manifest_from_evidence
    from engine.fleet import Fleet, FleetSnapshot, Host
    from engine.pvdb import Pvdb

    (folder / "none.toml").write_text("")
    (folder / "template").mkdir()
    template = manufacture(folder / "template")
    tpm = Swtpm(template.state, template, folder / "swtpm.log")
    tpm.start()
    keys = {}
    for name in ("image", "result", "report"):
        pem = ec_key_pem()
        (folder / f"{name}.pem").write_bytes(pem)
        keys[name] = pair(pem)
    from cryptography.hazmat.primitives import serialization

    image_private = serialization.load_pem_private_key((folder / "image.pem").read_bytes(),
                                                       None)
    (folder / "image.pub.pem").write_bytes(image_private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    db = folder / "attest.sqlite3"
    registry = AkRegistry(db, ek_roots=load_certificates([template.ek_root,
                                                          template.ek_intermediate]))
    enroll_host(tpm, registry)
    log = hypervisor_boot()
    tpm.extend(log.extends)
    eventlog = folder / "eventlog.bin"
    eventlog.write_bytes(log.encode())
    nonces = NonceStore(db, ttl=dt.timedelta(minutes=5))
    peer = Verifier(nonces=nonces, aks=registry, references=ReferenceSet(()),
                    signing_key=keys["result"][0], verifier_id="vigil-bench")
    capture = collect_evidence(HOST, peer.issue_nonce(HOST).value, tcti=tpm.tcti,
                               ak_handle=AK_HANDLE, eventlog=eventlog, inventory=INVENTORY)
    refs = folder / "references"
    refs.mkdir()
    (refs / "hv-base.jws").write_text(sign_manifest(
        manifest_from_evidence(capture, IMAGE, components=COMPONENTS), keys["image"][0]))
    peer.references = ReferenceSet.load(refs, [keys["image"][1]])
    with Pvdb.open(folder / "pvdb.duckdb") as pvdb:
        pvdb.ingest([str(ROOT / "feeds" / "snapshot")])
    agent_port = _free_port()
    with Fleet.open(folder / "fleet.duckdb") as fleet:
        fleet.replace(FleetSnapshot((Host(HOST, "g", 100000, 10**9, IMAGE.version,
                                          agent_endpoint=f"http://127.0.0.1:{agent_port}"),),
                                    ()), source="bench")
    with TokenStore(folder / "tokens.sqlite3") as tokens:
        token, _ = tokens.create("bench", "tenant", tenant="acme")
    settings = {
        "db": folder / "pvdb.duckdb", "decision_log": folder / "decisions.duckdb",
        "fleet_db": folder / "fleet.duckdb", "images_db": folder / "images.duckdb",
        "predict_db": folder / "predict.duckdb", "requests_db": folder / "requests.duckdb",
        "tokens_db": folder / "tokens.sqlite3", "attest_db": db,
        "attest_references": refs, "attest_reference_keys": [folder / "image.pub.pem"],
        "attest_result_key": folder / "result.pem",
        "attest_ek_ca": [template.ek_root, template.ek_intermediate],
        "attest_verifier_id": "vigil-bench", "report_signing_key": folder / "report.pem",
        "attest_source": "agent", "attest_agent_timeout": 10.0, "decision_timeout": 30.0,
    }
    agent_cfg = {"tcti": tpm.tcti, "eventlog": str(eventlog), "port": agent_port}
    return {"settings": settings, "agent": agent_cfg, "token": token}, tpm, eventlog, peer


def _drive(url: str, token: str, requests: int, seconds: float
           ) -> tuple[list[float], dict[str, int]]:
    import httpx

    body = {"vm": {"name": "web-1", "vcpus": 1, "memory_mib": 512}}
    times: list[float] = []
    verdicts: dict[str, int] = {}
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"},
                      timeout=60) as client:
        for _ in range(3):  # warm-up: the PVDB's index, the evaluator
            client.post("/v1/provisioning-requests", json=body).raise_for_status()
        deadline = time.monotonic() + seconds
        while len(times) < requests and time.monotonic() < deadline:
            started = time.perf_counter()
            r = client.post("/v1/provisioning-requests", json=body)
            times.append(time.perf_counter() - started)
            r.raise_for_status()
            got = r.json()
            key = f"{got['verdict']}/{got.get('failed_step') or 'decided'}"
            verdicts[key] = verdicts.get(key, 0) + 1
    return times, verdicts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=120.0)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--agent", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--service", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.agent:
        serve_agent(json.loads(args.agent.read_text()))
        return 0
    if args.service:
        serve_service(json.loads(args.service.read_text()))
        return 0

    from engine.attest import collect_evidence
    from engine.attest.lab import AK_HANDLE, INVENTORY

    out: dict[str, Any] = {"load_before": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="vigil-provision-bench-") as tmp:
        folder = Path(tmp)
        cfg, tpm, eventlog, peer = _world(folder)
        children = [_child("agent", cfg["agent"], folder)]
        try:
            for name, source, pooled in (("agent", "agent", False),
                                         ("agent, pooled client", "agent", True),
                                         ("cached-then-agent", "cached-then-agent", False)):
                port = _free_port()
                service = _child("service", {"settings": {**cfg["settings"],
                                                           "attest_source": source},
                                             "port": port, "pooled": pooled}, folder)
                try:
                    times, verdicts = _drive(f"http://127.0.0.1:{port}", cfg["token"],
                                             args.requests, args.seconds)
                finally:
                    service.terminate()
                    service.wait(timeout=60)
                out[name] = {**_ms(times), "outcomes": verdicts}
            # the peer: the attestation alone, in process
            peer_times = []
            for _ in range(min(args.requests, 100)):
                started = time.perf_counter()
                evidence = collect_evidence(HOST, peer.issue_nonce(HOST).value, tcti=tpm.tcti,
                                            ak_handle=AK_HANDLE, eventlog=eventlog,
                                            inventory=INVENTORY)
                appraisal = peer.appraise(evidence)
                peer_times.append(time.perf_counter() - started)
                assert appraisal.result.status == "affirming", appraisal.result.failures
            out["peer: collect evidence + appraise, in process"] = _ms(peer_times)
        finally:
            for child in children:
                child.terminate()
                child.wait(timeout=60)
            tpm.stop()
    out["load_after"] = os.getloadavg()
    out["target_p99_ms"] = TARGET_P99_MS
    if args.json:
        print(json.dumps(out, indent=2, default=str))
        return 0
    print(f"load average before {out['load_before'][0]:.2f}, after {out['load_after'][0]:.2f}")
    for name in ("agent", "agent, pooled client", "cached-then-agent",
                 "peer: collect evidence + appraise, in process"):
        r = out[name]
        label = {"agent": "full request, fresh attestation (engine.attest.challenge_agent)",
                 "agent, pooled client": "full request, fresh attestation (kept-alive "
                                         "client)",
                 "cached-then-agent": "full request, cached attestation"}.get(name, name)
        print(f"{label}: n={r['n']} p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms, "
              f"mean {r['mean_ms']} ms" + (f"  {r['outcomes']}" if "outcomes" in r else ""))
    print(f"target: fresh-attestation request p99 <= {TARGET_P99_MS:g} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
