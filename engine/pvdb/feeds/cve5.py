"""CVE JSON 5 records (CVE Services / cvelistV5, CISA Vulnrichment, the Linux kernel CNA).

One record per document (``{"dataType": "CVE_RECORD", "cveMetadata": …, "containers": …}``).
A record whose ``dataVersion`` is not 5.x (5.0, 5.1, 5.1.1…) is reported, not read.

What is read:

* ``cveMetadata``: id, state (``PUBLISHED`` / ``REJECTED``), datePublished, dateUpdated.
* the CNA container: title, English description, ``affected[]``, ``cpeApplicability``,
  ``metrics[]`` and ``references[]``;
* every ADP container (CISA-ADP…): its ``metrics[]`` (scores kept per provider) and
  references. ADP ``affected[]`` entries are not used for matching: they restate the
  CNA's data with less precision.

``affected[i]`` becomes one statement group: each ``versions[]`` item is a statement
(``version`` … ``lessThan`` / ``lessThanOrEqual``, with its ``status``) and the entry's
``defaultStatus`` covers the rest. For the Linux kernel CNA, ``git`` ranges give fix
commits (patch ids); ``semver`` / ``original_commit_for_fix`` items with
``lessThanOrEqual: "6.6.*"`` say from which stable release each branch is fixed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
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

_DOTTED = re.compile(r"^\d+(?:\.\d+)*$")
_METRIC_KEYS = ("cvssV4_0", "cvssV3_1", "cvssV3_0", "cvssV2_0")
_COLLECTIONS = {
    "pypi.org": ("pypi", None),
    "registry.npmjs.org": ("npm", None),
    "www.npmjs.com": ("npm", None),
    "access.redhat.com": ("rpm", "redhat"),
    "repo.maven.apache.org": ("maven", None),
    "crates.io": ("cargo", None),
}
_STATUSES = {s.value: s for s in Status}
# CNA organisation ids whose records omit their short name (the kernel CNA's own files).
_KNOWN_ORGS = {"f4215fc3-5b6b-47ff-a258-f7189bd81038": "Linux"}


class Cve5Adapter(FeedAdapter):
    source = Source.CVE5
    description = "CVE JSON 5 record"

    @classmethod
    def detect(cls, doc: Document) -> bool:
        data = doc.json
        return (
            isinstance(data, dict)
            and "cveMetadata" in data
            and (data.get("dataType") == "CVE_RECORD" or "containers" in data)
        )

    @classmethod
    def resembles(cls, doc: Document) -> bool:
        """A ``cveMetadata`` object without ``dataType`` or ``containers``."""
        data = doc.json
        return isinstance(data, dict) and "cveMetadata" in data

    def split(self, doc: Document) -> Iterator[RawRecord | RecordError]:
        data = doc.json
        version = data.get("dataVersion")
        if version is not None and (not isinstance(version, str)
                                    or version.split(".", 1)[0] != "5"):
            yield RecordError(f"unsupported CVE JSON dataVersion {version!r} (5.x is read)",
                              pointer="$.dataVersion")
            return
        meta = expect(data, "cveMetadata", dict, "$")
        cve_id = expect(meta, "cveId", str, "$.cveMetadata")
        if not CVE_ID.match(cve_id):
            yield RecordError(f"not a CVE id: {cve_id!r}", pointer="$.cveMetadata.cveId")
            return
        modified = parse_datetime(meta.get("dateUpdated"), "$.cveMetadata.dateUpdated")
        yield raw_record(self.source, cve_id, modified, data, doc)

    def normalise(self, raw: RawRecord) -> NormalisedRecord:
        data = raw.data
        meta = expect(data, "cveMetadata", dict, "$")
        vuln_id = VulnId(raw.record_id)
        state_text = expect(meta, "state", str, "$.cveMetadata").upper()
        if state_text not in ("PUBLISHED", "REJECTED"):
            raise RecordError(
                f"unknown state {state_text!r} (PUBLISHED or REJECTED)",
                pointer="$.cveMetadata.state",
            )
        containers = expect(data, "containers", dict, "$")
        cna = expect(containers, "cna", dict, "$.containers")
        assigner = (
            meta.get("assignerShortName")
            or _short_name(cna)
            or _KNOWN_ORGS.get(str(meta.get("assignerOrgId")))
            or f"cna:{meta.get('assignerOrgId', 'unknown')}"
        )
        published = parse_datetime(meta.get("datePublished"), "$.cveMetadata.datePublished")

        if state_text == "REJECTED":
            reasons = cna.get("rejectedReasons") or []
            text = _english(reasons, "$.containers.cna.rejectedReasons")
            vuln = VulnFact(
                vuln_id, title="REJECTED", description=text, published=published,
                modified=raw.modified, state=VulnState.REJECTED, assigner=assigner,
            )
            return NormalisedRecord(self.source, raw.record_id, vulns=(vuln,))

        warnings: list[str] = []
        vuln = VulnFact(
            vuln_id,
            title=optional(cna, "title", str, "$.containers.cna"),
            description=_english(cna.get("descriptions") or [], "$.containers.cna.descriptions"),
            published=published,
            modified=raw.modified,
            state=VulnState.PUBLISHED,
            assigner=assigner,
        )
        severities: list[SeverityFact] = []
        references: list[ReferenceFact] = []
        seen_urls: set[str] = set()
        adps = optional(containers, "adp", list, "$.containers") or []
        for name, container in [("cna", cna)] + [(f"adp[{i}]", c) for i, c in enumerate(adps)]:
            pointer = f"$.containers.{name}"
            provider = _short_name(container) or (assigner if name == "cna" else name)
            severities.extend(
                _metrics(vuln_id, provider, container, pointer, warnings)
            )
            for j, ref in enumerate(optional(container, "references", list, pointer) or []):
                url = expect(ref, "url", str, f"{pointer}.references[{j}]")
                if url not in seen_urls:
                    seen_urls.add(url)
                    tags = tuple(t for t in ref.get("tags") or [] if isinstance(t, str))
                    references.append(ReferenceFact(vuln_id, url, tags))

        affected: list[AffectedFact] = []
        fixes: list[FixFact] = []
        entries = optional(cna, "affected", list, "$.containers.cna") or []
        for group, entry in enumerate(entries):
            _affected_entry(vuln_id, group, entry, f"$.containers.cna.affected[{group}]",
                            affected, fixes, warnings)
        applicability = optional(cna, "cpeApplicability", list, "$.containers.cna") or []
        for i, block in enumerate(applicability):
            _cpe_applicability(vuln_id, 1000 + i, block,
                               f"$.containers.cna.cpeApplicability[{i}]", affected)

        return NormalisedRecord(
            self.source,
            raw.record_id,
            vulns=(vuln,),
            severities=tuple(severities),
            affected=tuple(affected),
            fixes=tuple(_dedupe(fixes)),
            references=tuple(references),
            warnings=tuple(warnings),
        )


def _short_name(container: dict[str, Any]) -> str | None:
    meta = container.get("providerMetadata")
    if isinstance(meta, dict) and isinstance(meta.get("shortName"), str):
        return str(meta["shortName"])
    return None


def _english(items: list[Any], pointer: str) -> str | None:
    if not isinstance(items, list):
        raise RecordError("expected a list", pointer=pointer)
    fallback = None
    for i, item in enumerate(items):
        value: str = expect(item, "value", str, f"{pointer}[{i}]")
        lang = str(item.get("lang", ""))
        if lang.lower().startswith("en"):
            return value
        fallback = fallback or value
    return fallback


def _metrics(
    vuln_id: VulnId, provider: str, container: dict[str, Any], pointer: str,
    warnings: list[str],
) -> Iterator[SeverityFact]:
    for i, metric in enumerate(optional(container, "metrics", list, pointer) or []):
        if not isinstance(metric, dict):
            raise RecordError("expected an object", pointer=f"{pointer}.metrics[{i}]")
        for key in _METRIC_KEYS:
            if key in metric:
                where = f"{pointer}.metrics[{i}].{key}"
                body = expect(metric, key, dict, f"{pointer}.metrics[{i}]")
                vector = expect(body, "vectorString", str, where)
                stated = body.get("baseScore")
                yield from_vector(
                    vuln_id, provider, vector,
                    stated_score=float(stated) if isinstance(stated, (int, float)) else None,
                    pointer=where, warnings=warnings,
                )


def _scheme(version_type: str | None, vendor: str, product: str, values: list[str]) -> str:
    known = identity.scheme_for_product(vendor, product)
    vt = (version_type or "").strip().lower()
    if vt == "git":
        return "git"
    if known and vt in ("", "semver", "original_commit_for_fix", "custom"):
        return known
    if vt in ("semver", "rpm"):
        return vt
    if vt in ("deb", "debian", "dpkg"):
        return "deb"
    if vt in ("", "custom", "generic") and values and all(_DOTTED.match(v) for v in values):
        # Dotted numbers compare the same way in every scheme that uses them.
        return "generic"
    return "custom" if vt in ("", "custom") else vt


def _status(value: Any, pointer: str) -> Status:
    status = _STATUSES.get(value.lower()) if isinstance(value, str) else None
    if status is None:
        raise RecordError(f"status must be affected, unaffected or unknown, got {value!r}",
                          pointer=pointer)
    return status


def _affected_entry(
    vuln_id: VulnId, group: int, entry: Any, pointer: str,
    affected: list[AffectedFact], fixes: list[FixFact], warnings: list[str],
) -> None:
    if not isinstance(entry, dict):
        raise RecordError("expected an object", pointer=pointer)
    raw_vendor = optional(entry, "vendor", str, pointer) or "n/a"
    raw_product = optional(entry, "product", str, pointer) or entry.get("packageName") or "n/a"
    vendor, product = identity.product_key(raw_vendor, raw_product)
    default = _status(entry.get("defaultStatus", "unknown"), f"{pointer}.defaultStatus")
    package = optional(entry, "packageName", str, pointer)
    ecosystem = None
    collection = optional(entry, "collectionURL", str, pointer)
    if package and collection:
        host = re.sub(r"^https?://", "", collection).split("/", 1)[0].lower()
        mapped = _COLLECTIONS.get(host)
        if mapped:
            ecosystem = f"{mapped[0]}/{mapped[1] or ''}"
    kind = MatchKind.PACKAGE if ecosystem else MatchKind.PRODUCT
    common: dict[str, Any] = {
        "vuln_id": vuln_id, "group": group, "match_kind": kind, "default_status": default,
        "vendor": vendor, "product": product, "ecosystem": ecosystem,
        "package": package if ecosystem else None,
    }
    versions = optional(entry, "versions", list, pointer) or []
    if not versions:
        affected.append(AffectedFact(**common, scheme="generic", status=default))
    for i, item in enumerate(versions):
        where = f"{pointer}.versions[{i}]"
        version = expect(item, "version", str, where).strip()
        status = _status(item.get("status"), f"{where}.status")
        less = optional(item, "lessThan", str, where)
        less_eq = optional(item, "lessThanOrEqual", str, where)
        if item.get("changes"):
            warnings.append(f"{where}.changes: status changes inside a range are not used")
        bounds = [v for v in (version, less, less_eq) if v and v not in ("*", "0")]
        bounds = [b for b in bounds if not b.endswith(".*")]
        scheme = _scheme(optional(item, "versionType", str, where), raw_vendor, raw_product,
                         bounds)
        end = less if less is not None else less_eq
        if end is not None and end.strip() == "*":
            end = "*"
        if scheme == "git":
            # Git ranges: introducing commit .. fixing commit. Kept as patch ids.
            if status is Status.AFFECTED and less:
                fixes.append(FixFact(vuln_id, vendor=vendor, product=product,
                                     patch_id=less, url=_commit_url(entry, less)))
            affected.append(AffectedFact(
                **common, scheme="git", status=status, start=version,
                end=end, end_inclusive=less is None and less_eq is not None,
            ))
            continue
        fixed = None
        if end is None:
            affected.append(AffectedFact(**common, scheme=scheme, status=status, exact=version))
            continue
        if status is Status.UNAFFECTED and version not in ("0", "*"):
            # "unaffected from X (up to the end of this branch)": X is the fix.
            fixed = version
        elif status is Status.AFFECTED and less and less != "*" and not less.endswith(".*"):
            fixed = less
        affected.append(AffectedFact(
            **common, scheme=scheme, status=status,
            start=None if version in ("0", "*", "") else version,
            end=end, end_inclusive=less is None, fixed=fixed,
        ))
        if fixed is not None:
            fixes.append(FixFact(vuln_id, vendor=vendor, product=product,
                                 package=common["package"], fixed_version=fixed))


def _cpe_applicability(
    vuln_id: VulnId, group: int, block: Any, pointer: str, affected: list[AffectedFact]
) -> None:
    nodes = expect(block, "nodes", list, pointer)
    for n, node in enumerate(nodes):
        matches = expect(node, "cpeMatch", list, f"{pointer}.nodes[{n}]")
        for m, match in enumerate(matches):
            where = f"{pointer}.nodes[{n}].cpeMatch[{m}]"
            if not match.get("vulnerable", True):
                continue
            criteria = expect(match, "criteria", str, where)
            try:
                name = identity.parse_cpe(criteria)
            except identity.IdentityError as exc:
                raise RecordError(exc.summary, pointer=f"{where}.criteria") from exc
            scheme = identity.scheme_for_product(name.vendor, name.product) or "generic"
            bounds = {key: optional(match, key, str, where) or None for key in (
                "versionStartIncluding", "versionStartExcluding",
                "versionEndExcluding", "versionEndIncluding")}
            start = bounds["versionStartIncluding"] or bounds["versionStartExcluding"]
            end = bounds["versionEndExcluding"] or bounds["versionEndIncluding"]
            affected.append(AffectedFact(
                vuln_id=vuln_id, group=group, match_kind=MatchKind.CPE, scheme=scheme,
                status=Status.AFFECTED, default_status=Status.UNAFFECTED,
                vendor=name.vendor, product=name.product, cpe=criteria,
                start=start, start_inclusive="versionStartExcluding" not in match,
                end=end, end_inclusive="versionEndIncluding" in match,
                exact=name.version if name.version not in ("*", "-") and not (start or end)
                else None,
                fixed=bounds["versionEndExcluding"],
            ))


def _commit_url(entry: dict[str, Any], commit: str) -> str | None:
    repo = entry.get("repo")
    if isinstance(repo, str) and "git.kernel.org" in repo:
        return f"https://git.kernel.org/stable/c/{commit}"
    return None


def _dedupe(fixes: list[FixFact]) -> list[FixFact]:
    seen: set[FixFact] = set()
    out = []
    for fix in fixes:
        if fix not in seen:
            seen.add(fix)
            out.append(fix)
    return out
