"""Decide with Rego: input documents, evaluators, signed OPA bundles, decision log.

Public surface::

    from engine.config import load_settings
    from engine.decide import Decider, build_input

    with Decider.from_settings(load_settings()) as decider:
        verdict = decider.decide(build_input(request, host_id, summary, report, patched, now))
        verdict.verdict          # "admit" | "patch" | "delay" | "reject"

and, for ``vigil policy`` / ``bundle`` / ``decisions`` / ``schema``: the policy tests
(:func:`load_policy_tests`, :func:`run_policy_tests`), bundles (:func:`load_directory`,
:func:`build_bundle`, :func:`read_bundle`), the bundle server (:class:`BundleFolder`,
:func:`bundle_server_app`), the decision log and its replay (:class:`DecisionLog`,
:class:`Replayer`; the record and checkpoint formats ``engine.audit`` verifies:
:class:`StoredRow`, :class:`Checkpoint`, :func:`checkpoint_payload`, :func:`event_frame`)
and the input document's schema (:func:`json_schema`).

Everything else in this package is internal; its modules stay importable (the tests read
them): ``evaluators`` (the evaluator seam and one module per backend), ``input_document``
(the versioned contract), ``input_builder``, ``decider``, ``bundle``, ``signing``,
``bundle_server``, ``decision_log``, ``replay``, ``policytest``, ``explain``, ``wiring``,
``verdict``, ``errors``.
Deciding a placement from a verified attestation result and the PVDB in one call is
:func:`engine.provision.decide_placement`.

The names are loaded when first used (importing this package loads nothing else), so
that the regorus worker process, ``python -m engine.decide.evaluators.rego_worker``,
starts fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_HOME: dict[str, str] = {
    "PolicySet": "engine.decide.bundle",
    "build_bundle": "engine.decide.bundle:build",
    "load_directory": "engine.decide.bundle",
    "read_bundle": "engine.decide.bundle:read",
    "BundleFolder": "engine.decide.bundle_server",
    "bundle_server_app": "engine.decide.bundle_server:app",
    "Decider": "engine.decide.decider",
    "Posture": "engine.decide.decider",
    "PostureCache": "engine.decide.decider",
    "compose": "engine.decide.decider",
    "posture_of": "engine.decide.decider",
    "POSTURE_PATH": "engine.decide.evaluators",
    "build_decision_document": "engine.decide.input_builder",
    "build_posture_document": "engine.decide.input_builder",
    "merge_documents": "engine.decide.input_builder:merge",
    "split_document": "engine.decide.input_builder:split",
    "DecisionDocument": "engine.decide.input_document",
    "PostureDocument": "engine.decide.input_document",
    "DecisionLog": "engine.decide.decision_log",
    "CHECKPOINT_TYP": "engine.decide.decision_log",
    "GENESIS": "engine.decide.decision_log",
    "Checkpoint": "engine.decide.decision_log",
    "DecisionRecord": "engine.decide.decision_log",
    "StoredRow": "engine.decide.decision_log",
    "ChainRow": "engine.decide.decision_log",
    "canonical_json": "engine.decide.decision_log:canonical",
    "checkpoint_payload": "engine.decide.decision_log",
    "event_frame": "engine.decide.decision_log",
    "hashed_timestamp": "engine.decide.decision_log",
    "opa_timestamp": "engine.decide.decision_log",
    "BundleSource": "engine.decide.replay",
    "Replayed": "engine.decide.replay",
    "EMBEDDED": "engine.decide.evaluators",
    "Evaluator": "engine.decide.evaluators",
    "embedded_evaluator": "engine.decide.evaluators",
    "RequestFacts": "engine.decide.input_builder",
    "build_input": "engine.decide.input_builder",
    "Image": "engine.decide.input_document",
    "InputDocument": "engine.decide.input_document",
    "PatchedConfiguration": "engine.decide.input_document",
    "VmShape": "engine.decide.input_document",
    "json_schema": "engine.decide.input_document",
    "validate": "engine.decide.input_document",
    "load_policy_tests": "engine.decide.policytest:load",
    "run_policy_tests": "engine.decide.policytest:run",
    "run_policy_tests_with_coverage": "engine.decide.policytest:run_with_coverage",
    "load_policy_tests_of_roots": "engine.decide.policytest:load_tests_of_roots",
    "unwired_site_rules": "engine.decide.wiring:unwired",
    "Replayer": "engine.decide.replay",
    "Verdict": "engine.decide.verdict",
    "Decision": "engine.decide.verdict",
}
"""Each public name and the module that defines it (``module:name`` when it is known by
another name there)."""

if TYPE_CHECKING:
    from engine.decide.bundle import PolicySet, load_directory
    from engine.decide.bundle import build as build_bundle
    from engine.decide.bundle import read as read_bundle
    from engine.decide.bundle_server import BundleFolder
    from engine.decide.bundle_server import app as bundle_server_app
    from engine.decide.decider import Decider, Posture, PostureCache, compose, posture_of
    from engine.decide.decision_log import (
        CHECKPOINT_TYP,
        GENESIS,
        ChainRow,
        Checkpoint,
        DecisionLog,
        DecisionRecord,
        StoredRow,
        checkpoint_payload,
        event_frame,
        hashed_timestamp,
        opa_timestamp,
    )
    from engine.decide.decision_log import canonical as canonical_json
    from engine.decide.evaluators import (
        EMBEDDED,
        POSTURE_PATH,
        Evaluator,
        embedded_evaluator,
    )
    from engine.decide.input_builder import (
        RequestFacts,
        build_decision_document,
        build_input,
        build_posture_document,
    )
    from engine.decide.input_builder import merge as merge_documents
    from engine.decide.input_builder import split as split_document
    from engine.decide.input_document import (
        DecisionDocument,
        Image,
        InputDocument,
        PatchedConfiguration,
        PostureDocument,
        VmShape,
        json_schema,
        validate,
    )
    from engine.decide.policytest import load as load_policy_tests
    from engine.decide.policytest import load_tests_of_roots as load_policy_tests_of_roots
    from engine.decide.policytest import run as run_policy_tests
    from engine.decide.policytest import run_with_coverage as run_policy_tests_with_coverage
    from engine.decide.replay import BundleSource, Replayed, Replayer
    from engine.decide.verdict import Decision, Verdict
    from engine.decide.wiring import unwired as unwired_site_rules
else:
    def __getattr__(name: str) -> Any:
        home = _HOME.get(name)
        if home is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        module, _, attribute = home.partition(":")
        value = getattr(importlib.import_module(module), attribute or name)
        globals()[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *__all__})

__all__ = [
    "CHECKPOINT_TYP",
    "EMBEDDED",
    "GENESIS",
    "POSTURE_PATH",
    "BundleFolder",
    "BundleSource",
    "ChainRow",
    "Checkpoint",
    "Decider",
    "Decision",
    "DecisionDocument",
    "DecisionLog",
    "DecisionRecord",
    "Evaluator",
    "Image",
    "InputDocument",
    "PatchedConfiguration",
    "PolicySet",
    "Posture",
    "PostureCache",
    "PostureDocument",
    "Replayed",
    "Replayer",
    "RequestFacts",
    "StoredRow",
    "Verdict",
    "VmShape",
    "build_bundle",
    "build_decision_document",
    "build_input",
    "build_posture_document",
    "bundle_server_app",
    "canonical_json",
    "checkpoint_payload",
    "compose",
    "embedded_evaluator",
    "event_frame",
    "hashed_timestamp",
    "json_schema",
    "load_directory",
    "load_policy_tests",
    "load_policy_tests_of_roots",
    "merge_documents",
    "opa_timestamp",
    "posture_of",
    "read_bundle",
    "run_policy_tests",
    "run_policy_tests_with_coverage",
    "split_document",
    "unwired_site_rules",
    "validate",
]
