"""Patch-availability prediction: when a fix not yet released on a line is expected.

Public surface::

    from engine.predict import estimator_for

    with Pvdb.open(path) as db:
        report = db.affecting(components, estimator=estimator_for(db))

``estimator_for`` learns from the PVDB's history (:meth:`engine.pvdb.Pvdb.history`) and the
release calendars; the backtest (``vigil predict backtest``) scores it against baselines on
the same history (``run_backtest``, ``backtest_plots``, ``backtest_markdown``), and the honest
protocol on the kernel CNA's full record history (``load_kernel_cna``, ``run_protocol``,
``protocol_targets``, ``protocol_plots``, ``protocol_markdown``); ``prepare`` and
``recheck`` keep the queue of patched configurations to build for expected fixes.
"""

from __future__ import annotations

from engine.predict.availability import Context, estimator_for, to_availability
from engine.predict.backtest import BacktestResult
from engine.predict.backtest import run as run_backtest
from engine.predict.calendars import default as default_calendars
from engine.predict.errors import CalendarError, PredictError, QueueError
from engine.predict.estimator import Basis, Estimate, Estimator, Question
from engine.predict.kernel_cna import load as load_kernel_cna
from engine.predict.kernel_cna import sample as sample_cves
from engine.predict.prepare import prepare, recheck
from engine.predict.protocol import METHODS as PROTOCOL_METHODS
from engine.predict.protocol import ProtocolResult
from engine.predict.protocol import choose_method as choose_protocol_method
from engine.predict.protocol import run as run_protocol
from engine.predict.protocol import targets as protocol_targets
from engine.predict.protocol_report import markdown as protocol_markdown
from engine.predict.protocol_report import plots as protocol_plots
from engine.predict.queue import Queue
from engine.predict.report import markdown as backtest_markdown
from engine.predict.report import plots as backtest_plots

__all__ = [
    "PROTOCOL_METHODS",
    "BacktestResult",
    "Basis",
    "CalendarError",
    "Context",
    "Estimate",
    "Estimator",
    "PredictError",
    "ProtocolResult",
    "Question",
    "Queue",
    "QueueError",
    "backtest_markdown",
    "backtest_plots",
    "choose_protocol_method",
    "default_calendars",
    "estimator_for",
    "load_kernel_cna",
    "prepare",
    "protocol_markdown",
    "protocol_plots",
    "protocol_targets",
    "recheck",
    "run_backtest",
    "run_protocol",
    "sample_cves",
    "to_availability",
]
