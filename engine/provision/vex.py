"""The report's vulnerability section as a CycloneDX VEX document (spec version 1.6).

Built with ``cyclonedx-python-lib``, so that the tenant's tools (Dependency-Track, grype,
trivy and the like) read it as any other CycloneDX VEX:

* the BOM describes the attested host image (``metadata.component``) and lists each
  attested component with a ``bom-ref`` (``component-<index>``), its purl and CPE;
* each finding is a ``vulnerability`` that ``affects`` its component's ``bom-ref`` at the
  attested version (status ``affected``), with a rating per CVSS score (method, vector,
  score, severity), CISA KEV and FIRST EPSS as ``vigil:`` properties, and an ``analysis``
  whose state follows the patch status:

  - ``resolved`` (response ``update``): the policy places the VM on the attested patched
    configuration, which fixes it;
  - ``exploitable`` (response ``update``): the attested version is affected and a fix is
    released, a patch on its own line or an upgrade to another line;
  - ``in_triage``: affected, and no fix is released yet (estimated, none known, unknown);
    the fix date, its basis and interval are in the detail and the properties;

* a vulnerability the PVDB names for a component whose version it cannot compare is
  ``in_triage`` with the component's version status ``unknown``.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from cyclonedx.model import Property, XsUri
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.impact_analysis import (
    ImpactAnalysisAffectedStatus,
    ImpactAnalysisResponse,
    ImpactAnalysisState,
)
from cyclonedx.model.tool import ToolRepository
from cyclonedx.model.vulnerability import (
    BomTarget,
    BomTargetVersionRange,
    Vulnerability,
    VulnerabilityAdvisory,
    VulnerabilityAnalysis,
    VulnerabilityRating,
    VulnerabilityScoreSource,
    VulnerabilitySeverity,
    VulnerabilitySource,
)
from cyclonedx.output.json import JsonV1Dot6
from packageurl import PackageURL

from engine import __version__
from engine.provision.report_model import (
    PATCH_STATUS_TEXT,
    ReportComponent,
    ReportImage,
    ReportUndetermined,
    ReportVulnerability,
    severity_of,
)

SPEC_VERSION = "1.6"

_KINDS: dict[str, ComponentType] = {
    "firmware": ComponentType.FIRMWARE, "bmc": ComponentType.FIRMWARE,
    "microcode": ComponentType.FIRMWARE, "kernel": ComponentType.OPERATING_SYSTEM,
    "hypervisor": ComponentType.PLATFORM, "os-package": ComponentType.LIBRARY,
}

_METHODS: dict[str, VulnerabilityScoreSource] = {
    "2.0": VulnerabilityScoreSource.CVSS_V2, "3.0": VulnerabilityScoreSource.CVSS_V3,
    "3.1": VulnerabilityScoreSource.CVSS_V3_1, "4.0": VulnerabilityScoreSource.CVSS_V4,
}

_SEVERITIES: dict[str, VulnerabilitySeverity] = {
    "critical": VulnerabilitySeverity.CRITICAL, "high": VulnerabilitySeverity.HIGH,
    "medium": VulnerabilitySeverity.MEDIUM, "low": VulnerabilitySeverity.LOW,
    "none": VulnerabilitySeverity.NONE, "unknown": VulnerabilitySeverity.UNKNOWN,
}


def bom_ref(index: int) -> str:
    """The ``bom-ref`` of the attested component at ``index``."""
    return f"component-{index}"


def _purl(text: str | None) -> PackageURL | None:
    if not text:
        return None
    try:
        return PackageURL.from_string(text)
    except ValueError:
        return None


def _component(c: ReportComponent) -> Component:
    name = c.label.removesuffix(f" {c.version}") or c.kind
    return Component(name=name, version=c.version, type=_KINDS.get(c.kind,
                                                                     ComponentType.APPLICATION),
                     bom_ref=bom_ref(c.index), purl=_purl(c.purl), cpe=c.cpe,
                     properties=[Property(name="vigil:kind", value=c.kind),
                                 Property(name="vigil:coverage", value=c.coverage)])


def _severity(score: float) -> VulnerabilitySeverity:
    return _SEVERITIES[severity_of(score)]


def _source(vuln_id: str) -> VulnerabilitySource | None:
    if vuln_id.startswith("CVE-"):
        return VulnerabilitySource(name="CVE",
                                   url=XsUri(f"https://www.cve.org/CVERecord?id={vuln_id}"))
    return None


def _fix_detail(v: ReportVulnerability) -> str:
    date = v.fix_date
    text = PATCH_STATUS_TEXT[v.patch_status]
    if v.closing_version:
        text += f"; fixed in {v.closing_version}"
    if date.date:
        text += f"; fix date {date.date} ({date.basis}"
        if date.interval:
            text += f", interval {date.interval[0]} to {date.interval[1]}"
        if date.confidence is not None and date.basis == "estimated":
            text += f", confidence {date.confidence:.2f}"
        text += ")"
    return text


def _analysis(v: ReportVulnerability, patched: str | None) -> VulnerabilityAnalysis:
    if v.resolved_by_patched_configuration:
        return VulnerabilityAnalysis(
            state=ImpactAnalysisState.RESOLVED, responses=[ImpactAnalysisResponse.UPDATE],
            detail=f"fixed by the attested patched configuration {patched or ''}, where the VM"
                   f" is placed; on the attested host: {_fix_detail(v)}")
    if v.patch_status in {"own_line_patch", "other_line_upgrade"}:
        return VulnerabilityAnalysis(state=ImpactAnalysisState.EXPLOITABLE,
                                     responses=[ImpactAnalysisResponse.UPDATE],
                                     detail=_fix_detail(v))
    return VulnerabilityAnalysis(state=ImpactAnalysisState.IN_TRIAGE, detail=_fix_detail(v))


def _properties(v: ReportVulnerability) -> list[Property]:
    out = [Property(name="vigil:patch_status", value=v.patch_status),
           Property(name="vigil:fix_status", value=v.fix_status),
           Property(name="vigil:fix_date_basis", value=v.fix_date.basis)]
    if v.fix_date.date:
        out.append(Property(name="vigil:fix_date", value=v.fix_date.date))
    if v.fix_date.interval:
        out.append(Property(name="vigil:fix_date_interval",
                            value=f"{v.fix_date.interval[0]}/{v.fix_date.interval[1]}"))
    if v.kev is not None:
        out.append(Property(name="vigil:kev:date_added", value=v.kev.date_added))
        if v.kev.due_date:
            out.append(Property(name="vigil:kev:due_date", value=v.kev.due_date))
        out.append(Property(name="vigil:kev:known_ransomware_use",
                            value=str(v.kev.known_ransomware_use).lower()))
    if v.epss is not None:
        out.append(Property(name="vigil:epss:score", value=f"{v.epss.score:.3f}"))
        if v.epss.percentile is not None:
            out.append(Property(name="vigil:epss:percentile", value=f"{v.epss.percentile:.3f}"))
        if v.epss.date:
            out.append(Property(name="vigil:epss:date", value=v.epss.date))
    return out


def _ratings(v: ReportVulnerability) -> list[VulnerabilityRating]:
    ratings = []
    for score in v.cvss:
        value = float(score["score"])
        ratings.append(VulnerabilityRating(
            source=VulnerabilitySource(name=str(score["provider"])),
            score=Decimal(f"{value:.1f}"), severity=_severity(value),
            method=_METHODS.get(str(score["version"]), VulnerabilityScoreSource.OTHER),
            vector=str(score["vector"])))
    return ratings


def _advisories(v: ReportVulnerability) -> list[VulnerabilityAdvisory]:
    return [VulnerabilityAdvisory(url=XsUri(a)) for a in v.advisories
            if a.startswith(("https://", "http://"))]


def vex_document(report_id: str, issued_at: dt.datetime, *, host: str,
                 image: ReportImage | None, components: Sequence[ReportComponent],
                 vulnerabilities: Sequence[ReportVulnerability],
                 undetermined: Sequence[ReportUndetermined],
                 patched: str | None = None) -> dict[str, Any]:
    """The CycloneDX 1.6 VEX document (as JSON values) of a report's findings."""
    try:
        serial = uuid.UUID(report_id)
    except ValueError:
        serial = uuid.uuid5(uuid.NAMESPACE_URL, f"vigil:report:{report_id}")
    described = Component(name=image.name if image else host,
                          version=image.version if image else None,
                          type=ComponentType.PLATFORM, bom_ref="host-image",
                          properties=[Property(name="vigil:host", value=host)])
    bom_components = [_component(c) for c in components]
    tool = Component(name="vigil", version=__version__, type=ComponentType.APPLICATION)
    bom = Bom(serial_number=serial, components=bom_components,
              metadata=BomMetaData(component=described, timestamp=issued_at,
                                   tools=ToolRepository(components=[tool])))
    bom.register_dependency(described, bom_components)
    for v in vulnerabilities:
        bom.vulnerabilities.add(Vulnerability(
            bom_ref=f"{v.id}/{bom_ref(v.component)}", id=v.id, source=_source(v.id),
            description=v.title, ratings=_ratings(v), advisories=_advisories(v),
            analysis=_analysis(v, patched),
            affects=[BomTarget(ref=bom_ref(v.component), versions=[BomTargetVersionRange(
                version=components[v.component].version,
                status=ImpactAnalysisAffectedStatus.AFFECTED)])],
            properties=_properties(v)))
    for u in undetermined:
        bom.vulnerabilities.add(Vulnerability(
            bom_ref=f"{u.id}/{bom_ref(u.component)}", id=u.id, source=_source(u.id),
            analysis=VulnerabilityAnalysis(
                state=ImpactAnalysisState.IN_TRIAGE,
                detail=f"the component's version cannot be compared: {u.reason}"),
            affects=[BomTarget(ref=bom_ref(u.component), versions=[BomTargetVersionRange(
                version=components[u.component].version,
                status=ImpactAnalysisAffectedStatus.UNKNOWN)])]))
    document: dict[str, Any] = json.loads(JsonV1Dot6(bom).output_as_string())
    return document
