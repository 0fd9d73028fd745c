"""The evaluator seam: regorus and rego-cpp turn a timeout into a reject, and an abandoned
evaluation does not poison the next one (OPA's engine stops at its deadline itself:
tests/opa/test_opa_engine.py)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from engine.decide import Decider
from tests.decide.conftest import document
from tests.decide.evaluators.conftest import QUICK, blocked, quick_policy, stalled


@pytest.mark.parametrize("name", ["regorus", "regopy"])
def test_real_timeout_of_an_embedded_evaluator_rejects(tmp_path: Path, name: str,
                                                      release: threading.Event) -> None:
    from engine.decide.evaluators.regopy_engine import EmbeddedEvaluator
    from engine.decide.evaluators.regorus_engine import RegorusEvaluator

    kind = RegorusEvaluator if name == "regorus" else EmbeddedEvaluator
    evaluator = kind(quick_policy(tmp_path), entrypoints=(QUICK,), timeout=0.05)
    if name == "regorus":
        stalled(evaluator)
    else:
        blocked(evaluator, release)
    decider = Decider(evaluator, path=QUICK)
    result = decider.decide(document())
    assert result.verdict == "reject"
    assert [r.rule for r in result.reasons] == ["evaluation_timeout"]
    # the abandoned evaluation does not poison the next one: it times out again, cleanly
    if name == "regorus":
        stalled(evaluator)
    assert decider.decide(document()).reasons[0].rule == "evaluation_timeout"
    evaluator.close()
