"""The HostAttestation port: a host's agent challenged with a fresh nonce (a software TPM
behind a loopback agent), an agent that hangs or answers garbage or replays an old quote
(a reject naming the step, never a hang), and the cached results."""

from __future__ import annotations

import base64
import datetime as dt
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import Response

from engine.attest import (
    AgentConfig,
    AkRegistry,
    Evidence,
    NonceStore,
    Verifier,
    challenge_agent,
    start_agent,
    verify_result,
)
from engine.attest.lab import AK_HANDLE, HOST, INVENTORY, Site, key_pair, make_site
from engine.config import load_settings
from engine.decide import VmShape
from engine.fleet import Host
from engine.provision import (
    STEP_AGENT,
    AgentAttestation,
    Attested,
    NotAttested,
    ProvisionAsk,
    ResultCache,
    build,
)
from tests.api.conftest import run_server
from tests.api.world import build_world
from tests.attest.conftest import swtpm, swtpm_template  # noqa: F401  (fixtures)
from tests.attest.fake_agents import BOUND, FakeAgent, fake_agent


def challenge(endpoint: str, nonce: bytes, *, timeout: float) -> Evidence:
    """A plain client of the agent protocol (POST the nonce, read the evidence), which
    leaves every check to the port."""
    r = httpx.post(f"{endpoint}/v1/challenge", timeout=timeout,
                   json={"nonce": base64.b64encode(nonce).decode()})
    r.raise_for_status()
    return Evidence.model_validate_json(r.content)


class Agent:
    """A host agent on loopback over the site's software TPM; ``replay`` answers every
    challenge with the first evidence it gave."""

    def __init__(self, site: Site, log: Path) -> None:
        self.site = site
        self.log = log
        self.replay = False
        self.first: Evidence | None = None

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/challenge")
        async def answer(request: Request) -> Response:
            nonce = base64.b64decode((await request.json())["nonce"])
            if self.replay and self.first is not None:
                evidence = self.first
            else:
                evidence = self.site.evidence(self.log, nonce=nonce)
                self.first = self.first or evidence
            return Response(evidence.model_dump_json(by_alias=True),
                            media_type="application/json")

        @app.post("/garbage/v1/challenge")
        async def garbage() -> dict[str, Any]:
            return {"not": "evidence"}

        return app


@pytest.fixture
def agent(swtpm: Any, tmp_path: Path) -> Iterator[tuple[str, Agent]]:  # noqa: F811
    site = make_site(swtpm, tmp_path)
    log = site.boot()
    site.approve(site.evidence(log))
    agent = Agent(site, log)
    for url in run_server(agent.app()):
        yield url, agent


def _host(endpoint: str | None) -> Host:
    return Host(id=HOST, group="g", vcpus=8, memory_mib=8192, image_version="2026.05.1",
                agent_endpoint=endpoint)


def test_a_fresh_challenge_is_appraised_and_cached(agent: tuple[str, Agent]) -> None:
    """The real agent (``vigil agent serve``'s) and the real client
    (:func:`engine.attest.challenge_agent`)."""
    _, a = agent
    running = start_agent(AgentConfig(host_id=HOST, tcti=a.site.tpm.tcti,
                                      ak_handle=AK_HANDLE, eventlog=a.log,
                                      inventory=lambda: INVENTORY))
    url = running.endpoint
    cache = ResultCache(None, a.site.result_public, ttl=900)
    port = AgentAttestation(a.site.verifier, challenge_agent, timeout=30, cache=cache)
    got = port.attest(_host(url))
    assert isinstance(got, Attested) and got.source == "fresh", got
    assert got.result.status == "affirming" and got.result.host_id == HOST
    assert got.ear is not None and verify_result(got.ear, a.site.result_public) == got.result
    cached, why = cache.entry(HOST)
    assert cached is not None and cached[1] == got.ear, why
    port.close()
    running.stop()


@pytest.mark.parametrize("client", [challenge, challenge_agent], ids=["plain", "engine"])
def test_a_replayed_quote_is_refused_naming_the_nonce_step(agent: tuple[str, Agent],
                                                           client: Any) -> None:
    url, a = agent
    port = AgentAttestation(a.site.verifier, client, timeout=30)
    assert isinstance(port.attest(_host(url)), Attested)
    a.replay = True
    got = port.attest(_host(url))
    # refused by the port itself, or already by the engine's client
    assert isinstance(got, NotAttested) and got.step in ("2 nonce", "0 agent nonce"), got
    port.close()


def test_a_silent_agent_is_cut_off_by_the_engines_client(bare_verifier: Verifier) -> None:
    def silent(agent: FakeAgent, conn: Any) -> None:
        agent.read_request(conn)
        agent.disconnected.wait(BOUND)

    with fake_agent(silent) as fake:
        port = AgentAttestation(bare_verifier, challenge_agent, timeout=0.5)
        got = port.attest(_host(fake.endpoint))
        fake.disconnected.set()
        port.close()
    assert isinstance(got, NotAttested) and got.step == "0 agent timed out", got


def test_an_agent_answering_garbage_is_refused(agent: tuple[str, Agent]) -> None:
    url, a = agent
    port = AgentAttestation(a.site.verifier, challenge, timeout=30)
    got = port.attest(_host(f"{url}/garbage"))
    assert isinstance(got, NotAttested) and got.step == STEP_AGENT
    assert "no usable evidence" in got.reason
    port.close()
    engine_client = AgentAttestation(a.site.verifier, challenge_agent, timeout=30)
    got = engine_client.attest(_host(f"{url}/garbage"))
    assert isinstance(got, NotAttested) and got.step == "0 agent answer is not evidence"
    engine_client.close()


@pytest.fixture
def bare_verifier(tmp_path: Path) -> Iterator[Verifier]:
    db = tmp_path / "attest.sqlite3"
    verifier = Verifier(nonces=NonceStore(db, ttl=dt.timedelta(minutes=5)),
                        aks=AkRegistry(db, ek_roots=()), references=None,  # type: ignore[arg-type]
                        signing_key=key_pair()[0])
    yield verifier
    verifier.close()


def test_an_agent_that_does_not_answer_is_a_reject_naming_the_step(
        tmp_path: Path, bare_verifier: Verifier) -> None:
    released = threading.Event()

    def hangs(endpoint: str, nonce: bytes, *, timeout: float) -> Evidence:
        released.wait(600)  # ignores its timeout: the port's own bound still holds
        raise TimeoutError

    world = build_world(tmp_path / "world")
    settings = load_settings(**{**world.settings, "attest_source": "agent",
                                "attest_agent_timeout": 0.2})
    parts = build(settings, challenge=hangs, verifier=bare_verifier,
                  clock=lambda: world.now)
    try:
        with_endpoint = _host("http://127.0.0.1:9")
        started = time.monotonic()
        got = parts.attestation.attest(with_endpoint)
        assert isinstance(got, NotAttested) and got.step == STEP_AGENT
        assert "did not answer within 0.2 s" in got.reason
        assert time.monotonic() - started < 600  # returned, not hung
        # through the flow: the hosts have no agent endpoint -> a reject naming the step
        outcome = parts.flow.run(ProvisionAsk(tenant="acme",
                                              vm=VmShape(name="v", vcpus=1, memory_mib=1)))
        assert (outcome.verdict, outcome.failed_step) == ("reject", "attestation")
        assert STEP_AGENT in outcome.reasons[0] and "no agent endpoint" in outcome.reasons[0]
    finally:
        released.set()
        parts.close()


def test_without_a_result_key_no_agent_is_challenged_and_cached_results_serve(
        tmp_path: Path) -> None:
    world = build_world(tmp_path / "world")
    settings = load_settings(**{**world.settings, "attest_source": "cached-then-agent"})
    parts = build(settings, clock=lambda: world.now)
    try:
        assert parts.agent is None and not parts.problems
        assert "VIGIL_ATTEST_RESULT_KEY" in parts.notes[0]
        got = parts.attestation.attest(Host(id="hv-admit", group="g", vcpus=1, memory_mib=1,
                                            image_version="2024.06.1"))
        assert isinstance(got, Attested) and got.source == "cached"
    finally:
        parts.close()


def test_the_agents_token_comes_from_the_settings(agent: tuple[str, Agent],
                                                  tmp_path: Path) -> None:
    _, a = agent
    running = start_agent(AgentConfig(host_id=HOST, tcti=a.site.tpm.tcti,
                                      ak_handle=AK_HANDLE, eventlog=a.log,
                                      inventory=lambda: INVENTORY, token="s3cret-token"))
    (tmp_path / "agent.token").write_text("s3cret-token\n")
    world = build_world(tmp_path / "world")
    try:
        for token_file, expected in ((tmp_path / "agent.token", "affirming"),
                                     (None, "0 agent HTTP error")):
            settings = load_settings(**{**world.settings, "attest_source": "agent",
                                        "attest_agent_token_file": token_file,
                                        "attest_agent_timeout": 30})
            parts = build(settings, verifier=a.site.verifier)
            try:
                got = parts.attestation.attest(_host(running.endpoint))
            finally:
                assert parts.agent is not None
                parts.agent.close()
            if isinstance(got, Attested):
                assert got.result.status == expected
            else:
                assert got.step == expected, got
    finally:
        running.stop()
