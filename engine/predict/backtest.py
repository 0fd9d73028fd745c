"""Replay history and score the predictor against what happened.

At each as-of date T (every ``step`` days from START to END) the predictor sees only what
was released before T: fixes (and so the lags they close), line releases, the censoring of
cases still open at T. For every (vulnerability, line) open at T — a fix exists on another
line since before T, none on this line yet, the line still maintained — it predicts, and
the prediction is scored against the line's actual fix date:

* absolute error in days of the point estimate (instances whose fix happened and whose
  estimate gave a date);
* coverage of the stated 10th–90th percentile interval (nominal 80%); an interval whose
  upper end is open covers a fix that never came;
* Brier score of P(fix within 30 days of T), where the outcome is known (the fix came, or
  the data runs at least 30 days past T).

Two naive baselines are scored on the same instances: **next release** (the line's next
release by its calendar or projected cadence: "the fix ships in the next one") and
**median lag** (the global median lag of every fix seen before T, from the reference
date, never before T). A point baseline's P(within 30 days) is 1 or 0.

The calendars are also checked against the releases that happened (Microsoft's monthly
updates, Intel's platform updates): at each T, the rule's next release against the actual
next one.
"""

from __future__ import annotations

import datetime as dt
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from engine.predict.calendars import Calendar, find
from engine.predict.estimator import Basis, Estimate, Estimator, Question
from engine.pvdb import history as hist

WINDOW = 30
PRODUCT_NAMES: dict[hist.ProductKey, str] = {
    hist.KERNEL: "linux kernel (stable backports)",
    hist.QUBES: "xen / Qubes OS (QSB after XSA)",
    hist.INTEL_MICROCODE: "intel microcode (later platforms)",
}
_QUESTION_LINE = {hist.QUBES: "qubes", hist.INTEL_MICROCODE: "microcode"}


@dataclass(frozen=True, slots=True)
class Instance:
    as_of: dt.date
    fix: hist.LineFix
    estimate: Estimate
    truth: dt.date | None
    censor: dt.date
    """The last day the truth could have been observed (data end or line end)."""
    next_release: dt.date | None
    median_lag: dt.date | None

    @property
    def outcome30(self) -> int | None:
        end = self.as_of + dt.timedelta(days=WINDOW)
        if self.truth is not None:
            return 1 if self.truth < end else 0
        return 0 if self.censor >= end else None


@dataclass(slots=True)
class Score:
    """Metrics of one group of instances."""

    instances: int = 0
    pairs: int = 0
    with_truth: int = 0
    dated: int = 0
    mae: float | None = None
    median_ae: float | None = None
    coverage: float | None = None
    covered_n: int = 0
    brier: float | None = None
    brier_n: int = 0
    brier_fixed: float | None = None
    """Brier over the instances whose fix did come (never-fixed lines left out)."""
    unknown: int = 0
    by_basis: dict[str, int] = field(default_factory=dict)
    next_mae: float | None = None
    next_median_ae: float | None = None
    next_brier: float | None = None
    median_mae: float | None = None
    median_median_ae: float | None = None
    median_brier: float | None = None

    @property
    def better_baseline(self) -> tuple[str, float | None]:
        options = [(n, v) for n, v in (("next release", self.next_mae),
                                       ("median lag", self.median_mae)) if v is not None]
        return min(options, key=lambda x: x[1]) if options else ("", None)

    @property
    def error_target_met(self) -> bool | None:
        _, best = self.better_baseline
        if self.mae is None or best is None:
            return None
        return self.mae <= best / 2

    @property
    def coverage_target_met(self) -> bool | None:
        return None if self.coverage is None else abs(self.coverage - 0.8) <= 0.05


@dataclass(slots=True)
class CalendarCheck:
    name: str
    n: int
    mae: float | None
    exact_share: float | None
    misses: list[tuple[dt.date, dt.date, dt.date]]
    """(as-of, rule's next release, actual next release) where they differ."""


@dataclass(slots=True)
class BacktestResult:
    start: dt.date
    end: dt.date
    step: int
    instances: list[Instance]
    scores: dict[str, Score]
    calendar_checks: list[CalendarCheck]
    data_end: dt.date


def as_of_dates(start: dt.date, end: dt.date, step: int) -> list[dt.date]:
    out = []
    day = start
    while day <= end:
        out.append(day)
        day += dt.timedelta(days=step)
    return out


def run(history: hist.History, calendars: dict[str, Calendar], start: dt.date,
        end: dt.date, *, step: int = 7,
        products: Iterable[hist.ProductKey] = tuple(PRODUCT_NAMES),
        estimator_factory: Callable[[hist.History], Estimator] | None = None,
        progress: Callable[[int, int], None] | None = None) -> BacktestResult:
    """Replay every ``step`` days from ``start`` to ``end`` (see the module docstring)."""
    estimator = (estimator_factory or (lambda h: Estimator(h, calendars)))(history)
    wanted = set(products)
    fixes = [f for f in history.fixes if f.product in wanted]
    dates = as_of_dates(start, end, step)
    instances: list[Instance] = []
    for n, day in enumerate(dates, start=1):
        as_of = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
        median = _global_median(history, day)
        for f in fixes:
            if not (f.reference < day and (f.fixed is None or f.fixed >= day)):
                continue
            line = _QUESTION_LINE.get(f.product, f.line)
            log = history.releases
            if log.dates(f.product, line) and not log.alive(f.product, line, day):
                continue  # not a question anyone would ask: the line is gone
            q = Question(f.product, line, as_of, f.reference, f.reference_what, f.vuln_id,
                         WINDOW)
            est = estimator.estimate(q)
            upcoming, _, _ = estimator._releases(q, 1)
            if not upcoming:  # no calendar: the line's own cadence, naively
                upcoming = log.projected(f.product, line, day, 1)
            censor = history.end
            last = log.dates(f.product, line)
            if f.fixed is None and last:
                censor = min(censor, last[-1])
            baseline_median = (max(day, f.reference + dt.timedelta(days=round(median)))
                               if median is not None else None)
            instances.append(Instance(day, f, est, f.fixed, censor,
                                      upcoming[0] if upcoming else None, baseline_median))
        if progress:
            progress(n, len(dates))
    groups: dict[str, list[Instance]] = defaultdict(list)
    for inst in instances:
        groups[PRODUCT_NAMES[inst.fix.product]].append(inst)
        groups["overall"].append(inst)
    scores = {name: score(items) for name, items in groups.items()}
    checks = [c for c in (_calendar_check(history, calendars, hist.MICROSOFT, start, end, step),
                          _calendar_check(history, calendars, hist.INTEL_MICROCODE,
                                          max(start, dt.date(2022, 2, 1)), end, step,
                                          ipu_only=True))
              if c is not None]
    return BacktestResult(start, end, step, instances, scores, checks, history.end)


def _global_median(history: hist.History, day: dt.date) -> float | None:
    lags = [(f.fixed - f.reference).days for f in history.fixes
            if f.fixed is not None and f.fixed < day]
    return float(statistics.median(lags)) if lags else None


def score(items: list[Instance]) -> Score:
    s = Score(instances=len(items),
              pairs=len({(i.fix.vuln_id, i.fix.line, i.fix.product) for i in items}))
    for i in items:
        s.by_basis[i.estimate.basis.value] = s.by_basis.get(i.estimate.basis.value, 0) + 1
    s.unknown = s.by_basis.get(Basis.UNKNOWN.value, 0)
    truth = [i for i in items if i.truth is not None]
    s.with_truth = len(truth)
    dated = [i for i in truth if i.estimate.date is not None]
    s.dated = len(dated)
    if dated:
        errors = [abs((i.estimate.date - i.truth).days) for i in dated]  # type: ignore[operator]
        s.mae, s.median_ae = statistics.fmean(errors), float(statistics.median(errors))
        nxt = [abs((i.next_release - i.truth).days) for i in dated  # type: ignore[operator]
               if i.next_release is not None]
        if nxt:
            s.next_mae, s.next_median_ae = statistics.fmean(nxt), float(statistics.median(nxt))
        med = [abs((i.median_lag - i.truth).days) for i in dated  # type: ignore[operator]
               if i.median_lag is not None]
        if med:
            s.median_mae, s.median_median_ae = (statistics.fmean(med),
                                                float(statistics.median(med)))
    hits = [est.low <= i.truth and (est.high is None or i.truth <= est.high)
            for i in truth for est in (i.estimate,)
            if est.date is not None and est.low is not None and i.truth is not None]
    if hits:
        s.coverage, s.covered_n = sum(hits) / len(hits), len(hits)
    briers: list[float] = []
    next_b: list[float] = []
    med_b: list[float] = []
    for i in items:
        outcome = i.outcome30
        if outcome is None:
            continue
        p = i.estimate.p_within if i.estimate.p_within is not None else 0.5
        briers.append((p - outcome) ** 2)
        end = i.as_of + dt.timedelta(days=WINDOW)
        if i.next_release is not None:
            next_b.append((float(i.next_release < end) - outcome) ** 2)
        if i.median_lag is not None:
            med_b.append((float(i.median_lag < end) - outcome) ** 2)
    if briers:
        s.brier, s.brier_n = statistics.fmean(briers), len(briers)
    fixed_b = [((i.estimate.p_within if i.estimate.p_within is not None else 0.5)
                - i.outcome30) ** 2 for i in truth if i.outcome30 is not None]
    s.brier_fixed = statistics.fmean(fixed_b) if fixed_b else None
    s.next_brier = statistics.fmean(next_b) if next_b else None
    s.median_brier = statistics.fmean(med_b) if med_b else None
    return s


def _calendar_check(history: hist.History, calendars: dict[str, Calendar],
                    product: hist.ProductKey, start: dt.date, end: dt.date, step: int,
                    *, ipu_only: bool = False) -> CalendarCheck | None:
    calendar = find(calendars, *product)
    if calendar is None:
        return None
    line = "monthly" if product == hist.MICROSOFT else "ipu" if ipu_only else "microcode"
    actual = history.releases.dates(product, line)
    if not actual:
        return None
    months = {(d.year, d.month) for d in history.releases.dates(product, line)}
    errors: list[int] = []
    misses: list[tuple[dt.date, dt.date, dt.date]] = []
    for day in as_of_dates(start, end, step):
        truth = next((d for d in actual if d >= day), None)
        if truth is None or (truth - day).days > 100:
            continue
        if product == hist.MICROSOFT and not _covered(months, day, truth):
            continue
        start_instant = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
        predicted = calendar.next_release(start_instant - dt.timedelta(microseconds=1))
        if predicted is None:
            continue
        err = (predicted.date() - truth).days
        errors.append(abs(err))
        if err:
            misses.append((day, predicted.date(), truth))
    if not errors:
        return None
    return CalendarCheck(calendar.summary, len(errors), statistics.fmean(errors),
                         sum(1 for e in errors if e == 0) / len(errors), misses)


def _covered(months: set[tuple[int, int]], day: dt.date, truth: dt.date) -> bool:
    """Every month from ``day`` to ``truth`` is in the data (the snapshot lacks some)."""
    y, m = day.year, day.month
    while (y, m) <= (truth.year, truth.month):
        if (y, m) not in months:
            return False
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return True
