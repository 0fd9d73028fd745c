"""The evaluator seam: one small interface, one module per backend.

* :mod:`engine.decide.regorus_engine` — ``regorus`` (Rust) in a worker process, the default;
* :mod:`engine.decide.embedded` — ``regopy`` (rego-cpp) in-process, ``evaluator = "regopy"``;
* :mod:`engine.decide.remote` — an OPA server, queried with ``opa-python-client``,
  used when ``VIGIL_OPA_URL`` is set.

A backend answers one question: the value of ``data.<path>`` for an input. It raises
:class:`~engine.decide.errors.EvaluatorError` (or its subclass ``EvaluationTimeout``)
when it cannot answer; the decider turns every such failure into a reject.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

DECISION_PATH = "vigil/decision/result"
"""The query path of the default entry point, ``data.vigil.decision.result``."""


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

    @abc.abstractmethod
    def evaluate(self, input_document: dict[str, Any], path: str = DECISION_PATH) -> Evaluation:
        """Evaluate ``data.<path>`` (slash-separated) for ``input_document``."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (threads, sessions)."""
