"""The input builder: one decision's input document, from what the other parts know.

:func:`build_input` maps the tenant's request, the host's verified attestation result
(the attestation part's :class:`~engine.attest.result.ResultSummary`, taken as it is), the
PVDB's :class:`~engine.pvdb.AffectingReport` for the host's components and the host's
patched configuration into an :class:`~engine.decide.input_document.InputDocument`,
normalising every value the way the document's contract says (times twice, day counts,
scores rounded once, patch levels compared by the engine).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from engine.decide.input_document import (
    Attestation,
    Availability,
    Component,
    Coverage,
    CoverageSource,
    CvssScore,
    DecisionTime,
    Epss,
    Failure,
    Fix,
    Host,
    Image,
    InputDocument,
    Kev,
    PatchedConfiguration,
    PatchLevelMet,
    Provenance,
    Request,
    TrustVector,
    Undetermined,
    VmShape,
    Vulnerability,
)
from engine.errors import VersionSchemeError
from engine.gcpause import paused_gc

if TYPE_CHECKING:
    from engine.attest import ResultSummary
    from engine.pvdb import AffectingReport, Finding


class RequestFacts(BaseModel):
    """The tenant's request as the builder receives it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tenant: str
    vm: VmShape
    requested_patch_level: str | None = None
    requested_image: Image | None = None


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value.isoformat()}: give a timezone")
    return value.astimezone(dt.UTC)


def ns_of(value: dt.datetime) -> int:
    """Nanoseconds since the epoch, exact to the microsecond."""
    delta = _utc(value) - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def rfc3339(value: dt.datetime) -> str:
    """RFC 3339 in UTC with a trailing ``Z`` (what OPA's ``time.parse_rfc3339_ns`` reads)."""
    text = _utc(value).isoformat(timespec="microseconds").replace("+00:00", "Z")
    return text.replace(".000000Z", "Z")


def _day_ns(day: dt.date) -> int:
    return ns_of(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC))


def _round(value: float | None, places: int) -> float | None:
    # Rounded once, here: half away from zero on the decimal text, so 9.85 stays 9.9.
    if value is None:
        return None
    from decimal import ROUND_HALF_UP, Decimal

    return float(Decimal(repr(value)).quantize(Decimal(1).scaleb(-places), ROUND_HALF_UP))


def _vulnerability(finding: Finding, today: dt.date) -> Vulnerability:
    availability = finding.fix.availability
    date = availability.date
    return Vulnerability(
        id=finding.vuln_id,
        component=finding.component,
        title=finding.title,
        max_cvss=_round(finding.max_base_score, 1),
        cvss=[CvssScore(provider=s.provider, source=s.source, version=s.cvss_version,
                        vector=s.vector, score=_round(s.base_score, 1) or 0.0)
              for s in finding.severities],
        kev=Kev(date_added=finding.kev.date_added.isoformat(),
                due_date=finding.kev.due_date.isoformat() if finding.kev.due_date else None,
                known_ransomware_use=finding.kev.known_ransomware_use.strip().lower() == "known")
        if finding.kev else None,
        epss=Epss(score=_round(finding.epss.score, 3) or 0.0,
                  percentile=_round(finding.epss.percentile, 3),
                  date=finding.epss.score_date.isoformat() if finding.epss.score_date else None)
        if finding.epss else None,
        fix=Fix(
            status=finding.fix.status.value,
            closing_version=finding.fix.closing_version,
            line=finding.fix.line.value if finding.fix.line is not None else None,
            advisories=list(finding.fix.advisories),
            patch_ids=list(finding.fix.patch_ids),
            availability=Availability(
                date=date.isoformat() if date else None,
                date_ns=_day_ns(date) if date else None,
                days_from_now=(date - today).days if date else None,
                basis=availability.basis.value,
                confidence=_round(availability.confidence, 2),
                p_within_window=_round(availability.p_within_window, 2),
                window_days=availability.window_days,
            ),
        ),
    )


def _at_least(version: str | None, level: str) -> bool | None:
    if version is None:
        return None
    from engine.pvdb import compare_versions  # loaded only to compare a patch level

    try:
        return compare_versions("generic", version, level) >= 0
    except VersionSchemeError:
        return None


def _attestation(summary: ResultSummary | None, now: dt.datetime) -> Attestation:
    """The document's attestation from a verified result's summary (``none`` without)."""
    if summary is None:
        return Attestation(status="none")
    issued = _utc(summary.issued_at)
    return Attestation(
        status=summary.status,
        issued_at=rfc3339(issued),
        issued_at_ns=ns_of(issued),
        age_seconds=max(0, int((now - issued).total_seconds())),
        verifier_id=summary.verifier_id,
        image=None if summary.image is None else Image(name=summary.image.name,
                                                       version=summary.image.version),
        trust_vector=TrustVector(**summary.trust_vector),
        failures=[Failure(step=f.step, reason=f.reason) for f in summary.failures],
    )


# thousands of findings become ~10^5 objects: no collections on the way (they would walk
# every long-lived object of the process)
@paused_gc(collect=False)
def build_input(
    request: RequestFacts,
    host_id: str,
    attestation: ResultSummary | None,
    report: AffectingReport,
    patched: PatchedConfiguration,
    now: dt.datetime,
) -> InputDocument:
    """Assemble the input document for one placement decision.

    ``attestation`` is the summary of the host's verified attestation result
    (:meth:`~engine.attest.result.AttestationResult.summary`), or None when the host has
    none (decided with status ``none``). ``report`` is the PVDB's answer for the host's
    components; its component list becomes ``host.components`` so that every
    vulnerability's ``component`` index points into it. ``now`` is the decision time
    (timezone-aware).
    """
    now = _utc(now)
    today = now.date()
    level = request.requested_patch_level
    met = None
    if level is not None:
        host_version = (attestation.image.version
                        if attestation is not None and attestation.image else None)
        patched_version = patched.image.version if patched.image else None
        met = PatchLevelMet(host=_at_least(host_version, level),
                            patched_configuration=_at_least(patched_version, level))
    return InputDocument(
        request=Request(tenant=request.tenant, vm=request.vm, requested_patch_level=level,
                        requested_image=request.requested_image, patch_level_met=met),
        host=Host(
            id=host_id,
            attestation=_attestation(attestation, now),
            components=[Component(kind=c.kind, vendor=c.vendor, product=c.product,
                                  version=c.version, cpe=c.cpe, purl=c.purl)
                        for c in report.components],
        ),
        vulnerabilities=[_vulnerability(f, today)
                         for f in sorted(report.findings, key=lambda f: (f.vuln_id, f.component))],
        undetermined=[Undetermined(id=u.vuln_id, component=u.component, reason=u.reason)
                      for u in report.undetermined],
        coverage=[Coverage(component=c.component, status=c.status.value,
                           sources=[CoverageSource(source=s.source, scope=s.scope,
                                                   as_of=rfc3339(s.as_of)
                                                   if s.as_of is not None else None)
                                    for s in c.sources],
                           notes=list(c.notes))
                  for c in report.coverage],
        patched_configuration=patched,
        decision_time=DecisionTime(rfc3339=rfc3339(now), ns=ns_of(now)),
        provenance=Provenance(pvdb_generation=report.pvdb_generation,
                              pvdb_as_of=rfc3339(report.as_of)
                              if report.as_of.tzinfo else report.as_of.isoformat()),
    )
