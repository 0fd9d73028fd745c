"""The evaluator seam: one small interface, one module per backend.

* :mod:`.regorus_engine` — ``regorus`` (Rust) in a worker process (:mod:`.rego_worker`),
  the default, ``evaluator = "regorus"``;
* :mod:`.regopy_engine` — ``regopy`` (rego-cpp) in-process, ``evaluator = "regopy"``;
* :mod:`.remote` — an OPA server, queried with ``opa-python-client``, used when
  ``VIGIL_OPA_URL`` is set.

A backend answers one question: the value of ``data.<path>`` for an input. It raises
:class:`EvaluatorError` (or its subclass :class:`EvaluationTimeout`) when it cannot
answer; the decider turns every such failure into a reject. :func:`evaluator_for`
chooses the backend the settings name.

This module imports no backend (each loads its Rego engine when it is first chosen), so
that ``python -m engine.decide.evaluators.rego_worker`` starts in a fraction of a second.
"""

from __future__ import annotations

import abc
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine.decide.errors import DecideError
from engine.decide.evaluators._cxx_runtime import load_cxx_runtime
from engine.errors import ConfigError

# before any evaluator module can import regopy (engine/decide/evaluators/_cxx_runtime.py)
load_cxx_runtime()

if TYPE_CHECKING:
    from engine.config import Settings
    from engine.decide.bundle import PolicySet

__all__ = [
    "DECISION_PATH",
    "EMBEDDED",
    "POSTURE_PATH",
    "Evaluation",
    "EvaluationTimeout",
    "Evaluator",
    "EvaluatorError",
    "embedded_evaluator",
    "entrypoints_for",
    "evaluator_for",
]

DECISION_PATH = "vigil/decision/result"
"""The query path of the default entry point, ``data.vigil.decision.result``."""

POSTURE_PATH = "vigil/posture/result"
"""The query path of the host posture, ``data.vigil.posture.result`` (input schema
version 2): a policy that defines it is decided in two stages."""

_POSTURE_PACKAGE = re.compile(r"^package\s+vigil\.posture\s*(#.*)?$", re.MULTILINE)


def entrypoints_for(policy: PolicySet) -> tuple[str, ...]:
    """The entry points an evaluator of ``policy`` prepares: the decision, and the host
    posture when a module of the policy is ``package vigil.posture``."""
    staged = any(_POSTURE_PACKAGE.search(source) for source in policy.policy_modules.values())
    return (DECISION_PATH, POSTURE_PATH) if staged else (DECISION_PATH,)


class EvaluatorError(DecideError):
    """An evaluator backend failed: the decision is a reject (fail closed)."""


class EvaluationTimeout(EvaluatorError):
    """An evaluation did not finish within the configured decision timeout."""


@dataclass(frozen=True)
class Evaluation:
    """The answer of one evaluation."""

    defined: bool
    """False when the queried document is undefined for this input."""
    value: Any
    """The document's value (None when undefined)."""
    timings_ns: dict[str, int] = field(default_factory=dict)
    """OPA-style metrics, e.g. ``timer_rego_query_eval_ns``."""


class Evaluator(abc.ABC):
    """Evaluates a query path of a loaded policy set against an input document."""

    name: str
    """Backend name recorded in the decision log (``regorus``, ``regopy``, ``opa``)."""

    @property
    @abc.abstractmethod
    def bundle_revision(self) -> str | None:
        """The revision of the policy bundle this evaluator serves."""

    @property
    def entrypoints(self) -> tuple[str, ...]:
        """The query paths this evaluator prepared (the decision's by default)."""
        given: tuple[str, ...] = getattr(self, "_entrypoints", (DECISION_PATH,))
        return given

    @abc.abstractmethod
    def evaluate(self, input_document: dict[str, Any], path: str = DECISION_PATH) -> Evaluation:
        """Evaluate ``data.<path>`` (slash-separated) for ``input_document``."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (threads, sessions)."""


EMBEDDED = ("regorus", "regopy", "opa")
"""Names of the in-process evaluators (``Settings.evaluator``)."""


def embedded_evaluator(name: str, policy: PolicySet, *, timeout: float | None,
                       memory_limit: int | None = None,
                       entrypoints: tuple[str, ...] | None = None) -> Evaluator:
    """An in-process evaluator by name: ``regorus``, ``regopy`` or ``opa`` (OPA's own Go
    engine, :mod:`.opa_engine`), prepared for ``entrypoints`` (default:
    :func:`entrypoints_for` the policy). ``memory_limit`` caps regorus's worker process
    (default: its own default); the others run in this process and are not capped."""
    paths = entrypoints if entrypoints is not None else entrypoints_for(policy)
    if name == "regorus":
        from engine.decide.evaluators.regorus_engine import (
            DEFAULT_MEMORY_LIMIT,
            RegorusEvaluator,
        )

        return RegorusEvaluator(policy, timeout=timeout, entrypoints=paths,
                                memory_limit=memory_limit or DEFAULT_MEMORY_LIMIT)
    if name == "regopy":
        from engine.decide.evaluators.regopy_engine import EmbeddedEvaluator

        return EmbeddedEvaluator(policy, timeout=timeout, entrypoints=paths)
    if name == "opa":
        from engine.decide.evaluators.opa_engine import OpaEvaluator

        return OpaEvaluator(policy, timeout=timeout, entrypoints=paths)
    raise ConfigError(f"unknown evaluator {name!r}", tip=f"use one of {', '.join(EMBEDDED)}")


def evaluator_for(settings: Settings, policy: PolicySet | None = None) -> Evaluator:
    """The configured backend: OPA when ``opa_url`` is set, else the in-process
    ``settings.evaluator`` on ``policy`` (default: the policy the settings name)."""
    if settings.opa_url:
        from engine.decide.evaluators.remote import RemoteEvaluator

        return RemoteEvaluator(settings.opa_url, timeout=settings.decision_timeout)
    if policy is None:
        from engine.decide.bundle import load_policy

        policy = load_policy(settings)
    return embedded_evaluator(settings.evaluator, policy, timeout=settings.decision_timeout,
                              memory_limit=settings.decision_memory_limit)
