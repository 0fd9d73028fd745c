"""The fleet simulator: the default executor, a discrete-event model of the fleet.

Time is simulated (seconds). A live migration lasts a setup time plus QEMU's pre-copy
(:mod:`engine.rollout.precopy`) at the migration bandwidth; a reimage lasts the reimage
time plus the boot time; an attestation asks the :class:`~engine.rollout.ports.Attestor`
at its end; a rollback reimages the previous version, boots it and attests it. Failures
are injected by name: migrations that fail (their first N attempts, half-way through),
hosts that do not come back after the reimage (declared lost at the boot timeout), and
attestation failures through the attestor.

Every duration is a function of the operation alone, so an operation handed back after a
restart ends exactly when it would have.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field

from engine.fleet import VM
from engine.rollout.executor import Completion, Op
from engine.rollout.policy import MigrationSettings
from engine.rollout.ports import Attestor, MemoryAttestor
from engine.rollout.precopy import precopy


class SimTimings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    migration_setup_s: float = Field(default=1.0, ge=0)
    reimage_s: float = Field(default=300.0, ge=0)
    boot_s: float = Field(default=120.0, ge=0)
    attest_s: float = Field(default=5.0, ge=0)
    boot_timeout_s: float = Field(default=900.0, ge=0)
    """After the reimage, a host not back within this long is declared lost."""


class Failures(BaseModel):
    """Failures to inject, by name."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    migrations: dict[str, int] = Field(default_factory=dict)
    """VM id -> how many of its first migration attempts fail."""
    no_boot: list[str] = Field(default_factory=list)
    """Hosts that do not come back after their reimage."""
    attestation: list[str] = Field(default_factory=list)
    """Hosts whose attestation on the target version fails (they are rolled back); applied
    by the attestor (:func:`attestor_for`), not by the simulator itself."""


def attestor_for(failures: Failures, target: str) -> MemoryAttestor:
    """The in-memory attestor that fails the hosts ``failures`` names on ``target``."""
    return MemoryAttestor(fail={(h, target) for h in failures.attestation})


@dataclass(slots=True)
class _Vm:
    memory_mib: int
    dirty: float


@dataclass
class Simulator:
    """An :class:`~engine.rollout.executor.Executor` over simulated time."""

    vms: Mapping[str, VM]
    migration: MigrationSettings
    attestor: Attestor
    timings: SimTimings = field(default_factory=SimTimings)
    failures: Failures = field(default_factory=Failures)
    pace_s: float = 0.0
    """Real seconds to sleep at each step (to watch a rollout, or stop it half-way)."""
    name: str = "simulator"

    def __post_init__(self) -> None:
        self._heap: list[tuple[float, tuple[int, str, str], Op, Completion | None]] = []
        self._no_boot = frozenset(self.failures.no_boot)

    def in_flight(self) -> int:
        return len(self._heap)

    def start(self, op: Op) -> None:
        c: Completion | None
        if op.kind == "migrate":
            c = self._migration(op)
        elif op.kind == "reimage":
            tm = self.timings
            if op.host in self._no_boot:
                c = Completion(op, op.started + tm.reimage_s + tm.boot_timeout_s, False,
                               reason=f"host did not come back within {tm.boot_timeout_s:g} s"
                                      " of its reimage", permanent=True)
            else:
                c = Completion(op, op.started + tm.reimage_s + tm.boot_s, True)
        elif op.kind == "attest":
            c = None  # asked at its end
            heapq.heappush(self._heap, (op.started + self.timings.attest_s, op.key(), op, c))
            return
        else:  # rollback: reimage the previous version, boot, attest
            tm = self.timings
            end = op.started + tm.reimage_s + tm.boot_s + tm.attest_s
            heapq.heappush(self._heap, (end, op.key(), op, None))
            return
        heapq.heappush(self._heap, (c.t, op.key(), op, c))

    def _migration(self, op: Op) -> Completion:
        vm = self.vms[op.vm]
        m = self.migration
        dirty = vm.dirty_rate_mibps
        out = precopy(vm.memory_mib, m.assumed_dirty_rate_mibps if dirty is None else dirty, m)
        setup = self.timings.migration_setup_s
        if op.serial < self.failures.migrations.get(op.vm, 0):
            return Completion(op, op.started + setup + out.duration_s / 2, False,
                              reason="injected failure: migration connection reset")
        if not out.converged:
            return Completion(op, op.started + setup + out.duration_s, False, reason=out.reason,
                              permanent=True)
        return Completion(op, op.started + setup + out.duration_s, True,
                          downtime_ms=round(out.downtime_ms, 3))

    def advance(self, until: float | None) -> tuple[float, list[Completion]] | None:
        if self.pace_s:
            time.sleep(self.pace_s)
        heap = self._heap
        if not heap:
            return None if until is None else (until, [])
        t = heap[0][0]
        if until is not None and until < t:
            return until, []
        out: list[Completion] = []
        while heap and heap[0][0] == t:
            _, _, op, c = heapq.heappop(heap)
            if c is None:
                outcome = self.attestor.attest(op.host, op.version)
                c = Completion(op, t, outcome.ok, reason=outcome.reason)
            out.append(c)
        return t, out
