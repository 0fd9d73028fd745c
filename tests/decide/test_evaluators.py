"""Evaluator backends: rego-cpp's known gaps pinned, and OPA (the project's
``.tools/bin/opa``, else ``opa`` on PATH)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import regopy

from engine.decide import Decider
from engine.decide.bundle import build, load_directory
from engine.decide.evaluators.regopy_engine import EmbeddedEvaluator
from tests.decide.conftest import POLICIES, VULN_IN_WINDOW, document
from tests.tools import HANG_GUARD, LOCAL_OPA, Watched, opa_binary


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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


OPA = opa_binary()


@pytest.mark.skipif(OPA is None,
                    reason=f"no OPA at {LOCAL_OPA} (scripts/setup.sh builds it) nor `opa` on "
                    "PATH: no registry this project reaches (PyPI, npm, Debian) ships one")
def test_opa_server_serves_the_signed_bundle_and_agrees(tmp_path: Path,
                                                       rsa_keys: tuple[Path, Path]) -> None:
    from engine.decide.evaluators.remote import RemoteEvaluator

    assert OPA is not None
    policy = load_directory(POLICIES, ["vigil"])
    target = tmp_path / "vigil.tar.gz"
    target.write_bytes(build(policy, revision="opa-1", signing_key=rsa_keys[0]))
    port = _free_port()
    # the bundle is loaded (and its signature checked) before the server listens; the
    # debug line "Server initialized." comes once it does
    with Watched([OPA, "run", "--server", f"--addr=127.0.0.1:{port}", "--disable-telemetry",
                  "--log-level=debug", "--bundle", f"--verification-key={rsa_keys[1]}",
                  "--verification-key-id=vigil", target]) as server:
        server.wait_for(r'"msg":"Server initialized\."')
        remote = RemoteEvaluator(f"http://127.0.0.1:{port}", timeout=HANG_GUARD)
        embedded = EmbeddedEvaluator(policy, timeout=HANG_GUARD)
        for doc in (document(), document(vulnerabilities=[VULN_IN_WINDOW])):
            a = Decider(remote).decide(doc)
            b = Decider(embedded).decide(doc)
            assert json.dumps(a.decision.to_json(), sort_keys=True) == \
                json.dumps(b.decision.to_json(), sort_keys=True)


def _one_module(tmp_path: Path, source: str) -> Any:
    folder = tmp_path / "demo" / "decision"
    folder.mkdir(parents=True)
    (folder / "decision.rego").write_text(source)
    return load_directory(tmp_path, ["demo"])


def test_regorus_names_file_and_line_of_a_parse_error(tmp_path: Path) -> None:
    from engine.decide.errors import PolicyError
    from engine.decide.evaluators.regorus_engine import RegorusEvaluator

    policy = _one_module(tmp_path, "package demo.decision\n\nimport rego.v1\n\n"
                                   "result := {\"verdict\": \"admit\"\n")
    with pytest.raises(PolicyError) as caught:
        RegorusEvaluator(policy, entrypoints=("demo/decision/result",))
    assert caught.value.file == "demo/decision/decision.rego"
    assert caught.value.line == 6
    assert "Stack backtrace" not in str(caught.value)


def test_regorus_refuses_a_missing_entry_point(tmp_path: Path) -> None:
    from engine.decide.errors import PolicyError
    from engine.decide.evaluators.regorus_engine import RegorusEvaluator

    policy = _one_module(tmp_path, "package demo.decision\n\nimport rego.v1\n\nx := 1\n")
    with pytest.raises(PolicyError, match=r"data\.demo\.decision\.result is not a rule"):
        RegorusEvaluator(policy, entrypoints=("demo/decision/result",))


def test_regorus_runtime_error_is_a_reject_naming_the_line(tmp_path: Path) -> None:
    from engine.decide.evaluators.regorus_engine import RegorusEvaluator

    policy = _one_module(tmp_path, "package demo.decision\n\nimport rego.v1\n\n"
                                   "result := {\"verdict\": \"admit\", \"n\": input.host.id + 1}\n")
    # the timeout is a hang guard: the error comes at once, never a timeout under load
    evaluator = RegorusEvaluator(policy, entrypoints=("demo/decision/result",),
                                 timeout=HANG_GUARD)
    verdict = Decider(evaluator, path="demo/decision/result").decide(document())
    assert verdict.verdict == "reject" and verdict.fail_closed
    assert [r.rule for r in verdict.reasons] == ["evaluator_error"]
    assert "demo/decision/decision.rego:5" in verdict.reasons[0].message
    evaluator.close()


def test_input_values_are_not_coerced() -> None:
    from engine.decide import validate
    from engine.decide.errors import InputDocumentError

    doc = document(vulnerabilities=[dict(VULN_IN_WINDOW, max_cvss="8.1")])
    with pytest.raises(InputDocumentError) as caught:
        validate(doc)
    assert "$.vulnerabilities[0].max_cvss" in caught.value.fields


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
    assert loaded == ["engine", "engine.decide", "engine.decide.errors",
                      "engine.decide.evaluators", "engine.decide.evaluators.rego_worker",
                      "engine.errors"]
