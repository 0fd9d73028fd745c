"""The regorus worker's decision timeout and memory cap hold from the first evaluation
on, also for a policy whose work does not depend on the input (loading the policy
evaluates its entry points once, on an empty input: that evaluation is bounded too).

The slow policy below cannot finish on any machine (10^10 iterations), and the memory
bomb needs far more than its cap, so what these tests see does not depend on load."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from engine.decide import Decider
from tests.decide.conftest import document
from tests.decide.evaluators.conftest import one_module
from tests.tools import HANG_GUARD

ENTRY = "demo/decision/result"

NEVER_ENDS = ("package demo.decision\n\nimport rego.v1\n\n"
              "_n := count({1 | some i in numbers.range(1, 100000); "
              "some j in numbers.range(1, 100000)})\n\n"
              "result := {\"verdict\": \"admit\", \"n\": _n}\n")

MEMORY_BOMB = ("package demo.decision\n\nimport rego.v1\n\n"
               "_big := count({sprintf(\"%d-%d\", [i, j]) | some i in numbers.range(1, 100000);"
               " some j in numbers.range(1, 100000)})\n\n"
               "result := {\"verdict\": \"admit\", \"n\": _big}\n")


def test_a_slow_input_independent_policy_loads_and_times_out_at_its_first_decision(
        tmp_path: Path) -> None:
    """Loading used to wait for the entry-point check without the decision timeout (up
    to 60 s, then the load itself failed); now the check is stopped at the timeout, the
    policy loads, and each decision is a timeout reject."""
    from engine.decide.evaluators.regorus_engine import RegorusEvaluator

    evaluator = RegorusEvaluator(one_module(tmp_path, NEVER_ENDS), entrypoints=(ENTRY,),
                                 timeout=0.5)
    try:
        assert evaluator._child is None  # the check's worker was stopped, none runs on
        decider = Decider(evaluator, path=ENTRY)
        for _ in range(2):
            verdict = decider.decide(document())
            assert (verdict.verdict, verdict.fail_closed) == ("reject", True)
            assert [r.rule for r in verdict.reasons] == ["evaluation_timeout"]
            assert evaluator._child is None  # killed, not left running
    finally:
        evaluator.close()


def test_a_missing_entry_point_is_still_refused_at_load(tmp_path: Path) -> None:
    from engine.decide.errors import PolicyError
    from engine.decide.evaluators.regorus_engine import RegorusEvaluator

    policy = one_module(tmp_path, NEVER_ENDS.replace("result :=", "other :="))
    try:
        RegorusEvaluator(policy, entrypoints=(ENTRY,), timeout=0.5)
    except PolicyError as exc:
        assert "data.demo.decision.result is not a rule" in exc.summary
    else:
        raise AssertionError("a policy without its entry point was loaded")


_PROBE = textwrap.dedent("""
    import json, resource, sys
    from pathlib import Path
    from engine.decide import Decider
    from engine.decide.bundle import load_directory
    from engine.decide.evaluators.regorus_engine import RegorusEvaluator
    from tests.decide.conftest import document

    policy = load_directory(Path(sys.argv[1]), ["demo"])
    evaluator = RegorusEvaluator(policy, entrypoints=("demo/decision/result",),
                                 timeout=float(sys.argv[2]), memory_limit=int(sys.argv[3]))
    verdict = Decider(evaluator, path="demo/decision/result").decide(document())
    evaluator.close()
    print(json.dumps({"verdict": verdict.verdict, "fail_closed": verdict.fail_closed,
                      "rules": [r.rule for r in verdict.reasons],
                      "message": verdict.reasons[0].message if verdict.reasons else "",
                      "children_max_rss_kib":
                          resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
""")


def test_a_memory_bomb_ends_the_worker_at_its_cap(tmp_path: Path) -> None:
    """Run in a fresh process whose only children are the regorus workers, so that the
    largest resident size of its children is theirs: it stays under the cap, and the
    decision is a reject that says why."""
    one_module(tmp_path, MEMORY_BOMB)
    cap = 512 * 1024**2
    run = subprocess.run([sys.executable, "-c", _PROBE, str(tmp_path), str(HANG_GUARD),
                          str(cap)], capture_output=True, text=True, timeout=HANG_GUARD * 3,
                         cwd=Path(__file__).resolve().parents[3])
    assert run.returncode == 0, run.stderr
    assert "memory allocation" not in run.stderr  # the worker's last words are kept apart
    answer = json.loads(run.stdout)
    assert (answer["verdict"], answer["fail_closed"], answer["rules"]) == (
        "reject", True, ["evaluator_error"])
    assert "ran out of its memory limit (536870912 bytes" in answer["message"]
    assert answer["children_max_rss_kib"] * 1024 <= cap


def test_entry_points_are_checked_against_the_rules_the_modules_declare() -> None:
    """The check reads the parsed modules (no evaluation, so load cannot change it): a
    rule's own path, a path below it and a package above it are declared; another name or
    package is not."""
    import regorus

    from engine.decide.evaluators.rego_worker import _undeclared

    engine = regorus.Engine()
    engine.add_policy("a.rego", "package demo.decision\nimport rego.v1\nother := 1\n"
                      "result.x := 2\ndefault d := 3\ndeny contains 1 if true\n"
                      "g[\"k\"] := 1\n")
    for declared in ("data.demo.decision.result", "data.demo.decision.result.x.y",
                     "data.demo.decision.other", "data.demo.decision.d",
                     "data.demo.decision.deny", "data.demo.decision.g.k",
                     "data.demo.decision"):
        assert _undeclared(engine, [declared]) is None, declared
    for missing in ("data.demo.decision.nope", "data.demo.x.result"):
        assert _undeclared(engine, ["data.demo.decision.result", missing]) == missing
