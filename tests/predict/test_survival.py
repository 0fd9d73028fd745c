"""Kaplan-Meier lags with censoring, on constructed histories with known answers."""

from __future__ import annotations

import math

import pytest

from engine.predict.survival import Lag, LagHistory, weibull


def exponential(n: int, mean: float) -> list[float]:
    """``n`` evenly spread quantiles of an exponential distribution (deterministic)."""
    return [-mean * math.log(1 - (i + 0.5) / n) for i in range(n)]


def test_uniform_lags_give_their_quantiles() -> None:
    h = LagHistory([Lag(float(d), True) for d in range(1, 101)])
    assert h.conditional_quantile(0.5, 0.0) == 50
    assert h.conditional_quantile(0.1, 0.0) == 10
    assert h.conditional_quantile(0.9, 0.0) == 90
    # Having waited 50 days, the rest is uniform on 51..100.
    assert h.conditional_quantile(0.5, 50.5) == 75
    assert h.p_within(50.5, 10) == pytest.approx(10 / 50)
    assert h.p_ever(0.0) == pytest.approx(1.0)


def test_exponential_median_and_memorylessness() -> None:
    h = LagHistory([Lag(d, True) for d in exponential(400, 20.0)])
    assert h.conditional_quantile(0.5, 0.0) == pytest.approx(20 * math.log(2), rel=0.05)
    # Memoryless: after 30 days, 30 more days still has P = 1 - e^(-30/20).
    assert h.p_within(30.0, 30.0) == pytest.approx(1 - math.exp(-1.5), abs=0.04)


def test_censoring_is_not_ignored() -> None:
    """Half the lines are still open after 60 days: a naive median of the fixed ones
    (~10 days) would be far too confident; KM knows half may never come."""
    fixed = [Lag(float(d), True) for d in range(1, 21)]
    still_open = [Lag(60.0, False) for _ in range(20)]
    h = LagHistory(fixed + still_open)
    assert h.p_ever(0.0) == pytest.approx(0.5)
    assert h.conditional_quantile(0.9, 0.0) is None  # open: the curve never gets there
    assert h.quantile_if_fixed(0.5, 0.0) == 10
    assert h.events_after(15.0) == 5
    assert h.at_risk(15.0) == 25


def test_confidence_band_widens_small_histories() -> None:
    small = LagHistory([Lag(float(d), True) for d in (3, 5, 7, 9, 11, 13, 15, 17)])
    fast = small.quantile_if_fixed(0.1, 0.0, "fast")
    slow = small.quantile_if_fixed(0.9, 0.0, "slow")
    mid_lo = small.quantile_if_fixed(0.1, 0.0)
    mid_hi = small.quantile_if_fixed(0.9, 0.0)
    assert fast is not None and slow is not None and mid_lo is not None and mid_hi is not None
    assert fast <= mid_lo and slow >= mid_hi


def test_weibull_recovers_its_shape() -> None:
    # Exponential data is Weibull with shape 1 and scale = mean.
    fitter = weibull(LagHistory([Lag(d, True) for d in exponential(300, 15.0)]))
    assert fitter is not None
    assert fitter.rho_ == pytest.approx(1.0, abs=0.15)
    assert fitter.lambda_ == pytest.approx(15.0, rel=0.1)
    assert weibull(LagHistory([Lag(1.0, True)])) is None


def test_empty_history() -> None:
    h = LagHistory([])
    assert h.survival(10) == 1.0
    assert h.p_ever(0.0) == pytest.approx(0.0)
    with pytest.raises(ValueError):
        h.conditional_quantile(1.5, 0.0)
