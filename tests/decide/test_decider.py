"""The decider: every verdict end to end, schema refusal, fail closed, the input builder."""

from __future__ import annotations

import datetime as dt
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.attest.result import Failure, ResultSummary
from engine.decide import (
    Decider,
    Evaluator,
    PatchedConfiguration,
    RequestFacts,
    build_input,
)
from engine.decide.bundle import load_directory
from engine.decide.errors import InputDocumentError
from engine.decide.evaluators import (
    EMBEDDED,
    Evaluation,
    EvaluationTimeout,
    EvaluatorError,
    embedded_evaluator,
)
from engine.decide.input_document import Image, VmShape
from engine.model import ImageRef
from engine.pvdb import AffectingReport, Availability, AvailabilityBasis, Component, Finding, Fix
from engine.pvdb.query_models import FixStatus, Kev, Severity
from tests.decide.conftest import NOW, PATCHED_READY, POLICIES, VULN_IN_WINDOW, document
from tests.tools import HANG_GUARD


@pytest.fixture(scope="module", params=EMBEDDED)
def embedded(request: pytest.FixtureRequest) -> Evaluator:
    """Each in-process evaluator in turn: regorus (the default) and rego-cpp."""
    return embedded_evaluator(request.param, load_directory(POLICIES, ["vigil"]),
                              timeout=HANG_GUARD)


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


# The timeouts below happen by construction, whatever the load: the regorus worker is
# stopped (SIGSTOP) before it is asked, and a rego-cpp evaluation waits on an event the test
# sets only at the end. Nothing is left running afterwards (the stopped worker is killed,
# the blocked threads are released and finish at once).


def _quick_policy(tmp_path: Path) -> Any:
    folder = tmp_path / "quick" / "decision"
    folder.mkdir(parents=True)
    (folder / "decision.rego").write_text(
        "package quick.decision\n\nimport rego.v1\n\nresult := {\"verdict\": \"admit\"}\n")
    return load_directory(tmp_path, ["quick"])


QUICK = "quick/decision/result"


def _stalled(evaluator: Any) -> Any:
    """The regorus evaluator's worker process, started if need be and stopped: it cannot
    answer until it is killed."""
    if evaluator._child is None:
        evaluator._child = evaluator._start()
    child = evaluator._child
    os.kill(child.process.pid, signal.SIGSTOP)
    return child


@pytest.fixture()
def release() -> Iterator[threading.Event]:
    """Set at the end of the test: the blocked rego-cpp evaluations then finish."""
    event = threading.Event()
    yield event
    event.set()


def _blocked(evaluator: Any, release: threading.Event) -> None:
    """Every evaluation of this rego-cpp evaluator waits for ``release`` first (rego-cpp
    itself cannot be made to wait: its worker thread is what the evaluator abandons)."""
    evaluate = evaluator._run

    def waiting(*args: Any) -> Any:
        release.wait(HANG_GUARD)
        return evaluate(*args)

    evaluator._run = waiting


@pytest.mark.parametrize("name", EMBEDDED)
def test_real_timeout_of_an_embedded_evaluator_rejects(tmp_path: Path, name: str,
                                                      release: threading.Event) -> None:
    from engine.decide.evaluators.regopy_engine import EmbeddedEvaluator
    from engine.decide.evaluators.regorus_engine import RegorusEvaluator

    kind = RegorusEvaluator if name == "regorus" else EmbeddedEvaluator
    evaluator = kind(_quick_policy(tmp_path), entrypoints=(QUICK,), timeout=0.05)
    if name == "regorus":
        _stalled(evaluator)
    else:
        _blocked(evaluator, release)
    decider = Decider(evaluator, path=QUICK)
    result = decider.decide(document())
    assert result.verdict == "reject"
    assert [r.rule for r in result.reasons] == ["evaluation_timeout"]
    # the abandoned evaluation does not poison the next one: it times out again, cleanly
    if name == "regorus":
        _stalled(evaluator)
    assert decider.decide(document()).reasons[0].rule == "evaluation_timeout"
    evaluator.close()


def test_a_timed_out_regorus_evaluation_is_killed(tmp_path: Path) -> None:
    """regorus holds the GIL while it evaluates: it runs in a worker process, which is
    killed when the timeout passes, so nothing keeps running."""
    from engine.decide.evaluators.regorus_engine import RegorusEvaluator

    evaluator = RegorusEvaluator(_quick_policy(tmp_path), entrypoints=(QUICK,), timeout=0.05)
    decider = Decider(evaluator, path=QUICK)
    child = evaluator._child
    assert child is not None and child.process.poll() is None
    _stalled(evaluator)
    verdict = decider.decide(document())
    assert [r.rule for r in verdict.reasons] == ["evaluation_timeout"]
    assert child.process.poll() is not None  # killed, not left running
    # the next evaluation starts a new worker, and times out the same way
    assert _stalled(evaluator) is not child
    assert decider.decide(document()).reasons[0].rule == "evaluation_timeout"
    # and a worker that answers decides again
    assert decider.decide(document()).verdict == "admit"
    evaluator.close()


@pytest.mark.parametrize("name", ["regopy"])
def test_runaway_evaluations_do_not_pile_up(tmp_path: Path, name: str,
                                            release: threading.Event) -> None:
    """rego-cpp releases the GIL and runs on a thread: a timed-out evaluation runs on in
    the background; past MAX_ABANDONED still running, the next decision is refused at
    once (a reject) instead of starting another thread."""
    from engine.decide.evaluators.regopy_engine import MAX_ABANDONED, EmbeddedEvaluator

    evaluator = EmbeddedEvaluator(_quick_policy(tmp_path), entrypoints=(QUICK,), timeout=0.02)
    _blocked(evaluator, release)
    decider = Decider(evaluator, path=QUICK)
    rules = [decider.decide(document()).reasons[0].rule for _ in range(MAX_ABANDONED + 1)]
    assert rules == ["evaluation_timeout"] * MAX_ABANDONED + ["evaluator_error"]
    refused = decider.decide(document())
    assert refused.fail_closed and "still running" in refused.reasons[0].message


def test_unreachable_opa_server_rejects() -> None:
    import socket

    from engine.decide.evaluators.remote import RemoteEvaluator

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = Decider(RemoteEvaluator(f"http://127.0.0.1:{port}",
                                     timeout=HANG_GUARD)).decide(document())
    assert result.verdict == "reject"
    assert [r.rule for r in result.reasons] == ["evaluator_error"]


def test_an_opa_server_that_never_answers_times_out() -> None:
    """A listening socket nobody accepts from: the connection opens, the query is sent,
    no answer ever comes."""
    import socket

    from engine.decide.evaluators.remote import RemoteEvaluator

    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        result = Decider(RemoteEvaluator(f"http://127.0.0.1:{port}",
                                         timeout=0.2)).decide(document())
    assert result.verdict == "reject" and result.fail_closed
    assert [r.rule for r in result.reasons] == ["evaluation_timeout"]


def _finding(vuln_id: str, score: float | None, days: int | None, *, kev: bool = False,
             basis: AvailabilityBasis = AvailabilityBasis.VENDOR) -> Finding:
    date = (NOW.date() + dt.timedelta(days=days)) if days is not None else None
    return Finding(
        vuln_id=vuln_id, component=0, component_label="linux/linux_kernel@6.6.30",
        state="affected", title="t", aliases=[],
        severities=[Severity(provider="nvd", source="nvd", cvss_version="3.1",
                             vector="CVSS:3.1/AV:N", base_score=score or 0.0,
                             base_severity="HIGH")] if score is not None else [],
        max_base_score=score,
        kev=Kev(date_added=dt.date(2025, 12, 1), due_date=None, known_ransomware_use="Known",
                source="kev") if kev else None,
        epss=None,
        fix=Fix(status=FixStatus.FIXED if date else FixStatus.NO_FIX,
                closing_version="6.6.31" if date else None,
                availability=Availability(date=date, basis=basis if date else
                                          AvailabilityBasis.NONE,
                                          confidence=0.615 if basis.value == "estimated" else
                                          None)),
        evidence=[])


def test_build_input_normalises_for_both_evaluators(embedded: Evaluator) -> None:
    report = AffectingReport(
        as_of=NOW, pvdb_generation=7, undetermined=[],
        components=[Component(kind="kernel", vendor="linux", product="linux_kernel",
                              version="6.6.30")],
        findings=[_finding("CVE-2026-0002", 9.849999, 12,
                           basis=AvailabilityBasis.ESTIMATED),
                  _finding("CVE-2026-0001", 4.3, None)])
    doc = build_input(
        RequestFacts(tenant="acme", vm=VmShape(name="web-1", vcpus=2, memory_mib=4096),
                     requested_patch_level="1.3.0"),
        "hv-01",
        ResultSummary(status="affirming", issued_at=NOW - dt.timedelta(minutes=10),
                      verifier_id="vigil", image=ImageRef(name="hv-base", version="1.2.0"),
                      trust_vector={}, failures=[Failure(step="none", reason="-")],
                      components=[]),
        report,
        PatchedConfiguration(state="ready", image=Image(name="hv-base", version="1.3.0"),
                             attested=True, attestation_status="affirming"),
        NOW)
    assert doc.decision_time.rfc3339 == "2026-01-01T00:10:00Z"
    assert doc.decision_time.ns == 1767226200000000000
    assert doc.host.attestation.age_seconds == 600
    assert doc.host.attestation.issued_at == "2026-01-01T00:00:00Z"
    assert [v.id for v in doc.vulnerabilities] == ["CVE-2026-0001", "CVE-2026-0002"]
    vuln = doc.vulnerabilities[1]
    assert vuln.max_cvss == 9.8  # rounded once: 9.849999 -> 9.8
    assert vuln.fix.availability.days_from_now == 12
    assert vuln.fix.availability.date_ns == 1768262400000000000
    assert vuln.fix.availability.confidence == 0.62
    assert doc.request.patch_level_met is not None
    assert doc.request.patch_level_met.host is False
    assert doc.request.patch_level_met.patched_configuration is True
    result = Decider(embedded).decide(doc)
    assert result.verdict == "patch"
    assert {r.rule for r in result.reasons} == {
        "patched_configuration_ready", "requested_patch_level_needs_patched_configuration"}
