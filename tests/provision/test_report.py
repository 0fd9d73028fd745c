"""The tenant's attestation report, built from real placements: the snapshot PVDB, the
default policy, a signed EAR; signed, verified offline, embedded VEX, rendered HTML."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from engine.keys import sign_compact
from engine.model import Component
from engine.provision import (
    ADVICE_CLEAN,
    ADVICE_NOT_PATCHED,
    ADVICE_PATCHED,
    ReportError,
    TenantReport,
    build_report,
    canonical_json,
    read_report,
    render_html,
    sign_report,
    verify_report,
)
from engine.provision.report_model import patch_status
from tests.provision.conftest import (
    KERNEL,
    MICROCODE,
    NOW,
    PATCHED_READY,
    XEN,
    Keys,
    Placed,
)

Place = Callable[..., Placed]
CLEAN_KERNEL = Component(kind="kernel", vendor="linux", product="linux_kernel",
                         version="6.12.40")  # past every fix in the snapshot


def _report(place: Place, components: list[Component], **kwargs: Any) -> TenantReport:
    placed = place(components, **kwargs)
    return build_report(placed.placement, ear=placed.ear, now=NOW)


def test_known_vulnerabilities_without_a_patched_configuration(place: Place) -> None:
    report = _report(place, [KERNEL, XEN, MICROCODE])
    assert report.advice == ADVICE_NOT_PATCHED
    assert report.advice == "Patched config not available - consider delaying provisioning"
    assert (report.tenant, report.vm, report.host) == ("acme", "web-1", "hv-042")
    assert report.image is not None and report.image.version == "2024.05.1"
    assert report.attestation.status == "affirming"
    assert report.attestation.trust_vector["executables"] == 3
    # the EAR's configuration claim is kept; the report reads vulnerabilities as 32
    assert report.attestation.configuration.ear == 2
    assert report.attestation.configuration.with_vulnerabilities == 32
    assert "32" in report.attestation.configuration.note
    found = {v.id: v for v in report.vulnerabilities}
    assert set(found) == {"CVE-2024-1086", "CVE-2024-36971", "CVE-2024-50264",
                          "CVE-2024-42135", "CVE-2024-53104", "CVE-2025-38236"}
    kev = found["CVE-2024-36971"]
    assert kev.kev is not None and kev.kev.date_added == "2024-08-07"
    assert kev.epss is not None and kev.epss.score == 0.027
    assert (kev.patch_status, kev.closing_version) == ("own_line_patch", "6.6.34")
    assert (kev.fix_date.date, kev.fix_date.basis) == ("2024-06-16", "vendor")
    assert found["CVE-2024-1086"].patch_status == "other_line_upgrade"
    assert found["CVE-2024-1086"].severity == "high"
    assert found["CVE-2024-1086"].max_cvss == 7.8
    assert [u.id for u in report.undetermined] == ["CVE-2024-2201"]
    # the verdict with every reason the policy gave
    assert report.verdict.verdict == "reject"
    placed_reasons = {(r.rule, r.vulnerability) for r in report.verdict.reasons}
    assert ("kev_without_patched_configuration", "CVE-2024-36971") in placed_reasons
    assert len(report.verdict.reasons) >= 3
    assert not report.patched_configuration.available


def test_a_ready_patched_configuration(place: Place) -> None:
    report = _report(place, [KERNEL], patched=PATCHED_READY)
    assert report.advice == ADVICE_PATCHED == "Patched config available"
    assert report.verdict.verdict == "patch"
    assert report.patched_configuration.available
    resolved = {v.id for v in report.vulnerabilities if v.resolved_by_patched_configuration}
    assert "CVE-2024-36971" in resolved
    states = {v["id"]: v["analysis"]["state"] for v in report.vex["vulnerabilities"]}
    assert states["CVE-2024-36971"] == "resolved"


def test_no_vulnerabilities(place: Place) -> None:
    report = _report(place, [CLEAN_KERNEL])
    assert report.advice == ADVICE_CLEAN == "No vulnerabilities found"
    assert report.verdict.verdict == "admit"
    assert report.vulnerabilities == []
    assert report.attestation.configuration.with_vulnerabilities is None
    assert report.components[0].coverage == "covered"


def test_the_report_is_tenant_scoped(place: Place) -> None:
    placed = place([KERNEL], tenant="globex")
    report = build_report(placed.placement, ear=placed.ear, now=NOW)
    assert report.tenant == "globex"
    assert "acme" not in canonical_json(report).decode()
    with pytest.raises(ReportError, match="another tenant"):
        build_report(placed.placement, ear=placed.ear, tenant="acme")


def test_the_report_carries_the_ear_it_rests_on(place: Place) -> None:
    placed = place([KERNEL])
    report = build_report(placed.placement, ear=placed.ear, now=NOW)
    assert report.attestation.ear == placed.ear
    other = place([KERNEL], host="hv-999")
    with pytest.raises(ReportError, match="hv-999"):
        build_report(placed.placement, ear=other.ear)


def test_signature_verifies_offline(place: Place, report_keys: Keys) -> None:
    report = _report(place, [KERNEL, XEN])
    token = sign_report(report, report_keys.signing)
    assert verify_report(token, [report_keys.verification]) == report
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header["typ"] == "vigil-report+jws" and header["alg"] == "ES256"


def _flip(token: str, part: int, at: int) -> str:
    parts = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(parts[part] + "=" * (-len(parts[part]) % 4)))
    raw[at] ^= 0x01
    parts[part] = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    return ".".join(parts)


def test_one_byte_changed_fails(place: Place, report_keys: Keys) -> None:
    token = sign_report(_report(place, [KERNEL]), report_keys.signing)
    payload = base64.urlsafe_b64decode(token.split(".")[1] + "==")
    at = payload.index(b'"advice":"') + len(b'"advice":"')
    for changed in (_flip(token, 1, at), _flip(token, 2, 5)):
        with pytest.raises(ReportError, match="does not verify"):
            verify_report(changed, [report_keys.verification])


def test_a_wrong_key_fails(place: Place, report_keys: Keys, other_keys: Keys,
                           verifier_keys: Keys) -> None:
    token = sign_report(_report(place, [KERNEL]), report_keys.signing)
    with pytest.raises(ReportError, match="does not verify"):
        verify_report(token, [other_keys.verification])
    # an EAR signed by the verifier is not a report, even with the verifier's key
    ear = place([KERNEL]).ear
    with pytest.raises(ReportError, match="typ"):
        verify_report(ear, [verifier_keys.verification])


def test_a_non_canonical_payload_is_refused(place: Place, report_keys: Keys) -> None:
    report = _report(place, [KERNEL])
    loose = json.dumps(report.to_json(), indent=1).encode()
    token = sign_compact(loose, report_keys.signing, "vigil-report+jws")
    with pytest.raises(ReportError, match="canonical"):
        verify_report(token, [report_keys.verification])
    assert read_report(token) == report


def test_the_vex_document_validates(place: Place) -> None:
    report = _report(place, [KERNEL, XEN, MICROCODE])
    vex = report.vex
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(vex))
    assert error is None, error
    assert vex["bomFormat"] == "CycloneDX" and vex["specVersion"] == "1.6"
    refs = {c["bom-ref"]: c for c in vex["components"]}
    assert refs["component-0"]["cpe"] == KERNEL.cpe
    by_id = {v["id"]: v for v in vex["vulnerabilities"]}
    assert set(by_id) == {v.id for v in report.vulnerabilities} | {"CVE-2024-2201"}
    kev = by_id["CVE-2024-36971"]
    assert kev["affects"] == [{"ref": "component-0", "versions": [
        {"version": "6.6.30", "status": "affected"}]}]
    assert kev["analysis"]["state"] == "exploitable"
    assert kev["analysis"]["response"] == ["update"]
    assert {"name": "vigil:kev:date_added", "value": "2024-08-07"} in kev["properties"]
    assert kev["ratings"][0]["method"] == "CVSSv31"
    assert by_id["CVE-2024-2201"]["analysis"]["state"] == "in_triage"
    assert by_id["CVE-2024-2201"]["affects"][0]["ref"] == "component-1"


def test_an_empty_vex_validates(place: Place) -> None:
    vex = _report(place, [CLEAN_KERNEL]).vex
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(vex)) is None
    assert vex.get("vulnerabilities", []) == []


def test_patch_status_follows_the_fix() -> None:
    assert patch_status("fixed", "own", "vendor", "2024-06-16") == "own_line_patch"
    assert patch_status("fixed", "other", "vendor", "2024-03-10") == "other_line_upgrade"
    assert patch_status("fixed", "other", "estimated", "2024-07-20") == "estimated_patch"
    assert patch_status("no_fix", None, "estimated", "2024-07-20") == "estimated_patch"
    assert patch_status("no_fix", None, "none", None) == "no_fix"
    assert patch_status("unknown", None, "none", None) == "unknown"


def test_html_is_readable_and_self_contained(place: Place) -> None:
    report = _report(place, [KERNEL, XEN])
    html = render_html(report, verified=True)
    assert ADVICE_NOT_PATCHED in html
    assert "CVE-2024-36971" in html and "6.6.34" in html and "KEV" in html
    assert "<script" not in html
    # URLs appear only as text (the VEX's $schema, advisories), never as assets or links
    for external in ("<link", "src=", "href=", "@import", "url("):
        assert external not in html


def test_html_escapes_hostile_strings(place: Place) -> None:
    report = _report(place, [KERNEL])
    hostile = "<script>alert('x')</script>"
    vulnerabilities = [v.model_copy(update={"title": hostile})
                       for v in report.vulnerabilities]
    reasons = [r.model_copy(update={"message": f"{hostile} & more"})
               for r in report.verdict.reasons]
    tampered = report.model_copy(update={
        "vulnerabilities": vulnerabilities, "vm": '"><img src=x onerror=alert(1)>',
        "verdict": report.verdict.model_copy(update={"reasons": reasons})})
    html = render_html(tampered)
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    assert "&amp; more" in html


def test_an_estimate_carries_its_interval_into_the_report_and_the_vex(place: Place) -> None:
    import dataclasses
    import datetime as dt

    from engine.pvdb import AvailabilityBasis

    placed = place([KERNEL])
    affecting = placed.placement.affecting
    assert affecting is not None
    first = affecting.findings[0]
    estimate = first.fix.availability.model_copy(update={
        "basis": AvailabilityBasis.ESTIMATED,
        "interval": (dt.date(2024, 7, 5), dt.date(2024, 8, 2))})
    changed = first.model_copy(update={"fix": first.fix.model_copy(
        update={"availability": estimate})})
    placement = dataclasses.replace(placed.placement, affecting=affecting.model_copy(
        update={"findings": [changed, *affecting.findings[1:]]}))
    report = build_report(placement, ear=placed.ear, now=NOW)
    (finding,) = [v for v in report.vulnerabilities if v.id == first.vuln_id]
    assert finding.fix_date.interval == ("2024-07-05", "2024-08-02")
    (vex,) = [v for v in report.vex["vulnerabilities"] if v["id"] == first.vuln_id]
    assert {"name": "vigil:fix_date_interval", "value": "2024-07-05/2024-08-02"} \
        in vex["properties"]
