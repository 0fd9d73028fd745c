"""The regorus backend: errors that name file and line, a worker process that is killed
on timeout and that starts light."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from engine.decide import Decider
from tests.decide.conftest import document
from tests.decide.evaluators.conftest import QUICK, one_module, quick_policy, stalled
from tests.tools import HANG_GUARD


def test_regorus_names_file_and_line_of_a_parse_error(tmp_path: Path) -> None:
    from engine.decide.errors import PolicyError
    from engine.decide.evaluators.regorus_engine import RegorusEvaluator

    policy = one_module(tmp_path, "package demo.decision\n\nimport rego.v1\n\n"
                                   "result := {\"verdict\": \"admit\"\n")
    with pytest.raises(PolicyError) as caught:
        RegorusEvaluator(policy, entrypoints=("demo/decision/result",))
    assert caught.value.file == "demo/decision/decision.rego"
    assert caught.value.line == 6
    assert "Stack backtrace" not in str(caught.value)


def test_regorus_refuses_a_missing_entry_point(tmp_path: Path) -> None:
    from engine.decide.errors import PolicyError
    from engine.decide.evaluators.regorus_engine import RegorusEvaluator

    policy = one_module(tmp_path, "package demo.decision\n\nimport rego.v1\n\nx := 1\n")
    with pytest.raises(PolicyError, match=r"data\.demo\.decision\.result is not a rule"):
        RegorusEvaluator(policy, entrypoints=("demo/decision/result",))


def test_regorus_runtime_error_is_a_reject_naming_the_line(tmp_path: Path) -> None:
    from engine.decide.evaluators.regorus_engine import RegorusEvaluator

    policy = one_module(tmp_path, "package demo.decision\n\nimport rego.v1\n\n"
                                   "result := {\"verdict\": \"admit\", \"n\": input.host.id + 1}\n")
    # the timeout is a hang guard: the error comes at once, never a timeout under load
    evaluator = RegorusEvaluator(policy, entrypoints=("demo/decision/result",),
                                 timeout=HANG_GUARD)
    verdict = Decider(evaluator, path="demo/decision/result").decide(document())
    assert verdict.verdict == "reject" and verdict.fail_closed
    assert [r.rule for r in verdict.reasons] == ["evaluator_error"]
    assert "demo/decision/decision.rego:5" in verdict.reasons[0].message
    evaluator.close()


def test_a_timed_out_regorus_evaluation_is_killed(tmp_path: Path) -> None:
    """regorus holds the GIL while it evaluates: it runs in a worker process, which is
    killed when the timeout passes, so nothing keeps running."""
    from engine.decide.evaluators.regorus_engine import RegorusEvaluator

    evaluator = RegorusEvaluator(quick_policy(tmp_path), entrypoints=(QUICK,), timeout=0.05)
    decider = Decider(evaluator, path=QUICK)
    child = evaluator._child
    assert child is not None and child.process.poll() is None
    stalled(evaluator)
    verdict = decider.decide(document())
    assert [r.rule for r in verdict.reasons] == ["evaluation_timeout"]
    assert child.process.poll() is not None  # killed, not left running
    # the next evaluation starts a new worker, and times out the same way
    assert stalled(evaluator) is not child
    assert decider.decide(document()).reasons[0].rule == "evaluation_timeout"
    # and a worker that answers decides again
    assert decider.decide(document()).verdict == "admit"
    evaluator.close()


def test_the_regorus_worker_imports_nothing_heavy() -> None:
    """The worker process starts per policy load and after every timeout: the packages on
    its import path load lazily, so it reads only regorus and orjson (no pydantic, no
    database, no other Rego engine)."""
    from engine.decide.evaluators.regorus_engine import WORKER_MODULE

    probe = (f"import sys, {WORKER_MODULE}; "
             "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] in "
             "{'engine', 'pydantic', 'duckdb', 'regopy', 'jsonschema', 'requests'})))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True, timeout=120).stdout.split()
    # _cxx_runtime: ctypes only (libstdc++ before any regopy import, see that module)
    assert loaded == ["engine", "engine.decide", "engine.decide.errors",
                      "engine.decide.evaluators", "engine.decide.evaluators._cxx_runtime",
                      "engine.decide.evaluators.rego_worker", "engine.errors"]
