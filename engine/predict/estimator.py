"""The estimate: when will a fix reach this line, with what uncertainty, on what basis.

Evidence is taken strongest first:

1. **announced** — the vendor has published the date (an XSA's public release date under
   Xen's predisclosure policy, an operator-entered advisory date). The date is used as is.
2. **calendar** — an *exact* vendor calendar applies (Microsoft's second Tuesday, Oracle's
   quarterly CPU, Intel's IPU): the fix ships in one of its releases. Which one comes from
   history when there is enough of it, else from the calendar's ``P-NEXT`` prior.
   A line with an *approximate* cadence (Linux stable) uses the line's projected releases
   the same way when history is thin.
3. **history** — the time-to-fix of comparable lines (same product and kind of line) learnt
   with censoring (:mod:`engine.predict.survival`), conditional on the time already
   waited.
4. **unknown** — history too thin, the line no longer maintained, or most comparable lines
   never got the fix: no date, a wide interval, and the reason. Never a confident guess.

Every date is a UTC calendar date; the question's ``as_of`` must be timezone-aware.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from engine.errors import UsageError
from engine.predict.calendars import Calendar, find
from engine.predict.survival import LagHistory, LagIndex
from engine.pvdb import history as hist

MIN_EVENTS = 8
"""Fixes a history must have seen before it may give a date."""
MIN_AT_RISK = 4
"""Comparable cases that waited at least as long as this one, for a conditional estimate."""
MIN_LATER = 5
"""Fixes seen later than this case's current wait, for a dated "if it comes" estimate."""
MIN_P_EVER = 0.1
"""Below this chance that the fix reaches the line at all, no date is given."""
HORIZON_DAYS = 365
"""Upper end of an *unknown* estimate's interval (and of open intervals)."""
LOW_Q, HIGH_Q = 0.1, 0.9


class Basis(StrEnum):
    ANNOUNCED = "announced"
    CALENDAR = "calendar"
    HISTORY = "history"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Announcement:
    day: dt.date
    source: str


@dataclass(frozen=True, slots=True)
class Question:
    """A (vulnerability, line) with no fix on that line yet."""

    product: hist.ProductKey
    line: str | None
    as_of: dt.datetime
    reference: dt.date | None = None
    """When a fix first appeared on another line (or the vulnerability was disclosed)."""
    reference_what: str = ""
    vuln_id: str | None = None
    window_days: int = 30

    def __post_init__(self) -> None:
        if self.as_of.tzinfo is None or self.as_of.utcoffset() is None:
            raise UsageError(f"as-of time {self.as_of.isoformat()} has no time zone",
                             tip="give times with an offset or Z (UTC)")
        if self.window_days < 0:
            raise UsageError("the decision window must be zero days or more")

    @property
    def day(self) -> dt.date:
        """The as-of instant's UTC date: releases dated before it are known."""
        return self.as_of.astimezone(dt.UTC).date()


@dataclass(frozen=True, slots=True)
class Estimate:
    date: dt.date | None
    basis: Basis
    low: dt.date | None
    """10th percentile of the fix date (if the fix comes)."""
    high: dt.date | None
    """90th percentile (if the fix comes); ``None`` when open."""
    p_within: float | None
    """P(fix before ``as_of`` + window)."""
    window_days: int
    confidence: float | None
    """P(fix on or before ``date``)."""
    reason: str
    stratum: str = ""
    n_history: int = 0
    p_ever: float | None = None
    """P(a fix reaches this line at all); the date and interval are "if it comes"."""

    @property
    def interval(self) -> tuple[dt.date, dt.date] | None:
        """The interval with an open upper end shown as the horizon."""
        if self.low is None:
            return None
        return (self.low, self.high or self.low + dt.timedelta(days=HORIZON_DAYS))


class Estimator:
    """Answers :class:`Question` objects from one :class:`~engine.predict.history.History`,
    the calendars, and announced dates. ``public`` (vulnerability -> day it became public)
    keeps a case out of the history until then (the backtest's view of the past)."""

    def __init__(self, history: hist.History, calendars: dict[str, Calendar], *,
                 announced: dict[str, Announcement] | None = None,
                 min_events: int = MIN_EVENTS, min_at_risk: int = MIN_AT_RISK,
                 min_later: int = MIN_LATER,
                 snap_approximate: bool = True,
                 public: Mapping[str, dt.date] | None = None) -> None:
        self.history = history
        self.calendars = calendars
        self.announced = announced or {}
        self.min_events = min_events
        self.min_at_risk = min_at_risk
        self.min_later = min_later
        self.snap_approximate = snap_approximate
        self.public = public
        self._lags: dict[tuple[dt.date, hist.ProductKey, str | None], LagHistory] = {}
        self._index: LagIndex | None = None

    # -- evidence ------------------------------------------------------------------------

    def stratum(self, q: Question) -> str | None:
        if q.product == hist.KERNEL and q.line is not None:
            log = self.history.releases
            alive = [ln for ln in log.product_lines(hist.KERNEL) if log.alive(hist.KERNEL, ln,
                                                                               q.day)]
            return hist.kernel_stratum(log, q.line, alive, q.day)
        return None

    def _cached_lags(self, day: dt.date, product: hist.ProductKey,
                     stratum: str | None) -> LagHistory:
        key = (day, product, stratum)
        if key not in self._lags:
            if len(self._lags) > 512:
                self._lags.clear()
            if self._index is None:
                self._index = LagIndex(self.history.fixes, self.public)
            self._lags[key] = self._index.lags(day, product, stratum)
        return self._lags[key]

    def lag_history(self, q: Question) -> tuple[LagHistory, str]:
        """The most specific history with enough cases: the line's kind, else the
        product's lines pooled."""
        stratum = self.stratum(q)
        elapsed = self._elapsed(q)
        if stratum is not None:
            specific = self._cached_lags(q.day, q.product, stratum)
            if specific.events >= self.min_events and specific.at_risk(elapsed) >= \
                    self.min_at_risk:
                return specific, stratum
        return self._cached_lags(q.day, q.product, None), "all lines"

    def _elapsed(self, q: Question) -> float:
        if q.reference is None:
            return 0.0
        return max((q.day - q.reference).days - 0.5, 0.0)

    def _releases(self, q: Question, count: int) -> tuple[list[dt.date], str, bool]:
        """Upcoming release dates of the line: from an exact calendar, else projected from
        the line's own cadence. Returns (dates, what, exact)."""
        calendar = find(self.calendars, *q.product)
        if calendar is not None and calendar.precision == "exact" and \
                calendar.dtstart.date() <= q.day:
            start = dt.datetime.combine(q.day, dt.time(), tzinfo=dt.UTC) - dt.timedelta(
                microseconds=1)
            days = [d.date() for d in calendar.releases_after(start, count)]
            return days, calendar.summary, True
        if calendar is not None and q.line is not None:
            days = self.history.releases.projected(q.product, q.line, q.day, count)
            if days:
                return days, f"{q.line} release cadence", False
        return [], "", False

    # -- the estimate --------------------------------------------------------------------

    def estimate(self, q: Question) -> Estimate:
        # (1) announced
        if q.vuln_id and q.vuln_id in self.announced:
            ann = self.announced[q.vuln_id]
            if ann.day >= q.day:
                within = (ann.day - q.day).days < q.window_days
                return Estimate(ann.day, Basis.ANNOUNCED, ann.day, ann.day,
                                1.0 if within else 0.0, q.window_days, 1.0,
                                f"announced by {ann.source}")
        # the line must still be maintained
        if q.line is not None and self.history.releases.dates(q.product, q.line) and \
                not self.history.releases.alive(q.product, q.line, q.day):
            last = self.history.releases.last_before(q.product, q.line, q.day)
            return self._unknown(q, f"line {q.line} has had no release since {last}: it looks"
                                    " unmaintained; move to a maintained line")
        releases, what, exact = self._releases(q, 26)
        lags, stratum = self.lag_history(q)
        elapsed = self._elapsed(q)
        if q.reference is not None and lags.events >= self.min_events:
            if lags.at_risk(elapsed) >= self.min_at_risk and \
                    lags.events_after(elapsed) >= self.min_later:
                return self._from_history(q, lags, stratum, elapsed, releases, what, exact)
            return Estimate(
                None, Basis.UNKNOWN, q.day, None, lags.p_within(elapsed, q.window_days),
                q.window_days, None,
                f"waited {int(elapsed + 0.5)} days since {q.reference_what or q.reference}:"
                f" longer than all but {lags.events_after(elapsed)} of the {lags.events} fixes"
                f" seen ({lags.label})", stratum, lags.size, lags.p_ever(elapsed))
        if releases and (exact or q.reference is not None):
            # An approximate cadence says when the line releases, not that a fix exists:
            # it is used only once a fix exists on another line.
            return self._from_calendar(q, releases, what, exact, lags)
        if q.reference is None:
            return self._unknown(q, "no fix on any line yet, and no vendor calendar to"
                                    " expect one on", lags.size)
        return self._unknown(
            q, f"history too thin ({lags.events} fixes seen, {lags.at_risk(elapsed)} comparable"
               " cases this old) and no release calendar", lags.size)

    def _unknown(self, q: Question, reason: str, n: int = 0) -> Estimate:
        return Estimate(None, Basis.UNKNOWN, q.day, None, None, q.window_days, None, reason,
                        n_history=n)

    def _from_history(self, q: Question, lags: LagHistory, stratum: str, elapsed: float,
                      releases: list[dt.date], what: str, exact: bool) -> Estimate:
        """A cure model on the Kaplan-Meier curve: P(the fix ever reaches this line), and
        when it does, the 10th/50th/90th percentiles of its date."""
        assert q.reference is not None
        reference = q.reference
        p_within = lags.p_within(elapsed, q.window_days)
        ever = lags.p_ever(elapsed)
        n = lags.size
        label = f"{lags.label}, {lags.events} fixes of {n} lines"
        waited = f"waited {int(elapsed + 0.5)} days since {q.reference_what or reference}"
        if ever is None or ever < MIN_P_EVER:
            return Estimate(None, Basis.UNKNOWN, q.day, None, p_within, q.window_days, None,
                            f"comparable lines that waited this long almost never got the fix"
                            f" ({label}); {waited}", stratum, n, ever)
        mid = lags.quantile_if_fixed(0.5, elapsed)
        lo = lags.quantile_if_fixed(LOW_Q, elapsed, "fast")
        hi = lags.quantile_if_fixed(HIGH_Q, elapsed, "slow")
        snap = exact or self.snap_approximate

        def to_date(lag: float | None, snapped: bool) -> dt.date | None:
            if lag is None:
                return None
            day = max(reference + dt.timedelta(days=math.ceil(lag)), q.day)
            if snapped and releases:
                day = next((r for r in releases if r >= day), day)
            return day

        # An exact calendar moves every date to a release day; a projected cadence is
        # too rough to move the interval's ends (releases come early as often as late).
        date = to_date(mid, snap)
        if date is None:
            return self._unknown(q, f"history gives no date ({label})", n)
        low = to_date(lo, exact) or q.day
        high = to_date(hi, exact)
        base = max(lags.survival(elapsed), 1e-9)
        confidence = 1.0 - lags.survival((date - reference).days) / base
        reason = (f"{'calendar ' + what + ' with ' if exact else ''}history {label}"
                  f" ({stratum}); P(fix ever reaches this line) {ever:.2f}; {waited}")
        return Estimate(date, Basis.CALENDAR if exact else Basis.HISTORY, low, high,
                        p_within, q.window_days, round(min(max(confidence, 0.0), 1.0), 3),
                        reason, stratum, n, ever)

    def _from_calendar(self, q: Question, releases: list[dt.date], what: str, exact: bool,
                       lags: LagHistory) -> Estimate:
        calendar = find(self.calendars, *q.product)
        p = calendar.p_next if calendar is not None else 0.5

        def kth(prob: float) -> int:  # smallest k with P(fix in the first k releases) >= prob
            return max(1, math.ceil(math.log(1.0 - prob) / math.log(1.0 - p))) if p < 1 else 1

        def release(k: int) -> dt.date | None:
            return releases[k - 1] if k <= len(releases) else None

        end = q.day + dt.timedelta(days=q.window_days)
        inside = sum(1 for r in releases if r < end)
        p_within = 1.0 - (1.0 - p) ** inside
        date = release(kth(0.5))
        kind = "calendar" if exact else "projected cadence"
        return Estimate(date, Basis.CALENDAR, release(kth(LOW_Q)), release(kth(HIGH_Q)),
                        round(p_within, 3), q.window_days,
                        round(1.0 - (1.0 - p) ** kth(0.5), 3),
                        f"{kind} {what}: P(next release) {p} (history too thin:"
                        f" {lags.events} fixes seen)", n_history=lags.size)
