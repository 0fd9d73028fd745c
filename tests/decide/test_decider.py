"""The decider: every verdict end to end, schema refusal, fail closed."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from engine.decide import Decider, Evaluator
from engine.decide.errors import InputDocumentError
from engine.decide.evaluators import Evaluation, EvaluationTimeout, EvaluatorError
from tests.decide.conftest import PATCHED_READY, VULN_IN_WINDOW, document


@pytest.mark.parametrize(("changes", "verdict", "rule"), [
    ({}, "admit", None),
    ({"vulnerabilities": [VULN_IN_WINDOW]}, "delay", "fix_expected_within_window"),
    ({"vulnerabilities": [VULN_IN_WINDOW], "patched_configuration": PATCHED_READY}, "patch",
     "patched_configuration_ready"),
    ({"vulnerabilities": [dict(VULN_IN_WINDOW, kev={"date_added": "2025-12-01",
                                                    "due_date": None,
                                                    "known_ransomware_use": True})]},
     "reject", "kev_without_patched_configuration"),
])
def test_each_verdict_end_to_end(embedded: Evaluator, changes: dict[str, Any],
                                 verdict: str, rule: str | None) -> None:
    result = Decider(embedded).decide(document(**changes))
    assert result.verdict == verdict
    assert not result.fail_closed
    assert [r.rule for r in result.reasons] == ([rule] if rule else [])
    assert result.bundle_revision and result.bundle_revision.startswith("dev-")


def test_delay_obligations_are_typed(embedded: Evaluator) -> None:
    result = Decider(embedded).decide(document(vulnerabilities=[VULN_IN_WINDOW]))
    by_type = {o.type: o for o in result.obligations}
    assert by_type["recheck_at"].at == dt.datetime(2026, 1, 10, tzinfo=dt.UTC)
    assert by_type["prepare_patched_configuration"].vulnerabilities == ["CVE-2026-0001"]


def test_schema_invalid_input_is_refused_naming_the_field(embedded: Evaluator) -> None:
    bad = document()
    bad["host"]["attestation"]["status"] = "fine"
    del bad["decision_time"]
    with pytest.raises(InputDocumentError) as caught:
        Decider(embedded).decide(bad)
    assert "$.host.attestation.status" in caught.value.fields
    assert "$.decision_time" in caught.value.fields
    assert "$.host.attestation.status: 'fine' is not one of" in caught.value.summary


class _Stub(Evaluator):
    name = "stub"

    def __init__(self, answer: Evaluation | Exception) -> None:
        self.answer = answer

    @property
    def bundle_revision(self) -> str | None:
        return "stub-1"

    def evaluate(self, input_document: dict[str, Any], path: str = "") -> Evaluation:
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


@pytest.mark.parametrize(("answer", "rule"), [
    (Evaluation(defined=False, value=None), "evaluation_undefined"),
    (EvaluatorError("rego-cpp evaluation failed: boom"), "evaluator_error"),
    (EvaluationTimeout("did not finish within 1 s"), "evaluation_timeout"),
    (Evaluation(defined=True, value={"verdict": "admit", "reasons": "yes"}),
     "malformed_decision"),
    (Evaluation(defined=True, value={"verdict": "maybe"}), "malformed_decision"),
])
def test_fail_closed(answer: Evaluation | Exception, rule: str) -> None:
    result = Decider(_Stub(answer)).decide(document())
    assert result.verdict == "reject"
    assert result.fail_closed
    assert [r.rule for r in result.reasons] == [rule]
    assert "fail closed" in result.reasons[0].message
