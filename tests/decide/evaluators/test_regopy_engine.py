"""The rego-cpp backend: its known gaps, pinned (the policies avoid them), and timed-out
evaluations that cannot pile up."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import regopy

from engine.decide import Decider
from tests.decide.conftest import POLICIES, document
from tests.decide.evaluators.conftest import QUICK, blocked, quick_policy


def _query(q: str) -> object:
    interpreter = regopy.Interpreter()
    out = interpreter.query(q)
    assert out.ok()
    return out.results[0].bindings.get("x") if out.results else None


def test_rego_cpp_gaps_the_policies_avoid() -> None:
    # time.parse_rfc3339_ns rejects a trailing Z: policies read the engine's ns instead
    assert _query('x := time.parse_rfc3339_ns("2026-01-01T00:00:00Z")') is None
    assert _query('x := time.parse_rfc3339_ns("2026-01-01T00:00:00+00:00")') == \
        1767225600000000000
    # no net.* built-ins
    assert _query('x := net.cidr_contains("10.0.0.0/8", "10.1.1.1")') is None
    # float noise with %v; %.1f is exact
    assert _query('x := sprintf("%v", [9.8])') == "9.800000000000001"
    assert _query('x := sprintf("%.1f", [9.8])') == "9.8"
    # and the policies do not use what differs
    sources = "\n".join(p.read_text() for p in POLICIES.rglob("*.rego")
                        if not p.name.endswith("_test.rego"))
    for avoided in ("parse_rfc3339", "net.", "%v", "object.keys", "time.now_ns"):
        assert avoided not in sources


@pytest.mark.parametrize("name", ["regopy"])
def test_runaway_evaluations_do_not_pile_up(tmp_path: Path, name: str,
                                            release: threading.Event) -> None:
    """rego-cpp releases the GIL and runs on a thread: a timed-out evaluation runs on in
    the background; past MAX_ABANDONED still running, the next decision is refused at
    once (a reject) instead of starting another thread."""
    from engine.decide.evaluators.regopy_engine import MAX_ABANDONED, EmbeddedEvaluator

    evaluator = EmbeddedEvaluator(quick_policy(tmp_path), entrypoints=(QUICK,), timeout=0.02)
    blocked(evaluator, release)
    decider = Decider(evaluator, path=QUICK)
    rules = [decider.decide(document()).reasons[0].rule for _ in range(MAX_ABANDONED + 1)]
    assert rules == ["evaluation_timeout"] * MAX_ABANDONED + ["evaluator_error"]
    refused = decider.decide(document())
    assert refused.fail_closed and "still running" in refused.reasons[0].message
