"""The OPA backend: a real OPA server (the project's ``.tools/bin/opa``, else ``opa`` on
PATH) serving the signed bundle decides like the embedded evaluator; an unreachable server
and one that never answers are rejects."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from engine.decide import Decider
from engine.decide.bundle import build, load_directory
from engine.decide.evaluators.regopy_engine import EmbeddedEvaluator
from tests.decide.conftest import POLICIES, VULN_IN_WINDOW, document
from tests.tools import HANG_GUARD, LOCAL_OPA, Watched, opa_binary


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
