"""The PVDB query API: what affects these components, and what is known about one CVE."""

from __future__ import annotations

import datetime as dt
from collections import OrderedDict, defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa

from engine.errors import NotFoundError, UsageError
from engine.gcpause import paused_gc
from engine.model import Component
from engine.pvdb import asof, coverage, matching, store, versions
from engine.pvdb.identity import IdentityError
from engine.pvdb.query_models import (
    AffectingReport,
    Availability,
    AvailabilityBasis,
    ComponentCoverage,
    CoverageStatus,
    Epss,
    Evidence,
    Finding,
    Fix,
    FixLine,
    FixStatus,
    Kev,
    PastAnswer,
    Severity,
    SourceCoverage,
    Undetermined,
)

if TYPE_CHECKING:
    from engine.pvdb import Pvdb
    from engine.pvdb.estimation import AvailabilityEstimator

def match_index(db: Pvdb) -> matching.MatchIndex:
    """The match index of the PVDB's current generation, loaded once per generation."""
    generation = store.generation(db._con)
    index: matching.MatchIndex | None = db._index
    if index is None or index.generation != generation:
        index = matching.MatchIndex.load(db._con, generation)
        db._index = index
    return index


def affecting(
    db: Pvdb,
    components: Sequence[Component],
    *,
    within_days: int | None,
    min_score: float | None,
    kev_only: bool,
    as_of: dt.datetime | None,
    estimator: AvailabilityEstimator | None,
) -> AffectingReport:
    if within_days is not None and within_days < 0:
        raise UsageError("--within-days must be zero or more")
    now = as_of or dt.datetime.now(dt.UTC)
    index = match_index(db)
    # A fleet's hosts repeat: the whole answer is kept per (components, filters, day) for
    # the PVDB generation; everything in it depends on the decision day, not the time.
    cache_key = (tuple(components), within_days, min_score, kev_only, now.date(),
                 None if estimator is None else ("estimated", estimator.cache_key))
    reports: OrderedDict[Any, AffectingReport] | None = db._reports
    if reports is None or db._reports_generation != index.generation:
        reports = db._reports = OrderedDict()
        db._reports_generation = index.generation
    cached = reports.get(cache_key)
    if cached is not None:
        reports.move_to_end(cache_key)
        return cached.model_copy(update={
            "as_of": now, "components": list(cached.components),
            "findings": list(cached.findings), "undetermined": list(cached.undetermined),
            "coverage": list(cached.coverage)})
    # a first-time host builds ~10^5 objects, and the report is kept (cached): no
    # collections on the way (they cost ~40% of the query), and the kept report is moved
    # out of the collector's reach afterwards, as the match index is, so later
    # collections (triggered by any allocation-heavy work: validating a decision's input,
    # say) do not walk it again and again; it is freed by reference counting when the
    # cache lets it go
    with paused_gc(freeze=True):
        report = _affecting(db, index, components, within_days=within_days,
                            min_score=min_score, kev_only=kev_only, now=now,
                            estimator=estimator)
    reports[cache_key] = report
    if len(reports) > _REPORT_CACHE:
        reports.popitem(last=False)
    return report


def _affecting(
    db: Pvdb,
    index: matching.MatchIndex,
    components: Sequence[Component],
    *,
    within_days: int | None,
    min_score: float | None,
    kev_only: bool,
    now: dt.datetime,
    estimator: AvailabilityEstimator | None,
) -> AffectingReport:
    verdicts: list[tuple[int, str, matching.ComponentKey, matching.Verdict]] = []
    undetermined: list[Undetermined] = []
    covered: list[ComponentCoverage] = []
    facts = _facts(db, index)
    past = facts.past(db, now.date())
    for position, component in enumerate(components):
        try:
            reading = matching.read_component(component)
        except IdentityError as exc:
            raise UsageError(f"component {position} ({component.label}): {exc.summary}") from exc
        keys = list(reading.keys)
        covered.append(_coverage(index, component, position, reading))
        if reading.unread and not any(k.key[0] == "package" for k in keys):
            # named only as a product whose version cannot be read in that product's terms
            # (a distribution kernel release with no upstream release): every
            # vulnerability stated about it is undetermined for this component
            undetermined.extend(_unread(index, component, position, reading, past))
        for vuln_id, verdict in (index.verdicts(keys) if past is None
                                 else _past_verdicts(index, keys, past)):
            if verdict.status == "affected":
                key = verdict.key or keys[0]
                verdicts.append((position, vuln_id, key, verdict))
            elif verdict.status == "unknown":
                undetermined.append(Undetermined(
                    vuln_id=vuln_id, component=position, component_label=component.label,
                    reason=verdict.reason or "undetermined", source=verdict.source or "",
                    record_id=verdict.record_id or "",
                ))
    vuln_ids = sorted({v[1] for v in verdicts} | {u.vuln_id for u in undetermined})
    facts.ensure(db, vuln_ids)
    facts.releases = index.releases
    facts.estimator = estimator
    day = now.date()
    findings: list[Finding] = []
    for position, vuln_id, key, verdict in verdicts:
        if vuln_id in facts.rejected:
            continue
        finding = _finding(facts, components[position], position, vuln_id, key, verdict,
                           day, past)
        if _keep(finding, now, within_days, min_score, kev_only):
            findings.append(finding)
    findings.sort(key=lambda f: (-(f.max_base_score or 0.0), f.vuln_id, f.component))
    undetermined = [u for u in undetermined if u.vuln_id not in facts.rejected]
    return AffectingReport(
        as_of=now, components=list(components), findings=findings,
        undetermined=undetermined, pvdb_generation=index.generation, coverage=covered,
        past=None if past is None else _past_answer(past),
    )


def _past_verdicts(index: matching.MatchIndex, keys: list[matching.ComponentKey],
                   past: asof.Past) -> list[tuple[str, matching.Verdict]]:
    """:meth:`MatchIndex.verdicts` from the records public on the past day only: a
    vulnerability some of whose statements come from a record not public yet is judged
    again without them (leaving none out cannot make a vulnerability the prefilter
    cleared affect the component)."""
    answer = index.verdicts(keys)
    groups = index.statements(keys, only=[vuln for vuln, _ in answer])
    out: list[tuple[str, matching.Verdict]] = []
    for vuln, verdict in answer:
        mine = groups.get(vuln, [])
        kept = past.keep(mine)
        if len(kept) == len(mine):
            out.append((vuln, verdict))
        elif kept:
            out.append((vuln, matching.evaluate(kept)))
    return out


def _past_answer(past: asof.Past) -> PastAnswer:
    left, fixes = len(past.left_out), len(past.later_fixes)
    revised, undated = past.revised(), past.undated()
    limits = [
        f"as of {past.day}: only what the PVDB knew by then is used",
        f"{left} records about these components were not public yet and are left out",
        f"{fixes} fixed versions released after {past.day} are not counted as fixes",
    ]
    if revised:
        limits.append(
            f"{revised} records used were modified after {past.day}: the PVDB keeps only a"
            " record's latest version, so what they state may include later changes")
    if undated:
        limits.append(
            f"{undated} records used carry no publication date of their own (the Linux"
            " kernel CNA's carry none): they are used where no bound says they were not"
            " public yet, public then or not")
    limits.append("a vulnerability rejected or a KEV entry withdrawn after that day is"
                  " as it is now")
    return PastAnswer(day=past.day, records_left_out=left, fixes_left_out=fixes,
                      records_revised=revised, records_undated=undated, limits=limits)


def _coverage(index: matching.MatchIndex, component: Component, position: int,
              reading: matching.Reading) -> ComponentCoverage:
    """Which sources cover the keys the component was compared under
    (:mod:`engine.pvdb.coverage`)."""
    sources: list[SourceCoverage] = []
    for ck in reading.keys:
        for c in coverage.covering(index.covered, ck.key, ck.release):
            sources.append(SourceCoverage(source=c.source,
                                          scope=coverage.scope(ck.key, c.release),
                                          records=c.records, as_of=c.as_of))
    if sources:
        status = CoverageStatus.COVERED
    elif any(key in index.covered for key in reading.unread):
        status = CoverageStatus.UNDETERMINED
    else:
        status = CoverageStatus.UNCOVERED
    return ComponentCoverage(component=position, component_label=component.label,
                             kind=component.kind, status=status, sources=sources,
                             notes=list(reading.notes))


def _unread(index: matching.MatchIndex, component: Component, position: int,
            reading: matching.Reading, past: asof.Past | None) -> list[Undetermined]:
    reason = "; ".join(reading.notes)
    out: list[Undetermined] = []
    for key in reading.unread:
        for vuln_id, all_groups in index.by_key.get(key, {}).items():
            groups = all_groups if past is None else [
                g for _, g in past.keep((None, g) for g in all_groups)]
            if not groups:
                continue
            first = groups[0][0]
            out.append(Undetermined(
                vuln_id=vuln_id, component=position, component_label=component.label,
                reason=reason, source=first.source, record_id=first.record_id))
    return out


def _keep(f: Finding, now: dt.datetime, within_days: int | None, min_score: float | None,
          kev_only: bool) -> bool:
    if kev_only and f.kev is None:
        return False
    if min_score is not None and (f.max_base_score or 0.0) < min_score:
        return False
    if within_days is not None:
        # only a patch on the component's own line counts, not an upgrade to another
        if not f.fix.patch_available:
            return False
        when = f.fix.availability.date
        if when is not None and when > (now + dt.timedelta(days=within_days)).date():
            return False
    return True


_REPORT_CACHE = 256
"""Answers kept per PVDB generation (one per distinct host description and filters)."""

_FACT_CACHE = 200_000
"""Vulnerabilities whose facts are kept between queries of one PVDB generation."""


def _facts(db: Pvdb, index: matching.MatchIndex) -> _Facts:
    """The fact cache of ``index``'s generation (facts change only with the generation)."""
    cached: tuple[int, _Facts] | None = db._facts
    if cached is None or cached[0] != index.generation:
        cached = (index.generation, _Facts())
        db._facts = cached
    return cached[1]


class _Facts:
    """Everything the findings need about vulnerabilities, read in a few queries and kept
    for the PVDB generation."""

    def __init__(self) -> None:
        self._clear()
        # Per query: set by affecting() before findings are built.
        self.releases: dict[tuple[str, str, str], dt.date] = {}
        self.estimator: AvailabilityEstimator | None = None

    def _clear(self) -> None:
        self.vulns: dict[str, tuple[str | None, str]] = {}
        self.rejected: set[str] = set()
        self.aliases: dict[str, set[str]] = defaultdict(set)
        self.severities: dict[str, list[Severity]] = defaultdict(list)
        self.kev: dict[str, list[Kev]] = defaultdict(list)
        """Per vulnerability, its KEV entries (CISA's first)."""
        self.epss: dict[str, list[Epss]] = defaultdict(list)
        """Per vulnerability, every dated score, newest first, then an undated one."""
        self.fixes: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
        self.known: set[str] = set()
        """Vulnerabilities whose facts have been read (absent ones included)."""
        self.epss_undated: dict[str, dt.date] = {}
        """The day an undated EPSS score was first stored (what dates it for as-of)."""
        self._newest: tuple[dt.date | None] | None = None
        self._knowledge: asof.Knowledge | None = None

    def past(self, db: Pvdb, day: dt.date) -> asof.Past | None:
        """The view of a past ``day`` (None when no fact is dated after it: the answer is
        the current one). The dates are read once for the generation."""
        if self._newest is None:
            self._newest = (asof.newest(db._con),)
        newest = self._newest[0]
        if newest is None or day >= newest:
            return None
        if self._knowledge is None:
            self._knowledge = asof.Knowledge.load(db._con)
        return asof.Past(day, self._knowledge, self._knowledge.hidden(day))

    def ensure(self, db: Pvdb, vuln_ids: list[str]) -> None:
        """Read the facts of those ``vuln_ids`` not read yet (a few batched queries)."""
        missing = [v for v in vuln_ids if v not in self.known]
        if not missing:
            return
        if len(self.known) + len(missing) > _FACT_CACHE:
            self._clear()
            missing = list(vuln_ids)
        con = db._con
        con.register("_q_ids", pa.table({"vuln_id": missing}))
        try:
            self._read(con)
        finally:
            con.unregister("_q_ids")
        self.known.update(missing)

    def _read(self, con: duckdb.DuckDBPyConnection) -> None:
        facts = self
        for vid, source, title, state in con.execute(
            "SELECT vuln_id, source, title, state FROM vulnerabilities"
            " WHERE vuln_id IN (SELECT vuln_id FROM _q_ids)"
            " ORDER BY CASE source WHEN 'cve5' THEN 0 WHEN 'nvd' THEN 1 ELSE 2 END"
        ).fetchall():
            if state == "rejected" and source in ("cve5", "nvd"):
                facts.rejected.add(vid)
            if vid not in facts.vulns or (facts.vulns[vid][0] is None and title):
                facts.vulns[vid] = (title, state)
        for vid, alias in con.execute(
            "SELECT vuln_id, alias FROM aliases WHERE vuln_id IN (SELECT vuln_id FROM _q_ids)"
        ).fetchall():
            facts.aliases[vid].add(alias)
        for vid, source, provider, version, vector, score, rating in con.execute(
            "SELECT vuln_id, source, provider, cvss_version, vector, base_score, base_severity"
            " FROM severities WHERE vuln_id IN (SELECT vuln_id FROM _q_ids)"
            " ORDER BY source, provider, cvss_version"
        ).fetchall():
            facts.severities[vid].append(Severity(
                provider=provider, source=source, cvss_version=version, vector=vector,
                base_score=score, base_severity=rating,
            ))
        for vid, source, added, due, ransomware in con.execute(
            "SELECT vuln_id, source, date_added, due_date, ransomware FROM kev"
            " WHERE vuln_id IN (SELECT vuln_id FROM _q_ids)"
            " ORDER BY CASE source WHEN 'kev' THEN 0 ELSE 1 END, date_added"
        ).fetchall():
            facts.kev[vid].append(Kev(date_added=added, due_date=due,
                                      known_ransomware_use=ransomware, source=source))
        # every dated score (the log), then an undated current one, dated by when it was
        # first stored: a dated score is preferred, as of any day it is known by
        for vid, source, score, percentile, day, stored in con.execute(
            "SELECT vuln_id, source, score, percentile, score_date, NULL FROM epss_history"
            " WHERE vuln_id IN (SELECT vuln_id FROM _q_ids)"
            " UNION ALL"
            " SELECT e.vuln_id, e.source, e.score, e.percentile, NULL,"
            " CAST(r.ingested_at AT TIME ZONE 'UTC' AS DATE)"
            " FROM epss e JOIN records r USING (source, record_id)"
            " WHERE e.score_date IS NULL AND e.vuln_id IN (SELECT vuln_id FROM _q_ids)"
            " ORDER BY 5 DESC NULLS LAST"
        ).fetchall():
            facts.epss[vid].append(Epss(score=score, percentile=percentile,
                                        score_date=day, source=source))
            if stored is not None:
                facts.epss_undated[vid] = stored
        for row in con.execute(
            "SELECT vuln_id, source, fixed_version, patch_id, advisory_id, fix_date, url,"
            " package FROM fixes WHERE vuln_id IN (SELECT vuln_id FROM _q_ids)"
        ).fetchall():
            facts.fixes[row[0]].append(row[1:])


def _kev_on(facts: _Facts, vuln_id: str, day: dt.date) -> Kev | None:
    """The vulnerability's KEV entry added by ``day`` (CISA's first)."""
    for entry in facts.kev.get(vuln_id, ()):
        if entry.date_added <= day:
            return entry
    return None


def _epss_on(facts: _Facts, vuln_id: str, day: dt.date) -> Epss | None:
    """The score of the latest day on or before ``day`` (an undated score once stored)."""
    for score in facts.epss.get(vuln_id, ()):
        if score.score_date is not None:
            if score.score_date <= day:
                return score
        elif facts.epss_undated.get(vuln_id, day) <= day:
            return score
    return None


def _finding(
    facts: _Facts, component: Component, position: int, vuln_id: str,
    key: matching.ComponentKey, verdict: matching.Verdict, day: dt.date,
    past: asof.Past | None,
) -> Finding:
    title, state = facts.vulns.get(vuln_id, (None, "published"))
    severities = facts.severities.get(vuln_id, [])
    return Finding(
        vuln_id=vuln_id,
        component=position,
        component_label=component.label,
        state=state,
        title=title,
        aliases=sorted(facts.aliases.get(vuln_id, ())),
        severities=severities,
        max_base_score=max((s.base_score for s in severities), default=None),
        kev=_kev_on(facts, vuln_id, day),
        epss=_epss_on(facts, vuln_id, day),
        fix=_fix(facts, vuln_id, key, verdict, past),
        evidence=[
            Evidence(source=st.source, record_id=st.record_id, match_kind=st.match_kind,
                     statement=text or st.describe())
            for st, text in dict.fromkeys(verdict.decisive)
        ],
    )


def _released(facts: _Facts, key: matching.ComponentKey, version: str,
              fix_rows: list[tuple[Any, ...]]) -> dt.date | None:
    """When ``version`` was released as a fix: the earliest advisory naming it, else the
    product's release date (None: not known)."""
    days = [r[4] for r in fix_rows if r[1] == version and r[4] is not None]
    if key.key[0] == "product":
        day = facts.releases.get((key.key[1], key.key[2], version))
        if day is not None:
            days.append(day)
    return min(days, default=None)


def _fix(facts: _Facts, vuln_id: str, key: matching.ComponentKey,
         verdict: matching.Verdict, past: asof.Past | None = None) -> Fix:
    fix_rows = facts.fixes.get(vuln_id, [])
    scheme = verdict.scheme or "generic"
    candidates = verdict.fixed_candidates
    closing = verdict.closing()
    if past is not None:
        # fixes released after the day were not fixes then, nor advisories published
        day = past.day
        fix_rows = [r for r in fix_rows if r[4] is None or r[4] <= day]
        later = {v for v in candidates
                 if (d := _released(facts, key, v, facts.fixes.get(vuln_id, []))) is not None
                 and d > day}
        if later:
            past.later_fixes.update((vuln_id, v) for v in later)
            candidates = candidates - later
            closing = matching.closing_version(scheme, key.version, candidates)
    patch_ids = sorted({r[2] for r in fix_rows if r[2]})
    advisories = sorted({r[3] for r in fix_rows if r[3]})
    fixed_versions = sorted(candidates)
    if closing is None:
        return Fix(
            status=FixStatus.NO_FIX, fixed_versions=fixed_versions, patch_ids=patch_ids,
            advisories=advisories,
            availability=_estimated(facts, vuln_id, key, candidates)
            or Availability(date=None, basis=AvailabilityBasis.NONE),
        )
    availability = _availability(facts, key, closing, fix_rows)
    other_line = versions.line_of(scheme, closing) != versions.line_of(scheme, key.version)
    if other_line:
        # The only fixes are on other lines (another stable branch): estimate when this
        # line gets its own; keep the other line's vendor date when nothing can be said.
        estimated = _estimated(facts, vuln_id, key, candidates)
        if estimated is not None and estimated.date is not None:
            vendor = (f"; {closing} on another line: {availability.date} ({availability.basis})"
                      if availability.date else "")
            availability = estimated.model_copy(
                update={"source": f"{estimated.source}{vendor}"})
    return Fix(
        status=FixStatus.FIXED, closing_version=closing,
        line=FixLine.OTHER if other_line else FixLine.OWN, fixed_versions=fixed_versions,
        patch_ids=patch_ids, advisories=advisories, availability=availability,
    )


def _estimated(facts: _Facts, vuln_id: str, key: matching.ComponentKey,
               candidates: set[str]) -> Availability | None:
    """The query's estimator's answer for this line (:mod:`engine.pvdb.estimation`), or
    None where there is no estimator or it has nothing to say about the product."""
    if facts.estimator is None or key.key[0] != "product":
        return None
    product = (key.key[1], key.key[2])
    dated = {v: d for v in candidates
             if (d := facts.releases.get((*product, v))) is not None}
    return facts.estimator.availability(product, key.version, vuln_id, dated)


def _availability(facts: _Facts, key: matching.ComponentKey, closing: str,
                  fix_rows: list[tuple[Any, ...]]) -> Availability:
    dated = sorted(
        (r[4], r[0], r[3]) for r in fix_rows if r[1] == closing and r[4] is not None
    )
    if dated:
        day, source, advisory = dated[0]
        label = f"{source}:{advisory}" if advisory else source
        return Availability(date=day, basis=AvailabilityBasis.VENDOR, source=label,
                            confidence=1.0)
    if key.key[0] == "product":
        day = facts.releases.get((key.key[1], key.key[2], closing))
        if day is not None:
            return Availability(date=day, basis=AvailabilityBasis.VENDOR,
                                source=f"release {closing}", confidence=1.0)
    return Availability(date=None, basis=AvailabilityBasis.NONE)


def show(db: Pvdb, vuln_id: str) -> dict[str, Any]:
    """Every fact about ``vuln_id`` (or the vulnerabilities it is an alias of), per source."""
    con = db._con
    wanted = vuln_id.strip()
    ids = {wanted}
    ids |= {r[0] for r in con.execute(
        "SELECT vuln_id FROM aliases WHERE alias = ?", [wanted]).fetchall()}
    found: dict[str, Any] = {}
    for vid in sorted(ids):
        detail: dict[str, Any] = {"vuln_id": vid}
        any_rows = False
        for table in ("vulnerabilities", "aliases", "severities", "affected", "fixes", "refs",
                      "kev", "epss"):
            cur = con.execute(f"SELECT * FROM {table} WHERE vuln_id = ? ORDER BY ALL", [vid])
            names = [d[0] for d in cur.description or []]
            rows = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
            any_rows = any_rows or bool(rows)
            detail[table] = rows
        if any_rows:
            cur = con.execute(
                "SELECT source, record_id, content_hash, modified, ingested_at, origin"
                " FROM records WHERE (source, record_id) IN (SELECT DISTINCT source, record_id"
                " FROM vulnerabilities WHERE vuln_id = ? UNION SELECT DISTINCT source, record_id"
                " FROM affected WHERE vuln_id = ? UNION SELECT DISTINCT source, record_id"
                " FROM kev WHERE vuln_id = ? UNION SELECT DISTINCT source, record_id FROM epss"
                " WHERE vuln_id = ?) ORDER BY source, record_id", [vid, vid, vid, vid])
            names = [d[0] for d in cur.description or []]
            detail["provenance"] = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
            found[vid] = detail
    if not found:
        raise NotFoundError(
            f"{wanted} is not in the PVDB",
            tip="check the id, or ingest a feed that has it (vigil feeds ingest PATH)",
        )
    return found[wanted] if wanted in found else {"aliases_of": sorted(found), **found}
