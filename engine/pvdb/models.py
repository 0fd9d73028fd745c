"""Plain typed values that flow between the feed adapters, the store and the query API.

Feed adapters turn one raw record into a :class:`NormalisedRecord`: a bag of facts that
all carry the same provenance (the source feed and the record id). The store writes
and replaces those facts as one unit.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NewType

VulnId = NewType("VulnId", str)
"""A vulnerability identifier: ``CVE-2024-1086``, ``GHSA-…``, ``ALSA-2024:1903``…"""


class Source(StrEnum):
    """The feed kinds the PVDB reads. Each is one adapter module in ``engine.pvdb.feeds``."""

    CVE5 = "cve5"
    NVD = "nvd"
    KEV = "kev"
    EPSS = "epss"
    OSV = "osv"
    CSAF = "csaf"
    RELEASES = "releases"


class VulnState(StrEnum):
    PUBLISHED = "published"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"


class Status(StrEnum):
    """The status a range statement gives to the versions it covers (CVE 5 vocabulary)."""

    AFFECTED = "affected"
    UNAFFECTED = "unaffected"
    UNKNOWN = "unknown"


class MatchKind(StrEnum):
    """How an affected statement names what it is about."""

    PRODUCT = "product"
    """vendor + product names (CVE 5 ``affected[]``, CSAF product names)."""
    CPE = "cpe"
    """A CPE 2.3 name with optional version bounds (NVD, CVE 5 ``cpeApplicability``)."""
    PACKAGE = "package"
    """A package in an ecosystem (OSV, purls in CSAF)."""


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One record cut out of a feed document, before normalisation."""

    source: Source
    record_id: str
    modified: dt.datetime | None
    """The record's own last-modified time; ``None`` when the feed gives none."""
    content_hash: str
    """SHA-256 of the record's canonical JSON; equal content, equal hash."""
    data: Any
    origin: str
    """File path or URL the record came from."""
    pointer: str
    """Where the record sits in its document, as a JSON path (``$`` for a whole file)."""


@dataclass(frozen=True, slots=True)
class VulnFact:
    vuln_id: VulnId
    title: str | None = None
    description: str | None = None
    published: dt.datetime | None = None
    modified: dt.datetime | None = None
    state: VulnState = VulnState.PUBLISHED
    assigner: str | None = None


@dataclass(frozen=True, slots=True)
class AliasFact:
    vuln_id: VulnId
    alias: str


@dataclass(frozen=True, slots=True)
class SeverityFact:
    """One score from one provider; scores are never merged across providers."""

    vuln_id: VulnId
    provider: str
    """Who gave this score (``nvd@nist.gov``, ``CISA-ADP``, the CNA's short name…)."""
    cvss_version: str
    """``2.0``, ``3.0``, ``3.1`` or ``4.0``."""
    vector: str
    base_score: float
    base_severity: str
    """``NONE``, ``LOW``, ``MEDIUM``, ``HIGH`` or ``CRITICAL``."""


@dataclass(frozen=True, slots=True)
class AffectedFact:
    """One version-range statement about one product, CPE or package.

    A statement covers versions from ``start`` to ``end`` (bounds optional, inclusive as
    flagged; ``end`` may end in ``.*`` meaning "every version of that branch") and gives
    them ``status``. Statements with the same ``group`` come from one feed entry whose
    ``default_status`` applies to versions no statement covers.
    """

    vuln_id: VulnId
    group: int
    match_kind: MatchKind
    scheme: str
    """Version scheme the bounds are written in: ``semver``, ``kernel``, ``rpm``, ``deb``,
    ``generic``, ``git`` (commits: kept for patch ids, not comparable), ``custom``…"""
    status: Status
    default_status: Status
    vendor: str | None = None
    product: str | None = None
    cpe: str | None = None
    ecosystem: str | None = None
    """For packages: purl ``type/namespace`` (``rpm/almalinux``, ``deb/debian``, ``pypi/``)."""
    package: str | None = None
    release: str | None = None
    """For packages: the distribution release the statement is for (``9``, ``bookworm``)."""
    start: str | None = None
    start_inclusive: bool = True
    end: str | None = None
    end_inclusive: bool = False
    exact: str | None = None
    """A single version (no range)."""
    fixed: str | None = None
    """The version that fixes the vulnerability for versions in this statement, if stated."""
    condition: str | None = None
    """Anything else that must hold (e.g. NVD's AND with a hardware platform)."""


@dataclass(frozen=True, slots=True)
class FixFact:
    """A fix: a fixed version and/or a patch id, with the date the vendor published it."""

    vuln_id: VulnId
    vendor: str | None = None
    product: str | None = None
    package: str | None = None
    fixed_version: str | None = None
    patch_id: str | None = None
    """A commit, a KB number, an errata id…"""
    advisory_id: str | None = None
    fix_date: dt.date | None = None
    url: str | None = None


@dataclass(frozen=True, slots=True)
class ReferenceFact:
    vuln_id: VulnId
    url: str
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class KevFact:
    vuln_id: VulnId
    date_added: dt.date
    due_date: dt.date | None
    ransomware: str
    """``Known`` or ``Unknown``, as CISA states it."""
    vendor: str | None = None
    product: str | None = None
    name: str | None = None
    required_action: str | None = None


@dataclass(frozen=True, slots=True)
class EpssFact:
    vuln_id: VulnId
    score: float
    percentile: float | None
    score_date: dt.date | None


@dataclass(frozen=True, slots=True)
class ReleaseFact:
    """A product version and the date it was released (for fix-availability dates)."""

    product: str
    version: str
    release_date: dt.date


@dataclass(frozen=True, slots=True)
class NormalisedRecord:
    """Every fact one record contributes, replaced as a unit when the record changes."""

    source: Source
    record_id: str
    vulns: tuple[VulnFact, ...] = ()
    aliases: tuple[AliasFact, ...] = ()
    severities: tuple[SeverityFact, ...] = ()
    affected: tuple[AffectedFact, ...] = ()
    fixes: tuple[FixFact, ...] = ()
    references: tuple[ReferenceFact, ...] = ()
    kev: tuple[KevFact, ...] = ()
    epss: tuple[EpssFact, ...] = ()
    releases: tuple[ReleaseFact, ...] = ()
    warnings: tuple[str, ...] = field(default=())
    """Parts of the record that were understood but not usable (reported, not fatal)."""
