"""OSV records (AlmaLinux, Debian, Ubuntu and Red Hat errata, osv.dev exports).

One record per document: an object with ``id`` and ``modified`` / ``affected[]``
(https://ossf.github.io/osv-schema/).

What is read:

* ``id``, ``summary``, ``details``, ``published``, ``modified``, ``withdrawn`` -> a
  vulnerability fact for the OSV id itself (withdrawn records are kept as such and
  contribute no affected or fix facts);
* ``aliases[]``, ``upstream[]`` and ``related[]`` -> alias facts. The PVDB is CVE-centric:
  affected and fix facts are stated for every CVE id among the record's own id and those
  lists (an erratum such as ALSA-2024:1903 lists the CVEs it fixes in ``related``), and
  for the OSV id only when it names no CVE;
* ``affected[i]``: ``package {ecosystem, name}`` is keyed with
  :func:`engine.pvdb.identity.ecosystem_key` (``AlmaLinux:9`` -> ``rpm/almalinux``,
  release ``9``); its ``ranges[]`` and ``versions[]`` become one statement group whose
  versions not covered are unaffected;
* ``severity[]`` CVSS vectors (scored with :func:`engine.pvdb.severity.from_vector`,
  provider named after the id's prefix: ``ALSA`` -> ``AlmaLinux``);
* ``references[]`` (tagged with their lower-cased ``type``).

Range rules: events are read in order. ``introduced`` opens a range (``"0"`` is an
unbounded start); the next ``fixed`` (exclusive, recorded as the fix), ``last_affected``
(inclusive) or ``limit`` (exclusive, not a fix) closes every open range. A closing event
with no open range, an unknown event or an empty list is a malformed range. ``ECOSYSTEM``
ranges use the ecosystem's version scheme (``rpm``, ``deb``, else ``generic``),
``SEMVER`` ranges ``semver``; ``GIT`` ranges are kept in scheme ``git`` (not comparable)
and their fixing commits become patch ids. A ``fixed`` version is a fix dated by the
record's ``published`` date: for distribution errata that is the day the update shipped.
A score in ``severity[]`` belongs to the record's CVE when it names exactly one, else to
the OSV id (an advisory-wide score is not any single CVE's score).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from engine.errors import RecordError
from engine.pvdb import identity
from engine.pvdb.feeds.base import (
    CVE_ID,
    Document,
    FeedAdapter,
    expect,
    optional,
    parse_datetime,
    raw_record,
)
from engine.pvdb.models import (
    AffectedFact,
    AliasFact,
    FixFact,
    MatchKind,
    NormalisedRecord,
    RawRecord,
    ReferenceFact,
    SeverityFact,
    Source,
    Status,
    VulnFact,
    VulnId,
    VulnState,
)
from engine.pvdb.severity import from_vector

_LINKED_FIELDS = ("aliases", "upstream", "related")
_CVSS_TYPES = ("CVSS_V2", "CVSS_V3", "CVSS_V4")
_RANGE_SCHEMES = {"SEMVER": "semver", "GIT": "git"}
_RANGE_TYPES = ("ECOSYSTEM", "SEMVER", "GIT")
_CLOSING_EVENTS = ("fixed", "last_affected", "limit")
# Keys only other feed formats have at their top level (CVE 5, NVD API 2.0, CSAF).
_FOREIGN_KEYS = frozenset(
    {"cveMetadata", "dataType", "document", "sourceIdentifier", "vulnStatus", "lastModified"}
)
# OSV id prefix -> who publishes those records (the severity provider).
_PROVIDERS = {
    "ALSA": "AlmaLinux", "ALBA": "AlmaLinux", "ALEA": "AlmaLinux",
    "DSA": "Debian", "DLA": "Debian", "DTSA": "Debian",
    "RHSA": "Red Hat", "RHBA": "Red Hat", "RHEA": "Red Hat",
    "UBUNTU": "Ubuntu", "USN": "Ubuntu", "RLSA": "Rocky Linux",
    "GHSA": "GitHub", "GO": "Go", "PYSEC": "PyPA", "RUSTSEC": "RustSec",
}


@dataclass(frozen=True, slots=True)
class _Span:
    """One affected span read from a range's events."""

    start: str | None
    end: str | None
    end_inclusive: bool
    fixed: str | None


class OsvAdapter(FeedAdapter):
    source = Source.OSV
    description = "OSV record"

    @classmethod
    def detect(cls, doc: Document) -> bool:
        data = doc.json
        return (
            isinstance(data, dict)
            and isinstance(data.get("id"), str)
            and ("modified" in data or isinstance(data.get("affected"), list))
            and not _FOREIGN_KEYS & data.keys()
        )

    @classmethod
    def resembles(cls, doc: Document) -> bool:
        """An OSV shape whose ``id`` is not a string (``null``, a number…)."""
        data = doc.json
        return (
            isinstance(data, dict)
            and "id" in data
            and bool({"modified", "affected", "schema_version"} & data.keys())
            and not _FOREIGN_KEYS & data.keys()
        )

    def split(self, doc: Document) -> Iterator[RawRecord | RecordError]:
        data = doc.json
        osv_id = expect(data, "id", str, "$").strip()
        if not osv_id:
            yield RecordError("empty OSV id", pointer="$.id")
            return
        modified = parse_datetime(data.get("modified"), "$.modified")
        yield raw_record(self.source, osv_id, modified, data, doc)

    def normalise(self, raw: RawRecord) -> NormalisedRecord:
        data = raw.data
        osv_id = VulnId(raw.record_id)
        withdrawn = parse_datetime(data.get("withdrawn"), "$.withdrawn")
        published = parse_datetime(data.get("published"), "$.published")
        vuln = VulnFact(
            osv_id,
            title=optional(data, "summary", str, "$"),
            description=optional(data, "details", str, "$"),
            published=published,
            modified=raw.modified,
            state=VulnState.WITHDRAWN if withdrawn else VulnState.PUBLISHED,
        )
        linked = _linked_ids(data, osv_id)
        cves = [VulnId(i) for i in [osv_id, *linked] if CVE_ID.match(i)] or [osv_id]
        warnings: list[str] = []
        affected: list[AffectedFact] = []
        fixes: list[FixFact] = []
        if not withdrawn:
            fix_date = published.date() if published else None
            entries = optional(data, "affected", list, "$") or []
            for i, entry in enumerate(entries):
                statements, entry_fixes = _affected_entry(
                    osv_id, i, entry, f"$.affected[{i}]", fix_date, warnings
                )
                for k, cve in enumerate(cves):
                    affected.extend(
                        dataclasses.replace(s, vuln_id=cve, group=k * len(entries) + s.group)
                        for s in statements
                    )
                    fixes.extend(dataclasses.replace(f, vuln_id=cve) for f in entry_fixes)
        scored_id = cves[0] if len(cves) == 1 else osv_id
        return NormalisedRecord(
            self.source,
            raw.record_id,
            vulns=(vuln,),
            aliases=tuple(AliasFact(osv_id, alias) for alias in linked),
            severities=tuple(_severities(data, scored_id, _provider(osv_id), warnings)),
            affected=tuple(dict.fromkeys(affected)),
            fixes=tuple(dict.fromkeys(fixes)),
            references=tuple(_references(data, osv_id)),
            warnings=tuple(warnings),
        )


def _linked_ids(data: dict[str, Any], osv_id: str) -> list[str]:
    """The ids in ``aliases``, ``upstream`` and ``related``, in order, without repeats."""
    linked: dict[str, None] = {}
    for name in _LINKED_FIELDS:
        for k, value in enumerate(optional(data, name, list, "$") or []):
            if not isinstance(value, str):
                raise RecordError("expected an id string", pointer=f"$.{name}[{k}]")
            if value.strip() and value.strip() != osv_id:
                linked[value.strip()] = None
    return list(linked)


def _provider(osv_id: str) -> str:
    prefix = re.split(r"[-:]", osv_id, maxsplit=1)[0]
    return _PROVIDERS.get(prefix.upper(), prefix)


def _affected_entry(
    osv_id: VulnId, group: int, entry: Any, pointer: str, fix_date: dt.date | None,
    warnings: list[str],
) -> tuple[list[AffectedFact], list[FixFact]]:
    """The statements (all in ``group``) and fixes of one ``affected[]`` entry, stated
    for the OSV id (the caller copies them for each CVE)."""
    package = optional(entry, "package", dict, pointer)
    if package is None:
        warnings.append(f"{pointer}: no package (a bare repository range); not used")
        return [], []
    where = f"{pointer}.package"
    ecosystem = expect(package, "ecosystem", str, where)
    name = expect(package, "name", str, where)
    try:
        key = identity.ecosystem_key(ecosystem, name)
    except identity.IdentityError as exc:
        raise RecordError(exc.summary, pointer=f"{where}.ecosystem") from exc
    common: dict[str, Any] = {
        "vuln_id": osv_id, "group": group, "match_kind": MatchKind.PACKAGE,
        "default_status": Status.UNAFFECTED, "ecosystem": f"{key.type}/{key.namespace or ''}",
        "package": name, "release": key.release,
    }
    statements: list[AffectedFact] = []
    fixes: list[FixFact] = []
    for j, rng in enumerate(optional(entry, "ranges", list, pointer) or []):
        at = f"{pointer}.ranges[{j}]"
        range_type = expect(rng, "type", str, at)
        if range_type not in _RANGE_TYPES:
            warnings.append(f"{at}.type: range type {range_type!r} is not used")
            continue
        scheme = _RANGE_SCHEMES.get(range_type, key.scheme)
        for span in _spans(expect(rng, "events", list, at), f"{at}.events"):
            statements.append(AffectedFact(
                **common, scheme=scheme, status=Status.AFFECTED, start=span.start,
                end=span.end, end_inclusive=span.end_inclusive, fixed=span.fixed,
            ))
            if span.fixed is None:
                continue
            if scheme == "git":
                fixes.append(FixFact(osv_id, package=name, patch_id=span.fixed,
                                     advisory_id=osv_id))
            else:
                fixes.append(FixFact(osv_id, package=name, fixed_version=span.fixed,
                                     advisory_id=osv_id, fix_date=fix_date))
    for k, version in enumerate(optional(entry, "versions", list, pointer) or []):
        if not isinstance(version, str):
            raise RecordError("expected a version string", pointer=f"{pointer}.versions[{k}]")
        statements.append(AffectedFact(
            **common, scheme=key.scheme, status=Status.AFFECTED, exact=version,
        ))
    return statements, fixes


def _spans(events: list[Any], pointer: str) -> list[_Span]:
    """The affected spans of one range's ``events`` (see the module docstring)."""
    if not events:
        raise RecordError("a range needs at least one event", pointer=pointer)
    spans: list[_Span] = []
    open_starts: list[str | None] = []  # several when introduced events follow each other
    for k, event in enumerate(events):
        kind, value = _event(event, f"{pointer}[{k}]")
        if kind == "introduced":
            open_starts.append(None if value == "0" else value)
            continue
        if not open_starts:
            raise RecordError(f"{kind!r} event without an open 'introduced'",
                              pointer=f"{pointer}[{k}]")
        spans.extend(
            _Span(start, value, kind == "last_affected", value if kind == "fixed" else None)
            for start in open_starts
        )
        open_starts = []
    spans.extend(_Span(start, None, False, None) for start in open_starts)
    return spans


def _event(event: Any, pointer: str) -> tuple[str, str]:
    """``(kind, version)`` of one event object such as ``{"fixed": "1.2"}``."""
    if not isinstance(event, dict) or len(event) != 1:
        raise RecordError(
            "an event must be an object with exactly one of introduced, fixed, "
            "last_affected or limit", pointer=pointer,
        )
    ((kind, value),) = event.items()
    if kind != "introduced" and kind not in _CLOSING_EVENTS:
        raise RecordError(f"unknown event {kind!r}", pointer=pointer)
    if not isinstance(value, str) or not value.strip():
        raise RecordError(f"expected a version string, got {value!r}",
                          pointer=f"{pointer}.{kind}")
    return kind, value.strip()


def _severities(
    data: dict[str, Any], vuln_id: VulnId, provider: str, warnings: list[str]
) -> Iterator[SeverityFact]:
    for i, item in enumerate(optional(data, "severity", list, "$") or []):
        where = f"$.severity[{i}]"
        kind = expect(item, "type", str, where)
        if kind not in _CVSS_TYPES:
            warnings.append(f"{where}: severity type {kind!r} is not a CVSS vector; not used")
            continue
        vector = expect(item, "score", str, where)
        yield from_vector(vuln_id, provider, vector, pointer=f"{where}.score",
                          warnings=warnings)


def _references(data: dict[str, Any], osv_id: VulnId) -> Iterator[ReferenceFact]:
    seen: set[str] = set()
    for i, ref in enumerate(optional(data, "references", list, "$") or []):
        where = f"$.references[{i}]"
        url = expect(ref, "url", str, where)
        if url in seen:
            continue
        seen.add(url)
        kind = optional(ref, "type", str, where)
        yield ReferenceFact(osv_id, url, (kind.lower(),) if kind else ())
