"""The rollout scheduler: drives a :class:`~engine.rollout.planner.Plan` through an
executor, one host at a time per slot: cordon, live-migrate its VMs away, reimage, boot,
re-attest, uncordon; a host failing re-attestation is rolled back to its previous
version (and re-attested on it) or, when that fails too or the host does not come
back, left out of service as failed.

Everything the scheduler knows is the result of the events it has written: each event is
applied to the state through one function, live and when an interrupted rollout is
resumed from its journal. Events are committed before the operations they start are
handed to the executor (write-ahead), and an operation in flight when the process died is
handed back to the executor with its original start time, so a resumed rollout neither
redoes nor loses a step.

Rules held at every step:

* at most ``max_unavailable`` hosts of the group out of service (cordoned, in
  maintenance, failed), and at most ``draining_limit`` draining;
* waves in order (the canary first), a wave's hosts started only inside a maintenance
  window, and none once the wave's failures pass the threshold (halted), a pause or an
  abort;
* at most ``parallel_per_cluster`` migrations in flight, ``parallel_outbound_per_host``
  from one host; a VM goes only to an in-service, attested, compliant host with room,
  never next to a member of its anti-affinity group; a failed migration is retried after
  a backoff (one that cannot converge is not), and a VM that cannot leave returns its
  host to service on its old version (drain failed);
* a host is reimaged only when no VM is on it or on its way to or from it, and returns to
  service only after an ``attest_ok`` (or, if never reimaged, on its old version).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from engine.fleet import FleetSnapshot, HostChange, HostState
from engine.rollout.executor import Completion, Executor, Op
from engine.rollout.placer import Placer
from engine.rollout.planner import Plan, destination_tier

Event = dict[str, Any]

TERMINAL = frozenset({"done", "rolled_back", "failed", "drain_failed", "aborted"})
FAILED = frozenset({"rolled_back", "failed", "drain_failed"})
BUSY = frozenset({"draining", "reimaging", "attesting", "attest_failed", "rolling_back",
                  "attested", "attested_rb"})


class Journal(Protocol):
    def append(self, events: list[Event], status: str) -> None:
        """Record ``events`` (in order) and the rollout's status, atomically."""
        ...


@dataclass
class MemoryJournal:
    events: list[Event] = field(default_factory=list)
    status: str = "planned"

    def append(self, events: list[Event], status: str) -> None:
        self.events.extend(events)
        self.status = status


@dataclass(slots=True)
class _Host:
    id: str
    vcpus: int
    memory_mib: int
    state: str
    version: str
    trusted: bool
    phase: str = "out"  # out of this rollout; pending when in a wave
    wave: int = -1
    phase_t: float = 0.0
    prev: str = ""
    outbound: int = 0
    vms: set[str] = field(default_factory=set)
    queue: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    reason: str | None = None


@dataclass(slots=True)
class _Vm:
    id: str
    host: str
    vcpus: int
    memory_mib: int
    migratable: bool
    to: str | None = None
    since: float = 0.0
    attempts: int = 0
    """Failed attempts since its last successful migration (the retry limit)."""
    tries: int = 0
    """Migration attempts ever started (failures are injected by this count)."""
    retry_at: float = 0.0


@dataclass
class Summary:
    status: str
    reason: str | None
    t: float
    """Simulated (or real) seconds since the rollout started."""
    hosts: dict[str, list[str]]
    """Hosts by outcome: done, rolled_back, failed, drain_failed, aborted, pending, held,
    skipped, up_to_date."""
    migrations: int
    failed_migrations: int
    retried_migrations: int
    """Migrations that succeeded after a failed attempt of the same VM."""
    max_downtime_ms: float
    total_downtime_ms: float
    max_unavailable: int
    max_unavailable_seen: int
    failure_reasons: dict[str, str]

    def to_json(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


class Runner:
    def __init__(self, plan: Plan, snapshot: FleetSnapshot, executor: Executor,
                 journal: Journal, *, untrusted: Sequence[str] = (),
                 history: Sequence[Event] = (),
                 control: Callable[[], str | None] | None = None,
                 progress: Callable[[Runner], None] | None = None) -> None:
        self.plan, self.executor, self.journal = plan, executor, journal
        self.control, self.progress = control, progress
        self.policy = plan.policy
        self.mig = plan.policy.migration
        self.target = plan.target
        self.approved = frozenset(plan.approved_versions) if plan.approved_versions else None
        self.t = 0.0
        self.status = "running"
        self.paused = self.aborting = self.halted = False
        self.halt_reason: str | None = None
        self.finished: str | None = None
        self.unavailable = 0
        self.max_seen = 0
        self.inflight = 0
        self.migrations = self.failed_migrations = self.retried = 0
        self.max_downtime = self.total_downtime = 0.0
        self.wave_ptr = 0
        self.wave_failures = [0] * len(plan.waves)
        self.wave_started = [0] * len(plan.waves)  # hosts start in wave order
        self.wave_finished = [0] * len(plan.waves)
        self.draining: dict[str, None] = {}  # in cordon order
        self._pending: list[Event] = []
        self._to_start: list[Op] = []
        self._window_wake: float | None = None
        self._limit = plan.policy.draining_limit()
        bad = set(untrusted)
        self.hosts: dict[str, _Host] = {}
        self.vms: dict[str, _Vm] = {}
        for h in snapshot.hosts:
            if h.group == plan.group:
                self.hosts[h.id] = _Host(h.id, h.vcpus, h.memory_mib, h.state.value,
                                         h.image_version, h.id not in bad)
        for v in snapshot.vms:
            if v.host in self.hosts:
                self.vms[v.id] = _Vm(v.id, v.host, v.vcpus, v.memory_mib, v.live_migratable)
                self.hosts[v.host].vms.add(v.id)
        for i, wave in enumerate(plan.waves):
            for hid in wave:
                self.hosts[hid].phase, self.hosts[hid].wave = "pending", i
        self.placer = Placer()
        for rt in self.hosts.values():
            self.placer.add_host(rt.id, rt.vcpus - sum(self.vms[v].vcpus for v in rt.vms),
                                 rt.memory_mib - sum(self.vms[v].memory_mib for v in rt.vms),
                                 self._tier(rt))
        self._initial = {v.id: v.host for v in self.vms.values()}
        self.placer.set_anti_affinity(((g.id, g.vms) for g in snapshot.anti_affinity),
                                      {v.id: v.host for v in self.vms.values()})
        self.unavailable = sum(h.state != HostState.IN_SERVICE for h in self.hosts.values())
        self.max_seen = self.unavailable
        for e in history:
            self._apply(e)
        if history:
            self.t = float(history[-1]["t"])
            self._resume_in_flight()

    # -- state: every change goes through _apply ----------------------------------------

    def _tier(self, h: _Host) -> int | None:
        return destination_tier(h.version, HostState(h.state), h.trusted, self.target,
                                self.approved, self.policy.prefer_target)

    def _apply(self, e: Event) -> None:
        kind, t = e["type"], float(e["t"])
        h = self.hosts.get(e.get("host") or "")
        if kind == "cordon":
            assert h is not None
            h.state, h.phase, h.phase_t = "cordoned", "draining", t
            h.queue = sorted((v for v in h.vms if self.vms[v].migratable),
                             key=lambda v: (-self.vms[v].memory_mib, v))
            self.placer.set_tier(h.id, None)
            self.draining[h.id] = None
            if h.wave >= 0:
                self.wave_started[h.wave] += 1
            self.unavailable += 1
            self.max_seen = max(self.max_seen, self.unavailable)
        elif kind == "migrate_start":
            assert h is not None
            v = self.vms[e["vm"]]
            v.to, v.since = e["to"], t
            v.tries += 1
            h.outbound += 1
            self.inflight += 1
            h.queue.remove(v.id)
            self.placer.take(e["to"], v.id, v.vcpus, v.memory_mib)
        elif kind == "migrate_end":
            assert h is not None
            v = self.vms[e["vm"]]
            self.placer.free(h.id, v.id, v.vcpus, v.memory_mib)
            h.vms.discard(v.id)
            self.hosts[e["to"]].vms.add(v.id)
            v.host, v.to = e["to"], None
            h.outbound -= 1
            self.inflight -= 1
            self.migrations += 1
            if v.attempts:
                self.retried += 1
            v.attempts = 0
            d = float(e.get("downtime_ms") or 0.0)
            self.max_downtime = max(self.max_downtime, d)
            self.total_downtime += d
        elif kind == "migrate_failed":
            assert h is not None
            v = self.vms[e["vm"]]
            self.placer.free(e["to"], v.id, v.vcpus, v.memory_mib)
            v.to = None
            v.attempts += 1
            h.outbound -= 1
            self.inflight -= 1
            self.failed_migrations += 1
            if e.get("final"):
                h.stuck.append(v.id)
                h.reason = f"VM {v.id} could not be migrated: {e.get('reason')}"
            else:
                v.retry_at = t + self.mig.retry_backoff_s
                h.queue.insert(0, v.id)
        elif kind == "reimage_start":
            assert h is not None
            h.state, h.phase, h.phase_t, h.prev = "in_maintenance", "reimaging", t, h.version
            self.draining.pop(h.id, None)
        elif kind == "reimage_end":
            assert h is not None
            h.version, h.phase, h.phase_t = e["version"], "attesting", t
        elif kind == "attest_ok":
            assert h is not None
            h.trusted = True
            h.version = e["version"]
            h.phase = "attested" if h.phase == "attesting" else "attested_rb"
        elif kind == "attest_failed":
            assert h is not None
            h.trusted = False
            h.reason = e.get("reason")
            if h.phase == "attesting":
                h.phase = "attest_failed"
            else:  # lost after the reimage, or the rollback failed too
                h.state, h.phase = "failed", "failed"
                self._terminal(h)
        elif kind == "rollback":
            assert h is not None
            h.phase, h.phase_t = "rolling_back", t
        elif kind == "uncordon":
            assert h is not None
            if h.phase == "draining":
                self.draining.pop(h.id, None)
                h.phase = "aborted" if e.get("aborted") else "drain_failed"
                h.reason = e.get("reason") or h.reason
            else:
                h.phase = "done" if h.phase == "attested" else "rolled_back"
            h.state = "in_service"
            h.queue, h.stuck = [], []
            self.unavailable -= 1
            self.placer.set_tier(h.id, self._tier(h))
            self._terminal(h)
        elif kind == "pause":
            self.paused = True
        elif kind == "resume":
            self.paused = False
        elif kind == "abort":
            self.aborting = True
        elif kind == "end":
            self.finished = e["status"]

    def _terminal(self, h: _Host) -> None:
        if h.wave >= 0:
            self.wave_finished[h.wave] += 1
        if h.phase in FAILED and h.wave >= 0:
            self.wave_failures[h.wave] += 1
            if self.wave_failures[h.wave] > self.plan.failure_threshold and not self.halted:
                self.halted = True
                self.halt_reason = (f"wave {h.wave + 1}: {self.wave_failures[h.wave]} hosts"
                                    f" failed, more than the threshold of"
                                    f" {self.plan.failure_threshold}")

    def _emit(self, kind: str, host: str | None, **fields: Any) -> None:
        e: Event = {"t": self.t, "type": kind, "host": host}
        e.update(fields)
        self._apply(e)
        self._pending.append(e)

    def _flush(self) -> None:
        if self._pending:
            self.journal.append(self._pending, self.status)
            self._pending = []
        ops, self._to_start = self._to_start, []
        for op in ops:
            self.executor.start(op)

    def _resume_in_flight(self) -> None:
        for v in self.vms.values():
            if v.to is not None:
                self.executor.start(Op("migrate", v.host, v.since, vm=v.id, dst=v.to,
                                       attempt=v.attempts, serial=v.tries - 1))
        for h in self.hosts.values():
            if h.phase == "reimaging":
                self.executor.start(Op("reimage", h.id, h.phase_t, version=self.target))
            elif h.phase == "attesting":
                self.executor.start(Op("attest", h.id, h.phase_t, version=h.version))
            elif h.phase == "rolling_back":
                self.executor.start(Op("rollback", h.id, h.phase_t, version=h.prev))

    # -- the loop ------------------------------------------------------------------------

    def run(self) -> Summary:
        """Run until the rollout completes, halts, is aborted or paused (hosts in flight
        finish first), and return where it stands."""
        if self.finished:
            return self.summary()
        while True:
            self._poll_control()
            self._schedule()
            self._flush()
            if self.progress is not None:
                self.progress(self)
            got = self.executor.advance(self._next_timer())
            if got is None:
                break
            self.t, completions = got
            for c in completions:
                self._complete(c)
        status, reason = self._final()
        self.status = status
        if status == "paused":
            self.journal.append([], "paused")
        else:
            self._emit("end", None, status=status, **({"reason": reason} if reason else {}))
            self.status = status
            self._flush()
        return self.summary()

    def resume(self, *, recovered: bool = False) -> None:
        """Record that the rollout carries on: after a pause, or (``recovered``) after the
        process running it stopped without finishing."""
        self._emit("resume", None, **({"recovered": True} if recovered else {}))
        self._flush()

    def _poll_control(self) -> None:
        request = self.control() if self.control is not None else None
        if request == "pause" and not self.paused:
            self._emit("pause", None)
        elif request == "resume" and self.paused:
            self._emit("resume", None)
        elif request == "abort" and not self.aborting:
            self._emit("abort", None)

    def _final(self) -> tuple[str, str | None]:
        if self.aborting:
            return "aborted", None
        if self.halted:
            return "halted", self.halt_reason
        left = any(h.phase == "pending" for h in self.hosts.values())
        if not left:
            return "completed", None
        if self.paused:
            return "paused", None
        failed = [h.id for h in self.hosts.values() if h.phase == "failed"]
        return "halted", (f"no host can be taken out: {self.unavailable} of"
                          f" {self.plan.max_unavailable} allowed are out of service"
                          + (f" ({len(failed)} failed)" if failed else "")
                          if self.unavailable >= self.plan.max_unavailable
                          else "no maintenance window opens again")

    def _next_timer(self) -> float | None:
        times = [self.vms[v].retry_at for hid in self.draining for v in self.hosts[hid].queue
                 if self.vms[v].retry_at > self.t]
        if self._window_wake is not None and self._window_wake > self.t:
            times.append(self._window_wake)
        return min(times) if times else None

    def _complete(self, c: Completion) -> None:
        op = c.op
        h = self.hosts[op.host]
        if op.kind == "migrate":
            if c.ok:
                self._emit("migrate_end", op.host, vm=op.vm, **{"from": op.host, "to": op.dst},
                           downtime_ms=c.downtime_ms, **(c.details or {}))
            else:
                final = c.permanent or op.attempt >= self.mig.retries
                self._emit("migrate_failed", op.host, vm=op.vm, **{"from": op.host,
                                                                   "to": op.dst},
                           downtime_ms=0.0, attempt=op.attempt + 1, final=final,
                           reason=c.reason, **(c.details or {}))
        elif op.kind == "reimage":
            if c.ok:
                self._emit("reimage_end", op.host, version=op.version)
                self._to_start.append(Op("attest", op.host, self.t, version=op.version))
            else:
                self._emit("attest_failed", op.host, version=op.version, reason=c.reason)
        elif op.kind == "attest":
            if c.ok:
                self._emit("attest_ok", op.host, version=op.version)
                self._emit("uncordon", op.host, version=op.version)
            else:
                self._emit("attest_failed", op.host, version=op.version, reason=c.reason)
                self._emit("rollback", op.host, version=h.prev, **{"from_version": op.version})
                self._to_start.append(Op("rollback", op.host, self.t, version=h.prev))
        else:  # rollback
            if c.ok:
                self._emit("attest_ok", op.host, version=op.version)
                self._emit("uncordon", op.host, version=op.version, rolled_back=True)
            else:
                self._emit("attest_failed", op.host, version=op.version, reason=c.reason)

    def _schedule(self) -> None:
        while True:
            before = len(self._pending)
            self._finish_drained()
            if not self.aborting:
                self._start_migrations()
            self._start_hosts()
            if len(self._pending) == before:
                if self._give_up_stuck():
                    continue
                return

    def _finish_drained(self) -> None:
        for hid in list(self.draining):
            h = self.hosts[hid]
            if h.outbound:
                continue
            if not h.vms and not self.aborting:
                self._emit("reimage_start", hid, version=self.target,
                           **{"from_version": h.version})
                self._to_start.append(Op("reimage", hid, self.t, version=self.target))
            elif self.aborting:
                self._emit("uncordon", hid, version=h.version, aborted=True,
                           reason="rollout aborted before the host was drained")
            elif h.stuck:  # a VM cannot leave: the host keeps its version
                self._emit("uncordon", hid, version=h.version, reason=h.reason)
            elif not h.queue:  # VMs left that cannot be live-migrated
                left = sorted(h.vms)
                self._emit("uncordon", hid, version=h.version,
                           reason=f"VM {left[0]} cannot be live-migrated")

    def _start_migrations(self) -> None:
        cluster = self.mig.parallel_per_cluster
        per_host = self.mig.parallel_outbound_per_host
        for hid in self.draining:
            if self.inflight >= cluster:
                return
            h = self.hosts[hid]
            if h.stuck:
                continue
            while h.outbound < per_host and self.inflight < cluster:
                picked = None
                for vid in h.queue:
                    v = self.vms[vid]
                    if v.retry_at > self.t:
                        continue
                    dest = self.placer.choose(vid, v.vcpus, v.memory_mib)
                    if dest is not None:
                        picked = (v, dest)
                        break
                if picked is None:
                    break
                v, dest = picked
                self._emit("migrate_start", hid, vm=v.id, **{"from": hid, "to": dest},
                           attempt=v.attempts + 1)
                self._to_start.append(Op("migrate", hid, self.t, vm=v.id, dst=dest,
                                         attempt=v.attempts, serial=v.tries - 1))

    def _start_hosts(self) -> None:
        self._window_wake = None
        if self.paused or self.aborting or self.halted:
            return
        waves = self.plan.waves
        while (self.wave_ptr < len(waves)
               and self.wave_finished[self.wave_ptr] == len(waves[self.wave_ptr])):
            self.wave_ptr += 1
        if self.wave_ptr >= len(waves):
            return
        wave = waves[self.wave_ptr]
        if self.wave_started[self.wave_ptr] >= len(wave):
            return
        if self.unavailable >= self.plan.max_unavailable or len(self.draining) >= self._limit:
            return
        now = self.plan.start_at + dt.timedelta(seconds=self.t)
        opening = self.policy.window_opening(now)
        if opening is None:
            return
        if opening > now:
            self._window_wake = self.t + (opening - now).total_seconds()
            return
        w = self.wave_ptr
        while (self.wave_started[w] < len(wave) and len(self.draining) < self._limit
               and self.unavailable < self.plan.max_unavailable):
            hid = wave[self.wave_started[w]]
            self._emit("cordon", hid, version=self.hosts[hid].version, wave=w + 1)

    def _give_up_stuck(self) -> bool:
        """Nothing in flight, no retry due: draining hosts whose next VM fits nowhere."""
        if self.executor.in_flight() or self._to_start or self.inflight:
            return False
        if any(self.vms[v].retry_at > self.t for hid in self.draining
               for v in self.hosts[hid].queue):
            return False
        gave_up = False
        for hid in list(self.draining):
            h = self.hosts[hid]
            if h.queue and not h.outbound:
                self._emit("uncordon", hid, version=h.version,
                           reason=f"no attested, compliant, in-service host has room for"
                                  f" VM {h.queue[0]}")
                gave_up = True
        return gave_up

    # -- reporting -----------------------------------------------------------------------

    def summary(self) -> Summary:
        by: dict[str, list[str]] = {k: [] for k in ("done", "rolled_back", "failed",
                                                     "drain_failed", "aborted", "pending",
                                                     "in_flight")}
        for h in self.hosts.values():
            if h.phase in by:
                by[h.phase].append(h.id)
            elif h.phase in BUSY:
                by["in_flight"].append(h.id)
        by["held"] = [x.host for x in self.plan.held]
        by["skipped"] = [x.host for x in self.plan.skipped]
        by["up_to_date"] = list(self.plan.up_to_date)
        reasons = {h.id: h.reason for h in self.hosts.values()
                   if h.phase in FAILED and h.reason}
        return Summary(self.status if self.finished is None else self.finished,
                       self.halt_reason if self.halted else None, self.t, by, self.migrations,
                       self.failed_migrations, self.retried, round(self.max_downtime, 3),
                       round(self.total_downtime, 3), self.plan.max_unavailable,
                       self.max_seen, reasons)

    def outcome(self) -> tuple[list[HostChange], dict[str, str]]:
        """Each host's state and version now, and the host of every VM that moved."""
        hosts = [HostChange(h.id, HostState(h.state), h.version) for h in self.hosts.values()]
        return hosts, {v.id: v.host for v in self.vms.values() if v.host != self._initial[v.id]}

    def done_hosts(self) -> int:
        return sum(h.phase in TERMINAL for h in self.hosts.values() if h.wave >= 0)
