"""The dashboard's audit status: the decision log verified by :mod:`engine.audit` (the
whole chain and its signed checkpoints against the configured verification keys), kept
until anything in the log's files changes (:meth:`DecisionLog.file_state`)."""

from __future__ import annotations

import threading
from typing import Any

from engine.audit import Verification, verification_keys, verify_log
from engine.decide import DecisionLog
from engine.errors import VigilError


class AuditStatus:
    """The last verification of a log, for the file state it was made on."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kept: tuple[tuple[Any, ...], Verification] | None = None
        self.verified = 0
        """Verifications made (the rest were kept)."""

    def of(self, log: DecisionLog, settings: Any) -> Verification | str:
        """The verification of ``log`` (or why it cannot be made: no usable key)."""
        try:
            keys = verification_keys(settings)
        except VigilError as exc:
            return exc.summary
        signed = bool(keys) and (settings.audit_signing_key is not None
                                 or bool(settings.audit_verification_keys))
        with self._lock:
            with log.held():
                state = log.file_state()
                if self._kept is not None and self._kept[0] == state:
                    return self._kept[1]
                try:
                    found = verify_log(log, keys, expect_every=settings.audit_checkpoint_every
                                       if signed else None)
                except VigilError as exc:
                    return exc.summary
            self._kept = (state, found)
            self.verified += 1
            return found


__all__ = ["AuditStatus"]
