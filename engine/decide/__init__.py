"""Decide with Rego: input documents, evaluators, signed OPA bundles, decision log.

Public surface::

    from engine.decide import Decider, build_input, load_settings

    with Decider.from_settings(load_settings()) as decider:
        verdict = decider.decide(build_input(request, host, report, patched, now))
        verdict.verdict          # "admit" | "patch" | "delay" | "reject"

        # or from a verified attestation result and the PVDB in one call
        placement = decide_placement(decider, pvdb, request, result, patched=patched)

Everything else in this package is internal.
"""

from __future__ import annotations

from engine.config import load_settings
from engine.decide.bundle import PolicySet
from engine.decide.decider import Decider, evaluator_for, load_policy
from engine.decide.errors import (
    BundleError,
    BundleVerificationError,
    DecideError,
    EvaluationTimeout,
    EvaluatorError,
    InputDocumentError,
    PolicyError,
)
from engine.decide.evaluator import DECISION_PATH, Evaluation, Evaluator
from engine.decide.input import (
    AttestationFacts,
    HostFacts,
    InputDocument,
    PatchedConfiguration,
    RequestFacts,
    build_input,
    json_schema,
    validate,
)
from engine.decide.placement import Placement, decide_placement, host_facts
from engine.decide.verdict import Decision, Obligation, Reason, Verdict

__all__ = [
    "DECISION_PATH",
    "AttestationFacts",
    "BundleError",
    "BundleVerificationError",
    "DecideError",
    "Decider",
    "Decision",
    "Evaluation",
    "EvaluationTimeout",
    "Evaluator",
    "EvaluatorError",
    "HostFacts",
    "InputDocument",
    "InputDocumentError",
    "Obligation",
    "PatchedConfiguration",
    "Placement",
    "PolicyError",
    "PolicySet",
    "Reason",
    "RequestFacts",
    "Verdict",
    "build_input",
    "decide_placement",
    "evaluator_for",
    "host_facts",
    "json_schema",
    "load_policy",
    "load_settings",
    "validate",
]
