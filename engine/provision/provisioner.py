"""Provisioning requests end to end: submit, approve or reject, launch, re-check.

:class:`Provisioner` runs the flow for a request, stores the outcome with the tenant's
signed report (:class:`~engine.provision.requests.RequestStore`) and drives its states:

* ``submit``: the flow decides; ``admit``/``patch`` -> ``awaiting_approval`` (until
  ``expires_at``), ``delay`` -> ``delayed`` (re-checked at ``recheck_at``), ``reject``
  -> ``rejected``. ``auto_approve`` approves an ``admit`` at once (the policy approves).
* ``approve``: idempotent. The approval is committed before the launch starts, so a
  service killed in between launches on restart (:meth:`resume`) and never twice (the
  launcher is idempotent per request). Approving an expired, rejected, failed or delayed
  request is refused (:class:`~engine.provision.requests.RequestConflict`).
* ``reject``: idempotent; a launched request cannot be rejected.
* :meth:`tick`: what the scheduler runs: expiries, due re-checks (the flow again, with
  the stored request), launches to retry.

Every read and move names the tenant: a request of another tenant is not found.
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from engine.decide import Image, VmShape
from engine.keys import SigningKey
from engine.provision.flow import Outcome, ProvisionAsk, ProvisionFlow
from engine.provision.launcher import Launcher, LaunchError, LaunchOrder
from engine.provision.requests import (
    RequestConflict,
    RequestNotFound,
    RequestRecord,
    RequestStatus,
    RequestStore,
)

RETRY_LAUNCH = dt.timedelta(seconds=30)
"""How long after a launch that may succeed later (``LaunchError.retry``) it is tried
again."""
DEFAULT_RECHECK = dt.timedelta(hours=24)
MIN_RECHECK = dt.timedelta(minutes=1)
"""A delay whose verdict names no re-check time is re-checked after this long."""


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def ask_to_json(ask: ProvisionAsk) -> dict[str, Any]:
    return {"tenant": ask.tenant, "vm": ask.vm.model_dump(mode="json"),
            "requested_image": ask.requested_image.model_dump(mode="json")
            if ask.requested_image else None,
            "requested_patch_level": ask.requested_patch_level,
            "host_labels": dict(ask.host_labels),
            "hosts": list(ask.hosts) if ask.hosts is not None else None}


def ask_from_json(value: dict[str, Any]) -> ProvisionAsk:
    image = value.get("requested_image")
    hosts = value.get("hosts")
    return ProvisionAsk(tenant=str(value["tenant"]), vm=VmShape.model_validate(value["vm"]),
                        requested_image=Image.model_validate(image) if image else None,
                        requested_patch_level=value.get("requested_patch_level"),
                        host_labels=dict(value.get("host_labels") or {}),
                        hosts=tuple(hosts) if hosts is not None else None)


def _status_of(outcome: Outcome) -> RequestStatus:
    return {"admit": "awaiting_approval", "patch": "awaiting_approval", "delay": "delayed",
            "reject": "rejected"}[outcome.verdict]  # type: ignore[return-value]


class Provisioner:
    """Provisioning requests over the flow, the request store and the launcher."""

    def __init__(self, flow: ProvisionFlow, store: RequestStore, launcher: Launcher, *,
                 report_key: SigningKey | None, approval_ttl: float,
                 clock: Callable[[], dt.datetime] = _utcnow) -> None:
        self.flow = flow
        self.store = store
        self.launcher = launcher
        self.report_key = report_key
        self.approval_ttl = dt.timedelta(seconds=approval_ttl)
        self.clock = clock
        self._launching: set[str] = set()
        self._lock = threading.Lock()
        self._retry_at: dict[str, dt.datetime] = {}
        self.woken = threading.Event()
        """Set whenever a request gets a time the scheduler must wake for."""
        self._wakes: list[dt.datetime | None] = []  # the times woken for (None: re-read)
        self._wake_lock = threading.Lock()

    def wake(self, at: dt.datetime | None = None) -> None:
        """Tell the scheduler that something is due at ``at`` (None: re-read what is
        due from the store)."""
        with self._wake_lock:
            self._wakes.append(at)
        self.woken.set()

    def take_wakes(self) -> tuple[bool, dt.datetime | None]:
        """The wake-ups since the last call: (whether the store must be read again,
        the earliest time woken for)."""
        with self._wake_lock:
            wakes, self._wakes = self._wakes, []
        times = [t for t in wakes if t is not None]
        return len(times) < len(wakes), min(times) if times else None

    @staticmethod
    def due_of(record: RequestRecord) -> dt.datetime | None:
        """When the scheduler has to act on ``record`` (None: not unless it changes)."""
        if record.status == "delayed":
            return record.recheck_at
        if record.status == "awaiting_approval":
            return record.expires_at
        return None

    # -- the outcome's fields ------------------------------------------------------------

    def _fields(self, outcome: Outcome, request_id: str, now: dt.datetime) -> dict[str, Any]:
        report = self.flow.report(outcome, self.report_key, report_id=request_id)
        status = _status_of(outcome)
        recheck = None
        if status == "delayed":
            recheck = outcome.recheck_at or now + DEFAULT_RECHECK
            recheck = max(recheck, now + MIN_RECHECK)
        return {
            "verdict": outcome.verdict,
            "host_id": outcome.host.id if outcome.host else None,
            "target_host": outcome.target_host,
            "target_image_version": outcome.target_image_version,
            "patch_host_first": outcome.patch_host_first,
            "decision_id": outcome.decision_id,
            "reasons": list(outcome.reasons), "warnings": list(outcome.warnings),
            "steps": [asdict(s) for s in outcome.steps],
            "failed_step": outcome.failed_step,
            "report": report[0].to_json() if report else None,
            "report_jws": report[1] if report else None,
            "preparation": list(outcome.preparation),
            "recheck_at": recheck,
            "expires_at": now + self.approval_ttl if status == "awaiting_approval" else None,
        }

    # -- requests -------------------------------------------------------------------------

    def submit(self, ask: ProvisionAsk, *, actor: str, auto_approve: bool = False
               ) -> RequestRecord:
        """Decide ``ask`` and record it (see the module docstring)."""
        request_id = str(uuid.uuid4())
        outcome = self.flow.run(ask)
        now = self.clock()
        fields = self._fields(outcome, request_id, now)
        record = RequestRecord(request_id=request_id, tenant=ask.tenant,
                               status=_status_of(outcome), ask=ask_to_json(ask), checks=1,
                               created_at=now, updated_at=now, **fields)
        stored = self.store.create(record, actor=actor)
        due = self.due_of(stored)
        if due is not None:
            self.wake(due)
        if auto_approve and stored.status == "awaiting_approval" and stored.verdict == "admit":
            return self.approve(request_id, tenant=ask.tenant, actor="policy (auto-approve)")
        return stored

    def get(self, request_id: str, *, tenant: str | None) -> RequestRecord:
        """The request; ``tenant`` (None: any) must be its tenant, else not found."""
        try:
            record = self.store.get(request_id)
        except RequestNotFound:
            raise RequestNotFound(f"no provisioning request {request_id}") from None
        if tenant is not None and record.tenant != tenant:
            raise RequestNotFound(f"no provisioning request {request_id}")
        return record

    def find(self, *, tenant: str | None, status: str | None = None, limit: int = 100
             ) -> list[RequestRecord]:
        return self.store.find(tenant=tenant, status=status, limit=limit)

    def approve(self, request_id: str, *, tenant: str | None, actor: str) -> RequestRecord:
        record = self.get(request_id, tenant=tenant)
        now = self.clock()
        if record.status in ("approved", "launched"):
            return record  # approved before: launched once, not again
        if (record.status == "awaiting_approval" and record.expires_at is not None
                and now >= record.expires_at):
            self.store.move(request_id, {"awaiting_approval"}, "expired", actor="vigil",
                            at=now, event="expired")
            record = self.get(request_id, tenant=tenant)
        if record.status != "awaiting_approval":
            when = (f" (it expired at {record.expires_at:%Y-%m-%d %H:%M:%S} UTC)"
                    if record.status == "expired" and record.expires_at else "")
            raise RequestConflict(f"provisioning request {request_id} is {record.status}"
                                  f"{when}; it cannot be approved", status=record.status,
                                  tip="submit a new request" if record.status != "delayed"
                                  else "it is re-checked at its recheck time")
        moved, record = self.store.move(request_id, {"awaiting_approval"}, "approved",
                                        actor=actor, at=now, event="approved",
                                        approved_at=now, approved_by=actor)
        if not moved:
            if record.status in ("approved", "launched"):
                return record  # the other approval won; it launches
            raise RequestConflict(f"provisioning request {request_id} is {record.status}; "
                                  "it cannot be approved", status=record.status)
        return self._launch(record)

    def reject(self, request_id: str, *, tenant: str | None, actor: str,
               reason: str | None = None) -> RequestRecord:
        record = self.get(request_id, tenant=tenant)
        if record.status == "rejected":
            return record
        moved, record = self.store.move(
            request_id, {"awaiting_approval", "delayed"}, "rejected", actor=actor,
            at=self.clock(), event="rejected", detail={"reason": reason} if reason else None)
        if not moved and record.status != "rejected":
            raise RequestConflict(f"provisioning request {request_id} is {record.status}; "
                                  "it cannot be rejected", status=record.status)
        return record

    # -- launching ------------------------------------------------------------------------

    def _order(self, record: RequestRecord) -> LaunchOrder:
        vm = record.ask.get("vm", {})
        return LaunchOrder(request_id=record.request_id, tenant=record.tenant,
                           vm_name=str(vm.get("name", record.request_id)),
                           vcpus=int(vm.get("vcpus", 1)),
                           memory_mib=int(vm.get("memory_mib", 1)),
                           host=record.target_host or record.host_id or "",
                           image_version=record.target_image_version,
                           patch_host_first=record.patch_host_first)

    def _launch(self, record: RequestRecord) -> RequestRecord:
        with self._lock:
            if record.request_id in self._launching:
                return record
            self._launching.add(record.request_id)
        try:
            if not (record.target_host or record.host_id):
                _, done = self.store.move(record.request_id, {"approved"}, "failed",
                                          actor="vigil", at=self.clock(), event="failed",
                                          failure="the request names no host to launch on")
                return done
            try:
                launched = self.launcher.launch(self._order(record))
            except LaunchError as exc:
                now = self.clock()
                if exc.retry:
                    self._retry_at[record.request_id] = now + RETRY_LAUNCH
                    self.store.note(record.request_id, actor="vigil", at=now,
                                    event="launch_deferred", detail={"reason": exc.summary})
                    self.wake(now + RETRY_LAUNCH)
                    return self.store.get(record.request_id)
                _, done = self.store.move(record.request_id, {"approved"}, "failed",
                                          actor="vigil", at=now, event="failed",
                                          failure=exc.summary)
                return done
            self._retry_at.pop(record.request_id, None)
            _, done = self.store.move(record.request_id, {"approved"}, "launched",
                                      actor="vigil", at=self.clock(), event="launched",
                                      detail={"again": launched.again},
                                      launched_at=self.clock(), launch_ref=launched.ref)
            return done
        finally:
            with self._lock:
                self._launching.discard(record.request_id)

    def resume(self) -> list[str]:
        """Launch every approved request not launched yet (after a restart); the ids."""
        out = []
        for record in self.store.approved():
            self._launch(record)
            out.append(record.request_id)
        return out

    # -- the scheduler's work -------------------------------------------------------------

    def recheck(self, record: RequestRecord) -> RequestRecord:
        """Run the flow again for a delayed request, and record the new outcome."""
        ask = ask_from_json(record.ask)
        outcome = self.flow.run(ask)
        now = self.clock()
        fields = self._fields(outcome, record.request_id, now)
        _, done = self.store.move(record.request_id, {"delayed"}, _status_of(outcome),
                                  actor="vigil (re-check)", at=now, event="rechecked",
                                  detail={"verdict": outcome.verdict,
                                          "decision_id": outcome.decision_id},
                                  checks=record.checks + 1, **fields)
        due = self.due_of(done)
        if due is not None:
            self.wake(due)
        return done

    def tick(self, now: dt.datetime | None = None) -> dict[str, list[str]]:
        """Expire, re-check and retry what is due at ``now``; the ids per kind."""
        now = now or self.clock()
        out: dict[str, list[str]] = {"expired": [], "rechecked": [], "launched": []}
        for record in self.store.due_expiries(now):
            moved, _ = self.store.move(record.request_id, {"awaiting_approval"}, "expired",
                                       actor="vigil", at=now, event="expired")
            if moved:
                out["expired"].append(record.request_id)
        for record in self.store.due_rechecks(now):
            self.recheck(record)
            out["rechecked"].append(record.request_id)
        for record in self.store.approved():
            due = self._retry_at.get(record.request_id)
            if due is None or due <= now:
                self._launch(record)
                out["launched"].append(record.request_id)
        return out

    def next_due(self) -> dt.datetime | None:
        times = [t for t in (self.store.next_due(), *self._retry_at.values()) if t]
        return min(times) if times else None


class Scheduler:
    """A thread in the service that runs :meth:`Provisioner.tick` when something is due
    (re-checks at their predicted dates, expiries, launches to retry), reading the time
    from the provisioner's clock, which tests replace."""

    def __init__(self, provisioner: Provisioner, *, poll: float = 1.0,
                 on_error: Callable[[BaseException], None] | None = None) -> None:
        self.provisioner = provisioner
        self.poll = poll
        self.on_error = on_error
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.ticks = 0

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="vigil-scheduler",
                                            daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.provisioner.woken.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self) -> None:
        """Sleep until the next due time (at most ``poll`` seconds, so that a clock
        that jumps is noticed) or a wake-up: the store is read for what is due only when
        something is due, after a tick, and when a wake-up asks for it; a wake-up naming
        its time only moves the next due time earlier."""
        p = self.provisioner
        p.take_wakes()
        due: dt.datetime | None = None
        read = True
        while not self._stop.is_set():
            wait = self.poll
            try:
                if read:
                    due, read = p.next_due(), False
                now = p.clock()
                if due is not None and due <= now:
                    p.tick()
                    self.ticks += 1
                    due = p.next_due()
                    now = p.clock()
                if due is not None and due > now:
                    wait = min(self.poll, (due - now).total_seconds())
                # still due after a tick (it could not settle it): try again after poll
            except Exception as exc:  # a failed tick is retried; the service stays up
                read = True
                if self.on_error is not None:
                    self.on_error(exc)
            if p.woken.wait(wait):
                p.woken.clear()
                again, earliest = p.take_wakes()
                read = read or again
                if earliest is not None and (due is None or earliest < due):
                    due = earliest
