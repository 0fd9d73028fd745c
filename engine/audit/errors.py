"""Errors of the audit part, each with the exit code the README documents."""

from __future__ import annotations

from engine.errors import EXIT_CHECK, EXIT_INPUT, EXIT_NOT_FOUND, VigilError


class AuditError(VigilError):
    """Root of the audit part's errors."""

    exit_code = EXIT_INPUT


class ExportError(AuditError):
    """A file is not a decision-log export at all (unreadable, empty, or not NDJSON
    events); a readable export with a broken record is a :class:`ChainBroken`."""

    exit_code = EXIT_INPUT


class ChainBroken(AuditError):
    """The log or export does not verify: a check that did not pass (exit 1). The
    summary names the first broken record."""

    exit_code = EXIT_CHECK


class NoDecisions(AuditError):
    """The period asked about holds no decision."""

    exit_code = EXIT_NOT_FOUND
