"""Estimated availability for PVDB findings that have no fix on their own line.

:func:`estimator_for` gives the :class:`~engine.pvdb.AvailabilityEstimator` one
``Pvdb.affecting`` call is given; its :meth:`Context.availability` answers one
(vulnerability, component) whose line has no fix yet — either no fix exists at all, or
the only fixes are on other lines (another stable branch). The history it learns from is
the PVDB's (:meth:`engine.pvdb.Pvdb.history`, derived once per generation and stored).

Only products the predictor has a history for are estimated (the Linux kernel's stable
branches today); for anything else the finding keeps the availability it had.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine.predict import calendars as cal
from engine.predict.estimator import Basis, Estimate, Estimator, Question
from engine.pvdb import Availability, AvailabilityBasis
from engine.pvdb import history as hist

if TYPE_CHECKING:
    from engine.pvdb import Pvdb

ESTIMATED_PRODUCTS = (hist.KERNEL,)


@dataclass(slots=True)
class Context:
    estimator: Estimator
    as_of: dt.datetime
    window_days: int
    settings_key: Hashable = None

    @property
    def cache_key(self) -> Hashable:
        return ("engine.predict", self.window_days, self.settings_key)

    def estimate(self, product: hist.ProductKey, version: str, vuln_id: str,
                 fixed_dates: Mapping[str, dt.date]) -> Estimate | None:
        """The estimate for ``vuln_id`` on the line of ``version``; ``fixed_dates`` are the
        release dates of the fixed versions on other lines (only those before ``as_of``
        are used)."""
        if product not in ESTIMATED_PRODUCTS:
            return None
        if fixed_dates and all(len(v.split(".")) < 3 for v in fixed_dates):
            # Only mainline fixes named: the record says nothing about stable backports,
            # so the other line's fix (an upgrade) stays the answer.
            return None
        line = hist.kernel_line(version)
        day = self.as_of.astimezone(dt.UTC).date()
        known = sorted((d, v) for v, d in fixed_dates.items()
                       if d < day and hist.kernel_line(v) != line)
        reference, what = (known[0][0], f"{known[0][1]} ({hist.kernel_line(known[0][1])})") \
            if known else (None, "")
        return self.estimator.estimate(Question(product, line, self.as_of, reference, what,
                                                vuln_id, self.window_days))

    def availability(self, product: tuple[str, str], version: str, vuln_id: str,
                     fixed_dates: Mapping[str, dt.date]) -> Availability | None:
        est = self.estimate(product, version, vuln_id, fixed_dates)
        return None if est is None else to_availability(est)


def to_availability(est: Estimate) -> Availability:
    """The PVDB's Availability for an estimate: basis ``estimated`` with its confidence and
    10th–90th percentile interval; an *unknown* estimate gives no date (basis ``none``),
    the reason, and the horizon as its interval."""
    source = f"predicted ({est.basis.value}): {est.reason}"
    if est.basis is Basis.UNKNOWN or est.date is None:
        return Availability(date=None, basis=AvailabilityBasis.NONE, source=source,
                            confidence=None, interval=est.interval,
                            p_within_window=est.p_within, window_days=est.window_days)
    return Availability(date=est.date, basis=AvailabilityBasis.ESTIMATED, source=source,
                        confidence=est.confidence, interval=est.interval,
                        p_within_window=est.p_within, window_days=est.window_days)


def estimator_for(db: Pvdb, as_of: dt.datetime | None = None) -> Context:
    """The estimator for ``db``'s queries as of ``as_of`` (default now), with the calendars
    and window of ``db``'s settings."""
    settings = db.settings
    source = getattr(settings, "calendars", None)
    calendars = cal.default(source)
    window = int(getattr(settings, "predict_window_days", 30))
    return Context(Estimator(db.history(), calendars), as_of or dt.datetime.now(dt.UTC),
                   window, settings_key=str(source))
