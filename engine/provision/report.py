"""The tenant's attestation report: what a placement decided, why, and on which evidence.

A report is built from a decided :class:`~engine.provision.placement.Placement` (the
input document, the verdict, the PVDB's answer) and the attestation result (EAR) the
placement rests on::

    from engine.provision import build_report, sign_report, verify_report

    report = build_report(placement, ear=token)          # TenantReport
    signed = sign_report(report, signing_key)            # compact JWS over canonical JSON
    again = verify_report(signed, [verification_key])    # offline, with the public key

It names one tenant (the request's) and carries nothing about any other: the host, its
image and version, the attestation status and trust vector, every vulnerability that
affects the attested components (severity, KEV, EPSS, patch status, the fix date with
its basis and interval), whether a patched configuration is available, the verdict with
every reason and warning, the advice in three fixed wordings (:data:`ADVICE_PATCHED`,
:data:`ADVICE_NOT_PATCHED`, :data:`ADVICE_CLEAN`), its vulnerability section as a
CycloneDX VEX document (:mod:`engine.provision.vex`) and the EAR itself.

AR4SI's ``configuration`` claim: the EAR's value is the verifier's appraisal of the
measured configuration against the approved image (2 approved, 96 differs, 99 the
evidence failed); the verifier does not look for vulnerabilities. The report reads the
PVDB's answer into the claim AR4SI has for it: 32, "the configuration includes or
exposes known vulnerabilities", whenever a vulnerability affects an attested component
(:attr:`ConfigurationClaim.with_vulnerabilities`). The EAR is carried unchanged.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from engine.keys import SignatureError, SigningKey, VerificationKey, sign_compact, verify_compact
from engine.provision.report_model import (
    ADVICE_CLEAN,
    ADVICE_NOT_PATCHED,
    ADVICE_PATCHED,
    REPORT_TYP,
    UNSAFE_CONFIGURATION,
    Advice,
    ConfigurationClaim,
    CoverageName,
    FixDate,
    ReportAttestation,
    ReportComponent,
    ReportEpss,
    ReportError,
    ReportFailure,
    ReportImage,
    ReportKev,
    ReportPatched,
    ReportReason,
    ReportUndetermined,
    ReportVerdict,
    ReportVulnerability,
    TenantReport,
    patch_status,
    severity_of,
)
from engine.provision.vex import vex_document

if TYPE_CHECKING:
    from engine.decide import InputDocument
    from engine.provision.placement import Placement
    from engine.pvdb import AffectingReport

__all__ = [
    "ADVICE_CLEAN",
    "ADVICE_NOT_PATCHED",
    "ADVICE_PATCHED",
    "REPORT_TYP",
    "ReportError",
    "TenantReport",
    "build_report",
    "canonical_json",
    "read_report",
    "sign_report",
    "verify_report",
]

# -- building ------------------------------------------------------------------------------


def _rfc3339(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _label(component: Any) -> str:
    name = component.product or component.purl or component.cpe or component.kind
    return f"{name} {component.version}"


def _ear_host(token: str) -> tuple[str, int | None]:
    """The host id and ``iat`` an EAR names, read without checking its signature (the
    placement was decided on the verified result; this only ties the two together)."""
    try:
        payload = token.strip().split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        (host,) = claims["submods"]
        iat = claims.get("iat")
        return str(host), iat if isinstance(iat, int) else None
    except (IndexError, KeyError, TypeError, ValueError, binascii.Error):
        raise ReportError("the EAR is not a compact JWT with one host submod") from None


def _intervals(affecting: AffectingReport | None) -> dict[tuple[str, int], tuple[str, str]]:
    if affecting is None:
        return {}
    out: dict[tuple[str, int], tuple[str, str]] = {}
    for finding in affecting.findings:
        interval = finding.fix.availability.interval
        if interval is not None:
            out[(finding.vuln_id, finding.component)] = (interval[0].isoformat(),
                                                         interval[1].isoformat())
    return out


def _coverage(document: InputDocument, affecting: AffectingReport | None
              ) -> dict[int, CoverageName]:
    out: dict[int, CoverageName] = {c.component: c.status for c in document.coverage}
    if affecting is not None:
        for c in affecting.coverage:
            out.setdefault(c.component, c.status.value)
    return out


def _advice(vulnerabilities: Sequence[ReportVulnerability], patched: ReportPatched) -> Advice:
    if not vulnerabilities:
        return "No vulnerabilities found"
    if patched.available:
        return "Patched config available"
    return "Patched config not available - consider delaying provisioning"


def build_report(placement: Placement, *, ear: str | None, tenant: str | None = None,
                 now: dt.datetime | None = None, report_id: str | None = None
                 ) -> TenantReport:
    """The tenant's report of ``placement``, resting on the EAR ``ear`` (the compact JWT
    the placement's attestation result was read from; ``None`` for an unattested host).

    ``tenant``, when given, must be the tenant the placement was decided for (a report
    is never built for another tenant's placement)."""
    document = placement.document
    verdict = placement.verdict
    request_tenant = document.request.tenant
    if tenant is not None and tenant != request_tenant:
        raise ReportError(f"the placement was decided for another tenant, not {tenant!r}")
    attestation = document.host.attestation
    if ear is not None:
        host, iat = _ear_host(ear)
        if host != document.host.id:
            raise ReportError(f"the EAR attests host {host!r}, not the placement's host "
                              f"{document.host.id!r}")
        if (iat is not None and attestation.issued_at_ns is not None
                and iat != attestation.issued_at_ns // 1_000_000_000):
            raise ReportError("the EAR is not the attestation result the placement rests on "
                              "(its iat differs)")
    components = document.host.components
    coverage = _coverage(document, placement.affecting)
    report_components = [
        ReportComponent(index=i, kind=c.kind, label=_label(c), version=c.version, purl=c.purl,
                        cpe=c.cpe,
                        coverage=coverage.get(i, "unknown"))
        for i, c in enumerate(components)]
    labels = {c.index: c.label for c in report_components}
    intervals = _intervals(placement.affecting)
    resolved = {r.vulnerability for r in verdict.reasons
                if r.rule == "patched_configuration_ready" and r.vulnerability}
    vulnerabilities: list[ReportVulnerability] = []
    for v in document.vulnerabilities:
        availability = v.fix.availability
        vulnerabilities.append(ReportVulnerability(
            id=v.id, title=v.title, component=v.component,
            component_label=labels.get(v.component, str(v.component)),
            max_cvss=v.max_cvss, severity=severity_of(v.max_cvss),
            cvss=[s.model_dump(mode="json") for s in v.cvss],
            kev=ReportKev(**v.kev.model_dump()) if v.kev else None,
            epss=ReportEpss(**v.epss.model_dump()) if v.epss else None,
            fix_status=v.fix.status,
            patch_status=patch_status(v.fix.status, v.fix.line, availability.basis,
                                      availability.date),
            closing_version=v.fix.closing_version,
            advisories=list(v.fix.advisories),
            fix_date=FixDate(date=availability.date, basis=availability.basis,
                             interval=intervals.get((v.id, v.component)),
                             confidence=availability.confidence,
                             p_within_window=availability.p_within_window,
                             window_days=availability.window_days,
                             days_from_now=availability.days_from_now),
            resolved_by_patched_configuration=v.id in resolved,
        ))
    patched = document.patched_configuration
    report_patched = ReportPatched(
        available=(patched.state == "ready" and patched.attested
                   and patched.attestation_status == "affirming"),
        state=patched.state,
        image=ReportImage(name=patched.image.name, version=patched.image.version)
        if patched.image else None,
        attested=patched.attested, attestation_status=patched.attestation_status)
    trust_vector = attestation.trust_vector.model_dump() if attestation.trust_vector else {}
    image = attestation.image
    when = now or dt.datetime.now(dt.UTC)
    rid = report_id or str(uuid.uuid4())
    undetermined = [ReportUndetermined(id=u.id, component=u.component,
                                       component_label=labels.get(u.component,
                                                                  str(u.component)),
                                       reason=u.reason) for u in document.undetermined]
    report_image = ReportImage(name=image.name, version=image.version) if image else None
    report_verdict = ReportVerdict(
        verdict=verdict.verdict, decision_id=verdict.decision_id,
        bundle_revision=verdict.bundle_revision, evaluator=verdict.evaluator,
        fail_closed=verdict.fail_closed,
        reasons=[ReportReason(rule=r.rule, message=r.message, vulnerability=r.vulnerability)
                 for r in verdict.reasons],
        warnings=[ReportReason(rule=r.rule, message=r.message, vulnerability=r.vulnerability)
                  for r in verdict.warnings],
        obligations=[o.model_dump(mode="json", exclude_none=True)
                     for o in verdict.obligations])
    fields: dict[str, Any] = {
        "report_id": rid, "issued_at": _rfc3339(when), "tenant": request_tenant,
        "vm": document.request.vm.name, "host": document.host.id, "image": report_image,
        "attestation": ReportAttestation(
            status=attestation.status, issued_at=attestation.issued_at,
            verifier_id=attestation.verifier_id, trust_vector=trust_vector,
            failures=[ReportFailure(step=f.step, reason=f.reason)
                      for f in attestation.failures],
            configuration=ConfigurationClaim(
                ear=trust_vector.get("configuration") if ear is not None else None,
                with_vulnerabilities=UNSAFE_CONFIGURATION if vulnerabilities else None),
            ear=ear.strip() if ear is not None else None),
        "components": report_components, "vulnerabilities": vulnerabilities,
        "undetermined": undetermined, "patched_configuration": report_patched,
        "verdict": report_verdict, "advice": _advice(vulnerabilities, report_patched),
        "pvdb_as_of": document.provenance.pvdb_as_of if document.provenance else None,
        "decision_time": document.decision_time.rfc3339,
    }
    fields["vex"] = vex_document(rid, when, host=document.host.id, image=report_image,
                                 components=report_components,
                                 vulnerabilities=vulnerabilities, undetermined=undetermined,
                                 patched=(f"{report_patched.image.name} "
                                          f"{report_patched.image.version}"
                                          if report_patched.image else None))
    return TenantReport(**fields)


# -- signing -------------------------------------------------------------------------------


def canonical_json(report: TenantReport) -> bytes:
    """The bytes a report's signature covers: its JSON with sorted keys, no spaces,
    UTF-8."""
    return json.dumps(report.to_json(), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode()


def sign_report(report: TenantReport, key: SigningKey) -> str:
    """The report as a compact JWS over its canonical JSON."""
    return sign_compact(canonical_json(report), key, REPORT_TYP)


def _parse(payload: bytes) -> TenantReport:
    try:
        return TenantReport.model_validate_json(payload)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '$'}: {err['msg']}"
                             for err in exc.errors()[:3])
        raise ReportError(f"not a Vigil tenant report: {problems}") from None


def verify_report(token: str | bytes, keys: Sequence[VerificationKey]) -> TenantReport:
    """The report a compact JWS carries, once its signature verifies with one of
    ``keys``; :class:`ReportError` when it does not, or when the signed bytes are not a
    report in canonical form."""
    try:
        payload = verify_compact(token, keys, REPORT_TYP, "report")
    except SignatureError as exc:
        raise ReportError(exc.reason, tip=exc.tip) from None
    report = _parse(payload)
    if canonical_json(report) != payload:
        raise ReportError("the signed report is not in canonical form")
    return report


def read_report(token: str | bytes) -> TenantReport:
    """The report a compact JWS carries, WITHOUT checking its signature (for showing a
    report; :func:`verify_report` is what establishes that it is genuine)."""
    text = token.decode("ascii", "replace") if isinstance(token, bytes) else token
    parts = text.strip().split(".")
    if len(parts) != 3:
        raise ReportError("the report is not a compact JWS (three dot-separated parts)")
    try:
        payload = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
    except (binascii.Error, ValueError):
        raise ReportError("the report's payload is not base64url") from None
    return _parse(payload)
