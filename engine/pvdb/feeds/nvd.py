"""NVD vulnerability records, in the three shapes NVD has published them.

* a bare CVE API 2.0 ``cve`` object (one file per CVE, as fkie-cad/nvd-json-data-feeds
  stores them): ``{id, sourceIdentifier, published, lastModified, vulnStatus,
  descriptions, metrics, configurations, references, cisaExploitAdd…}``;
* a CVE API 2.0 response page: ``{resultsPerPage, startIndex, totalResults,
  format: "NVD_CVE", version, timestamp, vulnerabilities: [{cve: {…}}]}``, one record per
  item (pointer ``$.vulnerabilities[i].cve``); a page whose ``version`` is not 2.x is
  reported, not read;
* the retired NVD 1.1 JSON feed: ``{CVE_data_type: "CVE", CVE_Items: [{cve:
  {CVE_data_meta: {ID, ASSIGNER}, description, references}, configurations: {nodes},
  impact, publishedDate, lastModifiedDate}]}``, one record per item (``$.CVE_Items[i]``).

What is read (API 2.0 names; the 1.1 feed has the same content under older names):

* id, ``sourceIdentifier`` (the assigner), published, lastModified, the English
  description and ``vulnStatus`` (``Rejected`` gives a rejected vulnerability with no
  other facts; in the 1.1 feed a description starting ``** REJECT **`` does);
* every score in ``metrics.cvssMetricV40/V31/V30/V2``, kept per ``source`` (the 1.1 feed
  holds NVD's own ``baseMetricV3`` / ``baseMetricV2`` only), computed from its vector;
* ``references[]`` (url and tags, one fact per URL);
* ``cisaExploitAdd``, ``cisaActionDue``, ``cisaRequiredAction``,
  ``cisaVulnerabilityName``: the KEV entry NVD copies in (NVD does not say whether
  ransomware campaigns use it, so ``ransomware`` is ``Unknown``);
* ``configurations[g]``: statement group ``g`` (in the 1.1 feed, top-level node ``g``).
  Each vulnerable ``cpeMatch`` is one CPE statement with its ``versionStart…`` /
  ``versionEnd…`` bounds; ``versionEndExcluding`` is the fixed version. In an ``AND``
  configuration the other nodes (typically the non-vulnerable hardware a firmware runs
  on) become the statement's ``condition``. An ``operator`` other than ``AND`` / ``OR``
  rejects the record.

Not read: ``weaknesses``, ``cveTags``, ``ssvcV203`` metrics, and the ``affected[]`` that
newer NVD records copy from the CVE record (the CVE 5 adapter reads the original).
"""

from __future__ import annotations

import datetime as dt
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
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
    parse_date,
    parse_datetime,
    raw_record,
)
from engine.pvdb.models import (
    AffectedFact,
    KevFact,
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

_NVD = "nvd@nist.gov"
_API_METRICS = ("cvssMetricV40", "cvssMetricV31", "cvssMetricV30", "cvssMetricV2")
_LEGACY_METRICS = (("baseMetricV3", "cvssV3"), ("baseMetricV2", "cvssV2"))
_LEGACY_REJECTED = "** REJECT **"
_CVE_OBJECT_KEYS = frozenset({"id", "published", "lastModified", "descriptions"})


class NvdAdapter(FeedAdapter):
    source = Source.NVD
    description = "NVD CVE API 2.0 record or response page, or NVD 1.1 JSON feed"

    @classmethod
    def detect(cls, doc: Document) -> bool:
        data = doc.json
        return _is_cve_object(data) or _is_api_page(data) or _is_legacy_feed(data)

    def split(self, doc: Document) -> Iterator[RawRecord | RecordError]:
        data = doc.json
        if _is_legacy_feed(data):
            for i, item in enumerate(data["CVE_Items"]):
                yield self._cut(doc, item, f"$.CVE_Items[{i}]", _LegacyRecord)
        elif _is_api_page(data):
            version = data.get("version")
            if version is not None and (not isinstance(version, str)
                                        or version.split(".", 1)[0] != "2"):
                yield RecordError(f"unsupported NVD API version {version!r} (2.x is read)",
                                  pointer="$.version")
                return
            for i, item in enumerate(data["vulnerabilities"]):
                yield self._cut(doc, item, f"$.vulnerabilities[{i}]", _ApiRecord, wrapper="cve")
        else:
            yield self._cut(doc, data, "$", _ApiRecord)

    def _cut(
        self, doc: Document, item: Any, pointer: str, reader: type[_Reader],
        wrapper: str | None = None,
    ) -> RawRecord | RecordError:
        """One record, or the RecordError saying why it cannot be identified."""
        try:
            if wrapper is not None:
                item = expect(item, wrapper, dict, pointer)
                pointer = f"{pointer}.{wrapper}"
            cve_id, modified = reader.identify(item, pointer)
        except RecordError as exc:
            return exc
        return raw_record(self.source, cve_id, modified, item, doc, pointer)

    def normalise(self, raw: RawRecord) -> NormalisedRecord:
        reader = _LegacyRecord(raw) if _is_legacy_item(raw.data) else _ApiRecord(raw)
        return reader.record()


# --- shapes ------------------------------------------------------------------------------


def _is_cve_object(data: Any) -> bool:
    return isinstance(data, dict) and data.keys() >= _CVE_OBJECT_KEYS


def _is_api_page(data: Any) -> bool:
    return (
        isinstance(data, dict)
        and data.get("format") == "NVD_CVE"
        and isinstance(data.get("vulnerabilities"), list)
    )


def _is_legacy_feed(data: Any) -> bool:
    return (
        isinstance(data, dict)
        and data.get("CVE_data_type") == "CVE"
        and isinstance(data.get("CVE_Items"), list)
    )


def _is_legacy_item(data: Any) -> bool:
    return isinstance(data, dict) and isinstance(data.get("cve"), dict)


def _checked_id(value: str, pointer: str) -> str:
    if not CVE_ID.match(value):
        raise RecordError(f"not a CVE id: {value!r}", pointer=pointer)
    return value


class _Reader(ABC):
    """One record of either shape, read into facts."""

    def __init__(self, raw: RawRecord) -> None:
        self.data: Any = raw.data
        self.vuln_id = VulnId(raw.record_id)
        self.modified = raw.modified

    @staticmethod
    @abstractmethod
    def identify(data: Any, pointer: str) -> tuple[str, dt.datetime | None]:
        """The record's CVE id and last-modified time (for :meth:`NvdAdapter.split`)."""

    @abstractmethod
    def vuln(self) -> VulnFact: ...

    @abstractmethod
    def severities(self, warnings: list[str]) -> Iterator[SeverityFact]: ...

    @abstractmethod
    def references(self) -> tuple[ReferenceFact, ...]: ...

    @abstractmethod
    def affected(self, warnings: list[str]) -> Iterator[AffectedFact]: ...

    @abstractmethod
    def kev(self) -> tuple[KevFact, ...]: ...

    def record(self) -> NormalisedRecord:
        vuln = self.vuln()
        if vuln.state is VulnState.REJECTED:
            return NormalisedRecord(Source.NVD, self.vuln_id, vulns=(vuln,))
        warnings: list[str] = []
        return NormalisedRecord(
            Source.NVD,
            self.vuln_id,
            vulns=(vuln,),
            severities=tuple(self.severities(warnings)),
            affected=tuple(self.affected(warnings)),
            references=self.references(),
            kev=self.kev(),
            warnings=tuple(warnings),
        )


class _ApiRecord(_Reader):
    """A CVE API 2.0 ``cve`` object."""

    @staticmethod
    def identify(data: Any, pointer: str) -> tuple[str, dt.datetime | None]:
        cve_id = _checked_id(expect(data, "id", str, pointer), f"{pointer}.id")
        return cve_id, parse_datetime(data.get("lastModified"), f"{pointer}.lastModified")

    def vuln(self) -> VulnFact:
        status = optional(self.data, "vulnStatus", str, "$") or ""
        return VulnFact(
            self.vuln_id,
            description=_english(optional(self.data, "descriptions", list, "$"),
                                 "$.descriptions"),
            published=parse_datetime(self.data.get("published"), "$.published"),
            modified=self.modified,
            state=VulnState.REJECTED if status.lower() == "rejected" else VulnState.PUBLISHED,
            assigner=optional(self.data, "sourceIdentifier", str, "$"),
        )

    def severities(self, warnings: list[str]) -> Iterator[SeverityFact]:
        metrics = optional(self.data, "metrics", dict, "$") or {}
        for key in _API_METRICS:
            for i, entry in enumerate(optional(metrics, key, list, "$.metrics") or []):
                where = f"$.metrics.{key}[{i}]"
                provider = expect(entry, "source", str, where)
                body = expect(entry, "cvssData", dict, where)
                yield _score(self.vuln_id, provider, body, f"{where}.cvssData", warnings)

    def references(self) -> tuple[ReferenceFact, ...]:
        items = optional(self.data, "references", list, "$")
        return _references(self.vuln_id, items, "$.references")

    def affected(self, warnings: list[str]) -> Iterator[AffectedFact]:
        configurations = optional(self.data, "configurations", list, "$") or []
        for group, configuration in enumerate(configurations):
            where = f"$.configurations[{group}]"
            nodes = expect(configuration, "nodes", list, where)
            operator = _operator(configuration, where)
            members = [(f"{where}.nodes[{n}]", node) for n, node in enumerate(nodes)]
            yield from _statements(self.vuln_id, group, operator, members, _API_KEYS)

    def kev(self) -> tuple[KevFact, ...]:
        added = parse_date(self.data.get("cisaExploitAdd"), "$.cisaExploitAdd")
        if added is None:
            return ()
        return (KevFact(
            self.vuln_id,
            date_added=added,
            due_date=parse_date(self.data.get("cisaActionDue"), "$.cisaActionDue"),
            ransomware="Unknown",
            name=optional(self.data, "cisaVulnerabilityName", str, "$"),
            required_action=optional(self.data, "cisaRequiredAction", str, "$"),
        ),)


class _LegacyRecord(_Reader):
    """One ``CVE_Items[]`` entry of the NVD 1.1 JSON feed."""

    @staticmethod
    def identify(data: Any, pointer: str) -> tuple[str, dt.datetime | None]:
        cve = expect(data, "cve", dict, pointer)
        meta = expect(cve, "CVE_data_meta", dict, f"{pointer}.cve")
        where = f"{pointer}.cve.CVE_data_meta"
        cve_id = _checked_id(expect(meta, "ID", str, where), f"{where}.ID")
        return cve_id, parse_datetime(data.get("lastModifiedDate"),
                                      f"{pointer}.lastModifiedDate")

    def vuln(self) -> VulnFact:
        cve = self.data["cve"]
        block = optional(cve, "description", dict, "$.cve") or {}
        description = _english(optional(block, "description_data", list, "$.cve.description"),
                               "$.cve.description.description_data")
        meta = expect(cve, "CVE_data_meta", dict, "$.cve")
        rejected = (description or "").startswith(_LEGACY_REJECTED)
        return VulnFact(
            self.vuln_id,
            description=description,
            published=parse_datetime(self.data.get("publishedDate"), "$.publishedDate"),
            modified=self.modified,
            state=VulnState.REJECTED if rejected else VulnState.PUBLISHED,
            assigner=optional(meta, "ASSIGNER", str, "$.cve.CVE_data_meta"),
        )

    def severities(self, warnings: list[str]) -> Iterator[SeverityFact]:
        impact = optional(self.data, "impact", dict, "$") or {}
        for metric, key in _LEGACY_METRICS:
            block = optional(impact, metric, dict, "$.impact")
            if block is not None:
                where = f"$.impact.{metric}"
                body = expect(block, key, dict, where)
                yield _score(self.vuln_id, _NVD, body, f"{where}.{key}", warnings)

    def references(self) -> tuple[ReferenceFact, ...]:
        block = optional(self.data["cve"], "references", dict, "$.cve") or {}
        items = optional(block, "reference_data", list, "$.cve.references")
        return _references(self.vuln_id, items, "$.cve.references.reference_data")

    def affected(self, warnings: list[str]) -> Iterator[AffectedFact]:
        block = optional(self.data, "configurations", dict, "$") or {}
        for group, node in enumerate(optional(block, "nodes", list, "$.configurations") or []):
            where = f"$.configurations.nodes[{group}]"
            members = [(where, node)]
            for c, child in enumerate(optional(node, "children", list, where) or []):
                pointer = f"{where}.children[{c}]"
                members.append((pointer, child))
                if isinstance(child, dict) and child.get("children"):
                    warnings.append(f"{pointer}.children: nodes nested this deep are not read")
            operator = _operator(node, where)
            yield from _statements(self.vuln_id, group, operator, members, _LEGACY_KEYS)

    def kev(self) -> tuple[KevFact, ...]:
        return ()


# --- shared parts ------------------------------------------------------------------------


def _english(items: list[Any] | None, pointer: str) -> str | None:
    """The English ``value`` of ``[{lang, value}]``, else the first one."""
    fallback = None
    for i, item in enumerate(items or []):
        value: str = expect(item, "value", str, f"{pointer}[{i}]")
        if str(item.get("lang", "")).lower().startswith("en"):
            return value
        fallback = fallback or value
    return fallback


def _score(
    vuln_id: VulnId, provider: str, body: dict[str, Any], pointer: str, warnings: list[str]
) -> SeverityFact:
    vector = expect(body, "vectorString", str, pointer)
    stated = optional(body, "baseScore", (int, float), pointer)
    return from_vector(
        vuln_id, provider, vector,
        stated_score=None if stated is None else float(stated),
        pointer=f"{pointer}.vectorString", warnings=warnings,
    )


def _references(
    vuln_id: VulnId, items: list[Any] | None, pointer: str
) -> tuple[ReferenceFact, ...]:
    """One fact per URL; NVD lists a URL once per source, so their tags are merged."""
    tags: dict[str, list[str]] = {}
    for i, item in enumerate(items or []):
        where = f"{pointer}[{i}]"
        url = expect(item, "url", str, where)
        merged = tags.setdefault(url, [])
        for tag in optional(item, "tags", list, where) or []:
            if isinstance(tag, str) and tag not in merged:
                merged.append(tag)
    return tuple(ReferenceFact(vuln_id, url, tuple(t)) for url, t in tags.items())


@dataclass(frozen=True, slots=True)
class _Keys:
    """Where a node keeps its CPE matches, and a match its CPE name."""

    matches: str
    criteria: str


_API_KEYS = _Keys("cpeMatch", "criteria")
_LEGACY_KEYS = _Keys("cpe_match", "cpe23Uri")


@dataclass(frozen=True, slots=True)
class _Match:
    pointer: str
    data: dict[str, Any]
    criteria: str
    name: identity.CpeName
    vulnerable: bool


@dataclass(frozen=True, slots=True)
class _Node:
    operator: str
    negate: bool
    matches: tuple[_Match, ...]


def _operator(obj: Any, pointer: str) -> str:
    """A configuration's or node's ``operator`` (``OR`` when absent): ``AND`` or ``OR``."""
    operator: str = optional(obj, "operator", str, pointer) or "OR"
    if operator.upper() not in ("AND", "OR"):
        raise RecordError(f"operator must be AND or OR, got {operator!r}",
                          pointer=f"{pointer}.operator")
    return operator


def _node(pointer: str, node: Any, keys: _Keys) -> _Node:
    items = optional(node, keys.matches, list, pointer) or []
    return _Node(
        operator=_operator(node, pointer),
        negate=bool(optional(node, "negate", bool, pointer)),
        matches=tuple(
            _match(f"{pointer}.{keys.matches}[{m}]", item, keys)
            for m, item in enumerate(items)
        ),
    )


def _match(pointer: str, item: Any, keys: _Keys) -> _Match:
    criteria = expect(item, keys.criteria, str, pointer)
    try:
        name = identity.parse_cpe(criteria)
    except identity.IdentityError as exc:
        raise RecordError(exc.summary, pointer=f"{pointer}.{keys.criteria}") from exc
    vulnerable = expect(item, "vulnerable", bool, pointer)
    return _Match(pointer, item, criteria, name, vulnerable)


def _statements(
    vuln_id: VulnId, group: int, operator: str, members: Iterable[tuple[str, Any]],
    keys: _Keys,
) -> Iterator[AffectedFact]:
    """The statements of one configuration: its nodes, joined by ``operator``."""
    nodes = [_node(pointer, node, keys) for pointer, node in members]
    for i, node in enumerate(nodes):
        condition = None
        if operator.upper() == "AND":
            condition = _condition(nodes[:i] + nodes[i + 1:])
        for match in node.matches:
            if match.vulnerable:
                yield _statement(vuln_id, group, match, condition)


def _condition(others: list[_Node]) -> str | None:
    """``only with <cpe> or <cpe> and without <cpe>``: what the other nodes require."""
    clauses = [
        ("without " if node.negate else "with ")
        + f" {node.operator.lower()} ".join(m.criteria for m in node.matches)
        for node in others
        if node.matches
    ]
    return "only " + " and ".join(clauses) if clauses else None


def _statement(
    vuln_id: VulnId, group: int, match: _Match, condition: str | None
) -> AffectedFact:
    def bound(key: str) -> str | None:
        value: str | None = optional(match.data, key, str, match.pointer)
        return value or None

    starts_at, starts_after = bound("versionStartIncluding"), bound("versionStartExcluding")
    ends_at, ends_before = bound("versionEndIncluding"), bound("versionEndExcluding")
    start = starts_at or starts_after
    end = ends_before or ends_at
    name = match.name
    concrete = name.version not in ("*", "-")
    return AffectedFact(
        vuln_id=vuln_id,
        group=group,
        match_kind=MatchKind.CPE,
        scheme=identity.scheme_for_product(name.vendor, name.product) or "generic",
        status=Status.AFFECTED,
        default_status=Status.UNAFFECTED,
        vendor=name.vendor,
        product=name.product,
        cpe=match.criteria,
        start=start,
        start_inclusive=starts_at is not None or starts_after is None,
        end=end,
        end_inclusive=ends_before is None and ends_at is not None,
        exact=name.version if concrete and start is None and end is None else None,
        fixed=ends_before,
        condition=condition,
    )
