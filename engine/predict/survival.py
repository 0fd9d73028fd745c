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
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from engine.pvdb import History


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
    _times: list[float] = field(default_factory=list, repr=False)
    _surv: list[float] = field(default_factory=list, repr=False)
    _low: list[float] = field(default_factory=list, repr=False)
    _high: list[float] = field(default_factory=list, repr=False)
    _fitted: bool = field(default=False, repr=False)

    @property
    def events(self) -> int:
        return sum(1 for lag in self.lags if lag.observed)

    @property
    def size(self) -> int:
        return len(self.lags)

    def at_risk(self, elapsed: float) -> int:
        """Cases in the history still open after ``elapsed`` days (observed or censored
        later): the sample the conditional estimate rests on."""
        return sum(1 for lag in self.lags if lag.days > elapsed)

    def events_after(self, elapsed: float) -> int:
        """Fixes in the history that came later than ``elapsed``: what a conditional
        "when" rests on."""
        return sum(1 for lag in self.lags if lag.observed and lag.days > elapsed)

    def _fit(self) -> None:
        if self._fitted:
            return
        self._fitted = True
        if not self.lags:
            return
        from lifelines import KaplanMeierFitter

        kmf = KaplanMeierFitter(alpha=self.band_alpha)
        kmf.fit(np.array([lag.days for lag in self.lags], dtype=float),
                event_observed=np.array([lag.observed for lag in self.lags], dtype=bool))
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
    durations = np.array([max(lag.days, 0.5) for lag in history.lags], dtype=float)
    observed = np.array([lag.observed for lag in history.lags], dtype=bool)
    try:
        fitter.fit(durations, event_observed=observed)
    except Exception:  # lifelines raises several convergence error types
        return None
    if not (math.isfinite(fitter.lambda_) and math.isfinite(fitter.rho_)):
        return None
    return fitter


def lags(history: History, as_of: dt.date, product: tuple[str, str] | None = None,
         stratum: str | None = None, *, exclude: str | None = None) -> LagHistory:
    """The lags of ``history`` known before ``as_of``: fixed lines as events, open lines
    (including lines that stopped releasing) censored at their age. ``exclude`` leaves out
    one vulnerability (the one being asked about)."""
    out: list[Lag] = []
    for f in history.fixes:
        if product is not None and f.product != product:
            continue
        if stratum is not None and f.stratum != stratum:
            continue
        if f.reference >= as_of or f.vuln_id == exclude:
            continue
        if f.fixed is not None and f.fixed < as_of:
            out.append(Lag(float((f.fixed - f.reference).days), True))
            continue
        # Still open at as_of. A line that stopped releasing without the fix is not "lost
        # to follow-up": it is a line the fix never reached, so it stays in the curve's
        # plateau (censored at its full age) rather than at its last release.
        age = (as_of - f.reference).days - 0.5
        if age > 0:
            out.append(Lag(age, False))
    label = "/".join(product) if product else "all"
    return LagHistory(out, label=f"{label}:{stratum}" if stratum else label)
