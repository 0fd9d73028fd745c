"""The interface between the rollout's scheduler and what carries its steps out.

The scheduler (:mod:`engine.rollout.runner`) decides; an executor performs long
operations (a live migration, a reimage and boot, an attestation, a rollback) and says
when each completed and how. Cordon and uncordon are bookkeeping the scheduler does
itself. An executor must accept an operation whose ``started`` lies in the past: after a
restart the scheduler hands it back every operation that was in flight, and the executor
resumes following it (the simulator recomputes its end; a real backend asks the host).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

OpKind = Literal["migrate", "reimage", "attest", "rollback"]
_ORDER = {"migrate": 0, "reimage": 1, "attest": 2, "rollback": 3}


@dataclass(frozen=True, slots=True)
class Op:
    kind: OpKind
    host: str
    started: float
    version: str = ""
    """reimage / attest / rollback: the version booted (rollback: attested after)."""
    vm: str = ""
    dst: str = ""
    attempt: int = 0
    """migrate: failed attempts of this VM since its last successful migration."""
    serial: int = 0
    """migrate: attempts of this VM started before this one, in the whole rollout."""

    def key(self) -> tuple[int, str, str]:
        """A total order independent of when operations were handed over."""
        return (_ORDER[self.kind], self.host, self.vm)


@dataclass(frozen=True, slots=True)
class Completion:
    op: Op
    t: float
    ok: bool
    downtime_ms: float = 0.0
    reason: str | None = None
    permanent: bool = False
    """A failure that would repeat if retried (a migration that cannot converge)."""
    details: Mapping[str, Any] | None = None
    """migrate: what the backend measured beyond the downtime (the QEMU backend: total
    time, RAM transferred, rounds), written into the trace's migrate_end / migrate_failed
    event; never one of the event's own fields."""


class Executor(Protocol):
    name: str

    def start(self, op: Op) -> None:
        """Begin (or, after a restart, resume following) ``op``."""
        ...

    def advance(self, until: float | None) -> tuple[float, list[Completion]] | None:
        """Wait for the next completions, at most until ``until``: (time, completions at
        that time), (``until``, []) when nothing completed by then, or None when nothing
        is in flight and there is no ``until``."""
        ...

    def in_flight(self) -> int:
        ...
