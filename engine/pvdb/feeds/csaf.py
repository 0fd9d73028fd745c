"""CSAF 2.0 advisories and VEX documents (Red Hat RHSA, BSI, Cisco, Secvisogram…).

One record per document, identified by ``document.tracking.id`` and dated by
``document.tracking.current_release_date``. A document of a later CSAF 2 version (2.1…)
is reported, not read.

What is read:

* ``product_tree``: ``branches`` (recursively), ``full_product_names`` and
  ``relationships`` map every product id to its vendor, product name, version (the
  ``product_version`` / ``service_pack`` / ``patch_level`` or ``product_version_range``
  branch holding it), architecture, purl and CPE. A relationship id (Red Hat's
  ``AppStream-8.10.0.Z.MAIN.EUS:qemu-kvm-…``) stands for its ``product_reference``, with
  the ``relates_to_product_reference`` platform as context;
* each ``vulnerabilities[i]`` that names a ``cve``: title, the ``description`` (else
  ``summary``) note, ``release_date`` (else ``discovery_date``) as published time,
  ``scores[]`` (CVSS v2/v3/v4, provider ``document.publisher.name``), ``references[]``,
  ``product_status`` and the ``vendor_fix`` ``remediations[]``. Vulnerabilities without a
  CVE are reported as warnings; a document with none still loads (with no facts).

What a product id names:

* with a purl: a package (:func:`engine.pvdb.identity.purl_key`); an rpm ``epoch``
  qualifier is written into the version (``15:6.2.0-50…``) as RPM compares it, and the
  ``arch`` qualifier is not part of the package's identity (one statement per package
  and release, whatever the architecture). An rpm or
  deb package without a ``distro`` qualifier takes its release from the platform's CPE
  version (``cpe:/a:redhat:enterprise_linux:8::appstream`` -> ``8``);
* without a purl, a version branch inside an ``architecture`` branch whose name ends in
  ``.<architecture>`` is an RPM ``name-[epoch:]version-release.arch`` (Red Hat's older
  documents): the package ``rpm/<vendor>`` (``rpm/redhat``);
* otherwise vendor + product (:func:`engine.pvdb.identity.product_key`) with the version
  in scheme ``generic`` when every version is dotted numbers, else ``custom``
  (``semver`` for a ``vers:semver/`` range). ``product_version_range`` names such as
  ``<=1.14.0`` or ``vers:semver/>=1.0|<2.0`` give bounds; other range texts are reported.
  A product id with no vendor and product name (a bare container image) is reported.

Statuses: a ``fixed`` / ``first_fixed`` version ``v`` means the versions below ``v`` are
affected and fixed in ``v`` (start unbounded, ``end=v`` exclusive), with a fix dated by the
``vendor_fix`` remediation naming the product (or the vulnerability's only
``vendor_fix``), else by ``document.tracking.initial_release_date``. A fixed product with
no version gives the fix alone; a fixed range is stated unaffected. ``last_affected``
covers versions up to ``v`` inclusive; ``known_affected`` / ``first_affected``
(affected), ``known_not_affected`` (unaffected) and ``under_investigation`` (unknown)
state exactly the named versions (or range, or every version when none is named).
Statements about one package or product form one group whose uncovered versions are
unaffected: a CSAF document claims nothing about versions it does not name. The
``recommended`` list is not read; a ``product_status`` list CSAF does not define is
reported as a warning.
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
    parse_date,
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
)
from engine.pvdb.severity import from_vector

_DOTTED = re.compile(r"^\d+(?:\.\d+)*$")
_NEVRA = re.compile(r"^(?P<name>.+)-(?:(?P<epoch>\d+):)?(?P<version>[^-:]+)-(?P<release>[^-:]+)$")
_CONSTRAINT = re.compile(r"^\s*(<=|>=|<|>)\s*(\S+)\s*$")
_VERSION_BRANCHES = frozenset({"product_version", "service_pack", "patch_level"})
_SCORE_KEYS = ("cvss_v4", "cvss_v3", "cvss_v2")
_DISTRIBUTION_TYPES = frozenset({"rpm", "deb"})
_FIXED = frozenset({"fixed", "first_fixed"})
_UNREAD_STATUS = frozenset({"recommended"})
# product_status list -> the status it gives the versions it names.
_NAMED_STATUS = {
    "fixed": Status.UNAFFECTED,
    "first_fixed": Status.UNAFFECTED,
    "known_affected": Status.AFFECTED,
    "first_affected": Status.AFFECTED,
    "last_affected": Status.AFFECTED,
    "known_not_affected": Status.UNAFFECTED,
    "under_investigation": Status.UNKNOWN,
}


@dataclass(frozen=True, slots=True)
class _Product:
    """What the product tree says about one product id."""

    pointer: str
    vendor: str | None = None
    product: str | None = None
    """The nearest ``product_name`` (else ``product_family``) branch."""
    version: str | None = None
    version_range: str | None = None
    architecture: str | None = None
    purl: str | None = None
    cpe: str | None = None
    platform: _Product | None = None
    """For a relationship: the product it is a component of."""


@dataclass(frozen=True, slots=True)
class _Bounds:
    start: str | None
    start_inclusive: bool
    end: str | None
    end_inclusive: bool


@dataclass(frozen=True, slots=True)
class _Target:
    """A product id in the terms of an affected statement: who, and which versions."""

    match_kind: MatchKind
    scheme: str
    vendor: str | None = None
    product: str | None = None
    cpe: str | None = None
    ecosystem: str | None = None
    package: str | None = None
    release: str | None = None
    version: str | None = None
    bounds: _Bounds | None = None

    @property
    def identity(self) -> tuple[Any, ...]:
        """The package or product without versions (one statement group each)."""
        return (self.match_kind, self.vendor, self.product, self.ecosystem, self.package,
                self.release)


@dataclass(frozen=True, slots=True)
class _Remedy:
    date: dt.date | None
    url: str | None


@dataclass(frozen=True, slots=True)
class _Context:
    """Document-wide values every vulnerability's facts need."""

    advisory_id: str
    provider: str
    initial_date: dt.date | None
    modified: dt.datetime | None


@dataclass(slots=True)
class _Facts:
    """The facts collected from one document's vulnerabilities."""

    vulns: list[VulnFact] = dataclasses.field(default_factory=list)
    severities: list[SeverityFact] = dataclasses.field(default_factory=list)
    affected: list[AffectedFact] = dataclasses.field(default_factory=list)
    fixes: list[FixFact] = dataclasses.field(default_factory=list)
    references: list[ReferenceFact] = dataclasses.field(default_factory=list)
    groups: dict[tuple[Any, ...], int] = dataclasses.field(default_factory=dict)

    def group(self, vuln_id: VulnId, target: _Target) -> int:
        return self.groups.setdefault((vuln_id, target.identity), len(self.groups))


class CsafAdapter(FeedAdapter):
    source = Source.CSAF
    description = "CSAF 2.0 advisory or VEX document"

    @classmethod
    def detect(cls, doc: Document) -> bool:
        data = doc.json
        return (
            isinstance(data, dict)
            and isinstance(data.get("document"), dict)
            and str(data["document"].get("csaf_version")).startswith("2.")
        )

    @classmethod
    def resembles(cls, doc: Document) -> bool:
        """A ``document`` naming a CSAF version other than 2.x."""
        data = doc.json
        return (isinstance(data, dict) and isinstance(data.get("document"), dict)
                and "csaf_version" in data["document"])

    def split(self, doc: Document) -> Iterator[RawRecord | RecordError]:
        data = doc.json
        version = data["document"]["csaf_version"]
        if version != "2.0":
            yield RecordError(f"unsupported CSAF version {version!r} (2.0 is read)",
                              pointer="$.document.csaf_version")
            return
        try:
            tracking = expect(data["document"], "tracking", dict, "$.document")
            advisory_id = expect(tracking, "id", str, "$.document.tracking").strip()
            modified = parse_datetime(tracking.get("current_release_date"),
                                      "$.document.tracking.current_release_date")
        except RecordError as exc:
            yield exc
            return
        if not advisory_id:
            yield RecordError("empty tracking id", pointer="$.document.tracking.id")
            return
        yield raw_record(self.source, advisory_id, modified, data, doc)

    def normalise(self, raw: RawRecord) -> NormalisedRecord:
        data = raw.data
        document = expect(data, "document", dict, "$")
        tracking = expect(document, "tracking", dict, "$.document")
        publisher = expect(document, "publisher", dict, "$.document")
        context = _Context(
            advisory_id=raw.record_id,
            provider=expect(publisher, "name", str, "$.document.publisher"),
            initial_date=parse_date(tracking.get("initial_release_date"),
                                    "$.document.tracking.initial_release_date"),
            modified=raw.modified,
        )
        warnings: list[str] = []
        tree = _Tree(optional(data, "product_tree", dict, "$") or {}, warnings)
        facts = _Facts()
        for i, vuln in enumerate(optional(data, "vulnerabilities", list, "$") or []):
            _vulnerability(vuln, f"$.vulnerabilities[{i}]", context, tree, facts, warnings)
        return NormalisedRecord(
            self.source,
            raw.record_id,
            vulns=tuple(facts.vulns),
            severities=tuple(dict.fromkeys(facts.severities)),
            affected=tuple(dict.fromkeys(facts.affected)),
            fixes=tuple(dict.fromkeys(facts.fixes)),
            references=tuple(dict.fromkeys(facts.references)),
            warnings=tuple(dict.fromkeys(warnings)),
        )


# --- product tree ----------------------------------------------------------------------


class _Tree:
    """The product tree's products by id, and what each id names (computed once)."""

    def __init__(self, tree: dict[str, Any], warnings: list[str]) -> None:
        self.warnings = warnings
        self.products: dict[str, _Product] = {}
        self._targets: dict[str, _Target | None] = {}
        _walk(optional(tree, "branches", list, "$.product_tree") or [],
              "$.product_tree.branches", {}, self.products)
        names = optional(tree, "full_product_names", list, "$.product_tree") or []
        for i, item in enumerate(names):
            where = f"$.product_tree.full_product_names[{i}]"
            _register(item, where, _Product(where), self.products)
        relationships = optional(tree, "relationships", list, "$.product_tree") or []
        for i, item in enumerate(relationships):
            self._relationship(item, f"$.product_tree.relationships[{i}]")

    def _relationship(self, item: Any, pointer: str) -> None:
        reference = expect(item, "product_reference", str, pointer)
        platform_id = expect(item, "relates_to_product_reference", str, pointer)
        component = self.products.get(reference)
        if component is None:
            self.warnings.append(f"{pointer}.product_reference: unknown product {reference!r}")
            return
        platform = self.products.get(platform_id)
        if platform is None:
            self.warnings.append(
                f"{pointer}.relates_to_product_reference: unknown product {platform_id!r}"
            )
        full = expect(item, "full_product_name", dict, pointer)
        product_id = expect(full, "product_id", str, f"{pointer}.full_product_name")
        self.products[product_id] = dataclasses.replace(
            component, pointer=f"{pointer}.full_product_name", platform=platform
        )

    def target(self, product_id: str, pointer: str) -> _Target | None:
        """What ``product_id`` names; None (with a warning) when it cannot be used."""
        if product_id not in self._targets:
            product = self.products.get(product_id)
            if product is None:
                self.warnings.append(f"{pointer}: unknown product id {product_id!r}")
                self._targets[product_id] = None
            else:
                self._targets[product_id] = self._resolve(product_id, product)
        return self._targets[product_id]

    def _resolve(self, product_id: str, product: _Product) -> _Target | None:
        if product.purl:
            return _purl_target(product, product.purl)
        target = _nevra_target(product) or _product_target(product)
        if target is None and product.version_range is not None:
            self.warnings.append(f"{product.pointer}: version range "
                                 f"{product.version_range!r} is not understood; not used")
        elif target is None:
            self.warnings.append(f"{product.pointer}: product {product_id!r} names neither a"
                                 " package (purl) nor a vendor and product; not used")
        return target


def _walk(branches: list[Any], pointer: str, context: dict[str, str],
          out: dict[str, _Product]) -> None:
    """Register the products of ``branches`` and their sub-branches."""
    for i, branch in enumerate(branches):
        where = f"{pointer}[{i}]"
        category = expect(branch, "category", str, where)
        name = expect(branch, "name", str, where)
        here = {**context, category: name}
        if branch.get("product") is not None:
            base = _Product(
                f"{where}.product",
                vendor=here.get("vendor"),
                product=here.get("product_name") or here.get("product_family"),
                version=name if category in _VERSION_BRANCHES else None,
                version_range=name if category == "product_version_range" else None,
                architecture=here.get("architecture"),
            )
            _register(expect(branch, "product", dict, where), f"{where}.product", base, out)
        children = optional(branch, "branches", list, where)
        if children:
            _walk(children, f"{where}.branches", here, out)


def _register(item: Any, pointer: str, base: _Product, out: dict[str, _Product]) -> None:
    """Record one ``full_product_name`` object (with its identification helper)."""
    product_id = expect(item, "product_id", str, pointer)
    helper = optional(item, "product_identification_helper", dict, pointer) or {}
    where = f"{pointer}.product_identification_helper"
    out[product_id] = dataclasses.replace(
        base,
        purl=optional(helper, "purl", str, where),
        cpe=optional(helper, "cpe", str, where),
    )


def _purl_target(product: _Product, purl: str) -> _Target:
    try:
        key, version = identity.purl_key(purl)
    except identity.IdentityError as exc:
        raise RecordError(
            exc.summary, pointer=f"{product.pointer}.product_identification_helper.purl"
        ) from exc
    release = key.release
    if release is None and key.type in _DISTRIBUTION_TYPES:
        release = _platform_release(product.platform)
    return _Target(
        MatchKind.PACKAGE, key.scheme, ecosystem=f"{key.type}/{key.namespace or ''}",
        package=key.name, release=release, version=version,
    )


def _nevra_target(product: _Product) -> _Target | None:
    """An RPM named only by its ``name-[epoch:]version-release.arch`` branch."""
    arch, text, vendor = product.architecture, product.version, product.vendor
    if not (arch and text and vendor and text.endswith(f".{arch}")):
        return None
    match = _NEVRA.match(text[: -len(arch) - 1])
    if match is None:
        return None
    namespace = identity.product_key(vendor, match["name"])[0]
    return _Target(
        MatchKind.PACKAGE, "rpm", ecosystem=f"rpm/{namespace}", package=match["name"],
        release=_platform_release(product.platform),
        version=_rpm_version(match["epoch"], f"{match['version']}-{match['release']}"),
    )


def _product_target(product: _Product) -> _Target | None:
    if not (product.vendor and product.product):
        return None
    vendor, name = identity.product_key(product.vendor, product.product)
    common: dict[str, Any] = {"vendor": vendor, "product": name, "cpe": product.cpe}
    if product.version_range is None:
        return _Target(MatchKind.PRODUCT, _scheme([product.version]),
                       version=product.version, **common)
    parsed = _version_range(product.version_range)
    if parsed is None:
        return None
    bounds, vers_scheme = parsed
    scheme = vers_scheme or _scheme([bounds.start, bounds.end])
    return _Target(MatchKind.PRODUCT, scheme, bounds=bounds, **common)


def _rpm_version(epoch: str | None, version: str) -> str:
    """``epoch:version-release``, the epoch left out when it is absent or 0."""
    return identity.with_epoch(epoch, version)


def _platform_release(platform: _Product | None) -> str | None:
    """The major release in a platform's CPE (``cpe:/o:redhat:rhel_eus:7.7::server`` -> 7)."""
    if platform is None or platform.cpe is None:
        return None
    try:
        version = identity.parse_cpe(platform.cpe).version
    except identity.IdentityError:
        return None
    match = re.match(r"\d+", version)
    return match.group(0) if match else None


def _scheme(versions: list[str | None]) -> str:
    present = [v for v in versions if v]
    return "generic" if all(_DOTTED.match(v) for v in present) else "custom"


def _version_range(text: str) -> tuple[_Bounds, str | None] | None:
    """Bounds of ``<=1.14.0`` or ``vers:semver/>=1.0|<2.0`` (and the vers scheme, if
    ``semver``); None when the text is not such a range."""
    body, scheme = text.strip(), None
    if body.startswith("vers:"):
        vers_type, _, body = body[5:].partition("/")
        scheme = "semver" if vers_type == "semver" else None
    start = end = None
    start_inclusive, end_inclusive = True, False
    for part in body.split("|"):
        match = _CONSTRAINT.match(part)
        if match is None:
            return None
        op, version = match.groups()
        if op.startswith(">") and start is None:
            start, start_inclusive = version, op == ">="
        elif op.startswith("<") and end is None:
            end, end_inclusive = version, op == "<="
        else:
            return None
    return _Bounds(start, start_inclusive, end, end_inclusive), scheme


# --- vulnerabilities -------------------------------------------------------------------


def _vulnerability(
    vuln: Any, pointer: str, context: _Context, tree: _Tree, facts: _Facts,
    warnings: list[str],
) -> None:
    cve = optional(vuln, "cve", str, pointer)
    if cve is None:
        warnings.append(f"{pointer}: names no CVE; not used")
        return
    if not CVE_ID.match(cve.strip()):
        raise RecordError(f"not a CVE id: {cve!r}", pointer=f"{pointer}.cve")
    vuln_id = VulnId(cve.strip())
    published = parse_datetime(vuln.get("release_date"), f"{pointer}.release_date") or (
        parse_datetime(vuln.get("discovery_date"), f"{pointer}.discovery_date")
    )
    facts.vulns.append(VulnFact(
        vuln_id,
        title=optional(vuln, "title", str, pointer),
        description=_description(optional(vuln, "notes", list, pointer) or [],
                                 f"{pointer}.notes"),
        published=published,
        modified=context.modified,
    ))
    facts.severities.extend(_scores(vuln, vuln_id, context.provider, pointer, warnings))
    for j, ref in enumerate(optional(vuln, "references", list, pointer) or []):
        where = f"{pointer}.references[{j}]"
        category = optional(ref, "category", str, where)
        facts.references.append(ReferenceFact(
            vuln_id, expect(ref, "url", str, where), (category,) if category else ()
        ))
    remedies, sole = _remedies(vuln, pointer)
    statuses = optional(vuln, "product_status", dict, pointer) or {}
    for category in statuses:
        if category not in _NAMED_STATUS and category not in _UNREAD_STATUS:
            warnings.append(f"{pointer}.product_status.{category}: not a CSAF product status;"
                            " not used")
    for category in _NAMED_STATUS:
        where = f"{pointer}.product_status.{category}"
        for k, product_id in enumerate(optional(statuses, category, list, pointer) or []):
            if not isinstance(product_id, str):
                raise RecordError("expected a product id", pointer=f"{where}[{k}]")
            target = tree.target(product_id, f"{where}[{k}]")
            if target is None:
                continue
            _statement(vuln_id, target, category, facts)
            if category in _FIXED:
                remedy = remedies.get(product_id) or sole
                facts.fixes.append(_fix(vuln_id, target, remedy, context))


def _description(notes: list[Any], pointer: str) -> str | None:
    texts: dict[str, str] = {}
    for i, note in enumerate(notes):
        category = expect(note, "category", str, f"{pointer}[{i}]")
        texts.setdefault(category, expect(note, "text", str, f"{pointer}[{i}]"))
    return texts.get("description") or texts.get("summary")


def _scores(
    vuln: Any, vuln_id: VulnId, provider: str, pointer: str, warnings: list[str]
) -> Iterator[SeverityFact]:
    for i, score in enumerate(optional(vuln, "scores", list, pointer) or []):
        for key in _SCORE_KEYS:
            body = optional(score, key, dict, f"{pointer}.scores[{i}]")
            if body is None:
                continue
            where = f"{pointer}.scores[{i}].{key}"
            stated = body.get("baseScore")
            yield from_vector(
                vuln_id, provider, expect(body, "vectorString", str, where),
                stated_score=float(stated) if isinstance(stated, (int, float)) else None,
                pointer=f"{where}.vectorString", warnings=warnings,
            )


def _remedies(vuln: Any, pointer: str) -> tuple[dict[str, _Remedy], _Remedy | None]:
    """``vendor_fix`` remediations by product id, and the only one if there is one."""
    by_product: dict[str, _Remedy] = {}
    found: list[_Remedy] = []
    for i, item in enumerate(optional(vuln, "remediations", list, pointer) or []):
        where = f"{pointer}.remediations[{i}]"
        if expect(item, "category", str, where) != "vendor_fix":
            continue
        remedy = _Remedy(parse_date(item.get("date"), f"{where}.date"),
                         optional(item, "url", str, where))
        found.append(remedy)
        for product_id in optional(item, "product_ids", list, where) or []:
            by_product.setdefault(product_id, remedy)
    return by_product, found[0] if len(found) == 1 else None


def _statement(vuln_id: VulnId, target: _Target, category: str, facts: _Facts) -> None:
    """The affected statement ``category`` makes about ``target``, if any."""
    status = _NAMED_STATUS[category]
    bounds: dict[str, Any]
    if target.bounds is not None:
        bounds = dataclasses.asdict(target.bounds)
    elif target.version is None:
        if category in _FIXED:
            return  # a fix with no version: the fix fact alone says it
        bounds = {}
    elif category in _FIXED:
        status, bounds = Status.AFFECTED, {"end": target.version, "fixed": target.version}
    elif category == "last_affected":
        bounds = {"end": target.version, "end_inclusive": True}
    else:
        bounds = {"exact": target.version}
    facts.affected.append(AffectedFact(
        vuln_id=vuln_id, group=facts.group(vuln_id, target), match_kind=target.match_kind,
        scheme=target.scheme, status=status, default_status=Status.UNAFFECTED,
        vendor=target.vendor, product=target.product, cpe=target.cpe,
        ecosystem=target.ecosystem, package=target.package, release=target.release,
        **bounds,
    ))


def _fix(vuln_id: VulnId, target: _Target, remedy: _Remedy | None,
         context: _Context) -> FixFact:
    return FixFact(
        vuln_id,
        vendor=target.vendor,
        product=target.product,
        package=target.package,
        fixed_version=target.version,
        advisory_id=context.advisory_id,
        fix_date=(remedy.date if remedy and remedy.date else context.initial_date),
        url=remedy.url if remedy else None,
    )
