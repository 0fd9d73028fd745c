"""The host agent over HTTP, on Debian's swtpm: agents served on free loopback ports,
challenged with verifier nonces, their evidence appraised into signed results; then the
ways a fresh attestation fails, each refused naming the step (a replayed quote, an
unknown AK, a missing token, bad challenges), and ``vigil agent serve`` as a process."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from typer.testing import CliRunner

from engine.attest import (
    AgentConfig,
    AgentError,
    Evidence,
    attest_host,
    challenge_agent,
    start_agent,
    verify_result,
)
from engine.attest.lab import (
    AK_HANDLE,
    COMPONENTS,
    IMAGE,
    INVENTORY,
    NEXT_BOOT,
    NEXT_COMPONENTS,
    NEXT_IMAGE,
    Fleet,
    LabHost,
    start_fleet,
)
from engine.attest.simboot import DEFAULT_BOOT
from engine.attest.swtpm import SwtpmTemplate
from engine.cli.main import app
from tests.attest.fake_agents import BOUND, FakeAgent, fake_agent, start_fake_agent

pytestmark = pytest.mark.filterwarnings("error")

ROOT = Path(__file__).resolve().parents[2]
HOSTS = [LabHost("hv-001", DEFAULT_BOOT, IMAGE), LabHost("hv-002", NEXT_BOOT, NEXT_IMAGE),
         LabHost("hv-003", DEFAULT_BOOT, None, enroll=False)]


@pytest.fixture(scope="module")
def fleet(swtpm_template: SwtpmTemplate, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Fleet]:
    """Three hosts: two enrolled on two image versions, one whose AK nobody enrolled."""
    with start_fleet(tmp_path_factory.mktemp("fleet"), HOSTS, template=swtpm_template) as f:
        yield f


def config(fleet: Fleet, host_id: str = "hv-001", **changes: object) -> AgentConfig:
    """Another agent on ``host_id``'s TPM."""
    host = fleet.hosts[host_id]
    values: dict[str, object] = {"host_id": host_id, "tcti": host.tpm.tcti,
                                 "ak_handle": AK_HANDLE, "eventlog": host.eventlog,
                                 "inventory": lambda: INVENTORY}
    return AgentConfig(**{**values, **changes})  # type: ignore[arg-type]


# -- fresh attestations --------------------------------------------------------------------


def test_each_host_is_attested_through_its_agent_into_its_own_result(fleet: Fleet) -> None:
    first, second = fleet.attest("hv-001"), fleet.attest("hv-002")

    for appraisal, image, components in ((first, IMAGE, COMPONENTS),
                                         (second, NEXT_IMAGE, NEXT_COMPONENTS)):
        result = appraisal.result
        assert result.status == "affirming", result.failures
        assert result.image == image and result.components == components
        assert verify_result(appraisal.token, fleet.result_public) == result
        assert appraisal.timings["0 challenge"] > 0
    assert (first.result.host_id, second.result.host_id) == ("hv-001", "hv-002")
    assert first.result.ak_name != second.result.ak_name  # each host its own TPM key
    assert first.result.nonce != second.result.nonce
    assert first.result.inventory == INVENTORY
    # each agent reports what its own host runs, not one inventory for the fleet
    assert second.result.inventory is not None
    assert second.result.inventory.kernel_release == "6.1.0-21-amd64"

    again = fleet.attest("hv-001")  # a new nonce each time: fresh, never a replay
    assert again.result.status == "affirming" and again.result.nonce != first.result.nonce


def test_concurrent_challenges_are_quoted_one_at_a_time(fleet: Fleet) -> None:
    results: list[str] = []

    def attest() -> None:
        results.append(fleet.attest("hv-001", timeout=60.0).result.status)

    threads = [threading.Thread(target=attest) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(BOUND * 4)
    assert results == ["affirming"] * 6


def test_a_host_rebooted_into_another_kernel_is_contraindicated(
        swtpm_template: SwtpmTemplate, tmp_path: Path) -> None:
    with start_fleet(tmp_path, [LabHost("hv-009")], template=swtpm_template) as own:
        assert own.attest("hv-009").result.status == "affirming"
        own.reboot("hv-009", DEFAULT_BOOT.but(kernel=b"vmlinuz with a backdoor"))
        result = own.attest("hv-009").result
    assert result.status == "contraindicated"
    assert {f.step for f in result.failures} == {"5 reference values"}
    assert any("boot application /boot/vmlinuz-6.1.0-18-amd64" in f.reason
               for f in result.failures)


# -- refused, naming the step ---------------------------------------------------------------


def test_an_unknown_ak_is_refused_at_step_1(fleet: Fleet) -> None:
    result = fleet.attest("hv-003").result
    assert result.status == "contraindicated"
    assert [f.step for f in result.failures] == ["1 AK trust"]
    assert "host hv-003 has no trusted AK" in result.failures[0].reason
    assert result.trust_vector.instance_identity == 97


def _replaying(fleet: Fleet, rewrite_nonce: bool) -> tuple[Evidence, FakeAgent]:
    """An agent that answers every challenge with hv-001's evidence for an old nonce
    (appraised and used up already); with ``rewrite_nonce``, it puts the challenge's
    nonce into that evidence, leaving the old quote as it was."""
    old = challenge_agent(fleet.endpoints["hv-001"], fleet.verifier.issue_nonce("hv-001").value,
                          timeout=30.0)
    assert fleet.verifier.appraise(old).result.status == "affirming"

    def replay(agent: FakeAgent, conn: socket.socket) -> None:
        asked = json.loads(agent.read_request(conn))["nonce"]
        document = json.loads(old.to_json())
        if rewrite_nonce:
            document["nonce"] = asked
        body = json.dumps(document).encode()
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))

    return old, start_fake_agent(replay)


def test_a_replayed_quote_is_refused_naming_the_step(fleet: Fleet) -> None:
    _, whole = _replaying(fleet, rewrite_nonce=False)
    _, rewritten = _replaying(fleet, rewrite_nonce=True)
    try:
        first = attest_host(fleet.verifier, "hv-001", whole.endpoint, timeout=5.0)
        second = attest_host(fleet.verifier, "hv-001", rewritten.endpoint, timeout=5.0)
    finally:
        whole.close()
        rewritten.close()

    # signed, like every result
    replayed = verify_result(first.token, fleet.result_public)
    forged = verify_result(second.token, fleet.result_public)
    assert replayed.status == "contraindicated"
    assert [f.step for f in replayed.failures] == ["0 agent nonce"]
    assert "replayed or stale quote" in replayed.failures[0].reason
    assert replayed.trust_vector.instance_identity == 0  # no evidence: no claim
    assert forged.status == "contraindicated"
    assert [f.step for f in forged.failures] == ["2 nonce"]
    assert "extraData is not the evidence's nonce" in forged.failures[0].reason


def test_an_agent_that_never_answers_gives_a_signed_refusal_in_time(fleet: Fleet) -> None:
    release = threading.Event()

    def silent(agent: FakeAgent, conn: socket.socket) -> None:
        agent.read_request(conn)
        release.wait(BOUND)

    outcome: list[object] = []
    with fake_agent(silent) as agent:
        thread = threading.Thread(target=lambda: outcome.append(
            attest_host(fleet.verifier, "hv-001", agent.endpoint, timeout=1.0)))
        thread.start()
        thread.join(BOUND)
        release.set()
    assert not thread.is_alive(), "attest_host hung"
    appraisal = outcome[0]
    result = verify_result(appraisal.token, fleet.result_public)  # type: ignore[attr-defined]
    assert result.status == "contraindicated" and result.nonce is None
    assert [f.step for f in result.failures] == ["0 agent timed out"]


def test_the_bearer_token_is_required_and_never_shown(fleet: Fleet,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    secret = "t0k3n-only-the-verifier-knows"
    with start_agent(config(fleet, token=secret)) as agent:
        nonce = fleet.verifier.issue_nonce("hv-001").value
        for token in (None, "wrong"):
            with pytest.raises(AgentError) as caught:
                challenge_agent(agent.endpoint, nonce, timeout=30.0, token=token)
            assert caught.value.failure == "http" and caught.value.status == 401
            assert "bearer token is required" in caught.value.reason
            assert secret not in caught.value.diagnostics()
        appraisal = attest_host(fleet.verifier, "hv-001", agent.endpoint, timeout=30.0,
                                token=secret)
    assert appraisal.result.status == "affirming"
    assert secret not in caplog.text


def _tls_files(folder: Path) -> tuple[Path, Path, Path]:
    """A CA, and a certificate it issued for 127.0.0.1 with its key."""
    def name(text: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    now = dt.datetime.now(dt.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(
        ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("lab CA")).issuer_name(name("lab CA"))
          .public_key(ca_key.public_key()).serial_number(1)
          .not_valid_before(now - dt.timedelta(hours=1))
          .not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder().subject_name(name("hv-001")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(2)
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = folder / "ca.pem", folder / "agent.pem", folder / "agent.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


def test_over_tls_the_agent_is_verified_by_its_ca(fleet: Fleet, tmp_path: Path) -> None:
    ca, cert, key = _tls_files(tmp_path)
    with start_agent(config(fleet), tls_cert=cert, tls_key=key) as agent:
        assert agent.endpoint.startswith("https://127.0.0.1:")
        good = attest_host(fleet.verifier, "hv-001", agent.endpoint, timeout=30.0, ca=ca)
        unknown = attest_host(fleet.verifier, "hv-001", agent.endpoint, timeout=30.0)
    assert good.result.status == "affirming"
    assert [f.step for f in unknown.result.failures] == ["0 agent TLS"]
    assert "CERTIFICATE_VERIFY_FAILED" in unknown.result.failures[0].reason


# -- what the agent refuses ---------------------------------------------------------------


def test_the_agent_refuses_bad_challenges_with_a_reason(fleet: Fleet) -> None:
    url = fleet.endpoints["hv-001"] + "/v1/challenge"
    with httpx.Client(timeout=30.0) as client:
        cases = {
            "not json": client.post(url, content=b"nonce=abc",
                                    headers={"Content-Type": "text/plain"}),
            "bad base64": client.post(url, json={"nonce": "%%%"}),
            "empty nonce": client.post(url, json={"nonce": ""}),
            "long nonce": client.post(url, json={"nonce": "A" * 100}),
            "extra field": client.post(url, json={"nonce": "AAAA", "pcrs": "0-23"}),
            "garbage": client.post(url, content=b"\xff\x00{",
                                   headers={"Content-Type": "application/json"}),
            "declared too large": client.post(url, content=b"x" * 5000,
                                              headers={"Content-Type": "application/json"}),
            "streamed too large": client.post(url, content=iter([b"x" * 3000] * 3),
                                              headers={"Content-Type": "application/json"}),
            "GET": client.get(url),
            "elsewhere": client.post(fleet.endpoints["hv-001"] + "/v1/other", json={}),
        }
        health = client.get(fleet.endpoints["hv-001"] + "/healthz")
    expected = {"not json": 415, "bad base64": 400, "empty nonce": 400, "long nonce": 400,
                "extra field": 400, "garbage": 400, "declared too large": 413,
                "streamed too large": 413, "GET": 405, "elsewhere": 404}
    assert {case: r.status_code for case, r in cases.items()} == expected
    for case, response in cases.items():
        assert response.headers["content-type"] == "application/json", case
        assert response.json()["error"], case
    assert "nonce" in cases["bad base64"].json()["error"]
    assert "pcrs" in cases["extra field"].json()["error"]
    assert health.status_code == 200 and health.json() == {"status": "ok"}


def test_a_challenge_body_that_never_arrives_is_answered_408(fleet: Fleet) -> None:
    with start_agent(config(fleet, body_timeout=0.5)) as agent:
        host, port = agent.endpoint.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=BOUND) as conn:
            conn.sendall(b"POST /v1/challenge HTTP/1.1\r\nHost: x\r\nContent-Type: "
                         b"application/json\r\nContent-Length: 50\r\n\r\n{")
            answer = b""
            while b"did not arrive" not in answer and (chunk := conn.recv(65536)):
                answer += chunk
    assert answer.startswith(b"HTTP/1.1 408")
    assert b"did not arrive within 0.5 s" in answer


def test_a_tpm_failure_is_answered_503_with_the_reason(fleet: Fleet) -> None:
    with start_agent(config(fleet, ak_handle=AK_HANDLE + 1)) as agent, \
            pytest.raises(AgentError) as caught:
        challenge_agent(agent.endpoint, b"\x01" * 32, timeout=30.0)
    assert caught.value.status == 503
    assert f"no AK at handle 0x{AK_HANDLE + 1:08x}" in caught.value.reason


# -- the command line ------------------------------------------------------------------------


def _vigil(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "engine.cli.main", *args], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def test_vigil_agent_serve_answers_challenges_and_stops_cleanly(fleet: Fleet,
                                                               tmp_path: Path) -> None:
    host = fleet.hosts["hv-001"]
    token = tmp_path / "token"
    token.write_text("serve-secret\n")
    components = tmp_path / "components.json"
    components.write_text(json.dumps({"bios_version": "2.19.0", "bmc_firmware": "7.00"}))
    process = _vigil("agent", "serve", "--host-id", "hv-001", "--tpm", host.tpm.tcti,
                     "--ak-handle", hex(AK_HANDLE), "--port", "0", "--eventlog",
                     str(host.eventlog), "--components", str(components), "--token-file",
                     str(token), "--json")
    try:
        assert process.stdout is not None
        ready = json.loads(process.stdout.readline())
        assert ready["host_id"] == "hv-001" and ready["pid"] == process.pid
        appraisal = attest_host(fleet.verifier, "hv-001", ready["endpoint"], timeout=30.0,
                                token="serve-secret")
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=BOUND)
    assert appraisal.result.status == "affirming", appraisal.result.failures
    inventory = appraisal.result.inventory
    assert inventory is not None and inventory.bios_version == "2.19.0"
    assert inventory.extra == {"bmc_firmware": "7.00"}
    assert process.returncode == 0, stderr
    assert f"agent of hv-001 serving at {ready['endpoint']}" in stderr
    assert "agent of hv-001 stopped" in stderr and "Traceback" not in stderr
    assert "serve-secret" not in stderr


@pytest.mark.parametrize(("args", "files", "expected"), [
    (["--components", "{c}"], {"c": "not json"}, "is not JSON"),
    (["--components", "{c}"], {"c": '{"bios_version": 2}'}, "one JSON object of text"),
    (["--token-file", "{c}"], {"c": "\n"}, "is empty"),
    (["--token-file", "{c}"], {"c": "two words"}, "no spaces"),
    (["--tls-cert", "{c}"], {"c": "x"}, "go together"),
    (["--tls-cert", "{c}", "--tls-key", "{c}"], {"c": "not a key"}, "cannot use the TLS"),
    (["--pcrs", "0-99"], {}, "PCR indexes run from 0 to 23"),
], ids=["components-not-json", "components-not-text", "empty-token", "token-with-space",
        "cert-without-key", "bad-cert", "bad-pcrs"])
def test_vigil_agent_serve_refuses_bad_input_with_one_error_line(
        tmp_path: Path, args: list[str], files: dict[str, str], expected: str) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    filled = [a.format(**{n: tmp_path / n for n in files}) for a in args]
    process = _vigil("agent", "serve", "--host-id", "hv-001", "--port", "0", *filled)
    _, stderr = process.communicate(timeout=BOUND)
    assert process.returncode == 2, stderr
    assert stderr.startswith("error: ") and expected in stderr
    assert "Traceback" not in stderr


def test_vigil_agent_serve_on_a_port_in_use_is_refused(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        process = _vigil("agent", "serve", "--host-id", "hv-001", "--port", str(port))
        _, stderr = process.communicate(timeout=BOUND)
    assert process.returncode == 2 and stderr.startswith("error: cannot listen on")


def test_vigil_agent_challenge_attests_through_the_agent(fleet: Fleet, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "result.jwt"
    good = runner.invoke(app, ["agent", "challenge", fleet.endpoints["hv-002"], "--host-id",
                               "hv-002", "--out", str(out), "--json"], env=fleet.settings())
    assert good.exit_code == 0, good.output
    summary = json.loads(good.output)
    assert summary["status"] == "affirming" and summary["image"]["version"] == "2026.06.1"
    assert verify_result(out.read_text().strip(), fleet.result_public).host_id == "hv-002"

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    down = runner.invoke(app, ["agent", "challenge", f"http://127.0.0.1:{closed}",
                               "--host-id", "hv-002", "--timeout", "2"], env=fleet.settings())
    assert down.exit_code == 1
    assert "hv-002: contraindicated" in down.output and "0 agent unreachable" in down.output


def test_an_unexpected_agent_failure_is_answered_500_in_json(fleet: Fleet) -> None:
    def broken() -> object:
        raise RuntimeError("sysfs went away")

    with start_agent(config(fleet, inventory=broken)) as agent, \
            pytest.raises(AgentError) as caught:
        challenge_agent(agent.endpoint, b"\x01" * 32, timeout=30.0)
    assert caught.value.status == 500
    assert "the agent failed; its log says why" in caught.value.reason
    assert "sysfs" not in caught.value.reason
