"""The service's own routes on loopback: health, readiness, metrics, OpenAPI, limits and
the mounted bundle server."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.api.conftest import Served


def test_healthz_and_readyz(served: Served) -> None:
    assert httpx.get(f"{served.url}/healthz").json()["status"] == "ok"
    ready = httpx.get(f"{served.url}/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    served.gate.problems = ["no PVDB at /x (build it with `vigil feeds ingest`)"]
    not_ready = httpx.get(f"{served.url}/readyz")
    assert not_ready.status_code == 503
    assert not_ready.json()["problems"] == served.gate.problems


def test_metrics_count_requests_per_route_and_decisions_per_verdict(served: Served) -> None:
    from tests.api.conftest import review

    httpx.get(f"{served.url}/healthz")
    obj = {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
           "metadata": {"name": "vm1"}, "spec": {"domain": {"devices": {}}}}
    assert httpx.post(f"{served.url}/v1/admission", json=review(obj),
                      headers=served.headers).status_code == 200
    text = httpx.get(f"{served.url}/metrics").text
    assert 'vigil_http_requests_total{method="GET",route="/healthz",status="200"} 1.0' in text
    assert 'vigil_http_request_seconds_count{route="/v1/admission"} 1.0' in text
    assert ('vigil_admission_decisions_total{kind="VirtualMachineInstance",verdict="admit"}'
            ' 1.0') in text


def test_openapi_documents_every_route_and_its_errors(served: Served) -> None:
    doc = httpx.get(f"{served.url}/openapi.json").json()
    paths = doc["paths"]
    assert {"/healthz", "/readyz", "/metrics", "/v1/admission"} <= set(paths)
    admission = paths["/v1/admission"]["post"]
    assert {"200", "400", "413", "500"} <= set(admission["responses"])
    assert "503" in paths["/readyz"]["get"]["responses"]
    assert "AdmissionReview" in doc["components"]["schemas"]
    assert "ErrorBody" in doc["components"]["schemas"]


def test_a_body_over_the_limit_is_413(served: Served) -> None:
    big = b'{"pad": "' + b"x" * (70 * 1024) + b'"}'
    r = httpx.post(f"{served.url}/v1/admission", content=big,
                   headers={"content-type": "application/json"})
    assert r.status_code == 413 and "over 65536 bytes" in r.json()["error"]

    def chunks():  # no Content-Length: counted as it arrives
        yield b'{"pad": "'
        for _ in range(70):
            yield b"x" * 1024
        yield b'"}'

    r = httpx.post(f"{served.url}/v1/admission", content=chunks(),
                   headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_a_bad_parameter_is_422_naming_it(served: Served) -> None:
    from tests.api.conftest import review

    obj = {"kind": "VirtualMachineInstance", "metadata": {"name": "v"}, "spec": {}}
    r = httpx.post(f"{served.url}/v1/admission?mode=sideways", json=review(obj),
                   headers=served.headers)
    # the admission route answers every validation failure as a malformed review (400)
    assert r.status_code == 400 and "mode" in r.json()["error"]


def test_the_bundle_server_is_mounted(served: Served, bundle_dir: Path) -> None:
    from engine.decide import build_bundle, load_directory
    from tests.conftest import ROOT

    POLICIES = ROOT / "engine" / "policies"

    (bundle_dir / "vigil.tar.gz").write_bytes(
        build_bundle(load_directory(POLICIES, ["vigil"]), revision="r1"))
    first = httpx.get(f"{served.url}/bundles/vigil.tar.gz", headers=served.headers)
    assert first.status_code == 200 and first.headers["etag"]
    again = httpx.get(f"{served.url}/bundles/vigil.tar.gz",
                      headers={**served.headers,
                               "If-None-Match": first.headers["etag"]})
    assert again.status_code == 304
    assert httpx.get(f"{served.url}/bundles/none.tar.gz", headers=served.headers).status_code == 404
    # without a decision log, OPA's uploads are refused, saying how to enable them
    logs = httpx.post(f"{served.url}/logs", content=b"[]", headers=served.headers)
    assert logs.status_code == 404
