"""Which stored statements apply to a component, and what they say about its version.

The index maps every product and package key to the statements about it, with their
version bounds, and lives in memory for as long as the PVDB generation does not change.

For one (component, vulnerability) the verdict is reached in three steps:

1. **Per statement group** (one feed entry: a CVE 5 ``affected[]`` item, one NVD
   configuration, one OSV package…): the statements whose bounds contain the version
   decide (``affected`` wins over ``unaffected``); when none does, the group's
   ``defaultStatus``. A group whose statements are in a scheme that cannot be compared
   (``git``, ``custom``…), or whose versions do not parse, is *unknown*.
2. **Per precision level**, most precise first: package statements (distribution
   errata: OSV, CSAF, CNA package entries), then product statements (CVE 5 CNA), then
   CPE statements (NVD, CVE 5 ``cpeApplicability``). The first level with a determined
   group decides: affected if any of its groups says affected, else unaffected.
3. **Nothing determined**: the vulnerability is reported as *undetermined* with the
   reason, never guessed.
"""

from __future__ import annotations

import datetime as dt
from collections import OrderedDict, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import duckdb

from engine.errors import VersionSchemeError
from engine.gcpause import paused_gc
from engine.model import Component
from engine.pvdb import coverage, identity, kernels, prefilter, versions
from engine.pvdb.feeds.releases import CPE_PRODUCTS
from engine.pvdb.identity import IdentityError
from engine.pvdb.statements import Group, Statement, compile_row

IndexKey = tuple[str, str, str]
_LEVELS = ("package", "product", "cpe")


@dataclass(slots=True)
class Verdict:
    """The outcome for one (component, vulnerability)."""

    status: str
    """``affected``, ``unaffected`` or ``unknown``."""
    scheme: str | None = None
    decisive: list[tuple[Statement, str | None]] = field(default_factory=list)
    """Statements that decided, each with the reason in words where it is not the
    statement itself (None: :meth:`Statement.describe`, built only for findings)."""
    fixed_candidates: set[str] = field(default_factory=set)
    """Fixed versions stated by the deciding level, in ``scheme``."""
    reason: str | None = None
    source: str | None = None
    record_id: str | None = None
    key: ComponentKey | None = None
    """The component key (and so the version) the deciding statements were read with."""
    _closing: tuple[str | None] | None = None

    def closing(self) -> str | None:
        """:func:`closing_version` for this verdict (computed once; verdicts are cached)."""
        if self._closing is None:
            version = self.key.version if self.key else ""
            self._closing = (closing_version(self.scheme or "generic", version,
                                             self.fixed_candidates),)
        return self._closing[0]


@dataclass(frozen=True, slots=True)
class ComponentKey:
    key: IndexKey
    version: str
    scheme: str | None
    """The scheme the component's own identity imposes (rpm/deb for purls), or None."""
    release: str | None


@dataclass(frozen=True, slots=True)
class Reading:
    """How a component is looked up: its keys, and what of it could not be compared."""

    keys: list[ComponentKey]
    notes: tuple[str, ...] = ()
    """Why a key the component names was not compared (a kernel release that is no
    upstream release, :mod:`engine.pvdb.kernels`)."""
    unread: tuple[IndexKey, ...] = ()
    """The keys left out for those reasons."""


def component_keys(component: Component) -> list[ComponentKey]:
    """Every index key a component is known under (purl, CPE, vendor/product)."""
    return list(read_component(component).keys)


@lru_cache(maxsize=16_384)
def read_component(component: Component) -> Reading:
    """:func:`component_keys` with the reasons for keys left out. A kernel is looked up
    under its distribution package and under the upstream kernel only with the upstream
    release it really is (:func:`engine.pvdb.kernels.read_release`)."""
    keys: list[ComponentKey] = []
    notes: list[str] = []
    unread: list[IndexKey] = []

    def add(key: ComponentKey) -> None:
        if key not in keys:
            keys.append(key)

    if component.purl:
        pkg, purl_version = identity.purl_key(component.purl)
        version = purl_version or component.version
        ecosystem = f"{pkg.type}/{pkg.namespace or ''}"
        add(ComponentKey(("package", ecosystem, pkg.name), version, pkg.scheme, pkg.release))
        if ecosystem == "deb/debian" and kernels.is_debian_kernel_package(pkg.name):
            add(ComponentKey(("package", ecosystem, "linux"), version, "deb", pkg.release))
            upstream = kernels.debian_upstream(version)
            if upstream is not None:
                add(ComponentKey(("product", *kernels.UPSTREAM_KERNEL), upstream, None, None))
    named: list[tuple[str, str, str]] = []
    if component.cpe:
        name = identity.parse_cpe(component.cpe)
        named.append((name.vendor, name.product, component.version or name.version))
    if component.vendor and component.product:
        named.append((*identity.product_key(component.vendor, component.product),
                      component.version))
    for vendor, product, version in named:
        if not _is_kernel(vendor, product):
            add(ComponentKey(("product", vendor, product), version, None, None))
            continue
        if (vendor, product) != kernels.UPSTREAM_KERNEL:
            add(ComponentKey(("product", vendor, product), version, None, None))
        reading = kernels.read_release(version, component.vendor)
        if reading.package is not None:
            ecosystem, package, package_version, release = reading.package
            scheme = identity.PURL_SCHEMES.get(ecosystem.split("/")[0], "generic")
            add(ComponentKey(("package", ecosystem, package), package_version, scheme,
                             release))
        if reading.upstream is not None:
            add(ComponentKey(("product", *kernels.UPSTREAM_KERNEL), reading.upstream, None,
                             None))
        elif reading.reason and reading.reason not in notes:
            notes.append(reading.reason)
            unread.append(("product", *kernels.UPSTREAM_KERNEL))
    upstream_read = any(k.key == ("product", *kernels.UPSTREAM_KERNEL) for k in keys)
    if upstream_read:
        unread = []
    return Reading(keys, tuple(notes), tuple(dict.fromkeys(unread)))


_KERNEL_PRODUCTS = frozenset({"kernel", "linux", "linux_kernel"})


def _is_kernel(vendor: str, product: str) -> bool:
    """The upstream kernel, or a distribution vendor's kernel (``debian``/``linux``)."""
    return (vendor, product) == kernels.UPSTREAM_KERNEL or (
        product in _KERNEL_PRODUCTS
        and (vendor in kernels.EL_VENDORS or vendor in kernels.DEB_VENDORS))


_RESULT_CACHE = 4096


class MatchIndex:
    """Statement groups by product/package key and vulnerability, and release dates of
    products whose fixes are dated by their releases, loaded once per PVDB generation.

    Answers per (key, version) are kept (up to a bound): hosts of one fleet run the same
    components, so most placement queries repeat them.
    """

    def __init__(self, by_key: dict[IndexKey, dict[str, list[Group]]], generation: int,
                 releases: dict[tuple[str, str, str], dt.date] | None = None,
                 covered: dict[IndexKey, tuple[coverage.Covered, ...]] | None = None
                 ) -> None:
        self.by_key = by_key
        self.generation = generation
        self.releases = releases or {}
        """(vendor, product, version) -> release date."""
        self.covered = covered or {}
        """Key -> the sources covering it (:mod:`engine.pvdb.coverage`)."""
        self._answers: OrderedDict[tuple[Any, ...], list[tuple[str, Verdict]]] = OrderedDict()
        self._tables: dict[IndexKey, prefilter.KeyTable] = {}

    @classmethod
    def load(cls, con: duckdb.DuckDBPyConnection, generation: int, *,
             product: tuple[str, str] | None = None) -> MatchIndex:
        """The whole index, or with ``product`` (vendor, product) only that product's key
        (its product and CPE statements: what a query about it reads, and no more)."""
        with paused_gc(freeze=product is None):
            return cls._load(con, generation, product)

    @classmethod
    def _load(cls, con: duckdb.DuckDBPyConnection, generation: int,
              only_product: tuple[str, str] | None = None) -> MatchIndex:
        only = ("WHERE match_kind <> 'package' AND vendor = ? AND product = ?"
                if only_product is not None else "")
        rows = con.execute(
            f"""
            SELECT vuln_id, source, record_id, grp, match_kind, scheme, status,
                   default_status, start_v, start_inclusive, end_v, end_inclusive, exact,
                   fixed, condition, release, cpe, vendor, product, ecosystem, package
            FROM affected {only}
            """, list(only_product) if only_product is not None else []
        ).fetchall()
        grouped: dict[IndexKey, dict[str, dict[tuple[str, str, int], list[Statement]]]] = {}
        for row in rows:
            statement = compile_row(row[:17])
            vendor, product, ecosystem, package = row[17:]
            if statement.match_kind == "package":
                key: IndexKey = ("package", ecosystem or "", package or "")
            else:
                key = ("product", vendor or "", product or "")
            groups = grouped.setdefault(key, {}).setdefault(statement.vuln_id, {})
            groups.setdefault((statement.source, statement.record_id, statement.group),
                              []).append(statement)
        by_key = {
            key: {vuln: [tuple(g) for g in groups.values()] for vuln, groups in vulns.items()}
            for key, vulns in grouped.items()
        }
        releases: dict[tuple[str, str, str], dt.date] = {}
        names = {f"{v}:{p}": (v, p) for v, p in CPE_PRODUCTS.values()}
        for product, version, day in con.execute(
            "SELECT product, version, release_date FROM releases WHERE product IN"
            " (SELECT unnest(?))", [sorted(names)]
        ).fetchall():
            vendor_product = names[product]
            releases[(*vendor_product, version)] = day
        return cls(by_key, generation, releases, coverage.load(con))

    def statements(
        self, keys: Iterable[ComponentKey], only: Iterable[str] | None = None
    ) -> dict[str, list[tuple[ComponentKey, Group]]]:
        """Statement groups about any of ``keys``, by vulnerability id (of the
        vulnerabilities in ``only``, when given)."""
        out: dict[str, list[tuple[ComponentKey, Group]]] = defaultdict(list)
        for ck in keys:
            groups_of = self.by_key.get(ck.key, {})
            items = groups_of.items() if only is None else (
                (vuln, groups_of[vuln]) for vuln in only if vuln in groups_of)
            for vuln, groups in items:
                out[vuln].extend((ck, g) for g in groups)
        return out

    def _table(self, key: IndexKey) -> prefilter.KeyTable:
        table = self._tables.get(key)
        if table is None:
            table = self._tables[key] = prefilter.KeyTable(self.by_key.get(key, {}))
        return table

    def candidates(self, keys: list[ComponentKey]) -> dict[str, list[tuple[ComponentKey, Group]]]:
        """:meth:`statements` of the vulnerabilities that may affect the component: those
        every group of which surely leaves it unaffected are left out
        (:mod:`engine.pvdb.prefilter`)."""
        picked: set[str] = set()
        for ck in keys:
            picked.update(self._table(ck.key).candidates(ck.version))
        return self.statements(keys, only=picked)

    def verdicts(self, keys: list[ComponentKey]) -> list[tuple[str, Verdict]]:
        """The vulnerabilities naming one of ``keys`` that may affect the component's
        version, with their verdicts (cached per keys and version). Vulnerabilities that
        surely leave it unaffected are not listed."""
        cache_key = tuple((k.key, k.version, k.release) for k in keys)
        answer = self._answers.get(cache_key)
        if answer is None:
            answer = [(vuln, evaluate(groups)) for vuln, groups in self.candidates(keys).items()]
            self._answers[cache_key] = answer
            if len(self._answers) > _RESULT_CACHE:
                self._answers.popitem(last=False)
        else:
            self._answers.move_to_end(cache_key)
        return answer


def evaluate(groups: list[tuple[ComponentKey, Group]]) -> Verdict:
    """Steps 1–3 of the module docstring for one (component, vulnerability)."""
    by_level: dict[str, list[Verdict]] = defaultdict(list)
    unknowns: list[Verdict] = []
    for ck, group in groups:
        verdict = _evaluate_group(ck, group)
        verdict.key = ck
        level = group[0].match_kind
        if verdict.status == "unknown":
            unknowns.append(verdict)
        else:
            by_level[level].append(verdict)
    for level in _LEVELS:
        decided = by_level.get(level)
        if not decided:
            continue
        affected = [v for v in decided if v.status == "affected"]
        if affected:
            merged = Verdict("affected", scheme=affected[0].scheme, key=affected[0].key)
            for v in affected:
                merged.decisive.extend(v.decisive)
                if v.scheme == merged.scheme:
                    merged.fixed_candidates |= v.fixed_candidates
            return merged
        return Verdict("unaffected", decisive=[d for v in decided for d in v.decisive])
    if unknowns:
        first = unknowns[0]
        return Verdict("unknown", reason=first.reason, source=first.source,
                       record_id=first.record_id)
    return Verdict("unaffected")


def _evaluate_group(ck: ComponentKey, group: Group) -> Verdict:
    # one pass over the statements: a first-time host evaluates ~50,000 groups
    st0 = group[0]
    release = ck.release
    if st0.release and release and st0.release != release:
        return Verdict("unaffected", decisive=[])
    version = ck.version
    scheme: str | None = None
    vkey: tuple[Any, ...] | None = None
    uncomparable: set[str] = set()
    matched: list[Statement] = []
    fixed: set[str] = set()
    is_comparable = versions.is_comparable
    try:
        for st in group:
            if st.release and release and st.release != release:
                continue
            if not is_comparable(st.scheme):
                uncomparable.add(st.scheme)
                continue
            if scheme is None:
                scheme = st.scheme
                vkey = versions.sort_key(scheme, version)
            if st.fixed:
                fixed.add(st.fixed)
            if (_contains_key(st, vkey) if st.keyed and vkey is not None
                    and st.scheme == scheme else _contains(st, version)):
                matched.append(st)
    except VersionSchemeError as exc:
        return Verdict("unknown", reason=exc.summary, source=st0.source, record_id=st0.record_id)
    if scheme is None:
        return Verdict(
            "unknown",
            reason="versions are stated in a scheme that cannot be compared"
            f" ({', '.join(sorted(uncomparable))})",
            source=st0.source, record_id=st0.record_id,
        )
    decisive: list[tuple[Statement, str | None]]
    affected = [st for st in matched if st.status == "affected"]
    if affected:
        status = "affected"
        decisive = [(st, None) for st in affected]
    elif any(st.status == "unaffected" for st in matched):
        status = "unaffected"
        decisive = [(st, None) for st in matched if st.status == "unaffected"]
    else:
        status = st0.default_status
        if status == "unknown":
            return Verdict("unknown", reason="the feed gives no status for this version",
                           source=st0.source, record_id=st0.record_id)
        decisive = [(st0, f"{status} by default: no statement of this entry covers {version}")]
    return Verdict(status, scheme=scheme, decisive=decisive, fixed_candidates=fixed)


def _contains_key(st: Statement, v: tuple[Any, ...]) -> bool:
    """:func:`_contains` with precomputed sort keys (same answers, tuple comparisons)."""
    if st.exact is not None:
        return st.exact_key is None or v == st.exact_key
    lo = st.lo_key
    if lo is not None and (v < lo or (v == lo and not st.start_inclusive)):
        return False
    hi = st.hi_key
    return hi is None or v < hi or (v == hi and st.hi_inclusive)


def _contains(st: Statement, version: str) -> bool:
    if st.exact is not None:
        if st.exact in ("*", ""):
            return True
        return versions.compare(st.scheme, version, st.exact) == 0
    return versions.in_range(
        st.scheme, version, start=st.start, start_inclusive=st.start_inclusive,
        end=st.end, end_inclusive=st.end_inclusive,
    )


def closing_version(scheme: str, version: str, candidates: Iterable[str]) -> str | None:
    """The fixed version that closes the vulnerability for ``version``: the lowest
    fixed version above it on its own line (:func:`versions.line_of`), else the lowest
    above it anywhere."""
    mine_key = versions.sort_key(scheme, version)
    above: list[tuple[Any, str]] = []
    for candidate in candidates:
        key = versions.sort_key(scheme, candidate)
        try:
            if key is not None and mine_key is not None:
                if key > mine_key:
                    above.append((key, candidate))
            elif versions.compare(scheme, candidate, version) > 0:
                above.append((versions.parse(scheme, candidate), candidate))
        except VersionSchemeError:
            continue
    if not above:
        return None
    mine = versions.line_of(scheme, version)
    same_branch = [c for c in above if versions.line_of(scheme, c[1]) == mine]
    pool = same_branch or above
    return min(pool, key=lambda c: c[0])[1]


__all__ = ["ComponentKey", "IdentityError", "MatchIndex", "Reading", "Statement", "Verdict",
           "closing_version", "component_keys", "evaluate", "read_component"]
