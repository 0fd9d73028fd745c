"""The typed question and answer of the PVDB query API.

:class:`Component` is what a host runs (from an attested image's component list or an
inventory); :class:`AffectingReport` says which vulnerabilities affect those components,
how severe and exploited they are, and whether and when a fix is available.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from engine.model import Component


class Severity(BaseModel):
    model_config = ConfigDict(frozen=True)

    provider: str
    source: str
    cvss_version: str
    vector: str
    base_score: float
    base_severity: str


class Kev(BaseModel):
    model_config = ConfigDict(frozen=True)

    date_added: dt.date
    due_date: dt.date | None
    known_ransomware_use: str
    source: str


class Epss(BaseModel):
    model_config = ConfigDict(frozen=True)

    score: float
    percentile: float | None
    score_date: dt.date | None
    source: str


class FixStatus(StrEnum):
    FIXED = "fixed"
    """A fixed version exists for this component's line."""
    NO_FIX = "no_fix"
    """Affected and no feed names a fix for this line yet."""
    UNKNOWN = "unknown"


class FixLine(StrEnum):
    OWN = "own"
    """The closing version is on the component's own line: a patch."""
    OTHER = "other"
    """The only fixes are on other lines (another stable branch, another minor
    release): an upgrade to that line, not a patch of this one."""


class AvailabilityBasis(StrEnum):
    VENDOR = "vendor"
    """A feed states the date (advisory date, release date of the fixed version)."""
    ESTIMATED = "estimated"
    """Predicted (see the patch-availability predictor)."""
    NONE = "none"
    """No date is known."""


class Availability(BaseModel):
    model_config = ConfigDict(frozen=True)

    date: dt.date | None
    basis: AvailabilityBasis
    source: str | None = Field(default=None, description="Which fact gave the date")
    confidence: float | None = Field(
        default=None, description="For estimates: P(fix by date); 1.0 for vendor dates"
    )
    interval: tuple[dt.date, dt.date] | None = Field(
        default=None, description="For estimates: the 10th-90th percentile interval"
    )
    p_within_window: float | None = Field(
        default=None, description="For estimates: P(fix within the decision window)"
    )
    window_days: int | None = Field(
        default=None, description="The decision window p_within_window refers to, in days"
    )


class Fix(BaseModel):
    model_config = ConfigDict(frozen=True)

    status: FixStatus
    closing_version: str | None = Field(
        default=None, description="The lowest fixed version above the component's version"
    )
    line: FixLine | None = Field(
        default=None, description="own: the closing version patches the component's own"
        " line; other: it is an upgrade to another line (None: no fix)")
    fixed_versions: list[str] = Field(default_factory=list)
    patch_ids: list[str] = Field(default_factory=list)
    advisories: list[str] = Field(default_factory=list)
    availability: Availability

    @property
    def patch_available(self) -> bool:
        """Whether a patch for the component's own line exists or is expected: a fixed
        version on its own line, or a dated estimate for this line. A fix that exists
        only on another line (an upgrade) does not count."""
        estimated = (self.availability.basis is AvailabilityBasis.ESTIMATED
                     and self.availability.date is not None)
        if self.status is FixStatus.FIXED:
            return self.line is not FixLine.OTHER or estimated
        return self.availability.date is not None


class Evidence(BaseModel):
    """One statement that made the match."""

    model_config = ConfigDict(frozen=True)

    source: str
    record_id: str
    match_kind: str
    statement: str


class Finding(BaseModel):
    model_config = ConfigDict(frozen=True)

    vuln_id: str
    component: int = Field(description="Index of the component in the request")
    component_label: str
    state: str
    title: str | None
    aliases: list[str]
    severities: list[Severity]
    max_base_score: float | None
    kev: Kev | None
    epss: Epss | None
    fix: Fix
    evidence: list[Evidence]


class Undetermined(BaseModel):
    """A vulnerability that names the component but whose versions cannot be compared."""

    model_config = ConfigDict(frozen=True)

    vuln_id: str
    component: int
    component_label: str
    reason: str
    source: str
    record_id: str


class CoverageStatus(StrEnum):
    COVERED = "covered"
    """At least one loaded source states versions of the component's package or product,
    and its version was compared with them."""
    UNCOVERED = "uncovered"
    """No loaded source says anything about it: no finding means nothing was asked."""
    UNDETERMINED = "undetermined"
    """Sources cover its product, but its version cannot be read in their terms (a
    distribution kernel release with no upstream release, named without its
    distribution)."""


class SourceCoverage(BaseModel):
    """One loaded source that covers a component under one of its keys."""

    model_config = ConfigDict(frozen=True)

    source: str
    scope: str = Field(description="The package or product covered, e.g. "
                       "'rpm/redhat kernel (release 9)' or 'linux/linux_kernel'")
    records: int = Field(description="Records of that source about it")
    as_of: dt.datetime | None = Field(
        default=None, description="The newest of those records' own times (else when"
        " they were ingested)")


class ComponentCoverage(BaseModel):
    """Which loaded sources cover one component, and as of when."""

    model_config = ConfigDict(frozen=True)

    component: int = Field(description="Index of the component in the request")
    component_label: str
    kind: str
    status: CoverageStatus
    sources: list[SourceCoverage] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list, description="Why a key the component"
                             " names was not compared")


class PastAnswer(BaseModel):
    """An answer as of a day before the PVDB's newest fact: what it left out as not known
    then, and what the PVDB cannot know about that day (:mod:`engine.pvdb.asof`)."""

    model_config = ConfigDict(frozen=True)

    day: dt.date
    records_left_out: int = Field(description="Records about these components that were"
                                  " not public yet on that day (by their own publication"
                                  " date or a bound on it): not used")
    fixes_left_out: int = Field(description="Fixed versions of the findings released after"
                                " that day: not counted as fixes")
    records_revised: int = Field(description="Records used that were modified after that"
                                 " day: only a record's latest version is kept, so what"
                                 " they state may include later changes")
    records_undated: int = Field(description="Records used that carry no publication date"
                                 " of their own: public on that day or not, the PVDB"
                                 " cannot tell")
    limits: list[str] = Field(default_factory=list, description="The same, and what no"
                              " past answer can know, in words")


class AffectingReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    as_of: dt.datetime
    components: list[Component]
    findings: list[Finding]
    undetermined: list[Undetermined]
    pvdb_generation: int
    coverage: list[ComponentCoverage] = Field(
        default_factory=list, description="Per component: the loaded sources that cover it"
        " and as of when; 'uncovered' where none does (no finding then means nothing)")
    past: PastAnswer | None = Field(
        default=None, description="Set when as_of is before the PVDB's newest fact: the"
        " answer uses only what was known on that day, and says what it cannot know")
