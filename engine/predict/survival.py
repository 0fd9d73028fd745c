"""Time-to-fix learnt from history, with censoring for cases still open.

A :class:`LagHistory` holds lags in days (from a reference event, e.g. the first fix on
another line, to the fix on this line). A case whose fix has not appeared by the time of
the question is *censored* at its current age: it says "more than N days", which is
information a plain median would throw away (and the reason the estimate is not biased
towards the quick fixes). The Kaplan-Meier estimator (lifelines) gives S(t) = P(lag > t).

For a case that has already waited ``e`` days, everything is conditional on ``lag > e``:
the quantiles of the remaining wait and the probability of a fix within a window come from
S(t) / S(e). Where the curve never falls that far (some lines never get the fix: the
branch reaches end of life first), the upper quantile is *open* (``None``): the history
does not support a date, and the estimate says so rather than inventing one.
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from engine.pvdb import History
    from engine.pvdb import history as hist


@dataclass(frozen=True, slots=True)
class Lag:
    days: float
    observed: bool
    """True when the fix happened after ``days``; False when still open (censored) then."""


@dataclass(slots=True)
class LagHistory:
    """Lags of one stratum (vendor/product/line kind) and their Kaplan-Meier curve."""

    lags: Sequence[Lag]
    label: str = ""
    band_alpha: float = 0.2
    """Significance of the Kaplan-Meier confidence band used to widen intervals."""
    _days: Any = field(default=None, repr=False)
    _observed: Any = field(default=None, repr=False)
    _sorted_all: Any = field(default=None, repr=False)
    _sorted_events: Any = field(default=None, repr=False)
    _times: list[float] = field(default_factory=list, repr=False)
    _surv: list[float] = field(default_factory=list, repr=False)
    _low: list[float] = field(default_factory=list, repr=False)
    _high: list[float] = field(default_factory=list, repr=False)
    _fitted: bool = field(default=False, repr=False)

    @classmethod
    def from_arrays(cls, days: Any, observed: Any, label: str = "") -> LagHistory:
        """A history from arrays of lags and event flags (no :class:`Lag` objects)."""
        out = cls(_LazyLags(), label=label)
        out._days = np.asarray(days, dtype=float)
        out._observed = np.asarray(observed, dtype=bool)
        out.lags = _LazyLags(out._days, out._observed)
        return out

    def _arrays(self) -> tuple[Any, Any]:
        if self._days is None:
            self._days = np.array([lag.days for lag in self.lags], dtype=float)
            self._observed = np.array([lag.observed for lag in self.lags], dtype=bool)
        return self._days, self._observed

    def _sorted(self) -> tuple[Any, Any]:
        if self._sorted_all is None:
            days, observed = self._arrays()
            self._sorted_all = np.sort(days)
            self._sorted_events = np.sort(days[observed])
        return self._sorted_all, self._sorted_events

    @property
    def events(self) -> int:
        return int(self._arrays()[1].sum())

    @property
    def size(self) -> int:
        return int(self._arrays()[0].size)

    def at_risk(self, elapsed: float) -> int:
        """Cases in the history still open after ``elapsed`` days (observed or censored
        later): the sample the conditional estimate rests on."""
        everything, _ = self._sorted()
        return int(everything.size - np.searchsorted(everything, elapsed, side="right"))

    def events_after(self, elapsed: float) -> int:
        """Fixes in the history that came later than ``elapsed``: what a conditional
        "when" rests on."""
        _, events = self._sorted()
        return int(events.size - np.searchsorted(events, elapsed, side="right"))

    def _fit(self) -> None:
        if self._fitted:
            return
        self._fitted = True
        days, observed = self._arrays()
        if not days.size:
            return
        from lifelines import KaplanMeierFitter

        kmf = KaplanMeierFitter(alpha=self.band_alpha)
        kmf.fit(days, event_observed=observed)
        sf = kmf.survival_function_
        self._times = [float(t) for t in sf.index]
        self._surv = [float(v) for v in sf.iloc[:, 0]]
        band = kmf.confidence_interval_survival_function_
        self._low = [float(v) if math.isfinite(v) else s
                     for v, s in zip(band.iloc[:, 0], self._surv, strict=True)]
        self._high = [float(v) if math.isfinite(v) else s
                      for v, s in zip(band.iloc[:, 1], self._surv, strict=True)]

    def survival(self, t: float) -> float:
        """S(t) = P(lag > t), the Kaplan-Meier step function (1.0 before any event)."""
        self._fit()
        if not self._times:
            return 1.0
        i = bisect.bisect_right(self._times, t) - 1
        return 1.0 if i < 0 else self._surv[i]

    def conditional_quantile(self, q: float, elapsed: float) -> float | None:
        """Smallest lag t >= elapsed with P(lag <= t | lag > elapsed) >= q, or None when
        the curve never gets there (open)."""
        if not 0.0 < q < 1.0:
            raise ValueError("q must be in (0, 1)")
        self._fit()
        base = self.survival(elapsed)
        if base <= 0.0:
            return None
        target = base * (1.0 - q)
        for t, s in zip(self._times, self._surv, strict=True):
            if t > elapsed and s <= target + 1e-12:
                return t
        return None

    def p_ever(self, elapsed: float) -> float | None:
        """P(the fix comes at all | still open after ``elapsed``), from the curve's tail:
        cases censored beyond the last fix seen count as never fixed so far."""
        base = self.survival(elapsed)
        if base <= 0.0:
            return None
        return 1.0 - self.tail_mass() / base

    def quantile_if_fixed(self, q: float, elapsed: float, band: str = "mid") -> float | None:
        """The ``q`` quantile of the lag among cases that do get fixed, given still open
        after ``elapsed`` (a cure model: "if it comes, when"). ``band`` reads the curve
        itself (``mid``) or the edge of its confidence band where fixes come sooner
        (``fast``) or later (``slow``): sampling uncertainty of a small history widens the
        interval instead of being ignored."""
        if not 0.0 < q < 1.0:
            raise ValueError("q must be in (0, 1)")
        self._fit()
        curve = {"mid": self._surv, "fast": self._low, "slow": self._high}[band]
        if not curve:
            return None
        i = bisect.bisect_right(self._times, elapsed) - 1
        base = 1.0 if i < 0 else curve[i]
        if base <= 0.0:
            return None
        ever = 1.0 - curve[-1] / base
        if ever <= 0.0:
            return None
        for t, s in zip(self._times, curve, strict=True):
            if t > elapsed and (1.0 - s / base) / ever >= q - 1e-12:
                return t
        return None

    def p_within(self, elapsed: float, window: float) -> float | None:
        """P(fix within ``window`` more days | still open after ``elapsed``)."""
        base = self.survival(elapsed)
        if base <= 0.0:
            return None
        return 1.0 - self.survival(elapsed + window) / base

    def tail_mass(self) -> float:
        """S at the last observed time: the share of cases the history never saw fixed."""
        self._fit()
        return self._surv[-1] if self._surv else 1.0

    def curve(self) -> tuple[list[float], list[float]]:
        """The KM step function's (times, survival), for plots."""
        self._fit()
        return list(self._times), list(self._surv)


def weibull(history: LagHistory) -> Any:
    """A parametric Weibull fit with the same censoring (lifelines), or None when there
    are too few events. Zero lags are moved to half a day (Weibull needs t > 0)."""
    if history.events < 3:
        return None
    from lifelines import WeibullFitter

    fitter = WeibullFitter()
    days, observed = history._arrays()
    durations = np.maximum(days, 0.5)
    try:
        fitter.fit(durations, event_observed=observed)
    except Exception:  # lifelines raises several convergence error types
        return None
    if not (math.isfinite(fitter.lambda_) and math.isfinite(fitter.rho_)):
        return None
    return fitter


class _LazyLags(Sequence[Lag]):
    """The :class:`Lag` view of a history built from arrays (made only when asked)."""

    def __init__(self, days: Any = None, observed: Any = None) -> None:
        self._days = days if days is not None else np.zeros(0)
        self._observed = observed if observed is not None else np.zeros(0, dtype=bool)

    def __len__(self) -> int:
        return int(self._days.size)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return [Lag(float(d), bool(o)) for d, o in zip(self._days[i], self._observed[i],
                                                           strict=True)]
        return Lag(float(self._days[i]), bool(self._observed[i]))


@dataclass(slots=True)
class _Stratum:
    start: Any
    """When each case could first be seen (ordinal days), sorted."""
    reference: Any
    fixed: Any
    """Ordinal day of the fix, or a huge number for none."""
    vulns: list[str]


_NEVER = np.iinfo(np.int64).max // 4


class LagIndex:
    """The fixes of a history sorted once per (product, stratum), so that the lags known
    on any day are a prefix found by bisection and two array operations, not a walk over
    every fix.

    ``public`` (vulnerability -> day) holds back a case until its vulnerability was public:
    a case is seen from the later of its reference and that day."""

    def __init__(self, fixes: Sequence[hist.LineFix], public: Mapping[str, dt.date] | None = None
                 ) -> None:
        groups: dict[tuple[tuple[str, str], str | None], list[hist.LineFix]] = {}
        for f in fixes:
            groups.setdefault((f.product, f.stratum), []).append(f)
            groups.setdefault((f.product, None), []).append(f)
        self._strata: dict[tuple[tuple[str, str], str | None], _Stratum] = {}
        for key, items in groups.items():
            starts = np.array([_start(f, public) for f in items], dtype=np.int64)
            order = np.argsort(starts, kind="stable")
            ref = np.array([f.reference.toordinal() for f in items], dtype=np.int64)
            fixed = np.array([f.fixed.toordinal() if f.fixed is not None else _NEVER
                              for f in items], dtype=np.int64)
            self._strata[key] = _Stratum(starts[order], ref[order], fixed[order],
                                         [items[i].vuln_id for i in order])

    def lags(self, as_of: dt.date, product: tuple[str, str], stratum: str | None = None, *,
             exclude: str | None = None) -> LagHistory:
        """As :func:`lags`, for one product."""
        label = "/".join(product)
        label = f"{label}:{stratum}" if stratum else label
        group = self._strata.get((product, stratum))
        if group is None:
            return LagHistory.from_arrays([], [], label)
        day = as_of.toordinal()
        n = int(np.searchsorted(group.start, day, side="left"))
        ref, fixed = group.reference[:n], group.fixed[:n]
        observed = fixed < day
        days = np.where(observed, fixed - ref, day - ref - 0.5).astype(float)
        keep = observed | (days > 0)
        if exclude is not None:
            keep &= np.array([v != exclude for v in group.vulns[:n]], dtype=bool)
        return LagHistory.from_arrays(days[keep], observed[keep], label)


def _start(f: hist.LineFix, public: Mapping[str, dt.date] | None) -> int:
    day = f.reference
    if public is not None:
        seen = public.get(f.vuln_id)
        if seen is not None and seen > day:
            day = seen
    return day.toordinal()


def lags(history: History, as_of: dt.date, product: tuple[str, str] | None = None,
         stratum: str | None = None, *, exclude: str | None = None) -> LagHistory:
    """The lags of ``history`` known before ``as_of``: fixed lines as events, open lines
    (including lines that stopped releasing) censored at their age. ``exclude`` leaves out
    one vulnerability (the one being asked about). A line that stopped releasing without
    the fix is not "lost to follow-up": it is a line the fix never reached, so it stays in
    the curve's plateau (censored at its full age) rather than at its last release.

    For many days on one history, build a :class:`LagIndex` once and ask it."""
    if product is not None:
        return LagIndex(history.fixes).lags(as_of, product, stratum, exclude=exclude)
    # every product pooled
    fixes = [replace(f, product=("*", "*")) for f in history.fixes]
    found = LagIndex(fixes).lags(as_of, ("*", "*"), stratum, exclude=exclude)
    found.label = f"all:{stratum}" if stratum else "all"
    return found
