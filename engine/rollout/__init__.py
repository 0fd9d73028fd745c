"""Rollouts: moving a host group to its target image version without VM downtime.

Public surface::

    from engine.rollout import plan, Runner, Simulator, RolloutPolicy

    p = plan(snapshot, "rack-a", targets, attestor, RolloutPolicy(max_unavailable="10%"))
    summary = Runner(p, snapshot, Simulator(vms, p.policy.migration, attestor),
                     MemoryJournal()).run()

``plan`` refuses (``RolloutRefused``) a rollout whose VMs cannot fit; the ``Runner``
drives the plan through an ``Executor`` (the fleet ``Simulator`` by default), writing one
event per step to a ``Journal``; ``RolloutStore`` keeps rollouts durable in DuckDB
(pause, resume after a crash, abort); ``check_trace`` proves a trace's promises from the
trace alone. The image catalog and the verifier plug in through ``TargetSource`` and
``Attestor``. ``QemuExecutor`` is the second executor: VMs are QEMU processes and
migrations real pre-copy live migrations over QMP on loopback.

The real ports: ``CatalogTargets`` (the image catalog's group targets and approved
versions; a target that is not approved or has no signed manifest that verifies refuses
the rollout) and ``SwtpmAttestor`` (a host booted on a version is attested on a software
TPM against that version's signed manifest by ``engine.attest``'s verifier; trusted only
on a verified result)::

    targets = CatalogTargets.load(settings.images_db, keys)
    attestor = SwtpmAttestor.for_group(targets, "rack-a", snapshot.hosts)
"""

from __future__ import annotations

from engine.rollout.attestation import Attested, SwtpmAttestor
from engine.rollout.errors import (
    PolicyError,
    RolloutError,
    RolloutNotFound,
    RolloutRefused,
    RolloutStateError,
)
from engine.rollout.executor import Completion, Executor, Op
from engine.rollout.planner import HeldHost, Plan, SkippedHost, plan
from engine.rollout.policy import MigrationSettings, NonMigratableAction, RolloutPolicy, Window
from engine.rollout.ports import (
    Attestor,
    AttestOutcome,
    MemoryAttestor,
    StaticTargets,
    TargetSource,
)
from engine.rollout.qemu import MigrationRecord, QemuExecutor, QemuSettings
from engine.rollout.qemu import available as qemu_available
from engine.rollout.qemu_process import QemuError
from engine.rollout.runner import Journal, MemoryJournal, Runner, Summary
from engine.rollout.service import AttestorFactory, memory_attestor, request_resume
from engine.rollout.service import Options as RolloutOptions
from engine.rollout.service import abort as abort_rollout
from engine.rollout.service import pause as pause_rollout
from engine.rollout.service import resume as resume_rollout
from engine.rollout.service import start as start_rollout
from engine.rollout.service import status as rollout_status
from engine.rollout.simulator import Failures, SimTimings, Simulator, attestor_for
from engine.rollout.targets import CatalogTargets
from engine.rollout.tracecheck import Report as TraceReport
from engine.rollout.tracecheck import check_file as check_trace

__all__ = [
    "AttestOutcome",
    "Attested",
    "Attestor",
    "AttestorFactory",
    "CatalogTargets",
    "Completion",
    "Executor",
    "Failures",
    "HeldHost",
    "Journal",
    "MemoryAttestor",
    "MemoryJournal",
    "MigrationRecord",
    "MigrationSettings",
    "NonMigratableAction",
    "Op",
    "Plan",
    "PolicyError",
    "QemuError",
    "QemuExecutor",
    "QemuSettings",
    "RolloutError",
    "RolloutNotFound",
    "RolloutOptions",
    "RolloutPolicy",
    "RolloutRefused",
    "RolloutStateError",
    "Runner",
    "SimTimings",
    "Simulator",
    "SkippedHost",
    "StaticTargets",
    "Summary",
    "SwtpmAttestor",
    "TargetSource",
    "TraceReport",
    "Window",
    "abort_rollout",
    "attestor_for",
    "check_trace",
    "memory_attestor",
    "pause_rollout",
    "plan",
    "qemu_available",
    "request_resume",
    "resume_rollout",
    "rollout_status",
    "start_rollout",
]
