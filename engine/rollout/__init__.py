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
``Attestor``.
"""

from __future__ import annotations

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
from engine.rollout.runner import Journal, MemoryJournal, Runner, Summary
from engine.rollout.simulator import Failures, SimTimings, Simulator

__all__ = [
    "AttestOutcome",
    "Attestor",
    "Completion",
    "Executor",
    "Failures",
    "HeldHost",
    "Journal",
    "MemoryAttestor",
    "MemoryJournal",
    "MigrationSettings",
    "NonMigratableAction",
    "Op",
    "Plan",
    "PolicyError",
    "RolloutError",
    "RolloutNotFound",
    "RolloutPolicy",
    "RolloutRefused",
    "RolloutStateError",
    "Runner",
    "SimTimings",
    "Simulator",
    "SkippedHost",
    "StaticTargets",
    "Summary",
    "TargetSource",
    "Window",
    "plan",
]
