"""Provisioning requests through the real service on loopback (uvicorn, a free port) with
a real HTTP client: the flow for each verdict, approvals (twice, late, by the wrong
tenant), tenant isolation, roles, the re-check scheduler on an injected clock."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import httpx
import pytest

from engine.fleet import Fleet
from engine.keys import load_verification_key
from engine.predict import Queue
from engine.provision import verify_report
from tests.api.conftest import Service
from tests.api.world import NOW, World, bearer


def _vms(world: World) -> list[Any]:
    with Fleet.open(world.folder / "fleet.duckdb", read_only=True) as fleet:
        return fleet.vms()


# -- each verdict -----------------------------------------------------------------------

def test_admit_awaits_approval_and_launches_once(service: Service) -> None:
    req = service.submit("hv-admit")
    assert (req["status"], req["verdict"], req["tenant"]) == ("awaiting_approval", "admit",
                                                              "acme")
    assert req["target_host"] == "hv-admit" and req["advice"] == "No vulnerabilities found"
    assert [s["name"] for s in req["steps"]] == ["candidates", "attestation",
                                                 "patched configuration", "decision",
                                                 "target"]
    # the signed report verifies offline and rests on the host's EAR
    report = verify_report(req["signed_report"],
                           [load_verification_key(service.world.report_public)])
    assert report.tenant == "acme" and report.host == "hv-admit"
    ear = (service.world.folder / "results" / "hv-admit.jwt").read_text().strip()
    assert report.attestation.ear == ear
    assert report.verdict.decision_id == req["decision_id"]
    path = f"/v1/provisioning-requests/{req['request_id']}"
    first = service.call("POST", path + "/approve")
    assert first.status_code == 200 and first.json()["status"] == "launched"
    second = service.call("POST", path + "/approve")
    assert second.status_code == 200 and second.json()["status"] == "launched"
    assert second.json()["launched_at"] == first.json()["launched_at"]
    (vm,) = _vms(service.world)
    assert (vm.id, vm.host, vm.tenant, vm.vcpus) == (req["request_id"], "hv-admit", "acme", 2)
    events = service.call("GET", path + "/events").json()["events"]
    assert [e["event"] for e in events] == ["created", "approved", "launched"]
    assert events[1]["actor"] == "tenant:acme@acme"
    # the report is served as readable HTML too
    page = service.call("GET", path + "/report", params={"format": "html"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "hv-admit" in page.text


def test_patch_places_the_vm_on_the_patched_version(service: Service) -> None:
    req = service.submit("hv-patch", hosts=["hv-patch", "hv-patched"])
    # hv-patched (clean) may be preferred; ask for the patch host alone to see a patch
    if req["verdict"] != "patch":
        req = service.submit("hv-patch")
    assert (req["status"], req["verdict"]) == ("awaiting_approval", "patch")
    assert (req["target_host"], req["target_image_version"]) == ("hv-patched", "2024.05.2")
    assert req["advice"] == "Patched config available"
    assert any("CVE-2099-0001" in r for r in req["reasons"])
    done = service.call("POST", f"/v1/provisioning-requests/{req['request_id']}/approve")
    assert done.json()["status"] == "launched"
    assert [vm.host for vm in _vms(service.world)] == ["hv-patched"]


def test_reject_names_the_kev_vulnerability_and_cannot_be_approved(service: Service) -> None:
    req = service.submit("hv-reject")
    assert (req["status"], req["verdict"]) == ("rejected", "reject")
    assert any("CVE-2099-0002" in r and "exploited" in r for r in req["reasons"])
    assert req["advice"] == "Patched config not available - consider delaying provisioning"
    r = service.call("POST", f"/v1/provisioning-requests/{req['request_id']}/approve")
    assert r.status_code == 409 and "rejected" in r.json()["error"]
    assert _vms(service.world) == []


def test_delay_is_rechecked_at_the_predicted_date_by_the_scheduler(service: Service) -> None:
    req = service.submit("hv-delay")
    assert (req["status"], req["verdict"]) == ("delayed", "delay")
    # 6.6 has no fix yet: the date is the branch's next release, projected from its
    # weekly cadence (last release 2024-06-27), an estimate and said to be one
    assert req["recheck_at"].startswith("2024-07-04")
    assert any("CVE-2099-0001" in r and "2024-07-04" in r and "estimate" in r
               for r in req["reasons"]), req["reasons"]
    # the verdict asked for a patched configuration: its preparation was queued
    assert req["preparation"]
    with Queue(service.world.folder / "predict.duckdb") as queue:
        queued = queue.requests()
    assert {q.request_id for q in queued} == set(req["preparation"])
    assert queued[0].image == "hv-old@2024.05.1" and queued[0].vuln_id == "CVE-2099-0001"
    # nothing happens before the date
    service.clock.advance(days=2)
    time.sleep(0.3)
    assert service.call("GET", f"/v1/provisioning-requests/{req['request_id']}"
                        ).json()["checks"] == 1
    # meanwhile the patched version was built and approved; past the date the
    # scheduler runs the flow again and the request now awaits approval as a patch
    # (and the host re-attested, as it is every few minutes)
    service.world.add_patched_version("hv-old", "2024.05.1", "2024.05.9")
    service.world.write_result("hv-delay", issued_at=NOW + dt.timedelta(days=4))
    service.clock.advance(days=2)
    again = service.wait(req["request_id"], lambda b: b["checks"] == 2)
    assert (again["status"], again["verdict"]) == ("awaiting_approval", "patch")
    assert again["target_image_version"] == "2024.05.9" and again["patch_host_first"]
    events = service.call("GET", f"/v1/provisioning-requests/{req['request_id']}/events"
                          ).json()["events"]
    assert [e["event"] for e in events] == ["created", "rechecked"]
    assert events[1]["actor"] == "vigil (re-check)"


def test_an_approval_after_expiry_is_refused(service: Service) -> None:
    req = service.submit("hv-admit")
    service.clock.advance(seconds=3601)
    r = service.call("POST", f"/v1/provisioning-requests/{req['request_id']}/approve")
    assert r.status_code == 409 and "expired" in r.json()["error"]
    assert service.call("GET", f"/v1/provisioning-requests/{req['request_id']}"
                        ).json()["status"] == "expired"
    assert _vms(service.world) == []


def test_auto_approve_launches_an_admit_at_once(service: Service) -> None:
    req = service.submit("hv-admit", auto_approve=True)
    assert req["status"] == "launched" and req["approved_by"] == "policy (auto-approve)"


def test_a_stale_result_is_a_reject_naming_the_step(service: Service) -> None:
    service.world.write_result("hv-admit", issued_at=NOW - dt.timedelta(hours=2))
    req = service.submit("hv-admit")
    assert (req["status"], req["failed_step"]) == ("rejected", "attestation")
    assert "over the 900 s limit" in req["reasons"][0]
    assert req["report"] is None


def test_no_host_with_room_names_why(service: Service) -> None:
    r = service.call("POST", "/v1/provisioning-requests", json={
        "vm": {"name": "huge", "vcpus": 64, "memory_mib": 4096}})
    assert r.status_code == 201 and r.json()["failed_step"] == "candidates"
    assert "have not 64 vCPUs" in r.json()["reasons"][0]


def test_a_reject_by_the_tenant_launches_nothing(service: Service) -> None:
    req = service.submit("hv-admit")
    path = f"/v1/provisioning-requests/{req['request_id']}"
    r = service.call("POST", path + "/reject", json={"reason": "changed my mind"})
    assert r.status_code == 200 and r.json()["status"] == "rejected"
    assert service.call("POST", path + "/reject").json()["status"] == "rejected"
    assert service.call("POST", path + "/approve").status_code == 409
    assert _vms(service.world) == []


# -- tenants and roles ------------------------------------------------------------------

def test_another_tenants_request_is_not_found(service: Service) -> None:
    req = service.submit("hv-admit")
    path = f"/v1/provisioning-requests/{req['request_id']}"
    for method, suffix in (("GET", ""), ("GET", "/report"), ("GET", "/events"),
                           ("POST", "/approve"), ("POST", "/reject")):
        r = service.call(method, path + suffix, "globex")
        assert r.status_code == 404, (method, suffix, r.text)
    missing = service.call("GET", "/v1/provisioning-requests/"
                           "00000000-0000-4000-8000-000000000000", "globex")
    # another tenant's id is answered as an id that does not exist
    assert missing.status_code == 404 and missing.json() == {
        "error": "no provisioning request 00000000-0000-4000-8000-000000000000"}
    assert service.call("GET", path, "globex").json()["error"] == \
        f"no provisioning request {req['request_id']}"
    assert service.call("GET", "/v1/provisioning-requests", "globex").json() == {
        "requests": []}
    assert len(service.call("GET", "/v1/provisioning-requests").json()["requests"]) == 1
    # admins and auditors see every tenant's; the approval still launched nothing
    assert service.call("GET", path, "ops").status_code == 200
    assert service.call("GET", path, "audit").status_code == 200
    assert service.call("GET", path).json()["status"] == "awaiting_approval"


def test_a_tenant_submits_only_for_itself(service: Service) -> None:
    r = service.call("POST", "/v1/provisioning-requests", "globex", json={
        "tenant": "acme", "vm": {"name": "x", "vcpus": 1, "memory_mib": 1}})
    assert r.status_code == 403
    r = service.call("POST", "/v1/provisioning-requests", "ops", json={
        "vm": {"name": "x", "vcpus": 1, "memory_mib": 1}})
    assert r.status_code == 403 and "give tenant" in r.json()["error"]
    ok = service.submit("hv-admit", who="ops", tenant="globex")
    assert ok["tenant"] == "globex"
    assert service.call("GET", f"/v1/provisioning-requests/{ok['request_id']}",
                        "globex").status_code == 200


@pytest.mark.parametrize(("who", "method", "path", "expected"), [
    (None, "GET", "/v1/provisioning-requests", 401),
    ("acme", "GET", "/v1/hosts", 403),
    ("audit", "GET", "/v1/hosts", 200),
    ("ops", "GET", "/v1/hosts/hv-admit", 200),
    ("ops", "GET", "/v1/hosts/no-such-host", 404),
    ("audit", "POST", "/v1/provisioning-requests", 403),
    ("kube-apiserver", "GET", "/v1/provisioning-requests", 403),
    ("acme", "POST", "/v1/admission", 403),
    (None, "POST", "/v1/admission", 401),
    ("acme", "GET", "/v1/pvdb/vulnerabilities/CVE-2099-0001", 200),
    ("acme", "GET", "/v1/pvdb/vulnerabilities/CVE-2099-9999", 404),
    (None, "GET", "/healthz", 200),
])
def test_roles(service: Service, who: str | None, method: str, path: str,
               expected: int) -> None:
    body = {"vm": {"name": "x", "vcpus": 1, "memory_mib": 1}} if method == "POST" else None
    r = service.call(method, path, who, json=body)
    assert r.status_code == expected, r.text
    if expected == 401:
        assert r.headers["www-authenticate"].startswith("Bearer")


def test_a_wrong_or_revoked_token_is_401(service: Service) -> None:
    from engine.api import TokenStore

    bad = httpx.get(f"{service.url}/v1/provisioning-requests",
                    headers=bearer(service.world.tokens["acme"][:-2] + "xx"))
    assert bad.status_code == 401
    with TokenStore(service.world.folder / "tokens.sqlite3") as tokens:
        acme = next(t for t in tokens.tokens() if t.name == "acme")
        tokens.revoke(acme.token_id)
    assert service.call("GET", "/v1/provisioning-requests").status_code == 401


def test_hosts_and_their_reports(service: Service) -> None:
    hosts = {h["id"]: h for h in service.call("GET", "/v1/hosts", "audit").json()["hosts"]}
    assert set(hosts) == {"hv-admit", "hv-delay", "hv-patch", "hv-patched", "hv-reject"}
    assert hosts["hv-admit"]["attestation"]["status"] == "affirming"
    assert hosts["hv-admit"]["free_vcpus"] == 16
    report = service.call("GET", "/v1/hosts/hv-reject/report", "audit").json()
    assert report["verdict"] == "reject" and report["signed_report"]
    assert report["report"]["host"] == "hv-reject"


def test_a_bad_field_is_422_naming_it(service: Service) -> None:
    r = service.call("POST", "/v1/provisioning-requests", json={
        "vm": {"name": "web-1", "vcpus": 0, "memory_mib": 1}})
    assert r.status_code == 422 and "vm.vcpus" in r.json()["error"]
    r = service.call("GET", "/v1/provisioning-requests/not-an-id")
    assert r.status_code == 422 and "request_id" in r.json()["error"]


def test_the_admission_webhook_is_decided_by_the_flow(service: Service) -> None:
    import base64
    import json

    from tests.api.conftest import review

    obj = {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
           "metadata": {"name": "vm1", "namespace": "acme", "annotations": {
               "vigil.io/requested-image": "hv-clean@2024.06.1"}},
           "spec": {"domain": {"cpu": {"cores": 2}, "memory": {"guest": "1Gi"}}}}
    r = service.call("POST", "/v1/admission", "kube-apiserver", json=review(obj))
    res = r.json()["response"]
    assert res["allowed"] is True, res
    import jsonpatch

    patched = jsonpatch.JsonPatch(json.loads(base64.b64decode(res["patch"]))).apply(obj)
    exprs = patched["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0][
        "matchExpressions"]
    assert {"key": "kubernetes.io/hostname", "operator": "In",
            "values": ["hv-admit"]} in exprs


def test_two_approvals_at_once_launch_once(service: Service) -> None:
    from concurrent.futures import ThreadPoolExecutor

    req = service.submit("hv-admit")
    path = f"/v1/provisioning-requests/{req['request_id']}/approve"
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: service.call("POST", path), range(4)))
    assert {a.status_code for a in answers} == {200}
    final = service.wait(req["request_id"], lambda b: b["status"] == "launched")
    events = service.call("GET", f"/v1/provisioning-requests/{req['request_id']}/events"
                          ).json()["events"]
    assert [e["event"] for e in events].count("approved") == 1
    assert [e["event"] for e in events].count("launched") == 1
    assert [vm.id for vm in _vms(service.world)] == [final["request_id"]]


def test_the_scheduler_expires_what_nobody_approved(service: Service) -> None:
    req = service.submit("hv-admit")
    service.clock.advance(seconds=3601)
    expired = service.wait(req["request_id"], lambda b: b["status"] == "expired")
    assert expired["verdict"] == "admit" and _vms(service.world) == []


def test_the_openapi_document_names_the_bearer_scheme_and_every_error(
        service: Service) -> None:
    doc = httpx.get(f"{service.url}/openapi.json").json()
    assert doc["components"]["securitySchemes"]["token"]["scheme"] == "bearer"
    approve = doc["paths"]["/v1/provisioning-requests/{request_id}/approve"]["post"]
    assert {"200", "401", "403", "404", "409", "422", "500", "503"} <= set(
        approve["responses"])
    assert approve["security"] == [{"token": []}]
