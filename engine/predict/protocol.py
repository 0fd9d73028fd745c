"""The honest backtest on the kernel CNA's full history (``vigil predict backtest
--kernel-cna``).

**Questions.** A (CVE, branch) pair (:mod:`engine.predict.kernel_cna`) is asked the day
after its CVE became public and again at each of :data:`AGES` days after, for as long as the
branch is still maintained on that day (a release within the last 35 days or four of its
usual gaps) and no fix is known on it. A question sees only what was known before its day:
the record as it stood (its fixed versions then), releases dated before it, fixes known
before it. Never-fixed pairs are asked and scored like the others. Questions from START
to END are scored; earlier ones are history only.

**Outcomes.** For a window of h days (30, and 365 for "ever"): 1 when the fix became known
in [T, T+h); 0 when it did not and the outcome is observable that far (the data runs past
T+h, or the branch reached end of life, after which no fix can come); otherwise unknown and
left out of that score only. The date error is censoring-aware: prediction and truth are
both cut at the last observable day (at most a year after T), so a date for a fix that
never came counts up to that day, and no date for one that came counts from the fix to it.

**Weighting.** Every question weighs the same, and a pair is asked at most
``len(AGES)`` times. 90% intervals come from resampling whole pairs (bootstrap). The mean of
each pair's mean (``pair_mean``) is also given; it is not the headline, because a pair fixed
soon has few questions, so those weights depend on the outcome.

**Methods** (all causal): the skeptic's baselines — the branch's next release, the
conditional-median rule (the median of past publication-to-fix lags at least as long as the
current wait, snapped to the branch's next projected release), per-branch-kind conditional
medians, and the base rate bucketed by days waited (≤7/≤30/≤90/>90, a life table with
censoring) for probabilities; the current estimator (:class:`~engine.predict.estimator.
Estimator` behind ``Pvdb.affecting``); and the hazard models (:mod:`engine.predict.hazard`)
on the features a PVDB query has (``model-pvdb``) or on everything the records say
(``model-full``), refitted every ``refit`` days on the questions before.
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
import statistics
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.predict import hazard
from engine.predict import kernel_cna as kc
from engine.predict.calendars import Calendar
from engine.predict.estimator import Estimator, Question
from engine.pvdb import history as hist

WINDOW = 30
EVER = hazard.HORIZON
BUCKETS = (7, 30, 90)
KINDS = ("newest", "superseded", "longterm")
NEVER = 10**9
"""Ordinal day standing for "no fix"."""

PVDB_FEATURES = ("since_first", "n_fixed", "rank", "n_alive", "newer_fixed_share",
                 "next_newer_fixed", "since_newer_fix", "older_fixed", "kind", "gap",
                 "since_release", "line_age", "succ_age")
"""What a PVDB query knows about a question: the fixed versions on other lines with their
release dates, and the release log."""
FULL_FEATURES = (*PVDB_FEATURES, "wait", "pub_lag", "rc_stage", "n_changes", "since_change",
                 "n_files", "subsystem", "n_open", "stable_intro")
"""Everything the record history says besides: when the CVE became public, the record's
activity, the files the fix touches, how many branches are still open."""
HAZARD_FEATURES = (*PVDB_FEATURES, "wait", "pub_lag", "since_mainline", "alive_fixed",
                   "alive_fixed_share")
"""The PVDB features and what else the record and the release log say on the day: days
since the CVE became public (days already waited), days since the mainline release carrying
the fix, and how many (and what share) of the other branches still maintained already carry
it."""
CATEGORICAL = ("kind", "subsystem")
SUBSYSTEMS = 60
"""Most frequent subsystems kept as categories (the rest are one "other")."""

CALIBRATED_FEATURES = (*HAZARD_FEATURES, "line", "rc_stage", "n_files", "subsystem",
                       "n_open", "stable_intro")
"""The backport features, the branch itself (``major * 100 + minor``: branches differ in
how much their maintainers take), the mainline stage of the fix, the files it touches and
their subsystem, how many branches are still open, whether the bug came in through a
stable backport."""

ALL_FEATURES = (*FULL_FEATURES, "since_mainline", "alive_fixed", "alive_fixed_share", "line")

METHODS = ("next-release", "conditional-median", "kind-median", "base-rate", "current",
           "model-pvdb", "model-full", "hazard", "hazard-cal")
POINT_BASELINES = ("next-release", "conditional-median", "kind-median")


@dataclass(slots=True)
class Questions:
    """One row per (pair, as-of day), columnar."""

    pairs: list[kc.Pair]
    pair: Any
    day: Any
    """As-of day (ordinal)."""
    x: dict[str, Any]
    kind: Any
    """Branch kind on the day (index into :data:`KINDS`)."""
    fixed: Any
    """Ordinal day the fix became known (:data:`NEVER`: none)."""
    observable: Any
    published: Any
    reference: Any
    """Ordinal day of the first fix on another line known on the day (-1: none)."""
    next_release: Any
    """The branch's next projected release on or after the day (-1: none)."""
    subsystems: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.day.size)

    def matrix(self, names: Sequence[str]) -> Any:
        return np.column_stack([self.x[n] for n in names]).astype(float)


@dataclass(slots=True)
class Answers:
    """One method's answers to every question (NaN: none given)."""

    name: str
    p30: Any
    p_ever: Any
    date: Any
    """Point date (ordinal; NaN: no date)."""
    low: Any
    high: Any
    basis: list[str]


def _lines_by_day(log: hist.ReleaseLog) -> Callable[[dt.date], list[str]]:
    cache: dict[dt.date, list[str]] = {}
    lines = log.product_lines(kc.KERNEL)

    def alive(day: dt.date) -> list[str]:
        found = cache.get(day)
        if found is None:
            found = cache[day] = sorted((ln for ln in lines if log.alive(kc.KERNEL, ln, day)),
                                        key=kc.line_key, reverse=True)
        return found
    return alive


AGES = (1, 7, 14, 30, 60, 90, 180, 270, 365)
"""Days after publication at which every pair still open is asked."""


def build_questions(corpus: kc.Corpus, *, ages: Sequence[int] = AGES,
                    sample: set[str] | None = None) -> Questions:
    """Every pair, asked at each of ``ages`` days after its CVE became public while it is
    open and its branch maintained, with its features."""
    log = corpus.releases
    pairs = [p for p in corpus.pairs() if sample is None or p.cve in sample]
    alive = _lines_by_day(log)
    all_lines = sorted(log.product_lines(kc.KERNEL), key=kc.line_key)
    by_cve: dict[str, list[int]] = {}
    for i, p in enumerate(pairs):
        by_cve.setdefault(p.cve, []).append(i)
    counts: dict[str, int] = {}
    for p in pairs:
        counts[kc.subsystem(corpus.records[p.cve].files)] = counts.get(
            kc.subsystem(corpus.records[p.cve].files), 0) + 1
    top = sorted(counts, key=lambda s: (-counts[s], s))[:SUBSYSTEMS]
    codes = {s: i for i, s in enumerate(top)}
    strata: dict[tuple[str, dt.date], str] = {}
    line_info: dict[tuple[str, dt.date], tuple[float, float, float, float, int]] = {}
    cols: dict[str, list[float]] = {n: [] for n in ALL_FEATURES}
    pair_ix: list[int] = []
    day_ix: list[int] = []
    kinds: list[int] = []
    refs: list[int] = []
    nexts: list[int] = []
    for cve, idxs in by_cve.items():
        record = corpus.records[cve]
        for age in ages:
            day = record.published + dt.timedelta(days=age)
            if day > corpus.end:
                break
            lines = alive(day)
            rank_of = {ln: r for r, ln in enumerate(lines)}
            open_idx = [i for i in idxs if pairs[i].line in rank_of and _open(pairs[i], day)]
            if not open_idx:
                continue
            named = record.fixed_as_of(day)
            fixed_lines: dict[str, dt.date] = {}
            rc_stage = 0.0
            for v in named:
                released = corpus.dated.get(v)
                if released is None or released >= day:
                    if "-rc" in v:
                        rc_stage = 1.0
                    continue
                ln = kc.line_of(v)
                if ln not in fixed_lines or released < fixed_lines[ln]:
                    fixed_lines[ln] = released
            first = min(fixed_lines.values()) if fixed_lines else None
            mainline = [corpus.dated[v] for v in named if not kc.is_stable(v)
                        and v in corpus.dated and corpus.dated[v] < day]
            since_mainline = float((day - min(mainline)).days) if mainline else -1.0
            i_day = bisect.bisect_left(record.days, day)
            files = record.files
            subsystem = codes.get(kc.subsystem(files), len(codes))
            stable_intro = float(any(kc.is_stable(v) for v, _ in record.dyad))
            for i in open_idx:
                p = pairs[i]
                line = p.line
                rank = rank_of[line]
                key = (line, day)
                if key not in strata:
                    strata[key] = hist.kernel_stratum(log, line, lines, day)
                    gap = log.median_gap(kc.KERNEL, line, day)
                    last = log.last_before(kc.KERNEL, line, day)
                    first_rel = log.first_release(kc.KERNEL, line)
                    newer = [ln for ln in all_lines if kc.line_key(ln) > kc.line_key(line)]
                    succ = log.first_release(kc.KERNEL, newer[0]) if newer else None
                    projected = log.projected(kc.KERNEL, line, day, 1)
                    line_info[key] = (
                        gap if gap is not None else -1.0,
                        float((day - last).days) if last else -1.0,
                        float((day - first_rel).days) if first_rel else -1.0,
                        float((day - succ).days) if succ and succ < day else -1.0,
                        projected[0].toordinal() if projected else -1)
                gap, since_release, line_age, succ_age, nxt = line_info[key]
                newer_lines = lines[:rank]
                older_lines = lines[rank + 1:]
                nn = newer_lines[-1] if newer_lines else None
                others = {ln: d for ln, d in fixed_lines.items() if ln != line}
                alive_fixed = sum(ln in others for ln in lines if ln != line)
                row = {
                    "since_first": float((day - first).days) if first else -1.0,
                    "n_fixed": float(len(others)),
                    "rank": float(rank),
                    "n_alive": float(len(lines)),
                    "newer_fixed_share": (sum(ln in others for ln in newer_lines)
                                          / len(newer_lines)) if newer_lines else -1.0,
                    "next_newer_fixed": float(nn in others) if nn else -1.0,
                    "since_newer_fix": float((day - others[nn]).days) if nn in others
                    else -1.0,
                    "older_fixed": float(any(ln in others for ln in older_lines)),
                    "kind": float(KINDS.index(strata[key])),
                    "gap": gap,
                    "since_release": since_release,
                    "line_age": line_age,
                    "succ_age": succ_age,
                    "wait": float((day - record.published).days),
                    "pub_lag": float((record.published - first).days) if first else -1.0,
                    "rc_stage": rc_stage,
                    "n_changes": float(i_day),
                    "since_change": float((day - record.days[i_day - 1]).days) if i_day
                    else -1.0,
                    "n_files": float(len(files)),
                    "subsystem": float(subsystem),
                    "n_open": float(len(open_idx)),
                    "stable_intro": stable_intro,
                    "since_mainline": since_mainline,
                    "alive_fixed": float(alive_fixed),
                    "alive_fixed_share": alive_fixed / (len(lines) - 1) if len(lines) > 1
                    else -1.0,
                    "line": _line_number(line),
                }
                for n in ALL_FEATURES:
                    cols[n].append(row[n])
                pair_ix.append(i)
                day_ix.append(day.toordinal())
                kinds.append(int(row["kind"]))
                refs.append(first.toordinal() if first else -1)
                nexts.append(int(nxt))
    fixed = np.array([p.fixed.toordinal() if p.fixed else NEVER for p in pairs], dtype=np.int64)
    observable = np.array([min(p.observable, dt.date(9000, 1, 1)).toordinal() for p in pairs],
                          dtype=np.int64)
    published = np.array([p.published.toordinal() for p in pairs], dtype=np.int64)
    pi = np.array(pair_ix, dtype=np.int64)
    return Questions(
        pairs=pairs, pair=pi, day=np.array(day_ix, dtype=np.int64),
        x={n: np.array(v, dtype=float) for n, v in cols.items()},
        kind=np.array(kinds, dtype=np.int64), fixed=fixed[pi], observable=observable[pi],
        published=published[pi], reference=np.array(refs, dtype=np.int64),
        next_release=np.array(nexts, dtype=np.int64), subsystems=top)


def _line_number(line: str) -> float:
    key = kc.line_key(line)
    return float(key[0] * 100 + (key[1] if len(key) > 1 else 0)) if key else -1.0


def _open(pair: kc.Pair, day: dt.date) -> bool:
    return pair.fixed is None or pair.fixed >= day


# -- outcomes ----------------------------------------------------------------------------


def outcome(q: Questions, days: int) -> Any:
    """1/0 per question for "fix known within ``days``", NaN where not observable."""
    end = q.day + days
    out = np.full(len(q), np.nan)
    came = q.fixed < end
    out[came] = 1.0
    out[~came & (q.observable >= end)] = 0.0
    return out


def date_error(q: Questions, date: Any) -> Any:
    """Censoring-aware absolute error in days (see the module docstring)."""
    cut = np.minimum(q.observable, q.day + EVER).astype(float)
    truth = np.minimum(q.fixed.astype(float), cut)
    guess = np.where(np.isnan(date), cut, np.minimum(date, cut))
    return np.abs(guess - truth)


# -- baselines -----------------------------------------------------------------------------


def _no_answers(name: str, n: int) -> Answers:
    nan = np.full(n, np.nan)
    return Answers(name, nan.copy(), nan.copy(), nan.copy(), nan.copy(), nan.copy(),
                   ["unknown"] * n)


def _from_dates(name: str, q: Questions, date: Any) -> Answers:
    a = _no_answers(name, len(q))
    a.date = date
    has = ~np.isnan(date)
    a.p30 = np.where(has, (date < q.day + WINDOW).astype(float), 0.0)
    a.p_ever = np.where(has, (date < q.day + EVER).astype(float), 0.0)
    a.basis = ["history" if h else "unknown" for h in has]
    return a


def next_release(q: Questions) -> Answers:
    date = np.where(q.next_release > 0, q.next_release, np.nan).astype(float)
    return _from_dates("next-release", q, date)


def _past_lags(q: Questions) -> tuple[Any, Any, Any]:
    """Publication-to-fix lag, fix day and kind at publication of every pair fixed."""
    fixed = np.array([p.fixed.toordinal() if p.fixed else NEVER for p in q.pairs])
    pub = np.array([p.published.toordinal() for p in q.pairs])
    first_kind = np.full(len(q.pairs), -1)
    seen = np.zeros(len(q.pairs), dtype=bool)
    for i, k in zip(q.pair, q.kind, strict=True):
        if not seen[i]:
            seen[i], first_kind[i] = True, k
    return fixed - pub, fixed, first_kind


def conditional_median(q: Questions, *, per_kind: bool = False, snap: bool = True) -> Answers:
    """The median of past lags at least as long as the current wait (fixes known before
    the as-of day), from publication; snapped to the branch's next projected release."""
    lag, fixed, kind0 = _past_lags(q)
    date = np.full(len(q), np.nan)
    for day in np.unique(q.day):
        rows = np.nonzero(q.day == day)[0]
        known = fixed < day
        groups = [(None, rows)] if not per_kind else [
            (k, rows[q.kind[rows] == k]) for k in range(len(KINDS))]
        for k, idx in groups:
            pool = lag[known & (kind0 == k)] if k is not None else lag[known]
            if pool.size == 0 or idx.size == 0:
                continue
            pool = np.sort(pool)
            wait = day - q.published[idx]
            lo = np.searchsorted(pool, wait, side="left")
            n = pool.size - lo
            ok = n > 0
            mid = np.where(ok, pool[np.minimum(lo + (n - 1) // 2, pool.size - 1)], 0)
            guess = np.maximum(q.published[idx] + mid, day).astype(float)
            if snap:
                nxt = q.next_release[idx]
                guess = np.where((nxt > 0) & (nxt >= guess), nxt,
                                 np.where(nxt > 0, _snap_later(guess, nxt), guess))
            date[idx] = np.where(ok, guess, np.nan)
    name = "kind-median" if per_kind else "conditional-median"
    return _from_dates(name, q, date)


def _snap_later(guess: Any, nxt: Any) -> Any:
    """The first weekly step after ``nxt`` on or after ``guess`` (a projected cadence)."""
    weeks = np.ceil((guess - nxt) / 7.0)
    return nxt + 7.0 * weeks


def bucket_of(wait: Any) -> Any:
    return np.searchsorted(np.asarray(BUCKETS), wait, side="left")


def base_rate(q: Questions) -> Answers:
    """P(within 30 days) and P(within a year) by the bucket of days waited, from a life
    table of the questions asked before the as-of day (censored at it)."""
    a = _no_answers("base-rate", len(q))
    bucket = bucket_of(q.day - q.published)
    for day in np.unique(q.day):
        rows = np.nonzero(q.day == day)[0]
        past = q.day < day
        for b in np.unique(bucket[rows]):
            sel = past & (bucket == b)
            idx = rows[bucket[rows] == b]
            if not sel.any():
                continue
            to_fix = np.where(q.fixed[sel] < day, q.fixed[sel] - q.day[sel], np.nan)
            watched = (day - q.day[sel]).astype(float)
            cdf = life_table(to_fix, watched)
            a.p30[idx] = cdf[hazard.EDGES.index(WINDOW)]
            a.p_ever[idx] = cdf[-1]
    return a


def life_table(to_fix: Any, watched: Any) -> Any:
    """The cumulative P(fix within each :data:`hazard.EDGES` boundary) of a group, with
    censoring (no covariates)."""
    _, k, y, share = hazard.expand(to_fix, watched)
    stretches = len(hazard.EDGES) - 1
    at_risk = np.bincount(k, weights=share, minlength=stretches)
    events = np.bincount(k, weights=y, minlength=stretches)
    h = np.divide(events, at_risk, out=np.zeros(stretches), where=at_risk > 0)
    return np.concatenate([[0.0], 1.0 - np.cumprod(1.0 - h)])


# -- the current estimator -------------------------------------------------------------------


def estimator_history(corpus: kc.Corpus) -> tuple[hist.History, dict[str, dt.date]]:
    """The history a PVDB fed by the CNA holds, as the current estimator learns from it:
    every (CVE, branch) maintained when the CVE became public and affected, referenced to
    the first release carrying the fix, fixed when that became known (a fix released before
    the CVE was public counts from its release); and each CVE's publication day, before
    which none of it is seen."""
    log = corpus.releases
    alive = _lines_by_day(log)
    fixes: list[hist.LineFix] = []
    public: dict[str, dt.date] = {}
    for cve, record in sorted(corpus.records.items()):
        day = record.published + dt.timedelta(days=1)
        lines = alive(day)
        versions = {v for _, v in record.dyad if v} | set(
            record.fixed_sets[-1] if record.fixed_sets else ())
        dated = sorted((corpus.dated[v], v) for v in versions if v in corpus.dated)
        if not dated:
            continue
        reference, first = dated[0]
        public[cve] = record.published
        for line in kc.affected_lines(record, [(ln, log.version_before(kc.KERNEL, ln, day)
                                                or "") for ln in lines]):
            known = kc.known_fix(record, line, corpus.dated)
            version = kc.fix_on(record, line)
            released = corpus.dated.get(version) if version else None
            if known is None and released is not None:
                known = max(released, record.published)
            if known is not None and released is not None and released <= record.published:
                known = released
            stratum = hist.kernel_stratum(log, line, lines, reference)
            fixes.append(hist.LineFix(cve, kc.KERNEL, line, stratum, reference,
                                      f"{first} ({kc.line_of(first)})", known, version))
    return hist.History(fixes, log, corpus.end), public


def current(q: Questions, corpus: kc.Corpus, calendars: dict[str, Calendar],
            progress: Callable[[int, int], None] | None = None) -> Answers:
    """The current estimator's answers, asked as ``Pvdb.affecting`` asks it."""
    history, public = estimator_history(corpus)
    estimator = Estimator(history, calendars, public=public)
    a = _no_answers("current", len(q))
    order = np.argsort(q.day, kind="stable")
    for n, i in enumerate(order):
        pair = q.pairs[q.pair[i]]
        day = dt.date.fromordinal(int(q.day[i]))
        if q.reference[i] < 0:
            continue  # only a mainline fix named: the other line's answer stays (no estimate)
        ref = dt.date.fromordinal(int(q.reference[i]))
        est = estimator.estimate(Question(
            kc.KERNEL, pair.line, dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC), ref,
            "first fix", pair.cve, WINDOW))
        a.p30[i] = np.nan if est.p_within is None else est.p_within
        a.p_ever[i] = np.nan if est.p_ever is None else est.p_ever
        if est.date is not None:
            a.date[i] = est.date.toordinal()
            a.low[i] = est.low.toordinal() if est.low else np.nan
            a.high[i] = est.high.toordinal() if est.high else day.toordinal() + EVER
        a.basis[i] = est.basis.value
        if progress and n % 20000 == 0:
            progress(n, len(q))
    return a


# -- the hazard models ---------------------------------------------------------------------


MIN_P_EVER = 0.5
"""A model gives a date only when the fix more likely than not comes within a year."""


def model(q: Questions, names: Sequence[str], *, label: str, refit: int = 28,
          per_pair: int = 6, seed: int = 0, fallback: Answers | None = None,
          interval: str = "from-now", snap: bool = False, wanted: Any | None = None,
          weigh_pairs: bool | str = True, params: dict[str, Any] | None = None,
          recalibrate: bool = False,
          progress: Callable[[int, int], None] | None = None) -> Answers:
    """Walk forward: refit every ``refit`` days on the questions asked before (at most
    ``per_pair`` per pair, weighted so every pair counts the same), answer the questions
    until the next refit. Before enough fixes have been seen, the answer is ``unknown``
    with ``fallback``'s probabilities (the bucketed base rate). ``wanted`` (a mask) names
    the questions that need an answer: a stretch holding none of them is not fitted (the
    questions before the scored period are history only). Fits run on one thread: they
    are many and short, and OpenMP threads waiting for each other on a busy machine cost
    more than they give."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return _model(q, names, label=label, refit=refit, per_pair=per_pair, seed=seed,
                      fallback=fallback, interval=interval, snap=snap, wanted=wanted,
                      weigh_pairs=weigh_pairs, params=params or {}, recalibrate=recalibrate,
                      progress=progress)


def _model(q: Questions, names: Sequence[str], *, label: str, refit: int, per_pair: int,
           seed: int, fallback: Answers | None, interval: str, snap: bool,
           wanted: Any | None, weigh_pairs: bool | str, params: dict[str, Any],
           recalibrate: bool, progress: Callable[[int, int], None] | None) -> Answers:
    a = _no_answers(label, len(q))
    x = q.matrix(names)
    rng = np.random.default_rng(seed)
    sample_key = rng.random(len(q))
    pair_rank = _rank_within_pair(q.pair, sample_key)
    n_per_pair = np.bincount(q.pair, minlength=len(q.pairs))
    raw30 = np.full(len(q), np.nan)
    raw_ever = np.full(len(q), np.nan)
    for n, total, cut, rows in _stretches(q, refit, wanted):
        train = np.nonzero((q.day < cut) & (pair_rank < per_pair))[0]
        m = hazard.HazardModel(names, [c for c in CATEGORICAL if c in names], seed=seed,
                               **params)
        watched, to_fix = _outcomes_by(q, train, cut)
        if weigh_pairs == "causal":  # questions of the pair asked before the cut
            seen = np.bincount(q.pair[train], minlength=len(q.pairs))
            weights = 1.0 / seen[q.pair[train]]
        elif weigh_pairs:
            weights = 1.0 / np.minimum(n_per_pair[q.pair[train]], per_pair)
        else:
            weights = None
        if train.size and m.fit(x[train], to_fix, watched, weights):
            f = m.forecast(x[rows])
            raw30[rows], raw_ever[rows] = f.p_within(WINDOW), f.p_within(EVER)
            a.p30[rows], a.p_ever[rows] = raw30[rows], raw_ever[rows]
            if recalibrate:
                a.p30[rows] = _recalibrated(q, raw30, WINDOW, cut, rows)
                a.p_ever[rows] = np.maximum(_recalibrated(q, raw_ever, EVER, cut, rows),
                                            a.p30[rows])
            if interval == "central":
                mid, lo, hi = (f.quantile_if_fixed(p) for p in (0.5, 0.1, 0.9))
            else:  # from the question on: most fixes come soon, so start there
                mid, hi = (f.quantile_if_fixed(p) for p in (0.5, 0.8))
                lo = np.zeros(rows.size)
            give = a.p_ever[rows] >= MIN_P_EVER
            base = q.day[rows].astype(float)
            point = base + np.ceil(mid)
            if snap:
                nxt = q.next_release[rows].astype(float)
                point = np.where(nxt > 0, np.where(nxt >= point, nxt, _snap_later(point, nxt)),
                                 point)
            a.date[rows] = np.where(give, point, np.nan)
            a.low[rows] = np.where(give, base + np.floor(lo), np.nan)
            a.high[rows] = np.where(give, base + np.ceil(hi), np.nan)
            for r, g in zip(rows, give, strict=True):
                a.basis[r] = "history" if g else "unknown"
        elif fallback is not None:
            a.p30[rows] = fallback.p30[rows]
            a.p_ever[rows] = fallback.p_ever[rows]
        if progress:
            progress(n + 1, total)
    return a


def _stretches(q: Questions, refit: int, wanted: Any) -> Iterator[tuple[int, int, int, Any]]:
    """The walk forward: every ``refit`` days from the first question's day, the refit's
    index, the number of refits, its first day and the rows asked in its stretch (among
    ``wanted`` when given); stretches without a question are passed over."""
    days = np.unique(q.day)
    if days.size == 0:
        return
    cuts = list(range(int(days[0]), int(days[-1]) + 1, refit))
    for n, cut in enumerate(cuts):
        stretch = (q.day >= cut) & (q.day < cut + refit)
        if wanted is not None:
            stretch &= wanted
        rows = np.nonzero(stretch)[0]
        if rows.size:
            yield n, len(cuts), cut, rows


def _outcomes_by(q: Questions, train: Any, cut: int) -> tuple[Any, Any]:
    """What was known on ``cut`` of the ``train`` questions: days watched (up to a year)
    and days to the fix where it came before then (NaN where not yet)."""
    watched = np.minimum(cut - q.day[train], EVER).astype(float)
    to_fix = np.where(q.fixed[train] < cut, q.fixed[train] - q.day[train], np.nan)
    return watched, to_fix


MIN_RECALIBRATE = 500
"""Past answers whose outcome is known that recalibration needs."""


def _recalibrated(q: Questions, raw: Any, days: int, cut: int, rows: Any) -> Any:
    """The model's probabilities for ``rows`` mapped through an isotonic fit of what its
    earlier answers said against what came: only answers given before ``cut`` whose
    ``days``-day outcome was known by then (asked at least ``days`` days before). Too few of
    them: the probabilities as they are."""
    from sklearn.isotonic import IsotonicRegression

    past = ~np.isnan(raw) & (q.day + days <= cut)
    if past.sum() < MIN_RECALIBRATE:
        return raw[rows]
    y = (q.fixed[past] < q.day[past] + days).astype(float)
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
    iso.fit(raw[past], y)
    return np.asarray(iso.predict(raw[rows]), dtype=float)


# -- the calibrated hazard model ------------------------------------------------------------


HALF_LIFE = 120
"""Days after which a past question weighs half as much in the calibrated hazard model's
fit: the backport practice drifts, so recent questions say more about the next ones."""
RECALIBRATE_EVERY = 7
"""Days between recalibrations (cheap: the classifier is refitted only every ``refit``)."""
CALIBRATION_DAYS = {WINDOW: 180, EVER: 365}
"""Per horizon, how far back the earlier answers used by the recalibration go."""
CALIBRATION_BINS = 20
INTERVAL_COVERAGE = 0.80
LEVELS = tuple(round(0.05 * k, 2) for k in range(1, 20))
"""Quantile levels (of the fix date if it comes) the dates and intervals choose from."""
CAPS = (7, 10, 14, 21, 30, 45, 60, 90, 120, 180, 270, EVER)
"""Caps (days after the question) on a date or an interval's end the choice may apply."""


@dataclass(slots=True)
class _Walk:
    """What the calibrated model said at earlier refits (raw, before recalibration), for
    the recalibration and the conformal choice of levels later."""

    raw30: Any
    raw_ever: Any
    quantiles: Any
    """Days after the question of each :data:`LEVELS` quantile if the fix comes."""


def calibrated(q: Questions, names: Sequence[str] = CALIBRATED_FEATURES, *,
               label: str = "hazard-cal", refit: int = 28, seed: int = 0,
               fallback: Answers | None = None, wanted: Any | None = None,
               params: dict[str, Any] | None = None, half_life: float = HALF_LIFE,
               progress: Callable[[int, int], None] | None = None) -> Answers:
    """The discrete-time hazard model, calibrated walk forward.

    Every ``refit`` days the classifier is fitted on every question asked before (each
    pair's questions weigh 1/(its questions asked before the refit), times a decay of
    ``half_life`` days by the question's age). Every :data:`RECALIBRATE_EVERY` days its
    P(30 days) and P(a year) are mapped through an isotonic fit of its *earlier* raw
    answers (asked within :data:`CALIBRATION_DAYS`) against what came of them by that day,
    read with censoring: the answers are put in bins of the raw probability and each bin's
    life table (fixes known before the day; answers still open are censored at it) gives
    the observed share, so recent answers count without waiting a year for their outcome;
    one fit per bucket of days waited (the base rate's), or pooled where a bucket has too
    few. The date is ``min(quantile at level L, cap)`` of the fix date if it comes, snapped
    to the branch's next projected release, with (L, cap) the choice of smallest absolute
    error on the earlier dated answers whose fix came; the interval runs from the
    question's day to ``min(quantile at level L', cap')``, the narrowest (by median) choice
    that covered :data:`INTERVAL_COVERAGE` of those fixes (conformal). A date is given only
    when the recalibrated P(a year) is at least one half; before :data:`hazard.MIN_EVENTS`
    fixes, the answer is ``unknown`` with ``fallback``'s probabilities."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return _calibrated(q, names, label=label, refit=refit, seed=seed, fallback=fallback,
                           wanted=wanted, params=params or {}, half_life=half_life,
                           progress=progress)


def _calibrated(q: Questions, names: Sequence[str], *, label: str, refit: int, seed: int,
                fallback: Answers | None, wanted: Any | None, params: dict[str, Any],
                half_life: float, progress: Callable[[int, int], None] | None) -> Answers:
    a = _no_answers(label, len(q))
    x = q.matrix(names)
    walk = _Walk(np.full(len(q), np.nan), np.full(len(q), np.nan),
                 np.full((len(q), len(LEVELS)), np.nan))
    bucket = bucket_of(q.day - q.published)
    for n, total, cut, rows in _stretches(q, refit, wanted):
        train = np.nonzero(q.day < cut)[0]
        m = hazard.HazardModel(names, [c for c in CATEGORICAL if c in names], seed=seed,
                               **params)
        watched, to_fix = _outcomes_by(q, train, cut)
        seen = np.bincount(q.pair[train], minlength=len(q.pairs))
        weights = 0.5 ** ((cut - q.day[train]) / half_life) / seen[q.pair[train]]
        if not (train.size and m.fit(x[train], to_fix, watched, weights)):
            if fallback is not None:
                a.p30[rows], a.p_ever[rows] = fallback.p30[rows], fallback.p_ever[rows]
            if progress:
                progress(n + 1, total)
            continue
        f = m.forecast(x[rows])
        walk.raw30[rows], walk.raw_ever[rows] = f.p_within(WINDOW), f.p_within(EVER)
        for j, level in enumerate(LEVELS):
            walk.quantiles[rows, j] = f.quantile_if_fixed(level)
        for day in range(cut, cut + refit, RECALIBRATE_EVERY):
            sub = rows[(q.day[rows] >= day) & (q.day[rows] < day + RECALIBRATE_EVERY)]
            if sub.size:
                _answer(q, a, walk, bucket, day, sub)
        if progress:
            progress(n + 1, total)
    return a


def _answer(q: Questions, a: Answers, walk: _Walk, bucket: Any, day: int, rows: Any) -> None:
    """Recalibrated probabilities, dates and intervals for ``rows`` (asked from ``day`` on,
    before the next recalibration), from the answers given before ``day``."""
    given = ~np.isnan(walk.raw30) & (q.day < day)
    for raw, out, days in ((walk.raw30, a.p30, WINDOW), (walk.raw_ever, a.p_ever, EVER)):
        past = given & (q.day >= day - CALIBRATION_DAYS[days])
        for b in np.unique(bucket[rows]):
            mine = rows[bucket[rows] == b]
            own = np.nonzero(past & (bucket == b))[0]
            if own.size < MIN_RECALIBRATE:
                own = np.nonzero(past)[0]
            out[mine] = _censored_isotonic(q, raw, days, day, own, mine)
    a.p_ever[rows] = np.maximum(a.p_ever[rows], a.p30[rows])
    (point_level, point_cap), (high_level, high_cap) = _levels(
        q, walk.quantiles, ~np.isnan(a.date), day)
    base = q.day[rows].astype(float)
    point = base + np.minimum(np.ceil(walk.quantiles[rows, point_level]), point_cap)
    point = _snap(point, q.next_release[rows].astype(float))
    high = base + np.minimum(np.ceil(walk.quantiles[rows, high_level]), high_cap)
    give = (a.p_ever[rows] >= MIN_P_EVER) & ~np.isnan(point)
    a.date[rows] = np.where(give, point, np.nan)
    a.low[rows] = np.where(give, base, np.nan)
    a.high[rows] = np.where(give, high, np.nan)
    for r, g in zip(rows, give, strict=True):
        a.basis[r] = "history" if g else "unknown"


def _snap(point: Any, nxt: Any) -> Any:
    """``point`` moved to the branch's next projected release on or after it."""
    return np.where(nxt > 0, np.where(nxt >= point, nxt, _snap_later(point, nxt)), point)


def _censored_isotonic(q: Questions, raw: Any, days: int, cut: int, past: Any,
                       rows: Any) -> Any:
    """``raw[rows]`` mapped through an isotonic fit of earlier answers ``past`` against
    what came of them by ``cut``: per bin of the raw probability, the life table's P(fix
    within ``days``) with answers still open censored at ``cut``. Fewer than
    :data:`MIN_RECALIBRATE` earlier answers: as they are."""
    from sklearn.isotonic import IsotonicRegression

    if past.size < MIN_RECALIBRATE:
        return raw[rows]
    values = raw[past]
    distinct, b = np.unique(values, return_inverse=True)
    if distinct.size > CALIBRATION_BINS:
        edges = np.unique(np.quantile(values, np.linspace(0, 1, CALIBRATION_BINS + 1)))
        b = np.clip(np.searchsorted(edges, values, side="right") - 1, 0, edges.size - 2)
    to_fix = np.where(q.fixed[past] < cut, q.fixed[past] - q.day[past], np.nan).astype(float)
    watched = np.minimum(cut - q.day[past], EVER).astype(float)
    k = hazard.EDGES.index(days)
    xs, ys, ws = [], [], []
    for j in range(int(b.max()) + 1):
        sel = b == j
        if not sel.any():
            continue
        cdf = life_table(to_fix[sel], watched[sel])
        xs.append(float(values[sel].mean()))
        ys.append(float(cdf[k]))
        ws.append(float(sel.sum()))
    if len(xs) < 2:
        return raw[rows]
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
    iso.fit(np.asarray(xs), np.asarray(ys), sample_weight=np.asarray(ws))
    return np.asarray(iso.predict(raw[rows]), dtype=float)


CAME_AFTER = 30
"""The conformal choice reads answers asked at least this many days before: fixes of more
recent ones that came already are the quick ones only."""
CONFORMAL_DAYS = EVER
"""… and at most this many days before (the practice drifts)."""


def _levels(q: Questions, quantiles: Any, dated: Any, cut: int
            ) -> tuple[tuple[int, float], tuple[int, float]]:
    """(level index into :data:`LEVELS`, cap in days) of the date and of the interval's
    high end, from the earlier answers that gave a date (``dated``, asked from
    :data:`CAME_AFTER` to :data:`CONFORMAL_DAYS` days before ``cut``) and whose fix came
    before ``cut``: the date choice of smallest mean absolute error (its date snapped as
    the answers' are),
    the interval choice of smallest median width among those covering
    :data:`INTERVAL_COVERAGE` of them (none does: the highest level, uncapped). Too few of
    them: the median and the 80th percentile, uncapped."""
    came = np.nonzero((q.fixed < cut) & dated & (q.day < cut - CAME_AFTER)
                      & (q.day >= cut - CONFORMAL_DAYS))[0]
    default = (LEVELS.index(0.5), float(EVER)), (LEVELS.index(0.8), float(EVER))
    if came.size:
        came = came[~np.isnan(quantiles[came]).any(axis=1)]
    if came.size < MIN_RECALIBRATE:
        return default
    wait = (q.fixed[came] - q.day[came]).astype(float)
    base = q.day[came].astype(float)
    nxt = q.next_release[came].astype(float)
    qs = np.ceil(quantiles[came])
    best_point, best_mae = default[0], math.inf
    best_high, best_width = (len(LEVELS) - 1, float(EVER)), math.inf
    for j in range(len(LEVELS)):
        for cap in CAPS:
            span = np.minimum(qs[:, j], cap)
            mae = float(np.abs(_snap(base + span, nxt) - base - wait).mean())
            if mae < best_mae:
                best_point, best_mae = (j, float(cap)), mae
            if (wait <= span).mean() >= INTERVAL_COVERAGE:
                width = float(np.median(span))
                if width < best_width:
                    best_high, best_width = (j, float(cap)), width
    return best_point, best_high


def _rank_within_pair(pair: Any, key: Any) -> Any:
    """0, 1, 2… per pair in the order of ``key`` (a seeded random sample of questions)."""
    order = np.lexsort((key, pair))
    ranks = np.empty(pair.size, dtype=np.int64)
    sorted_pairs = pair[order]
    starts = np.r_[0, np.nonzero(np.diff(sorted_pairs))[0] + 1]
    run = np.arange(pair.size) - np.repeat(starts, np.diff(np.r_[starts, pair.size]))
    ranks[order] = run
    return ranks


# -- scoring -------------------------------------------------------------------------------


@dataclass(slots=True)
class Stat:
    value: float | None
    low: float | None = None
    high: float | None = None
    n_pairs: int = 0

    def __str__(self) -> str:
        if self.value is None:
            return "–"
        if self.low is None or self.high is None:
            return f"{self.value:.3f}"
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"


class Resampler:
    """Means over questions with a bootstrap over whole pairs (the same draws for every
    statistic, so differences and ratios are paired). ``pair_mean`` weighs every pair the
    same whatever its number of questions."""

    def __init__(self, pair: Any, n_pairs: int, draws: int = 400, seed: int = 7) -> None:
        self.pair = pair
        self.n_pairs = n_pairs
        rng = np.random.default_rng(seed)
        self.weights = rng.poisson(1.0, size=(draws, n_pairs)).astype(float)

    def _sums(self, values: Any, mask: Any | None) -> tuple[Any, Any]:
        ok = ~np.isnan(values)
        if mask is not None:
            ok &= mask
        sums = np.bincount(self.pair[ok], weights=values[ok], minlength=self.n_pairs)
        counts = np.bincount(self.pair[ok], minlength=self.n_pairs).astype(float)
        return sums, counts

    def mean(self, values: Any, mask: Any | None = None) -> Stat:
        sums, counts = self._sums(values, mask)
        if counts.sum() == 0:
            return Stat(None)
        point = float(sums.sum() / counts.sum())
        boot = (self.weights @ sums) / np.maximum(self.weights @ counts, 1e-9)
        lo, hi = np.quantile(boot, [0.05, 0.95])
        return Stat(point, float(lo), float(hi), int((counts > 0).sum()))

    def pair_mean(self, values: Any, mask: Any | None = None) -> Stat:
        sums, counts = self._sums(values, mask)
        has = counts > 0
        if not has.any():
            return Stat(None)
        means = np.divide(sums, counts, out=np.zeros(self.n_pairs), where=has)
        point = float(means[has].mean())
        w = self.weights * has
        boot = (w @ means) / np.maximum(w.sum(axis=1), 1e-9)
        lo, hi = np.quantile(boot, [0.05, 0.95])
        return Stat(point, float(lo), float(hi), int(has.sum()))

    def skill(self, loss: Any, reference: Any, mask: Any | None = None, *,
              pair_mean: bool = False) -> Stat:
        """1 - mean(loss) / mean(reference loss), on the questions where both are
        defined."""
        both = ~np.isnan(loss) & ~np.isnan(reference)
        if mask is not None:
            both &= mask
        s1, c = self._sums(np.where(both, loss, np.nan), None)
        s2, _ = self._sums(np.where(both, reference, np.nan), None)
        if pair_mean:
            has = c > 0
            s1 = np.divide(s1, c, out=np.zeros(self.n_pairs), where=has)
            s2 = np.divide(s2, c, out=np.zeros(self.n_pairs), where=has)
        if c.sum() == 0 or s2.sum() <= 0:
            return Stat(None)
        point = 1.0 - float(s1.sum() / s2.sum())
        denominator = self.weights @ s2
        boot = np.where(denominator > 0, 1.0 - (self.weights @ s1)
                        / np.maximum(denominator, 1e-12), np.nan)
        lo, hi = np.nanquantile(boot, [0.05, 0.95])
        return Stat(point, float(lo), float(hi), int((c > 0).sum()))

    def ratio(self, a: Any, b: Any, mask: Any | None = None) -> Stat:
        s = self.skill(a, b, mask)
        if s.value is None or s.low is None or s.high is None:
            return s
        return Stat(1.0 - s.value, 1.0 - s.high, 1.0 - s.low, s.n_pairs)


def brier(p: Any, y: Any) -> Any:
    return np.where(np.isnan(y), np.nan, (np.where(np.isnan(p), 0.5, p) - y) ** 2)


def log_loss(p: Any, y: Any) -> Any:
    pp = np.clip(np.where(np.isnan(p), 0.5, p), 1e-3, 1 - 1e-3)
    return np.where(np.isnan(y), np.nan, -(y * np.log(pp) + (1 - y) * np.log(1 - pp)))


@dataclass(slots=True)
class MethodScore:
    name: str
    brier30: Stat
    logloss30: Stat
    bss30: Stat
    bss30_pairs: Stat
    """The same skill with every pair weighing the same (see the module docstring)."""
    brier_ever: Stat
    logloss_ever: Stat
    bss_ever: Stat
    error: Stat
    """Censoring-aware absolute date error (days), every question."""
    mae_fixed: Stat
    """Absolute error of the date on questions whose fix came and which got a date."""
    dated_share: Stat
    coverage: Stat
    """Share of fixes that came inside the 80% interval (questions with an interval)."""
    width: float | None
    """Median interval width (days)."""
    fixed_window: float | None
    """Width of the window [T, T+w] that covers the same share of those fixes."""
    missing_p: float
    """Share of questions with no probability (scored as 0.5)."""
    by_basis: dict[str, int]


@dataclass(slots=True)
class ProtocolResult:
    start: dt.date
    end: dt.date
    data_end: dt.date
    questions: Questions
    scored: Any
    """Which questions are scored (asked from start to end)."""
    answers: dict[str, Answers]
    y30: Any
    y_ever: Any
    overall: dict[str, MethodScore]
    groups: dict[str, dict[str, MethodScore]]
    """Per group ("kind: longterm", "year: 2025") and method."""
    ratios: dict[str, Stat]
    """MAE and error of the models against the conditional-median rule."""
    notes: list[str] = field(default_factory=list)


def score_method(q: Questions, a: Answers, ref: Answers, y30: Any, y_ever: Any,
                 rs: Resampler, mask: Any | None = None) -> MethodScore:
    b30, bref30 = brier(a.p30, y30), brier(ref.p30, y30)
    be, bref_e = brier(a.p_ever, y_ever), brier(ref.p_ever, y_ever)
    err = date_error(q, a.date)
    came = q.fixed < np.minimum(q.observable, q.day + EVER) + 1
    dated = ~np.isnan(a.date)
    abs_fixed = np.where(came & dated, np.abs(a.date - q.fixed), np.nan)
    has_iv = came & ~np.isnan(a.low)
    inside = np.where(has_iv, ((q.fixed >= a.low) & (q.fixed <= a.high)).astype(float), np.nan)
    cov = rs.mean(inside, mask)
    sel = has_iv if mask is None else has_iv & mask
    widths = (a.high - a.low)[sel]
    width = float(np.median(widths)) if widths.size else None
    fixed_window = None
    if cov.value is not None:
        waits = np.sort((q.fixed - q.day)[sel].astype(float))
        k = int(np.ceil(cov.value * waits.size)) - 1
        fixed_window = float(waits[min(max(k, 0), waits.size - 1)]) if waits.size else None
    m = np.ones(len(q), dtype=bool) if mask is None else mask
    basis: dict[str, int] = {}
    for b, keep in zip(a.basis, m, strict=True):
        if keep:
            basis[b] = basis.get(b, 0) + 1
    return MethodScore(
        a.name, rs.mean(b30, mask), rs.mean(log_loss(a.p30, y30), mask),
        rs.skill(b30, bref30, mask), rs.skill(b30, bref30, mask, pair_mean=True),
        rs.mean(be, mask), rs.mean(log_loss(a.p_ever, y_ever), mask),
        rs.skill(be, bref_e, mask), rs.mean(err, mask), rs.mean(abs_fixed, mask),
        rs.mean(dated.astype(float), mask), cov, width, fixed_window,
        float(np.isnan(a.p30[m]).mean()) if m.any() else 0.0, basis)


def run(corpus: kc.Corpus, calendars: dict[str, Calendar], start: dt.date, end: dt.date, *,
        refit: int = 28, methods: Iterable[str] = METHODS, ages: Sequence[int] = AGES,
        sample: set[str] | None = None, draws: int = 400,
        progress: Callable[[str], None] | None = None) -> ProtocolResult:
    """The protocol of the module docstring; questions asked from ``start`` to ``end`` are
    scored (earlier ones are history only)."""
    say = progress or (lambda _m: None)
    say("questions")
    q = build_questions(corpus, ages=ages, sample=sample)
    scored = (q.day >= start.toordinal()) & (q.day <= end.toordinal())
    wanted = list(methods)
    answers: dict[str, Answers] = {}
    say("base rate")
    ref = base_rate(q)
    for name in wanted:
        say(name)
        if name == "base-rate":
            answers[name] = ref
        elif name == "next-release":
            answers[name] = next_release(q)
        elif name == "conditional-median":
            answers[name] = conditional_median(q)
        elif name == "kind-median":
            answers[name] = conditional_median(q, per_kind=True, snap=False)
        elif name == "current":
            answers[name] = current(q, corpus, calendars)
        elif name == "model-pvdb":
            answers[name] = model(q, PVDB_FEATURES, label=name, refit=refit, fallback=ref,
                                  wanted=scored, progress=_steps(say, name))
        elif name == "hazard":
            answers[name] = model(q, HAZARD_FEATURES, label=name, refit=refit, fallback=ref,
                                  wanted=scored, weigh_pairs="causal", per_pair=len(ages),
                                  recalibrate=True, progress=_steps(say, name))
        elif name == "hazard-cal":
            answers[name] = calibrated(q, refit=refit, fallback=ref, wanted=scored,
                                       progress=_steps(say, name))
        elif name == "model-full":
            answers[name] = model(q, FULL_FEATURES, label=name, refit=refit, fallback=ref,
                                  wanted=scored, progress=_steps(say, name))
        else:
            raise ValueError(f"unknown method {name}")
    say("scoring")
    y30, y_ever = outcome(q, WINDOW), outcome(q, EVER)
    rs = Resampler(q.pair, len(q.pairs), draws=draws)
    overall = {n: score_method(q, a, ref, y30, y_ever, rs, scored)
               for n, a in answers.items()}
    groups: dict[str, dict[str, MethodScore]] = {}
    for k, kind in enumerate(KINDS):
        mask = scored & (q.kind == k)
        if mask.any():
            groups[f"kind: {kind}"] = {n: score_method(q, a, ref, y30, y_ever, rs, mask)
                                       for n, a in answers.items()}
    years = np.array([dt.date.fromordinal(int(d)).year for d in q.day]) if len(q) else \
        np.zeros(0, dtype=int)
    for year in sorted(set(years.tolist())):
        mask = scored & (years == year)
        if not mask.any():
            continue
        groups[f"year: {year}"] = {n: score_method(q, a, ref, y30, y_ever, rs, mask)
                                   for n, a in answers.items()}
    ratios: dict[str, Stat] = {}
    if "conditional-median" in answers:
        cm = answers["conditional-median"]
        came = q.fixed < np.minimum(q.observable, q.day + EVER) + 1
        for n, a in answers.items():
            if n == "conditional-median":
                continue
            both = scored & came & ~np.isnan(a.date) & ~np.isnan(cm.date)
            ratios[f"{n}: MAE, fixes that came, both dated"] = rs.ratio(
                np.where(both, np.abs(a.date - q.fixed), np.nan),
                np.where(both, np.abs(cm.date - q.fixed), np.nan))
            ratios[f"{n}: censoring-aware error, every question"] = rs.ratio(
                date_error(q, a.date), date_error(q, cm.date), scored)
    return ProtocolResult(start, end, corpus.end, q, scored, answers, y30, y_ever, overall,
                          groups, ratios)


def _steps(say: Callable[[str], None], name: str) -> Callable[[int, int], None]:
    def step(done: int, total: int) -> None:
        say(f"{name}: refit {done} of {total}")
    return step


def reliability(p: Any, y: Any, pair: Any, bins: int = 10, *, weighted: bool = False
                ) -> list[tuple[float, float, int]]:
    """(mean predicted, observed share, questions) per decile of the prediction;
    ``weighted`` weighs every pair the same within a decile."""
    ok = ~np.isnan(y) & ~np.isnan(p)
    out: list[tuple[float, float, int]] = []
    if not ok.any():
        return out
    w_all = np.zeros(pair.size)
    if weighted:
        counts = np.bincount(pair[ok])
        w_all[ok] = 1.0 / counts[pair[ok]]
    else:
        w_all[ok] = 1.0
    b = np.zeros(pair.size, dtype=int)
    b[ok] = np.minimum((p[ok] * bins).astype(int), bins - 1)
    for k in range(bins):
        sel = ok & (b == k)
        if not sel.any():
            continue
        w = w_all[sel]
        out.append((float(np.average(p[sel], weights=w)), float(np.average(y[sel], weights=w)),
                    int(sel.sum())))
    return out


def median_or_none(values: Sequence[float]) -> float | None:
    return float(statistics.median(values)) if values else None


def fmt_days(value: float | None) -> str:
    return "–" if value is None or math.isnan(value) else f"{value:.0f}"



# -- targets -----------------------------------------------------------------------------


@dataclass(slots=True)
class Target:
    what: str
    figure: str
    met: bool | None


def calibration_misses(p: Any, y: Any, pair: Any, mask: Any, *, min_n: int = 100,
                       tolerance: float = 0.05) -> tuple[int, int, float]:
    """(deciles holding at least ``min_n`` questions, how many are off by more than
    ``tolerance``, the largest gap among them)."""
    sel = mask & ~np.isnan(p) & ~np.isnan(y)
    rows = reliability(p[sel], y[sel], pair[sel], weighted=False)
    big = [(m, o) for m, o, n in rows if n >= min_n]
    gaps = [abs(m - o) for m, o in big]
    return len(big), sum(g > tolerance for g in gaps), max(gaps) if gaps else 0.0


def targets(result: ProtocolResult, method: str) -> list[Target]:
    """The targets, for ``method``."""
    s = result.overall[method]
    q, a = result.questions, result.answers[method]
    out: list[Target] = []
    for what, stat in (("P(fix within 30 days): Brier skill vs bucketed base rate >= 0.2,"
                        " interval above 0", s.bss30),
                       ("P(fix within a year): Brier skill vs bucketed base rate >= 0.2,"
                        " interval above 0", s.bss_ever)):
        met = None if stat.value is None or stat.low is None else (
            stat.value >= 0.2 and stat.low > 0)
        out.append(Target(what, str(stat), met))
    for what, p, y in (("P(fix within 30 days) calibrated within 5 points in every decile"
                        " with >= 100 questions", a.p30, result.y30),
                       ("P(fix within a year) calibrated within 5 points in every decile"
                        " with >= 100 questions", a.p_ever, result.y_ever)):
        n, bad, worst = calibration_misses(p, y, q.pair, result.scored)
        out.append(Target(what, f"{n - bad} of {n} deciles within; largest gap"
                                f" {100 * worst:.1f} points", bad == 0 if n else None))
    ratio = result.ratios.get(f"{method}: MAE, fixes that came, both dated")
    if ratio is not None:
        out.append(Target("point dates: MAE <= 0.8 x the conditional-median rule's (fixes"
                          " that came, both dated)", str(ratio),
                          None if ratio.value is None else ratio.value <= 0.8))
    cov = s.coverage
    out.append(Target("80% intervals cover 75-85% of fixes that came", str(cov),
                      None if cov.value is None else 0.75 <= cov.value <= 0.85))
    out.append(Target("median interval width below a fixed window [T, T+w] of equal coverage",
                      f"{fmt_days(s.width)} vs {fmt_days(s.fixed_window)} days",
                      None if s.width is None or s.fixed_window is None
                      else s.width < s.fixed_window))
    return out


def choose_method(methods: Sequence[str]) -> str:
    """The method the targets are reported for: the model behind ``Pvdb.affecting`` when it
    was run, else the first model, else the last method."""
    for name in ("hazard-cal", "hazard", "model-pvdb", "model-full", "current"):
        if name in methods:
            return name
    return methods[-1]
