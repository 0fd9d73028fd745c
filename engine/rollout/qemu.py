"""The QEMU backend: an :class:`~engine.rollout.executor.Executor` whose VMs are QEMU
processes and whose migrations are real pre-copy live migrations between them.

Each VM is a ``qemu-system-x86_64`` process (TCG, no KVM needed) running the tiny guest
of :mod:`engine.rollout.qemu_guest`; a *host* is the set of QEMU processes this executor
runs for it, all on this machine. Time is real: seconds since the executor was created
(moved forward to the start of any operation handed over with a later start).

A migration of VM *v* from host *a* to host *b*, all through QMP (``qemu.qmp``):

1. start a destination QEMU for *v* on *b* with the same command line plus
   ``-incoming defer``, and ``migrate-incoming tcp:127.0.0.1:0`` (the port it listens on
   is read back from its ``query-migrate``);
2. on the source, ``migrate-set-parameters`` ``downtime-limit`` and ``max-bandwidth``
   from the rollout's :class:`~engine.rollout.policy.MigrationSettings` (QEMU's defaults
   are the settings' defaults: 300 ms, 128 MiB/s), then ``migrate``;
3. poll the source's ``query-migrate`` every ``poll_s`` until ``completed``, ``failed``
   or ``cancelled``; when the completion timeout (KubeVirt's 150 s per GiB of guest
   memory, at least ``min_completion_timeout_s``) passes or the RAM left to send has not
   reached a new low for ``progress_timeout_s``, ``migrate_cancel`` it (a failure that
   would repeat: not retried);
4. on ``completed``: wait until the destination's ``query-status`` is ``running``, then
   stop the source process; the VM now lives on *b*. QEMU's own figures are recorded:
   ``downtime`` (ms, the stop-and-copy pause), ``total-time``, ``setup-time``, RAM
   transferred and the number of dirty-bitmap syncs (rounds). If the destination does not
   run the guest, it is killed and the source resumed (``cont``): a failed migration;
5. on a failure (the destination died, the connection broke, a timeout): the destination
   is killed and the source, still holding the guest, is checked to be ``running``
   (resumed with ``cont`` if QEMU left it paused). The scheduler sees ``migrate_failed``.

Injected failures (:class:`~engine.rollout.simulator.Failures`, by name, as for the
simulator) are real here: a migration meant to fail has its destination QEMU killed
(SIGKILL) right after the source accepted ``migrate``. A kill lands mid-transfer only if
the transfer lasts longer than that; at the default bandwidth a tiny guest moves in tens
of milliseconds, so tests that inject one lower ``bandwidth_mibps``.

Reimage, boot, attestation and rollback have no machine to act on in this backend, and
do not pretend to: a reimage (and a rollback) first checks that no QEMU process of this
executor runs on the host or migrates to it — failing, not reimaging, when one does —
then waits ``reimage_s + boot_s`` and records the version as the host's; a host named in
``Failures.no_boot`` is declared lost after ``boot_timeout_s``. Attestation (also after a
rollback) asks the :class:`~engine.rollout.ports.Attestor` port, as the simulator does.

The executor owns its QEMU processes: :meth:`QemuExecutor.close` (or leaving its
``with`` block) stops every one. They run in their own sessions, so an interrupt of the
scheduler does not kill guests; an executor created after a crash does not adopt the
processes of the one before (a migration handed back for a VM it does not run fails,
saying so).
"""

from __future__ import annotations

import asyncio
import math
import shutil
import time
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from engine.fleet import FleetSnapshot
from engine.rollout import qemu_guest
from engine.rollout.executor import Completion, Op
from engine.rollout.policy import MigrationSettings
from engine.rollout.ports import Attestor
from engine.rollout.qemu_process import Guest, QemuError
from engine.rollout.simulator import Failures

_T = TypeVar("_T")
BINARY = "qemu-system-x86_64"


class QemuSettings(BaseModel):
    """The guests this backend runs and how patiently it waits (real seconds)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    binary: str = BINARY
    memory_mib: int = Field(default=64, ge=8)
    """Guest RAM of every VM (``-m``); the fleet's VM sizes stay what placement uses."""
    dirty_mib: int = Field(default=16, ge=1)
    """The guest's working set, all of it dirtied on every tick. 16 MiB is more than QEMU
    lets through in one 100 ms rate-limit window at 128 MiB/s (12.8 MiB), so the first
    pre-copy round outlasts several ticks on any machine and the whole working set is
    dirty again when it ends: the stop-and-copy phase always has real work (a working set
    the first round sends between two ticks would leave nothing to copy, and QEMU's
    millisecond ``downtime`` would read 0)."""
    tick_hz: int = Field(default=100, ge=19, le=1000)
    poll_s: float = Field(default=0.05, gt=0)
    """How often ``query-migrate`` is asked while a migration runs."""
    qmp_timeout_s: float = Field(default=10.0, gt=0)
    """Longest wait for the answer to one QMP command."""
    launch_timeout_s: float = Field(default=30.0, gt=0)
    """Longest wait for a new QEMU process to answer QMP."""
    switchover_timeout_s: float = Field(default=30.0, gt=0)
    """After ``completed``, longest wait for the destination to report ``running``."""
    min_completion_timeout_s: float = Field(default=30.0, ge=0)
    """Floor of the completion timeout: KubeVirt's 150 s per GiB is under 10 s for a
    64 MiB guest, less than TCG needs on a busy machine."""
    reimage_s: float = Field(default=0.0, ge=0)
    boot_s: float = Field(default=0.0, ge=0)
    attest_s: float = Field(default=0.0, ge=0)
    boot_timeout_s: float = Field(default=2.0, ge=0)
    """A host named in ``Failures.no_boot`` is declared lost this long after its reimage."""


@dataclass(frozen=True, slots=True)
class MigrationRecord:
    """One migration as QEMU reported it (``query-migrate`` on the source)."""

    vm: str
    src: str
    dst: str
    ok: bool
    status: str
    """QEMU's last migration status: completed, failed, cancelled (or ``not-started``)."""
    downtime_ms: float
    total_time_ms: float
    setup_time_ms: float
    transferred_bytes: int
    dirty_syncs: int
    """Dirty-bitmap syncs: the pre-copy rounds, the final one included."""
    reason: str | None = None

    def details(self) -> dict[str, Any]:
        return {"qemu_status": self.status, "total_time_ms": self.total_time_ms,
                "setup_time_ms": self.setup_time_ms,
                "transferred_bytes": self.transferred_bytes, "dirty_syncs": self.dirty_syncs}


@dataclass(slots=True)
class _Vm:
    id: str
    host: str
    guest: Guest
    kernel: Path


def available(binary: str = BINARY) -> str | None:
    """Why this backend cannot run here, or None when it can."""
    if shutil.which(binary) is None:
        return (f"{binary} not found (Debian package qemu-system-x86, installed by"
                " scripts/setup.sh)")
    return None


@dataclass
class QemuExecutor:
    """Live-migrates real QEMU guests between hosts that are sets of local processes."""

    run_dir: Path
    """Where the guests' kernels, QMP sockets and logs go (keep the path short: a UNIX
    socket path holds at most 107 bytes)."""
    migration: MigrationSettings
    attestor: Attestor
    settings: QemuSettings = field(default_factory=QemuSettings)
    failures: Failures = field(default_factory=Failures)
    name: str = "qemu"

    def __post_init__(self) -> None:
        why = available(self.settings.binary)
        if why is not None:
            raise QemuError(why)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._loop = asyncio.new_event_loop()
        self._vms: dict[str, _Vm] = {}
        self._incoming: dict[str, tuple[str, Guest]] = {}
        self._spawned: list[Guest] = []
        """Every QEMU process started and perhaps still running (stopped by close)."""
        self._tasks: dict[asyncio.Task[Completion], Op] = {}
        self._versions: dict[str, str] = {}
        self._no_boot = frozenset(self.failures.no_boot)
        self._serial = 0
        self._t0 = time.monotonic()
        self._offset = 0.0
        self._last = 0.0
        self.migrations: list[MigrationRecord] = []
        """Every migration attempt, in the order they ended."""
        self._closed = False

    # -- lifecycle -----------------------------------------------------------------------

    def __enter__(self) -> QemuExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Cancel what is in flight and stop every QEMU process this executor started."""
        if self._closed:
            return
        self._closed = True
        try:
            self._loop.run_until_complete(self._shutdown())
        finally:
            for g in self._spawned:  # whatever the shutdown did not reach
                g.kill()
            self._loop.close()

    async def _shutdown(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await asyncio.gather(*(g.stop() for g in self._spawned if g.alive),
                             return_exceptions=True)

    def _run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        if self._closed:
            coro.close()
            raise QemuError("the QEMU executor is closed")
        return self._loop.run_until_complete(coro)

    def launch(self, vm: str, host: str) -> None:
        """Start VM ``vm`` (a fresh guest) on ``host``."""
        self.launch_all([(vm, host)])

    def launch_all(self, placement: Iterable[tuple[str, str]]) -> None:
        """Start every (VM, host) given, side by side."""
        pairs = list(placement)
        for vm, _ in pairs:
            if vm in self._vms:
                raise QemuError(f"VM {vm} already runs on {self._vms[vm].host}")
        self._run(self._launch_all(pairs))

    def launch_fleet(self, snapshot: FleetSnapshot, group: str | None = None) -> None:
        """Start every VM of ``snapshot`` (of the hosts in ``group``) on its host."""
        hosts = {h.id for h in snapshot.hosts if group is None or h.group == group}
        self.launch_all((v.id, v.host) for v in snapshot.vms if v.host in hosts)

    async def _launch_all(self, pairs: list[tuple[str, str]]) -> None:
        results = await asyncio.gather(*(self._launch(vm, host) for vm, host in pairs),
                                       return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]

    async def _launch(self, vm: str, host: str) -> None:
        n = self._next()
        kernel = self.run_dir / f"k{n}.bin"
        s = self.settings
        try:
            kernel.write_bytes(qemu_guest.image(vm, memory_mib=s.memory_mib,
                                                dirty_mib=s.dirty_mib, hz=s.tick_hz))
        except ValueError as exc:
            raise QemuError(f"VM {vm}: {exc}") from None
        guest = await self._spawn(f"{vm}@{host}", kernel, incoming=False)
        self._vms[vm] = _Vm(vm, host, guest, kernel)
        # booted: the firmware has loaded the kernel and the guest counts its ticks
        deadline = time.monotonic() + s.launch_timeout_s
        while (await guest.read_u32(qemu_guest.COUNTER_ADDR))[0] == 0:
            if time.monotonic() > deadline:
                raise QemuError(f"the guest of VM {vm} did not start counting within"
                                f" {s.launch_timeout_s:g} s of its launch")
            await asyncio.sleep(s.poll_s)

    def _next(self) -> int:
        self._serial += 1
        return self._serial

    async def _spawn(self, name: str, kernel: Path, *, incoming: bool) -> Guest:
        n = self._next()
        s = self.settings
        argv = [s.binary, "-nodefaults", "-no-user-config", "-display", "none",
                "-machine", "pc", "-accel", "tcg", "-m", str(s.memory_mib), "-smp", "1",
                "-kernel", str(kernel), "-name", name,
                *(["-incoming", "defer"] if incoming else [])]
        guest = await Guest.spawn(name, argv, self.run_dir / f"{n}.qmp",
                                  self.run_dir / f"{n}.log", timeout_s=s.launch_timeout_s,
                                  qmp_timeout_s=s.qmp_timeout_s)
        self._spawned = [g for g in self._spawned if g.alive]
        self._spawned.append(guest)
        return guest

    # -- what runs where (read from the processes) ---------------------------------------

    def host_of(self, vm: str) -> str | None:
        v = self._vms.get(vm)
        return v.host if v is not None and v.guest.alive else None

    def guests(self, host: str) -> list[str]:
        """VMs whose QEMU process runs on ``host`` now (incoming ones included)."""
        on = {v.id for v in self._vms.values() if v.host == host and v.guest.alive}
        on |= {vm for vm, (h, g) in self._incoming.items() if h == host and g.alive}
        return sorted(on)

    def processes(self) -> dict[str, int]:
        """Every QEMU process of this executor still running: ``vm@host`` -> pid."""
        return {g.name: g.proc.pid for g in self._spawned if g.alive}

    def pid(self, vm: str) -> int:
        return self._vm(vm).guest.proc.pid

    def status(self, vm: str) -> str:
        """QMP ``query-status`` of the VM's current process."""
        return self._run(self._vm(vm).guest.status())

    def counter(self, vm: str) -> int:
        """The guest's round counter, read from guest memory."""
        return self._run(self._vm(vm).guest.read_u32(qemu_guest.COUNTER_ADDR))[0]

    def guest_name(self, vm: str) -> str:
        """The VM name the guest carries in its memory."""
        words = self._run(self._vm(vm).guest.read_u32(qemu_guest.NAME_ADDR, 16))
        raw = b"".join(w.to_bytes(4, "little") for w in words)
        return raw.split(b"\0", 1)[0].decode(errors="replace")

    def version(self, host: str) -> str | None:
        """The version this backend last booted on ``host`` (None: never reimaged)."""
        return self._versions.get(host)

    def _vm(self, vm: str) -> _Vm:
        try:
            return self._vms[vm]
        except KeyError:
            raise QemuError(f"VM {vm} does not run under this executor") from None

    # -- the Executor interface ----------------------------------------------------------

    def now(self) -> float:
        return self._offset + time.monotonic() - self._t0

    def in_flight(self) -> int:
        return len(self._tasks)

    def start(self, op: Op) -> None:
        if op.started > self.now():
            self._offset += op.started - self.now()
        if op.kind == "migrate":
            coro = self._migrate(op)
        elif op.kind == "reimage":
            coro = self._reimage(op)
        elif op.kind == "attest":
            coro = self._attest(op)
        else:
            coro = self._rollback(op)
        if self._closed:
            coro.close()
            raise QemuError("the QEMU executor is closed")
        self._tasks[self._loop.create_task(coro)] = op

    def advance(self, until: float | None) -> tuple[float, list[Completion]] | None:
        if not self._tasks:
            if until is None:
                return None
            self._run(asyncio.sleep(max(0.0, until - self.now())))
            return self._stamp(until), []
        timeout = None if until is None else max(0.0, until - self.now())
        done, _ = self._run(asyncio.wait(list(self._tasks), timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED))
        if not done:
            return self._stamp(until if until is not None else self.now()), []
        out = [t.result() for t in done]
        for t in done:
            del self._tasks[t]
        out.sort(key=lambda c: c.op.key())
        return self._stamp(self.now()), out

    def _stamp(self, t: float) -> float:
        """Never earlier than a time already returned, nor than ``t`` (no rounding: a
        time rounded below the scheduler's timer would make it wait for it again)."""
        self._last = max(self._last, t)
        return self._last

    # -- migration -----------------------------------------------------------------------

    async def _migrate(self, op: Op) -> Completion:
        vm = self._vms.get(op.vm)
        if vm is None:
            return self._failed(op, "not-started", f"VM {op.vm} does not run under this"
                                " executor (adopting the guests of an earlier executor is not"
                                " supported)", permanent=True)
        if vm.host != op.host or not vm.guest.alive:
            where = f"runs on {vm.host}" if vm.guest.alive else "has no running QEMU process"
            return self._failed(op, "not-started", f"VM {op.vm} {where}, not on {op.host}",
                                permanent=True)
        try:
            dst = await self._spawn(f"{op.vm}@{op.dst}", vm.kernel, incoming=True)
        except QemuError as exc:
            return self._failed(op, "not-started", f"destination did not start: {exc}")
        self._incoming[op.vm] = (op.dst, dst)
        try:
            return await self._precopy(op, vm, dst)
        finally:
            self._incoming.pop(op.vm, None)

    async def _precopy(self, op: Op, vm: _Vm, dst: Guest) -> Completion:
        m, s, src = self.migration, self.settings, vm.guest
        try:
            await dst.execute("migrate-incoming", {"uri": "tcp:127.0.0.1:0"})
            listening = await dst.execute("query-migrate")
            port = int(listening["socket-address"][0]["port"])
            await src.execute("migrate-set-parameters",
                              {"downtime-limit": max(1, round(m.downtime_limit_ms)),
                               "max-bandwidth": max(1, round(m.bandwidth_mibps * 2**20))})
            await src.execute("migrate", {"uri": f"tcp:127.0.0.1:{port}"})
        except (QemuError, KeyError, IndexError, ValueError) as exc:
            await dst.stop()
            return self._failed(op, "not-started", f"migration did not start: {exc}")
        if op.serial < self.failures.migrations.get(op.vm, 0):
            dst.kill()  # injected: the destination dies mid-migration
        completion_s = max(s.min_completion_timeout_s,
                           m.completion_timeout_per_gib_s * s.memory_mib / 1024)
        began = time.monotonic()
        best, progressed = math.inf, began
        info: dict[str, Any] = {}
        try:
            while True:
                info = {**info, **await src.execute("query-migrate")}  # keeps the last stats
                status = str(info.get("status"))
                if status == "completed":
                    break
                if status in ("failed", "cancelled"):
                    why = info.get("error-desc") or f"QEMU reports the migration {status}"
                    if not dst.alive:
                        why = f"the destination QEMU exited: {why}"
                    return await self._abandon(op, vm, dst, info, why)
                now = time.monotonic()
                remaining = float((info.get("ram") or {}).get("remaining", math.inf))
                if remaining < best:
                    best, progressed = remaining, now
                if now - began > completion_s or now - progressed > m.progress_timeout_s:
                    why = (f"completion timeout: {completion_s:g} s passed before pre-copy"
                           f" converged" if now - began > completion_s else
                           f"no progress for {m.progress_timeout_s:g} s: the RAM left to"
                           f" send reached no new low (lowest {best / 2**20:.1f} MiB)")
                    info = {**info, **await self._cancel(src)}
                    return await self._abandon(op, vm, dst, info, why, permanent=True)
                await asyncio.sleep(s.poll_s)
            deadline = time.monotonic() + s.switchover_timeout_s
            while (state := await dst.status()) != "running":
                if time.monotonic() > deadline:
                    return await self._abandon(op, vm, dst, info, f"the destination is"
                                               f" {state}, not running, after the switchover")
                await asyncio.sleep(s.poll_s)
        except QemuError as exc:
            return await self._abandon(op, vm, dst, info, str(exc))
        await src.stop()
        vm.host, vm.guest = op.dst, dst
        rec = self._record(op, True, info, None)
        return Completion(op, self.now(), True, downtime_ms=rec.downtime_ms,
                          details=rec.details())

    async def _cancel(self, src: Guest) -> dict[str, Any]:
        await src.execute("migrate_cancel")
        deadline = time.monotonic() + self.settings.qmp_timeout_s
        while True:
            info: dict[str, Any] = await src.execute("query-migrate")
            if info.get("status") in ("cancelled", "failed", "completed") \
                    or time.monotonic() > deadline:
                return info
            await asyncio.sleep(self.settings.poll_s)

    async def _abandon(self, op: Op, vm: _Vm, dst: Guest, info: dict[str, Any], why: str,
                       *, permanent: bool = False) -> Completion:
        """The guest stays on the source: kill the destination, make sure the source runs."""
        dst.kill()
        await dst.stop()
        try:
            state = await vm.guest.status()
            if state != "running":
                await vm.guest.execute("cont")
                why += f"; the source was {state} and was resumed"
        except QemuError as exc:
            why += f"; the source does not answer either: {exc}"
        rec = self._record(op, False, info, why)
        return Completion(op, self.now(), False, reason=why, permanent=permanent,
                          details=rec.details())

    def _failed(self, op: Op, status: str, why: str, *, permanent: bool = False) -> Completion:
        rec = self._record(op, False, {"status": status}, why)
        return Completion(op, self.now(), False, reason=why, permanent=permanent,
                          details=rec.details())

    def _record(self, op: Op, ok: bool, info: dict[str, Any],
                why: str | None) -> MigrationRecord:
        ram = info.get("ram") or {}
        rec = MigrationRecord(op.vm, op.host, op.dst, ok, str(info.get("status", "")),
                              float(info.get("downtime", 0.0)) if ok else 0.0,
                              float(info.get("total-time", 0.0)),
                              float(info.get("setup-time", 0.0)),
                              int(ram.get("transferred", 0)), int(ram.get("dirty-sync-count", 0)),
                              why)
        self.migrations.append(rec)
        return rec

    # -- hosts: no machine to reimage; the attestor attests ------------------------------

    async def _reimage(self, op: Op) -> Completion:
        busy = self.guests(op.host)
        if busy:
            return Completion(op, self.now(), False, permanent=True,
                              reason=f"host {op.host} still runs {', '.join(busy)}: not"
                                     " reimaged")
        s = self.settings
        if op.host in self._no_boot:
            await asyncio.sleep(s.boot_timeout_s)
            return Completion(op, self.now(), False, permanent=True,
                              reason=f"host did not come back within {s.boot_timeout_s:g} s"
                                     " of its reimage")
        await asyncio.sleep(s.reimage_s + s.boot_s)
        self._versions[op.host] = op.version
        return Completion(op, self.now(), True)

    async def _attest(self, op: Op) -> Completion:
        await asyncio.sleep(self.settings.attest_s)
        outcome = self.attestor.attest(op.host, op.version)
        return Completion(op, self.now(), outcome.ok, reason=outcome.reason)

    async def _rollback(self, op: Op) -> Completion:
        back = await self._reimage(op)
        if not back.ok:
            return back
        return await self._attest(op)
