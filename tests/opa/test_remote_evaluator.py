"""The remote evaluator (`VIGIL_OPA_URL`) against a real OPA serving Vigil's signed
bundle: on the parity corpus (documents reaching every verdict, reason, warning and
obligation of the default and site policies) the OPA server is the reference, and the
embedded evaluators (OPA's Go engine in process, regorus, rego-cpp) decide exactly as it
does; OPA stopped, silent past the timeout, or serving no bundle is a fail-closed
reject that names why."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.decide import Decider, build_bundle, embedded_evaluator, load_directory
from engine.decide.evaluators.remote import RemoteEvaluator
from tests.decide.conftest import VULN_IN_WINDOW, document
from tests.decide.evaluators.test_parity import DOCUMENTS, _normal
from tests.opa.conftest import OpaServer, free_port

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ROOT / "engine" / "policies"


@pytest.fixture(scope="module", params=[["vigil"], ["vigil", "site"]], ids=["default", "site"])
def backends(request: pytest.FixtureRequest, opa: Path,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    roots = request.param
    workdir = tmp_path_factory.mktemp("opa-parity")
    policy = load_directory(POLICIES, roots)
    bundle = workdir / "vigil.tar.gz"
    bundle.write_bytes(build_bundle(policy, revision="parity-1"))
    server = OpaServer(opa, workdir)
    url = server.start("--bundle", str(bundle))
    made = {"server": RemoteEvaluator(url, timeout=30.0),
            **{name: embedded_evaluator(name, policy, timeout=None)
               for name in ("opa", "regorus", "regopy")}}
    yield made
    for evaluator in made.values():
        evaluator.close()
    server.stop()


@pytest.mark.parametrize(("label", "doc"), DOCUMENTS, ids=[d[0] for d in DOCUMENTS])
def test_opa_decides_the_parity_corpus_as_the_embedded_evaluators(
        backends: dict[str, Any], label: str, doc: dict[str, Any]) -> None:
    reference = backends["server"].evaluate(doc)
    assert reference.defined, label
    for name in ("opa", "regorus", "regopy"):
        answer = backends[name].evaluate(doc)
        assert _normal(answer.value) == _normal(reference.value), f"{name}: {label}"


def test_decisions_through_opa_equal_the_embedded_ones(backends: dict[str, Any]) -> None:
    remote, embedded = Decider(backends["server"]), Decider(backends["regorus"])
    for doc in (document(), document(vulnerabilities=[VULN_IN_WINDOW])):
        a, b = remote.decide(doc).decision, embedded.decide(doc).decision
        assert json.dumps(a.to_json(), sort_keys=True) == json.dumps(b.to_json(),
                                                                     sort_keys=True)
    assert backends["server"].bundle_revision == "parity-1"


def _fail_closed(evaluator: RemoteEvaluator) -> tuple[str, list[Any]]:
    verdict = Decider(evaluator).decide(document())
    return verdict.verdict, [(r.rule, r.message) for r in verdict.reasons]


def test_opa_stopped_is_a_reject_naming_it(opa_server: OpaServer, tmp_path: Path) -> None:
    bundle = tmp_path / "vigil.tar.gz"
    bundle.write_bytes(build_bundle(load_directory(POLICIES, ["vigil"])))
    url = opa_server.start("--bundle", str(bundle))
    evaluator = RemoteEvaluator(url, timeout=5.0)
    _, before = _fail_closed(evaluator)
    assert "evaluator_error" not in [rule for rule, _ in before]  # it answered while up
    opa_server.stop()
    verdict, reasons = _fail_closed(evaluator)
    assert verdict == "reject"
    assert [rule for rule, _ in reasons] == ["evaluator_error"]
    assert url in reasons[0][1] and "could not be queried" in reasons[0][1]


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts connections and never answers: an OPA that hangs."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", free_port()))
    sock.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(sock.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    stop.set()
    thread.join(timeout=10)
    for conn in held:
        conn.close()
    sock.close()


def test_opa_silent_past_the_timeout_is_a_reject_naming_it(silent_server: str) -> None:
    verdict, reasons = _fail_closed(RemoteEvaluator(silent_server, timeout=0.2))
    assert verdict == "reject"
    assert [rule for rule, _ in reasons] == ["evaluation_timeout"]
    assert "did not answer within 0.2 s" in reasons[0][1]


def test_opa_serving_no_bundle_is_a_reject_naming_it(opa_server: OpaServer) -> None:
    url = opa_server.start()
    verdict, reasons = _fail_closed(RemoteEvaluator(url, timeout=5.0))
    assert verdict == "reject"
    assert [rule for rule, _ in reasons] == ["evaluation_undefined"]
    assert "data.vigil.decision.result is undefined" in reasons[0][1]


@pytest.mark.parametrize(("label", "doc"), DOCUMENTS, ids=[d[0] for d in DOCUMENTS])
def test_opa_decides_the_parity_corpus_in_two_stages_as_the_embedded_evaluators(
        backends: dict[str, Any], label: str, doc: dict[str, Any]) -> None:
    """Input schema version 2: the posture document and the decision document of each
    corpus document, on the OPA server and in process; and composed, they decide as the
    whole document does."""
    from engine.decide.verdict import Decision
    from tests.decide.test_staged import two_stages

    reference = two_stages(backends["server"], doc)
    whole = Decision.parse(backends["server"].evaluate(doc).value).to_json()
    assert _normal(reference) == _normal(whole), label
    for name in ("opa", "regorus", "regopy"):
        assert _normal(two_stages(backends[name], doc)) == _normal(reference), f"{name}: {label}"
