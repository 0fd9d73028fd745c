"""The verifier's client of the agent protocol against agents that misbehave: each is
refused with an AgentError naming the step, within the deadline (no TPM needed here;
tests/attest/test_agent_service.py challenges real agents on software TPMs)."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import threading
import time
from pathlib import Path

import pytest

from engine.attest import (
    AgentError,
    Evidence,
    challenge_agent,
    challenge_agent_async,
)
from engine.errors import ConfigError, UsageError
from tests.attest.fake_agents import BOUND, FakeAgent, answer, evidence_json, fake_agent

NONCE = bytes(range(32))


def challenge(agent: FakeAgent, **options: object) -> AgentError:
    """Challenge ``agent`` on another thread; the AgentError it ends with. Fails the test
    if the challenge is still running after BOUND seconds or returns evidence."""
    outcome: list[BaseException | Evidence] = []

    def run() -> None:
        try:
            outcome.append(challenge_agent(agent.endpoint, NONCE, **{"timeout": 1.0,
                                                                     **options}))
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(BOUND)
    assert not thread.is_alive(), "the challenge hung"
    assert outcome and isinstance(outcome[0], AgentError), outcome
    return outcome[0]


# -- an agent that answers well ------------------------------------------------------------


def test_the_challenge_carries_the_nonce_and_the_evidence_comes_back() -> None:
    with fake_agent(answer(evidence_json())) as agent:
        evidence = challenge_agent(agent.endpoint + "/", NONCE, timeout=5.0, host_id="hv-042",
                                   token="s3cret")
    assert evidence.nonce == NONCE and evidence.host_id == "hv-042"
    request = agent.requests[0]
    head, _, body = request.partition(b"\r\n\r\n")
    assert head.startswith(b"POST /v1/challenge HTTP/1.1")
    assert json.loads(body) == {"nonce": base64.b64encode(NONCE).decode()}
    lowered = head.lower()
    assert b"content-type: application/json" in lowered
    assert b"authorization: bearer s3cret" in lowered
    assert b"accept-encoding: identity" in lowered


def test_a_synchronous_challenge_inside_an_event_loop_and_the_async_one() -> None:
    async def both() -> tuple[Evidence, Evidence]:
        with fake_agent(answer(evidence_json())) as agent:
            inside = challenge_agent(agent.endpoint, NONCE, timeout=5.0)
            awaited = await challenge_agent_async(agent.endpoint, NONCE, timeout=5.0)
        return inside, awaited

    inside, awaited = asyncio.run(both())
    assert inside == awaited and inside.nonce == NONCE


# -- timeouts: one deadline for the whole exchange ------------------------------------------


def test_an_agent_that_accepts_and_never_answers_times_out() -> None:
    release = threading.Event()

    def silent(agent: FakeAgent, conn: socket.socket) -> None:
        agent.read_request(conn)
        release.wait(BOUND)

    with fake_agent(silent) as agent:
        error = challenge(agent)
        release.set()
    assert error.failure == "timeout" and error.step == "0 agent timed out"
    assert "within 1 s" in error.reason and agent.endpoint in error.reason


def _trickle(agent: FakeAgent, conn: socket.socket, data: bytes) -> None:
    for byte in data:
        conn.sendall(bytes((byte,)))
        time.sleep(0.05)
    conn.sendall(b"\r\n" * 1000)


def test_an_agent_that_trickles_its_headers_times_out() -> None:
    """Every byte arrives well within a read timeout; only the overall deadline ends it."""
    def trickle(agent: FakeAgent, conn: socket.socket) -> None:
        agent.read_request(conn)
        _trickle(agent, conn, b"HTTP/1.1 200 OK\r\nX-Padding: " + b"x" * 10_000)

    with fake_agent(trickle) as agent:
        error = challenge(agent)
        assert agent.disconnected.wait(BOUND), "the client kept the connection open"
    assert error.failure == "timeout"


def test_an_agent_that_trickles_its_body_times_out() -> None:
    def trickle(agent: FakeAgent, conn: socket.socket) -> None:
        agent.read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100000\r\n\r\n")
        _trickle(agent, conn, evidence_json() * 100)

    with fake_agent(trickle) as agent:
        error = challenge(agent)
        assert agent.disconnected.wait(BOUND)
    assert error.failure == "timeout"


def test_an_agent_that_never_reads_the_challenge_times_out() -> None:
    release = threading.Event()
    with fake_agent(lambda agent, conn: release.wait(BOUND)) as agent:
        error = challenge(agent)
        release.set()
    assert error.failure == "timeout"


# -- unreachable, not HTTP, HTTP errors ------------------------------------------------------


def test_nothing_listening_is_unreachable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(AgentError) as caught:
        challenge_agent(f"http://127.0.0.1:{port}", NONCE, timeout=5.0)
    assert caught.value.failure == "unreachable"
    assert caught.value.step == "0 agent unreachable"
    assert str(caught.value).startswith("0 agent unreachable: cannot reach the agent at")


@pytest.mark.parametrize("reply", [b"SSH-2.0-OpenSSH_9.2\r\n", b""],
                         ids=["not-http", "closes-at-once"])
def test_an_answer_that_is_not_http_is_refused(reply: bytes) -> None:
    def handler(agent: FakeAgent, conn: socket.socket) -> None:
        agent.read_request(conn)
        conn.sendall(reply)

    with fake_agent(handler) as agent:
        error = challenge(agent, timeout=5.0)
    assert error.failure == "garbage" and "did not answer in HTTP" in error.reason


@pytest.mark.parametrize(("status", "detail"), [
    ("500 Internal Server Error", "the TPM refused a command"),
    ("401 Unauthorized", "a valid bearer token is required"),
    ("302 Found", ""),
])
def test_an_http_error_is_refused_with_its_status_and_reason(status: str, detail: str) -> None:
    body = json.dumps({"error": detail}).encode() if detail else b""
    extra = "Location: http://example.org/\r\n" if status.startswith("302") else ""
    with fake_agent(answer(body, status=status, extra=extra)) as agent:
        error = challenge(agent, timeout=5.0, token="never-shown")
    code = int(status.split()[0])
    assert error.failure == "http" and error.status == code
    assert f"answered HTTP {code}" in error.reason and detail in error.reason
    assert "never-shown" not in error.diagnostics()
    assert len(agent.requests) == 1  # the redirect is not followed


# -- answers that are too large or not evidence ---------------------------------------------


def test_a_declared_length_over_the_limit_is_refused_before_reading() -> None:
    def handler(agent: FakeAgent, conn: socket.socket) -> None:
        agent.read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 999999999999\r\n\r\n{")

    with fake_agent(handler) as agent:
        error = challenge(agent, timeout=5.0)
    assert error.failure == "too_large" and error.step == "0 agent answer too large"


def test_an_endless_chunked_answer_is_cut_off_at_the_limit() -> None:
    def handler(agent: FakeAgent, conn: socket.socket) -> None:
        agent.read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
        chunk = b"x" * 4096
        for _ in range(10_000):
            conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))

    with fake_agent(handler) as agent:
        error = challenge(agent, timeout=5.0, max_bytes=100_000)
    assert error.failure == "too_large" and "more than 100000 bytes" in error.reason


@pytest.mark.parametrize(("body", "media", "extra", "expected"), [
    (b"<html>hello</html>", "text/html", "", "answered text/html, not application/json"),
    (b"not json at all", "application/json", "", "not evidence"),
    (b'{"schema": "vigil.evidence/1", "host_id": "hv-042"}', "application/json", "",
     "nonce"),
    (b'["a list"]', "application/json", "", "not evidence"),
    (b"\x1f\x8b\x08\x00", "application/json", "Content-Encoding: gzip\r\n", "gzip"),
], ids=["html", "not-json", "missing-fields", "a-list", "gzip"])
def test_an_answer_that_is_not_evidence_is_refused(body: bytes, media: str, extra: str,
                                                   expected: str) -> None:
    with fake_agent(answer(body, media=media, extra=extra)) as agent:
        error = challenge(agent, timeout=5.0)
    assert error.failure == "garbage" and error.step == "0 agent answer is not evidence"
    assert expected in error.reason


def test_evidence_for_another_nonce_is_refused_as_replayed() -> None:
    with fake_agent(answer(evidence_json(nonce=b"\x01" * 32))) as agent:
        error = challenge(agent, timeout=5.0)
    assert error.failure == "nonce" and error.step == "0 agent nonce"
    assert "0101010101010101" in error.reason and "replayed or stale" in error.reason


def test_evidence_for_another_host_is_refused() -> None:
    with fake_agent(answer(evidence_json(host_id="hv-007"))) as agent:
        error = challenge(agent, timeout=5.0, host_id="hv-042")
    assert error.failure == "host" and "'hv-007', not 'hv-042'" in error.reason


# -- the caller's mistakes ---------------------------------------------------------------------


@pytest.mark.parametrize(("endpoint", "nonce", "timeout", "expected"), [
    ("ftp://127.0.0.1:1", NONCE, 1.0, "not an http:// or https:// URL"),
    ("http://127.0.0.1:1", NONCE, 0.0, "positive number of seconds"),
    ("http://127.0.0.1:1", NONCE, float("inf"), "positive number of seconds"),
    ("http://127.0.0.1:1", b"", 1.0, "1 to 64 bytes"),
    ("http://127.0.0.1:1", bytes(65), 1.0, "1 to 64 bytes"),
])
def test_bad_arguments_are_usage_errors(endpoint: str, nonce: bytes, timeout: float,
                                        expected: str) -> None:
    with pytest.raises(UsageError, match=expected):
        challenge_agent(endpoint, nonce, timeout=timeout)


def test_an_unreadable_ca_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="CA certificates"):
        challenge_agent("https://127.0.0.1:1", NONCE, timeout=1.0, ca=tmp_path / "none.pem")
