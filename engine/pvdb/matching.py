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
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import duckdb

from engine.errors import VersionSchemeError
from engine.pvdb import identity, versions
from engine.pvdb.feeds.releases import CPE_PRODUCTS
from engine.pvdb.identity import IdentityError
from engine.pvdb.query_models import Component

IndexKey = tuple[str, str, str]
_LEVELS = ("package", "product", "cpe")


@dataclass(frozen=True, slots=True)
class Statement:
    vuln_id: str
    source: str
    record_id: str
    group: int
    match_kind: str
    scheme: str
    status: str
    default_status: str
    start: str | None
    start_inclusive: bool
    end: str | None
    end_inclusive: bool
    exact: str | None
    fixed: str | None
    condition: str | None
    release: str | None
    cpe: str | None

    def describe(self) -> str:
        """The statement in words, for evidence lists."""
        if self.exact is not None:
            span = f"= {self.exact}"
        else:
            lo = f"{'>=' if self.start_inclusive else '>'} {self.start}" if self.start else ""
            hi = f"{'<=' if self.end_inclusive else '<'} {self.end}" if self.end else ""
            span = ", ".join(p for p in (lo, hi) if p) or "all versions"
        text = f"{self.status} ({self.scheme}) {span}"
        if self.fixed:
            text += f"; fixed in {self.fixed}"
        if self.release:
            text += f"; release {self.release}"
        if self.condition:
            text += f"; {self.condition}"
        return text


@dataclass(slots=True)
class Verdict:
    """The outcome for one (component, vulnerability)."""

    status: str
    """``affected``, ``unaffected`` or ``unknown``."""
    scheme: str | None = None
    decisive: list[tuple[Statement, str]] = field(default_factory=list)
    """Statements that decided, each with the reason in words (for evidence)."""
    fixed_candidates: set[str] = field(default_factory=set)
    """Fixed versions stated by the deciding level, in ``scheme``."""
    reason: str | None = None
    source: str | None = None
    record_id: str | None = None


@dataclass(frozen=True, slots=True)
class ComponentKey:
    key: IndexKey
    version: str
    scheme: str | None
    """The scheme the component's own identity imposes (rpm/deb for purls), or None."""
    release: str | None


def component_keys(component: Component) -> list[ComponentKey]:
    """Every index key a component is known under (purl, CPE, vendor/product)."""
    keys: list[ComponentKey] = []
    if component.purl:
        pkg, purl_version = identity.purl_key(component.purl)
        keys.append(ComponentKey(
            ("package", f"{pkg.type}/{pkg.namespace or ''}", pkg.name),
            purl_version or component.version, pkg.scheme, pkg.release,
        ))
    if component.cpe:
        name = identity.parse_cpe(component.cpe)
        version = component.version or name.version
        keys.append(ComponentKey(("product", name.vendor, name.product), version, None, None))
    if component.vendor and component.product:
        vendor, product = identity.product_key(component.vendor, component.product)
        key = ComponentKey(("product", vendor, product), component.version, None, None)
        if key not in keys:
            keys.append(key)
    return keys


class MatchIndex:
    """Statements by product/package key, and release dates of products whose fixes are
    dated by their releases, loaded once per PVDB generation."""

    def __init__(self, by_key: dict[IndexKey, list[Statement]], generation: int,
                 releases: dict[tuple[str, str, str], dt.date] | None = None) -> None:
        self.by_key = by_key
        self.generation = generation
        self.releases = releases or {}
        """(vendor, product, version) -> release date."""

    @classmethod
    def load(cls, con: duckdb.DuckDBPyConnection, generation: int) -> MatchIndex:
        rows = con.sql(
            """
            SELECT vuln_id, source, record_id, grp, match_kind, scheme, status,
                   default_status, start_v, start_inclusive, end_v, end_inclusive, exact,
                   fixed, condition, release, cpe, vendor, product, ecosystem, package
            FROM affected
            """
        ).fetchall()
        by_key: dict[IndexKey, list[Statement]] = defaultdict(list)
        for row in rows:
            statement = Statement(*row[:17])
            vendor, product, ecosystem, package = row[17:]
            if statement.match_kind == "package":
                key: IndexKey = ("package", ecosystem or "", package or "")
            else:
                key = ("product", vendor or "", product or "")
            by_key[key].append(statement)
        releases: dict[tuple[str, str, str], dt.date] = {}
        names = {f"{v}:{p}": (v, p) for v, p in CPE_PRODUCTS.values()}
        for product, version, day in con.execute(
            "SELECT product, version, release_date FROM releases WHERE product IN"
            " (SELECT unnest(?))", [sorted(names)]
        ).fetchall():
            vendor_product = names[product]
            releases[(*vendor_product, version)] = day
        return cls(dict(by_key), generation, releases)

    def statements(
        self, keys: Iterable[ComponentKey]
    ) -> dict[str, list[tuple[ComponentKey, Statement]]]:
        """Statements about any of ``keys``, by vulnerability id."""
        out: dict[str, list[tuple[ComponentKey, Statement]]] = defaultdict(list)
        for ck in keys:
            for st in self.by_key.get(ck.key, ()):
                out[st.vuln_id].append((ck, st))
        return out


def evaluate(pairs: list[tuple[ComponentKey, Statement]]) -> Verdict:
    """Steps 1–3 of the module docstring for one (component, vulnerability)."""
    groups: dict[tuple[str, str, int], list[tuple[ComponentKey, Statement]]] = defaultdict(list)
    for ck, st in pairs:
        groups[(st.source, st.record_id, st.group)].append((ck, st))
    by_level: dict[str, list[Verdict]] = defaultdict(list)
    unknowns: list[Verdict] = []
    for members in groups.values():
        verdict = _evaluate_group(members)
        level = members[0][1].match_kind
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
            merged = Verdict("affected", scheme=affected[0].scheme)
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


def _evaluate_group(members: list[tuple[ComponentKey, Statement]]) -> Verdict:
    st0 = members[0][1]
    applicable = [
        (ck, st) for ck, st in members
        if not (st.release and ck.release and st.release != ck.release)
    ]
    if not applicable:
        return Verdict("unaffected", decisive=[])
    comparable = [(ck, st) for ck, st in applicable if versions.is_comparable(st.scheme)]
    if not comparable:
        schemes = sorted({st.scheme for _, st in applicable})
        return Verdict(
            "unknown",
            reason="versions are stated in a scheme that cannot be compared"
            f" ({', '.join(schemes)})",
            source=st0.source, record_id=st0.record_id,
        )
    matched: list[Statement] = []
    scheme = comparable[0][1].scheme
    fixed: set[str] = set()
    try:
        for ck, st in comparable:
            if st.fixed:
                fixed.add(st.fixed)
            if _contains(st, ck.version):
                matched.append(st)
    except VersionSchemeError as exc:
        return Verdict("unknown", reason=exc.summary, source=st0.source, record_id=st0.record_id)
    statuses = {st.status for st in matched}
    if "affected" in statuses:
        status = "affected"
        decisive = [(st, st.describe()) for st in matched if st.status == "affected"]
    elif "unaffected" in statuses:
        status = "unaffected"
        decisive = [(st, st.describe()) for st in matched if st.status == "unaffected"]
    else:
        status = st0.default_status
        if status == "unknown":
            return Verdict("unknown", reason="the feed gives no status for this version",
                           source=st0.source, record_id=st0.record_id)
        version = comparable[0][0].version
        decisive = [(st0, f"{status} by default: no statement of this entry covers {version}")]
    return Verdict(status, scheme=scheme, decisive=decisive, fixed_candidates=fixed)


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
    fixed version above it on its own branch, else the lowest above it anywhere."""
    above: list[tuple[Any, str]] = []
    for candidate in candidates:
        try:
            if versions.compare(scheme, candidate, version) > 0:
                above.append((versions.parse(scheme, candidate), candidate))
        except VersionSchemeError:
            continue
    if not above:
        return None
    depth = 2
    mine = versions.branch_of(scheme, version, depth)
    same_branch = [c for c in above if versions.branch_of(scheme, c[1], depth) == mine]
    pool = same_branch or above
    return min(pool, key=lambda c: c[0])[1]


__all__ = ["ComponentKey", "IdentityError", "MatchIndex", "Statement", "Verdict",
           "closing_version", "component_keys", "evaluate"]
