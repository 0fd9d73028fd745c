"""Decide with Rego: input documents, evaluators, signed OPA bundles, decision log.

Public surface::

    from engine.decide import Decider, build_input, load_settings

    with Decider.from_settings(load_settings()) as decider:
        verdict = decider.decide(build_input(request, host_id, summary, report, patched, now))
        verdict.verdict          # "admit" | "patch" | "delay" | "reject"

Everything else in this package is internal. Deciding a placement from a verified
attestation result and the PVDB in one call is :func:`engine.provision.decide_placement`.
The names are loaded when first used (importing this package loads nothing else), so
that the regorus worker process, ``python -m engine.decide.evaluators.rego_worker``,
starts fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_HOME: dict[str, str] = {
    "load_settings": "engine.config",
    "PolicySet": "engine.decide.bundle",
    "load_policy": "engine.decide.bundle",
    "Decider": "engine.decide.decider",
    "BundleError": "engine.decide.errors",
    "BundleVerificationError": "engine.decide.errors",
    "DecideError": "engine.decide.errors",
    "InputDocumentError": "engine.decide.errors",
    "PolicyError": "engine.decide.errors",
    "DECISION_PATH": "engine.decide.evaluators",
    "Evaluation": "engine.decide.evaluators",
    "EvaluationTimeout": "engine.decide.evaluators",
    "Evaluator": "engine.decide.evaluators",
    "EvaluatorError": "engine.decide.evaluators",
    "evaluator_for": "engine.decide.evaluators",
    "InputDocument": "engine.decide.input_document",
    "PatchedConfiguration": "engine.decide.input_document",
    "json_schema": "engine.decide.input_document",
    "validate": "engine.decide.input_document",
    "RequestFacts": "engine.decide.input_builder",
    "build_input": "engine.decide.input_builder",
    "Decision": "engine.decide.verdict",
    "Obligation": "engine.decide.verdict",
    "Reason": "engine.decide.verdict",
    "Verdict": "engine.decide.verdict",
}
"""Each public name and the module that defines it."""

if TYPE_CHECKING:
    from engine.config import load_settings
    from engine.decide.bundle import PolicySet, load_policy
    from engine.decide.decider import Decider
    from engine.decide.errors import (
        BundleError,
        BundleVerificationError,
        DecideError,
        InputDocumentError,
        PolicyError,
    )
    from engine.decide.evaluators import (
        DECISION_PATH,
        Evaluation,
        EvaluationTimeout,
        Evaluator,
        EvaluatorError,
        evaluator_for,
    )
    from engine.decide.input_builder import RequestFacts, build_input
    from engine.decide.input_document import (
        InputDocument,
        PatchedConfiguration,
        json_schema,
        validate,
    )
    from engine.decide.verdict import Decision, Obligation, Reason, Verdict
else:
    def __getattr__(name: str) -> Any:
        home = _HOME.get(name)
        if home is None:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home), name)
        globals()[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *__all__})

__all__ = [
    "DECISION_PATH",
    "BundleError",
    "BundleVerificationError",
    "DecideError",
    "Decider",
    "Decision",
    "Evaluation",
    "EvaluationTimeout",
    "Evaluator",
    "EvaluatorError",
    "InputDocument",
    "InputDocumentError",
    "Obligation",
    "PatchedConfiguration",
    "PolicyError",
    "PolicySet",
    "Reason",
    "RequestFacts",
    "Verdict",
    "build_input",
    "evaluator_for",
    "json_schema",
    "load_policy",
    "load_settings",
    "validate",
]
