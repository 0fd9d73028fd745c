"""Feeds keep syncing while the service answers: an ingest runs in another process while
admissions are decided on the default gate (fleet, cached attestation results, PVDB,
policy); no admission fails or waits for it, and once the new PVDB generation is
switched in the service decides on it."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from engine.api import TokenStore, create_app
from engine.attest import AttestationResult, TrustVector, VerifierId, sign_result
from engine.cli.main import app as cli
from engine.config import load_settings
from engine.fleet import Fleet, load_inventory
from engine.keys import load_signing_key
from engine.model import Component, ImageRef
from engine.pvdb import Pvdb
from tests.api.conftest import review, run_server
from tests.api.world import bearer
from tests.pvdb.records import cve5_record, kernel_affected, write_json

pytestmark = pytest.mark.slow

KERNEL = Component(kind="kernel", vendor="linux", product="linux_kernel", version="6.6.30")
HIGH = "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H"
VMI = {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
       "metadata": {"name": "web-1", "namespace": "acme"},
       "spec": {"domain": {"resources": {"requests": {"memory": "1Gi", "cpu": "1"}}}}}


def _kev(folder: Path, cve: str) -> None:
    write_json(folder / "kev.json", {
        "title": "CISA Catalog of Known Exploited Vulnerabilities",
        "catalogVersion": "2026.01.01", "dateReleased": "2026-01-01T00:00:00.000Z",
        "count": 1, "vulnerabilities": [{
            "cveID": cve, "vendorProject": "Linux", "product": "Kernel",
            "vulnerabilityName": "n", "dateAdded": "2025-12-01", "shortDescription": "d",
            "requiredAction": "a", "dueDate": "2025-12-22",
            "knownRansomwareCampaignUse": "Unknown", "notes": ""}]})


def world(tmp_path: Path, hosts: int = 2) -> Any:
    """A PVDB (one tolerated kernel vulnerability), a fleet of attested hosts, keys."""
    feed = tmp_path / "feed"
    write_json(feed / "CVE-2099-0001.json", cve5_record(
        "CVE-2099-0001", affected=kernel_affected("6.1", ["6.6.31"], mainline="6.7"),
        metrics=[{"cvssV3_1": {"vectorString": HIGH}}]))
    with Pvdb.open(tmp_path / "pvdb.duckdb") as db:
        db.ingest([str(feed)])
    assert CliRunner().invoke(cli, ["attest", "keygen", "--out",
                                    str(tmp_path / "verifier.pem")]).exit_code == 0
    key = load_signing_key(tmp_path / "verifier.pem")
    results = tmp_path / "results"
    results.mkdir()
    inventory = {"hosts": [{"id": f"hv-{i:02d}", "group": "rack-a", "vcpus": 64,
                            "memory_mib": 262144, "image_version": "2026.05.1"}
                           for i in range(hosts)], "vms": []}
    (tmp_path / "fleet.json").write_text(json.dumps(inventory))
    with Fleet.open(tmp_path / "fleet.duckdb") as fleet:
        fleet.replace(load_inventory(tmp_path / "fleet.json"), source="test")
    for i in range(hosts):
        result = AttestationResult.build(
            host_id=f"hv-{i:02d}", verifier=VerifierId(developer="vigil"),
            trust_vector=TrustVector(instance_identity=2, hardware=2, executables=2,
                                     configuration=2),
            failures=[], nonce=b"\x01" * 32,
            image=ImageRef(name="hv-base", version="2026.05.1"), components=[KERNEL],
            ak_name=None, inventory=None, issued_at=dt.datetime.now(dt.UTC))
        (results / f"hv-{i:02d}.jwt").write_text(sign_result(result, key))
    return load_settings(db=tmp_path / "pvdb.duckdb", decision_log=tmp_path / "d.duckdb",
                         tokens_db=tmp_path / "tokens.sqlite3",
                         fleet_db=tmp_path / "fleet.duckdb", attest_results=results,
                         attest_result_verification_key=tmp_path / "verifier.pub.pem")


def test_admissions_go_on_while_an_ingest_runs_then_use_its_generation(
        tmp_path: Path) -> None:
    settings = world(tmp_path)
    more = tmp_path / "more"
    for i in range(3000):  # enough records for the ingest to run a while
        write_json(more / f"{i // 500}" / f"CVE-2098-{10000 + i}.json", cve5_record(
            f"CVE-2098-{10000 + i}", affected=kernel_affected("4.19", ["4.19.300"])))
    write_json(more / "CVE-2099-0002.json", cve5_record(
        "CVE-2099-0002", affected=kernel_affected("6.1", ["6.6.31"], mainline="6.7"),
        metrics=[{"cvssV3_1": {"vectorString": HIGH}}]))
    _kev(more, "CVE-2099-0002")
    answers: list[tuple[int, dict[str, Any], str]] = []
    stop = threading.Event()
    tokens = TokenStore(settings.tokens_db)
    token, _ = tokens.create("kube-apiserver", "service")
    headers = bearer(token)
    for url in run_server(create_app(settings, decision_timeout=5.0, tokens=tokens)):
        def ask(url: str = url) -> None:
            with httpx.Client(base_url=url, timeout=30, headers=headers) as client:
                while not stop.is_set():
                    r = client.post("/v1/admission", json=review(VMI))
                    answers.append((r.status_code, r.json(), "during"))

        asking = threading.Thread(target=ask)
        asking.start()
        try:
            ingest = subprocess.run(
                [sys.executable, "-m", "engine.cli.main", "feeds", "ingest", str(more),
                 "--db", str(settings.db), "--json"], capture_output=True)
            assert ingest.returncode == 0, ingest.stderr.decode()
            with httpx.Client(base_url=url, timeout=30, headers=headers) as client:
                for _ in range(600):  # until the service decides on the new generation
                    r = client.post("/v1/admission", json=review(VMI))
                    answers.append((r.status_code, r.json(), "after"))
                    assert r.status_code == 200, r.text
                    if not r.json()["response"]["allowed"]:
                        break
        finally:
            stop.set()
            asking.join(timeout=60)
    tokens.close()
    assert all(code == 200 for code, _, _ in answers)
    responses = [a["response"] for _, a, _ in answers]
    during = [r for r, (_, _, when) in zip(responses, answers, strict=True) if when == "during"]
    assert len(during) >= 3 and during[0]["allowed"]
    # no admission failed or timed out because of the ingest: each is the policy's own
    for r in responses:
        message = (r.get("status") or {}).get("message", "")
        assert "cannot decide" not in message and "took longer" not in message, message
        assert r["allowed"] or "CVE-2099-0002" in message, message
    last = responses[-1]
    assert not last["allowed"] and "kev_without_patched_configuration" not in last["status"][
        "message"] and "CVE-2099-0002" in last["status"]["message"]
