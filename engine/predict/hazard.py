"""Time to a fix as a discrete-time hazard: P(the fix lands in this stretch of days | not
before), learnt by a gradient-boosted classifier (scikit-learn) from what the records and
the release log said at each past question.

Every question "when will the fix reach this branch, asked on day T" is cut into stretches
of days after T (:data:`EDGES`: a week at a time for the first month, then wider up to a
year). A past question contributes one row per stretch it was observed through: label 1 in
the stretch its fix landed, 0 in the stretches before; a question still open when the model
is fitted stops at that day (censoring, never counted as "no fix"; a stretch it was watched
only partly counts for that share). The classifier sees the
question's features plus the stretch, so the hazard can have any shape and depend on
everything at once (branch kind, how far behind the branch is, what the record says).

For a new question the hazards give the whole distribution of the fix date within a year:
P(fix within 30 days), P(fix within a year), and the 10th/50th/90th percentiles of the date
*if it comes* (linear within a stretch).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

EDGES = (0, 7, 14, 21, 30, 45, 60, 90, 120, 180, 270, 365)
"""Stretch boundaries in days after the question; the last is the horizon."""
HORIZON = EDGES[-1]
MIN_EVENTS = 200
"""Fixes the training questions must hold before the model is fitted at all."""


@dataclass(slots=True)
class Forecast:
    """Per question: the distribution of the fix date within the horizon."""

    cdf: Any
    """P(fix within EDGES[k] days), shape (n, len(EDGES)); column 0 is 0."""

    def p_within(self, days: int) -> Any:
        return _interp_cdf(self.cdf, float(days))

    def quantile_if_fixed(self, q: float) -> Any:
        """Days after the question of the ``q`` quantile of the fix date given that it comes
        within the horizon (NaN where the fix almost surely never comes)."""
        total = self.cdf[:, -1]
        out = np.full(total.shape, np.nan)
        ok = total > 1e-6
        target = q * total
        edges = np.asarray(EDGES, dtype=float)
        for i in np.nonzero(ok)[0]:
            row = self.cdf[i]
            k = int(np.searchsorted(row, target[i], side="left"))
            k = min(max(k, 1), len(EDGES) - 1)
            lo, hi = row[k - 1], row[k]
            frac = 0.0 if hi <= lo else (target[i] - lo) / (hi - lo)
            out[i] = edges[k - 1] + frac * (edges[k] - edges[k - 1])
        return out


def _interp_cdf(cdf: Any, days: float) -> Any:
    edges = np.asarray(EDGES, dtype=float)
    if days >= edges[-1]:
        return cdf[:, -1]
    k = int(np.searchsorted(edges, days, side="right"))
    lo, hi = edges[k - 1], edges[k]
    frac = (days - lo) / (hi - lo)
    return cdf[:, k - 1] + frac * (cdf[:, k] - cdf[:, k - 1])


def expand(elapsed_to_fix: Any, observed_for: Any) -> tuple[Any, Any, Any, Any]:
    """Person-period rows: for each question, (question index, stretch index, label,
    weight) for every stretch it was watched in. ``elapsed_to_fix`` is days from the
    question to the fix (NaN: none seen), ``observed_for`` the days it was watched. A
    question still open when watching stopped midway through a stretch counts for the
    share of the stretch it was watched (the actuarial life table's correction): leaving it
    out would count its stretch's fixes but not its misses, counting it whole would count a
    miss it was not watched long enough to see."""
    edges = np.asarray(EDGES, dtype=float)
    rows_q: list[Any] = []
    rows_k: list[Any] = []
    rows_y: list[Any] = []
    rows_w: list[Any] = []
    fix = np.asarray(elapsed_to_fix, dtype=float)
    seen = np.asarray(observed_for, dtype=float)
    for k in range(len(EDGES) - 1):
        start, stop = edges[k], edges[k + 1]
        event = ~np.isnan(fix) & (fix >= start) & (fix < stop) & (fix < seen)
        before = np.isnan(fix) | (fix >= start)  # no fix before this stretch
        take = before & (seen > start)
        idx = np.nonzero(take)[0]
        share = np.clip((seen[idx] - start) / (stop - start), 0.0, 1.0)
        rows_q.append(idx)
        rows_k.append(np.full(idx.size, k))
        rows_y.append(event[idx].astype(np.int8))
        rows_w.append(np.where(event[idx], 1.0, share))
    return (np.concatenate(rows_q), np.concatenate(rows_k), np.concatenate(rows_y),
            np.concatenate(rows_w))


class HazardModel:
    """The fitted classifier and what it needs to answer (feature names, categories)."""

    def __init__(self, features: Sequence[str], categorical: Sequence[str] = (), *,
                 max_iter: int = 100, learning_rate: float = 0.06, max_leaf_nodes: int = 15,
                 min_samples_leaf: int = 500, seed: int = 0) -> None:
        self.features = list(features)
        self.categorical = [c for c in categorical if c in self.features]
        self.params = dict(max_iter=max_iter, learning_rate=learning_rate,
                           max_leaf_nodes=max_leaf_nodes, min_samples_leaf=min_samples_leaf,
                           l2_regularization=1.0, early_stopping=False, random_state=seed)
        self.model: Any = None
        self.events = 0
        self.rows = 0

    def _design(self, x: Any, stretch: Any) -> Any:
        return np.column_stack([x, stretch.astype(float)])

    def fit(self, x: Any, elapsed_to_fix: Any, observed_for: Any,
            weights: Any | None = None) -> bool:
        """Fit on questions ``x`` (n × features); False (and no model) when they hold fewer
        than :data:`MIN_EVENTS` fixes."""
        from sklearn.ensemble import HistGradientBoostingClassifier

        q, k, y, share = expand(elapsed_to_fix, observed_for)
        self.events, self.rows = int(y.sum()), int(y.size)
        if self.events < MIN_EVENTS or self.events == y.size:
            self.model = None
            return False
        design = self._design(np.asarray(x, dtype=float)[q], k)
        mask = [f in self.categorical for f in self.features] + [False]
        model = HistGradientBoostingClassifier(categorical_features=mask, **self.params)
        w = share if weights is None else share * np.asarray(weights, dtype=float)[q]
        model.fit(design, y, sample_weight=w)
        self.model = model
        return True

    def forecast(self, x: Any) -> Forecast:
        """The distribution of the fix date for questions ``x``."""
        if self.model is None:
            raise RuntimeError("the hazard model is not fitted")
        x = np.asarray(x, dtype=float)
        n = x.shape[0]
        stretches = len(EDGES) - 1
        design = self._design(np.repeat(x, stretches, axis=0), np.tile(np.arange(stretches), n))
        hazard = self.model.predict_proba(design)[:, 1].reshape(n, stretches)
        survive = np.cumprod(1.0 - hazard, axis=1)
        cdf = np.column_stack([np.zeros(n), 1.0 - survive])
        return Forecast(cdf)
