"""The input builder: a verified attestation result's summary and a PVDB report become a
document that both embedded evaluators read alike."""

from __future__ import annotations

import datetime as dt

from engine.attest.result import Failure, ResultSummary
from engine.decide import Decider, Evaluator, PatchedConfiguration, RequestFacts, build_input
from engine.decide.input_document import Image, VmShape
from engine.model import ImageRef
from engine.pvdb import AffectingReport, Availability, AvailabilityBasis, Component, Finding, Fix
from engine.pvdb.query_models import FixStatus, Kev, Severity
from tests.decide.conftest import NOW


def _finding(vuln_id: str, score: float | None, days: int | None, *, kev: bool = False,
             basis: AvailabilityBasis = AvailabilityBasis.VENDOR) -> Finding:
    date = (NOW.date() + dt.timedelta(days=days)) if days is not None else None
    return Finding(
        vuln_id=vuln_id, component=0, component_label="linux/linux_kernel@6.6.30",
        state="affected", title="t", aliases=[],
        severities=[Severity(provider="nvd", source="nvd", cvss_version="3.1",
                             vector="CVSS:3.1/AV:N", base_score=score or 0.0,
                             base_severity="HIGH")] if score is not None else [],
        max_base_score=score,
        kev=Kev(date_added=dt.date(2025, 12, 1), due_date=None, known_ransomware_use="Known",
                source="kev") if kev else None,
        epss=None,
        fix=Fix(status=FixStatus.FIXED if date else FixStatus.NO_FIX,
                closing_version="6.6.31" if date else None,
                availability=Availability(date=date, basis=basis if date else
                                          AvailabilityBasis.NONE,
                                          confidence=0.615 if basis.value == "estimated" else
                                          None)),
        evidence=[])


def test_build_input_normalises_for_both_evaluators(embedded: Evaluator) -> None:
    report = AffectingReport(
        as_of=NOW, pvdb_generation=7, undetermined=[],
        components=[Component(kind="kernel", vendor="linux", product="linux_kernel",
                              version="6.6.30")],
        findings=[_finding("CVE-2026-0002", 9.849999, 12,
                           basis=AvailabilityBasis.ESTIMATED),
                  _finding("CVE-2026-0001", 4.3, None)])
    doc = build_input(
        RequestFacts(tenant="acme", vm=VmShape(name="web-1", vcpus=2, memory_mib=4096),
                     requested_patch_level="1.3.0"),
        "hv-01",
        ResultSummary(status="affirming", issued_at=NOW - dt.timedelta(minutes=10),
                      verifier_id="vigil", image=ImageRef(name="hv-base", version="1.2.0"),
                      trust_vector={}, failures=[Failure(step="none", reason="-")],
                      components=[]),
        report,
        PatchedConfiguration(state="ready", image=Image(name="hv-base", version="1.3.0"),
                             attested=True, attestation_status="affirming"),
        NOW)
    assert doc.decision_time.rfc3339 == "2026-01-01T00:10:00Z"
    assert doc.decision_time.ns == 1767226200000000000
    assert doc.host.attestation.age_seconds == 600
    assert doc.host.attestation.issued_at == "2026-01-01T00:00:00Z"
    assert [v.id for v in doc.vulnerabilities] == ["CVE-2026-0001", "CVE-2026-0002"]
    vuln = doc.vulnerabilities[1]
    assert vuln.max_cvss == 9.8  # rounded once: 9.849999 -> 9.8
    assert vuln.fix.availability.days_from_now == 12
    assert vuln.fix.availability.date_ns == 1768262400000000000
    assert vuln.fix.availability.confidence == 0.62
    assert doc.request.patch_level_met is not None
    assert doc.request.patch_level_met.host is False
    assert doc.request.patch_level_met.patched_configuration is True
    result = Decider(embedded).decide(doc)
    assert result.verdict == "patch"
    assert {r.rule for r in result.reasons} == {
        "patched_configuration_ready", "requested_patch_level_needs_patched_configuration"}
