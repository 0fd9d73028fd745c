"""The tenant report's model: its fields, wordings and the values it derives (the
schema ``vigil report`` reads and the service serves). Built by
:mod:`engine.provision.report`, rendered by :mod:`engine.provision.vex` and
:mod:`engine.provision.html`."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from engine.errors import EXIT_INPUT, VigilError

REPORT_TYP = "vigil-report+jws"
"""The JWS ``typ`` of a signed report (an attestation result or a manifest is refused)."""

ADVICE_PATCHED = "Patched config available"
ADVICE_NOT_PATCHED = "Patched config not available - consider delaying provisioning"
ADVICE_CLEAN = "No vulnerabilities found"
Advice = Literal["Patched config available",
                 "Patched config not available - consider delaying provisioning",
                 "No vulnerabilities found"]

UNSAFE_CONFIGURATION = 32
"""AR4SI ``configuration`` 32: the configuration includes or exposes known
vulnerabilities."""

CONFIGURATION_NOTE = (
    "The EAR's configuration claim is the verifier's appraisal of the measured "
    "configuration against the approved image (AR4SI 2 approved, 96 differs, 99 the "
    "evidence failed); the verifier does not look for vulnerabilities. AR4SI "
    "configuration 32 means the configuration includes or exposes known vulnerabilities: "
    "this report gives it when the PVDB finds a vulnerability in an attested component.")

PatchStatus = Literal["own_line_patch", "other_line_upgrade", "estimated_patch", "no_fix",
                      "unknown"]
"""What fixes a finding: a patch on the component's own version line, only an upgrade to
another line, a predicted patch for its line, no fix known, or not known."""

PATCH_STATUS_TEXT: dict[str, str] = {
    "own_line_patch": "patch on its own line",
    "other_line_upgrade": "upgrade to another line",
    "estimated_patch": "patch estimated for its line",
    "no_fix": "no fix known",
    "unknown": "fix status unknown",
}

CoverageName = Literal["covered", "uncovered", "undetermined", "unknown"]

Severity = Literal["critical", "high", "medium", "low", "none", "unknown"]


class ReportError(VigilError):
    """A report that cannot be built, read, or verified."""

    exit_code = EXIT_INPUT

    def __init__(self, reason: str, *, tip: str | None = None) -> None:
        super().__init__(reason, tip=tip)
        self.reason = reason


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ReportImage(_Model):
    name: str
    version: str


class ReportFailure(_Model):
    step: str
    reason: str


class ConfigurationClaim(_Model):
    """AR4SI ``configuration``: the EAR's value and the report's reading of it."""

    ear: int | None = Field(description="The value the EAR carries (null: no EAR)")
    with_vulnerabilities: int | None = Field(
        description="32 when a known vulnerability affects an attested component; null when"
        " none was found")
    note: str = CONFIGURATION_NOTE


class ReportAttestation(_Model):
    """The host's attestation, as the verifier issued it."""

    status: Literal["affirming", "warning", "contraindicated", "none"]
    issued_at: str | None = None
    verifier_id: str | None = None
    trust_vector: dict[str, int] = Field(default_factory=dict)
    failures: list[ReportFailure] = Field(default_factory=list)
    configuration: ConfigurationClaim
    ear: str | None = Field(default=None, description="The EAR (compact JWT) the placement"
                            " rests on, unchanged")


class ReportComponent(_Model):
    """One attested component and whether the loaded sources cover it."""

    index: int
    kind: str
    label: str
    version: str
    purl: str | None = None
    cpe: str | None = None
    coverage: CoverageName = "unknown"


class ReportKev(_Model):
    date_added: str
    due_date: str | None = None
    known_ransomware_use: bool


class ReportEpss(_Model):
    score: float
    percentile: float | None = None
    date: str | None = None


class FixDate(_Model):
    """When the fix is (or is predicted to be) available."""

    date: str | None = Field(description="YYYY-MM-DD, or null when no date is known")
    basis: Literal["vendor", "estimated", "none"]
    interval: tuple[str, str] | None = Field(
        default=None, description="For estimates: the 10th-90th percentile interval")
    confidence: float | None = None
    p_within_window: float | None = None
    window_days: int | None = None
    days_from_now: int | None = None


class ReportVulnerability(_Model):
    """One vulnerability that affects one attested component."""

    id: str
    title: str | None = None
    component: int
    component_label: str
    max_cvss: float | None = None
    severity: Severity
    cvss: list[dict[str, Any]] = Field(default_factory=list)
    kev: ReportKev | None = None
    epss: ReportEpss | None = None
    fix_status: Literal["fixed", "no_fix", "unknown"]
    patch_status: PatchStatus
    closing_version: str | None = None
    advisories: list[str] = Field(default_factory=list)
    fix_date: FixDate
    resolved_by_patched_configuration: bool = False


class ReportUndetermined(_Model):
    id: str
    component: int
    component_label: str
    reason: str


class ReportPatched(_Model):
    available: bool = Field(description="Ready, attested and affirming: the policy's test")
    state: Literal["none", "preparing", "ready"]
    image: ReportImage | None = None
    attested: bool = False
    attestation_status: str | None = None


class ReportReason(_Model):
    rule: str
    message: str
    vulnerability: str | None = None


class ReportVerdict(_Model):
    verdict: Literal["admit", "patch", "delay", "reject"]
    decision_id: str
    bundle_revision: str | None = None
    evaluator: str
    fail_closed: bool = False
    reasons: list[ReportReason] = Field(default_factory=list)
    warnings: list[ReportReason] = Field(default_factory=list)
    obligations: list[dict[str, Any]] = Field(default_factory=list)


class TenantReport(_Model):
    """The tenant's attestation report (schema version 1)."""

    schema_version: Literal[1] = 1
    report_id: str
    issued_at: str = Field(description="RFC 3339, UTC")
    tenant: str
    vm: str
    host: str
    image: ReportImage | None
    attestation: ReportAttestation
    components: list[ReportComponent] = Field(default_factory=list)
    vulnerabilities: list[ReportVulnerability] = Field(default_factory=list)
    undetermined: list[ReportUndetermined] = Field(default_factory=list)
    patched_configuration: ReportPatched
    verdict: ReportVerdict
    advice: Advice
    pvdb_as_of: str | None = None
    decision_time: str
    vex: dict[str, Any] = Field(description="The vulnerability section as a CycloneDX VEX"
                                " document (JSON, spec version 1.6)")

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")



def severity_of(score: float | None) -> Severity:
    """The CVSS v3/v4 qualitative rating of a base score."""
    if score is None:
        return "unknown"
    if score >= 9.0:
        return "critical"
    if score >= 7.0:
        return "high"
    if score >= 4.0:
        return "medium"
    if score > 0.0:
        return "low"
    return "none"


def patch_status(status: str, line: str | None, basis: str, date: str | None) -> PatchStatus:
    """What fixes a finding, from its fix status, line and date basis."""
    if basis == "estimated" and date is not None:
        return "estimated_patch"
    if status == "fixed":
        return "other_line_upgrade" if line == "other" else "own_line_patch"
    if status == "no_fix":
        return "no_fix"
    return "unknown"
