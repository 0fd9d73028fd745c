"""OPA's Go engine in process (`evaluator = "opa"`): the decision timeout is a context
deadline that stops the evaluation itself (nothing keeps running, the next decision is
unaffected); compile errors name the file; a missing library is a configuration error
with the fix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from engine.decide import Decider, embedded_evaluator
from engine.decide.bundle import PolicySet
from engine.decide.errors import PolicyError
from engine.decide.evaluators import EvaluationTimeout, opa_engine
from engine.errors import ConfigError
from tests.decide.conftest import document

SLOW = """package vigil.decision

import rego.v1

# work that does not depend on the input: a timeout must still stop it
result := {"verdict": "admit", "reasons": [], "warnings": [], "obligations": [],
           "n": count([x | some x in numbers.range(1, 400000000); x % 7 == 0])}
"""

QUICK = """package vigil.decision

import rego.v1

result := {"verdict": "reject", "reasons": [{"rule": "r", "message": input.why}],
           "warnings": [], "obligations": []}
"""


def _policy(**modules: str) -> PolicySet:
    return PolicySet(modules={f"vigil/decision/{k}.rego": v for k, v in modules.items()},
                     data_files={}, roots=("vigil",), revision="t-1", origin="test")


@pytest.fixture(autouse=True)
def _built(opa: Path) -> None:
    if not opa_engine.library_path().is_file():
        pytest.skip("OPA's Rego engine library is not built: scripts/setup.sh builds it")


def test_a_timeout_stops_the_evaluation_and_the_next_one_runs() -> None:
    slow = embedded_evaluator("opa", _policy(slow=SLOW), timeout=0.2)
    quick = embedded_evaluator("opa", _policy(quick=QUICK), timeout=5.0)
    try:
        with pytest.raises(EvaluationTimeout, match=r"did not finish within 0\.2 s"):
            slow.evaluate(document())
        # the Go evaluation was cancelled, not abandoned: no goroutine holds a CPU, and
        # another evaluator in the same library answers
        assert quick.evaluate({"why": "w"}).value["reasons"][0]["message"] == "w"
        verdict = Decider(slow).decide(document())
        assert (verdict.verdict, [r.rule for r in verdict.reasons]) == (
            "reject", ["evaluation_timeout"])
    finally:
        slow.close()
        quick.close()


def test_evaluations_run_concurrently_from_threads() -> None:
    quick = embedded_evaluator("opa", _policy(quick=QUICK), timeout=5.0)
    answers: list[str] = []
    lock = threading.Lock()

    def ask(i: int) -> None:
        value = quick.evaluate({"why": f"t{i}"}).value
        with lock:
            answers.append(value["reasons"][0]["message"])

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    quick.close()
    assert sorted(answers) == sorted(f"t{i}" for i in range(16))


def test_a_compile_error_names_the_file() -> None:
    broken = _policy(broken="package vigil.decision\n\nresult := {\n")
    with pytest.raises(PolicyError, match=r"vigil/decision/broken\.rego:\d+"):
        embedded_evaluator("opa", broken, timeout=1.0)


def test_a_missing_library_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
    monkeypatch.setattr(opa_engine, "_library", None)
    monkeypatch.setenv("VIGIL_OPA_LIBRARY", str(tmp_path / "absent.so"))
    with pytest.raises(ConfigError, match="not built") as caught:
        embedded_evaluator("opa", _policy(quick=QUICK), timeout=1.0)
    assert "scripts/setup.sh" in (caught.value.tip or "")


def _gc_settings_with(env: dict[str, str]) -> dict[str, int]:
    """The library's collector settings in a fresh process with ``env`` (Go reads GOGC
    and GOMEMLIMIT once, when the library loads)."""
    clean = {k: v for k, v in os.environ.items() if k not in ("GOGC", "GOMEMLIMIT")}
    out = subprocess.run(
        [sys.executable, "-c", "import json; from engine.decide.evaluators import opa_engine;"
                               " print(json.dumps(opa_engine.gc_settings()))"],
        env={**clean, **env}, capture_output=True, text=True, check=True, timeout=60)
    settings: dict[str, int] = json.loads(out.stdout)
    return settings


def test_the_collector_is_tuned_unless_the_environment_tunes_it() -> None:
    assert _gc_settings_with({}) == {"gc_percent": 800, "memory_limit": 512 * 1024**2}
    assert _gc_settings_with({"GOGC": "50", "GOMEMLIMIT": "64MiB"}) == {
        "gc_percent": 50, "memory_limit": 64 * 1024**2}
