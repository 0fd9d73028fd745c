"""Errors of the patch-availability predictor, under the engine's one root."""

from __future__ import annotations

from engine.errors import EXIT_CONFIG, EXIT_DATABASE, VigilError


class PredictError(VigilError):
    """Root of the predictor's errors."""


class CalendarError(PredictError):
    """A vendor release calendar (an iCalendar file) is invalid: a rule that does not
    parse, a missing start, an unknown time zone, an unknown property value."""

    exit_code = EXIT_CONFIG


class QueueError(PredictError):
    """The preparation queue's database could not be opened or written."""

    exit_code = EXIT_DATABASE
