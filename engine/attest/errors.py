"""Errors of host verification. Each names the verification step that failed."""

from __future__ import annotations

from engine.errors import EXIT_INPUT, VigilError


class AttestError(VigilError):
    """Evidence was rejected. ``step`` is the numbered verification step (see
    :mod:`engine.attest`) or the parser that refused the input."""

    exit_code = EXIT_INPUT

    def __init__(self, step: str, reason: str, *, tip: str | None = None) -> None:
        super().__init__(f"{step}: {reason}", tip=tip)
        self.step = step
        self.reason = reason


class EventLogError(AttestError):
    """A measured-boot event log cannot be parsed or replayed."""

    def __init__(self, reason: str, *, offset: int | None = None, event: int | None = None,
                 tip: str | None = None) -> None:
        where = []
        if event is not None:
            where.append(f"event {event}")
        if offset is not None:
            where.append(f"offset {offset}")
        suffix = f" ({', '.join(where)})" if where else ""
        super().__init__("event log", reason + suffix, tip=tip)
        self.offset = offset
        self.event = event


class QuoteError(AttestError):
    """A TPM quote (TPMS_ATTEST + TPMT_SIGNATURE) is malformed or does not verify."""
