"""Patch-availability prediction: when a fix not yet released on a line is expected.

Public surface::

    from engine.predict import estimator_for

    with Pvdb.open(path) as db:
        report = db.affecting(components, estimator=estimator_for(db))

``estimator_for`` learns from the PVDB's history (:meth:`engine.pvdb.Pvdb.history`) and the
release calendars; the backtest (``vigil predict backtest``) scores it against baselines on
the same history. The modules below are reachable for the CLI's backtest and queue
commands through the names exported here.
"""

from __future__ import annotations

from engine.predict.availability import Context, estimator_for, to_availability
from engine.predict.errors import CalendarError, PredictError, QueueError
from engine.predict.estimator import Basis, Estimate, Estimator, Question

__all__ = [
    "Basis",
    "CalendarError",
    "Context",
    "Estimate",
    "Estimator",
    "PredictError",
    "Question",
    "QueueError",
    "estimator_for",
    "to_availability",
]
