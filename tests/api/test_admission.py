"""POST /v1/admission on loopback, with AdmissionReviews built around the real KubeVirt
objects of ../shared/data/kubevirt and a fake placement gate per verdict."""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
from typing import Any

import httpx
import jsonpatch
import pytest

from engine.api import HOSTNAME_LABEL, IMAGE_LABEL, GateAnswer
from tests.api.conftest import Served, kubevirt_objects, need_kubevirt, review

VMIS = kubevirt_objects("VirtualMachineInstance")
OTHERS = [(n, o) for n, o in kubevirt_objects() if o.get("kind") != "VirtualMachineInstance"]
LONG = ("CVE-2024-42135 (CVSS 9.8, in CISA's KEV catalog since 2024-08-01) affects the "
        "attested kernel linux 6.6.30 and has no fix on its line; tolerated by site rule")


def _post(served: Served, body: Any, query: str = "") -> httpx.Response:
    return httpx.post(f"{served.url}/v1/admission{query}", json=body, timeout=15,
                      headers=served.headers)


def _response(r: httpx.Response, uid: str) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["apiVersion"] == "admission.k8s.io/v1" and body["kind"] == "AdmissionReview"
    response = body["response"]
    assert response["uid"] == uid
    for warning in response.get("warnings") or []:
        assert len(warning) < 120
    assert len(response.get("warnings") or []) <= 8
    assert len(json.dumps(response.get("warnings") or [])) < 1200
    return response


def _ids(items: list[tuple[str, dict[str, Any]]]) -> list[str]:
    return [name for name, _ in items] or ["absent"]


@pytest.fixture(params=VMIS or [("absent", {})], ids=_ids(VMIS))
def vmi(request: pytest.FixtureRequest) -> dict[str, Any]:
    need_kubevirt()
    return copy.deepcopy(request.param[1])


def test_admit_pins_the_vm_to_the_attested_hosts(served: Served, vmi: dict[str, Any]) -> None:
    served.gate.answer = GateAnswer("admit", warnings=(LONG,), hosts=("h1", "h2"),
                                    image_version="2024.05.1")
    body = review(vmi, namespace="acme")
    res = _response(_post(served, body), body["request"]["uid"])
    assert res["allowed"] is True and "status" not in res and res["patchType"] == "JSONPatch"
    assert res["warnings"][0].startswith("vigil: CVE-2024-42135") and res["warnings"][0][-1] == "…"
    patched = jsonpatch.JsonPatch(json.loads(base64.b64decode(res["patch"]))).apply(vmi)
    for term in patched["spec"]["affinity"]["nodeAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]:
        assert {"key": HOSTNAME_LABEL, "operator": "In", "values": ["h1", "h2"]} in \
            term["matchExpressions"]
        assert {"key": IMAGE_LABEL, "operator": "In", "values": ["2024.05.1"]} in \
            term["matchExpressions"]
    asked = served.gate.asked[-1]
    assert asked["tenant"] == "acme" and asked["record"] is True
    assert asked["vm"].name == vmi["metadata"]["name"]
    assert asked["vm"].memory_mib >= 1 and asked["vm"].vcpus >= 1
    # the validating webhook admits the object once it carries the pin, and not before
    again = review(patched)
    assert _response(_post(served, again, "?mode=validate"),
                     again["request"]["uid"])["allowed"] is True
    unpinned = review(vmi)
    denied = _response(_post(served, unpinned, "?mode=validate"), unpinned["request"]["uid"])
    assert denied["allowed"] is False and "h1" in denied["status"]["message"]


def test_an_admit_naming_no_host_is_refused(served: Served, vmi: dict[str, Any]) -> None:
    served.gate.answer = GateAnswer("admit")
    body = review(vmi)
    res = _response(_post(served, body), body["request"]["uid"])
    assert res["allowed"] is False and res["status"]["code"] == 403
    assert "fail closed" in res["status"]["message"]


def test_an_admitted_migration_is_kept_on_the_image_and_host(served: Served) -> None:
    migration = {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstanceMigration",
                 "metadata": {"name": "m1", "namespace": "acme"},
                 "spec": {"vmiName": "vmi-migratable"}}
    served.gate.answer = GateAnswer("admit", hosts=("h7",), image_version="2024.05.1")
    body = review(migration)
    res = _response(_post(served, body), body["request"]["uid"])
    patched = jsonpatch.JsonPatch(json.loads(base64.b64decode(res["patch"]))).apply(migration)
    assert patched["spec"]["addedNodeSelector"] == {IMAGE_LABEL: "2024.05.1",
                                                    HOSTNAME_LABEL: "h7"}


def test_patch_adds_node_affinity_that_applies_cleanly(served: Served,
                                                       vmi: dict[str, Any]) -> None:
    served.gate.answer = GateAnswer("patch", ("CVE-2024-42135 is fixed in 2024.06.1",),
                                    patched_image_version="2024.06.1", hosts=("h3", "h4"))
    body = review(vmi)
    res = _response(_post(served, body), body["request"]["uid"])
    assert res["allowed"] is True and res["patchType"] == "JSONPatch"
    ops = json.loads(base64.b64decode(res["patch"]))
    patched = jsonpatch.JsonPatch(ops).apply(vmi)
    terms = patched["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [{"matchExpressions": [
        {"key": IMAGE_LABEL, "operator": "In", "values": ["2024.06.1"]}]}]
    without = copy.deepcopy(patched)
    del without["spec"]["affinity"]
    assert without == vmi  # every other field kept
    assert any("h3, h4" in w for w in res["warnings"])


def test_patch_merges_with_existing_affinity(served: Served, vmi: dict[str, Any]) -> None:
    own = {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["a", "b"]}
    vmi["spec"]["affinity"] = {
        "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": []},
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [own]},
                {"matchFields": [{"key": "metadata.name", "operator": "In",
                                  "values": ["n1"]}]}]},
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 1, "preference": {"matchExpressions": [own]}}]}}
    vmi["spec"]["nodeSelector"] = {"kubernetes.io/arch": "amd64"}
    served.gate.answer = GateAnswer("patch", patched_image_version="2024.06.1")
    body = review(vmi)
    res = _response(_post(served, body), body["request"]["uid"])
    patched = jsonpatch.JsonPatch(json.loads(base64.b64decode(res["patch"]))).apply(vmi)
    ours = {"key": IMAGE_LABEL, "operator": "In", "values": ["2024.06.1"]}
    node = patched["spec"]["affinity"]["nodeAffinity"]
    terms = node["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms[0]["matchExpressions"] == [own, ours]
    assert terms[1]["matchExpressions"] == [ours]
    assert terms[1]["matchFields"] == vmi["spec"]["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][1]["matchFields"]
    assert node["preferredDuringSchedulingIgnoredDuringExecution"] == vmi["spec"]["affinity"][
        "nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert patched["spec"]["affinity"]["podAntiAffinity"] == vmi["spec"]["affinity"][
        "podAntiAffinity"]
    assert patched["spec"]["nodeSelector"] == {"kubernetes.io/arch": "amd64"}
    # the validating webhook, seeing the mutated object, allows it and patches nothing
    body = review(patched)
    res = _response(_post(served, body, "?mode=validate"), body["request"]["uid"])
    assert res["allowed"] is True and "patch" not in res


def test_the_validating_webhook_refuses_a_patch_verdict_it_cannot_see_applied(
        served: Served, vmi: dict[str, Any]) -> None:
    served.gate.answer = GateAnswer("patch", ("fixed in 2024.06.1",),
                                    patched_image_version="2024.06.1")
    body = review(vmi)
    res = _response(_post(served, body, "/validate"), body["request"]["uid"])
    assert res["allowed"] is False and res["status"]["code"] == 403
    assert "2024.06.1" in res["status"]["message"] and "mutating webhook" in \
        res["status"]["message"]


def test_reject_is_403_with_a_message_a_person_can_act_on(served: Served,
                                                          vmi: dict[str, Any]) -> None:
    served.gate.answer = GateAnswer("reject", (
        "CVE-2024-42135 is in CISA's KEV catalog and no attested patched configuration "
        "is ready",), decision_id="d-1")
    body = review(vmi, namespace="globex")
    res = _response(_post(served, body), body["request"]["uid"])
    assert res["allowed"] is False and "patch" not in res
    status = res["status"]
    assert status["code"] == 403 and status["reason"] == "Forbidden"
    assert status["message"].startswith(
        f"Vigil rejects starting VM {vmi['metadata']['name']} of tenant globex (decision d-1)")
    assert "CVE-2024-42135" in status["message"]


def test_delay_is_refused_saying_when_to_ask_again(served: Served,
                                                   vmi: dict[str, Any]) -> None:
    served.gate.answer = GateAnswer(
        "delay", ("a fix for CVE-2024-1 is expected within the window",),
        recheck_at=dt.datetime(2026, 7, 1, 12, 0, tzinfo=dt.UTC))
    body = review(vmi)
    res = _response(_post(served, body), body["request"]["uid"])
    assert res["allowed"] is False and res["status"]["code"] == 403
    assert "ask again after 2026-07-01 12:00 UTC" in res["status"]["message"]


def test_many_warnings_stay_few_and_short(served: Served, vmi: dict[str, Any]) -> None:
    served.gate.answer = GateAnswer("admit", warnings=tuple(f"{LONG} #{i}" for i in range(40)))
    body = review(vmi)
    res = _response(_post(served, body), body["request"]["uid"])
    assert len(res["warnings"]) == 8 and "33 more warnings" in res["warnings"][-1]


def test_dry_run_asks_the_gate_not_to_record(served: Served, vmi: dict[str, Any]) -> None:
    body = review(vmi, dry_run=True)
    res = _response(_post(served, body), body["request"]["uid"])
    assert res["allowed"] is True
    assert served.gate.asked[-1]["record"] is False


def test_a_migration_is_gated_and_patched_through_added_node_selector(served: Served) -> None:
    migration = {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstanceMigration",
                 "metadata": {"name": "migration-job", "namespace": "acme"},
                 "spec": {"vmiName": "vmi-migratable"}}
    served.gate.answer = GateAnswer("patch", patched_image_version="2024.06.1")
    body = review(migration)
    res = _response(_post(served, body), body["request"]["uid"])
    assert res["allowed"] is True
    patched = jsonpatch.JsonPatch(json.loads(base64.b64decode(res["patch"]))).apply(migration)
    assert patched["spec"] == {"vmiName": "vmi-migratable",
                               "addedNodeSelector": {IMAGE_LABEL: "2024.06.1"}}
    assert served.gate.asked[-1]["vm"].name == "vmi-migratable"
    migration["spec"]["addedNodeSelector"] = {"zone": "a"}
    body = review(migration)
    res = _response(_post(served, body), body["request"]["uid"])
    patched = jsonpatch.JsonPatch(json.loads(base64.b64decode(res["patch"]))).apply(migration)
    assert patched["spec"]["addedNodeSelector"] == {"zone": "a", IMAGE_LABEL: "2024.06.1"}
    served.gate.answer = GateAnswer("reject", ("the target hosts are not attested",))
    body = review(migration)
    res = _response(_post(served, body), body["request"]["uid"])
    assert res["allowed"] is False and res["status"]["message"].startswith(
        "Vigil rejects migrating VM vmi-migratable of tenant acme")


@pytest.mark.parametrize("name_obj", OTHERS or [("absent", {})], ids=_ids(OTHERS))
def test_other_kinds_are_allowed_untouched_with_a_warning(
        served: Served, name_obj: tuple[str, dict[str, Any]]) -> None:
    need_kubevirt()
    body = review(name_obj[1])
    res = _response(_post(served, body), body["request"]["uid"])
    assert res["allowed"] is True and "patch" not in res
    assert res["warnings"] and "allowed untouched" in res["warnings"][0]
    assert served.gate.asked == []


def test_core_kinds_and_other_operations_are_untouched(served: Served) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}}
    body = review(pod, group="")
    assert _response(_post(served, body), body["request"]["uid"])["allowed"] is True
    vmi = {"kind": "VirtualMachineInstance", "metadata": {"name": "v"}, "spec": {}}
    body = review(vmi, operation="UPDATE")
    res = _response(_post(served, body), body["request"]["uid"])
    assert res["allowed"] is True and "UPDATE" in res["warnings"][0]
    assert served.gate.asked == []


@pytest.mark.parametrize(("body", "field"), [
    (b"not json", "not JSON"),
    (b"[]", "body"),
    (b'{"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": {}}',
     "apiVersion"),
    (b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}', "request"),
    (b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": '
     b'{"kind": {"kind": "VirtualMachineInstance"}, "operation": "CREATE"}}', "request.uid"),
    (b'{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": '
     b'{"uid": "u", "kind": {"kind": "X"}, "operation": "EXPLODE"}}', "request.operation"),
])
def test_a_malformed_review_is_400_with_the_reason(served: Served, body: bytes,
                                                   field: str) -> None:
    r = httpx.post(f"{served.url}/v1/admission", content=body,
                   headers={**served.headers, "content-type": "application/json"})
    assert r.status_code == 400, r.text
    assert "allowed" not in r.text
    assert r.json()["error"].startswith("malformed AdmissionReview: ")
    assert field in r.json()["error"]


def test_an_unreadable_object_is_refused_naming_the_field(served: Served) -> None:
    vmi = {"kind": "VirtualMachineInstance", "metadata": {"name": "v"},
           "spec": {"domain": {"memory": {"guest": "lots"}}}}
    body = review(vmi)
    res = _response(_post(served, body), body["request"]["uid"])
    assert res["allowed"] is False and res["status"]["code"] == 400
    assert "spec.domain.memory.guest" in res["status"]["message"]
    body = review(vmi, namespace="")
    vmi["metadata"].pop("namespace", None)
    res = _response(_post(served, body), body["request"]["uid"])
    assert res["allowed"] is False and "namespace" in res["status"]["message"]


def test_a_slow_gate_is_a_reject_within_the_timeout(served: Served) -> None:
    served.gate.delay_s = 2.0  # the fixture's decision timeout is 1 s
    vmi = {"kind": "VirtualMachineInstance", "metadata": {"name": "v"}, "spec": {}}
    body = review(vmi)
    res = _response(_post(served, body), body["request"]["uid"])
    assert res["allowed"] is False and "longer than 1 s" in res["status"]["message"]


def test_the_vm_shape_and_requests_are_read_from_the_object(served: Served) -> None:
    vmi = {"kind": "VirtualMachineInstance",
           "metadata": {"name": "big", "labels": {"app": "db"}, "annotations": {
               "vigil.io/requested-image": "hv-xen-dom0@2024.06.1",
               "vigil.io/requested-patch-level": "2024.06"}},
           "spec": {"domain": {"cpu": {"sockets": 2, "cores": 2, "threads": 2},
                               "memory": {"guest": "2Gi"}}}}
    body = review(vmi)
    _response(_post(served, body), body["request"]["uid"])
    asked = served.gate.asked[-1]
    assert (asked["vm"].vcpus, asked["vm"].memory_mib) == (8, 2048)
    assert asked["vm"].labels == {"app": "db"}
    assert (asked["image"].name, asked["image"].version) == ("hv-xen-dom0", "2024.06.1")
    assert asked["level"] == "2024.06"
    vmi["spec"]["domain"] = {"resources": {"requests": {"cpu": "1500m", "memory": "1024M"}}}
    del vmi["metadata"]["annotations"]
    body = review(vmi)
    _response(_post(served, body), body["request"]["uid"])
    asked = served.gate.asked[-1]
    assert (asked["vm"].vcpus, asked["vm"].memory_mib) == (2, 977)
