"""Patch-availability prediction: when a fix not yet released on a line is expected.

Public surface::

    from engine.predict import estimator_for

    with Pvdb.open(path) as db:
        report = db.affecting(components, estimator=estimator_for(db))

``estimator_for`` learns from the PVDB's history (:meth:`engine.pvdb.Pvdb.history`) and the
release calendars; the backtest (``vigil predict backtest``) scores it against baselines on
the same history (``run_backtest``, ``backtest_plots``, ``backtest_markdown``); ``prepare`` and
``recheck`` keep the queue of patched configurations to build for expected fixes.
"""

from __future__ import annotations

from engine.predict.availability import Context, estimator_for, to_availability
from engine.predict.backtest import BacktestResult
from engine.predict.backtest import run as run_backtest
from engine.predict.calendars import default as default_calendars
from engine.predict.errors import CalendarError, PredictError, QueueError
from engine.predict.estimator import Basis, Estimate, Estimator, Question
from engine.predict.prepare import prepare, recheck
from engine.predict.queue import Queue
from engine.predict.report import markdown as backtest_markdown
from engine.predict.report import plots as backtest_plots

__all__ = [
    "BacktestResult",
    "Basis",
    "CalendarError",
    "Context",
    "Estimate",
    "Estimator",
    "PredictError",
    "Question",
    "Queue",
    "QueueError",
    "backtest_markdown",
    "backtest_plots",
    "default_calendars",
    "estimator_for",
    "prepare",
    "recheck",
    "run_backtest",
    "to_availability",
]
