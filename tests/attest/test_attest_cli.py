"""The attestation commands, end to end on swtpm: keygen, agent enroll, ak challenge,
agent activate, ak complete, nonce, agent evidence, reference create, verify,
verify-result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.attest.lab import HOST
from engine.attest.simboot import Boot, hypervisor_boot
from engine.attest.swtpm import Swtpm
from engine.cli import agent, attest


@pytest.fixture
def env(swtpm: Swtpm, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("VIGIL_CONFIG", "")
    monkeypatch.delenv("VIGIL_CONFIG")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("VIGIL_ATTEST_DB", str(tmp_path / "attest.sqlite3"))
    monkeypatch.setenv("VIGIL_TCTI", swtpm.tcti)
    monkeypatch.setenv("VIGIL_ATTEST_EK_CA", json.dumps(
        [str(swtpm.template.ek_root), str(swtpm.template.ek_intermediate)]))
    monkeypatch.setenv("VIGIL_ATTEST_RESULT_KEY", str(tmp_path / "verifier.pem"))
    monkeypatch.setenv("VIGIL_ATTEST_REFERENCES", str(tmp_path / "references"))
    monkeypatch.setenv("VIGIL_ATTEST_REFERENCE_KEYS", json.dumps([str(tmp_path / "image.pub.pem")]))
    (tmp_path / "references").mkdir()
    return tmp_path


def run(app: object, *args: object) -> str:
    result = CliRunner().invoke(app, [str(a) for a in args])  # type: ignore[arg-type]
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result.output


def test_the_attestation_workflow_from_the_command_line(env: Path, swtpm: Swtpm) -> None:
    d = env
    run(attest.app, "keygen", "--out", d / "verifier.pem")
    run(attest.app, "keygen", "--out", d / "image.pem", "--type", "ed25519")
    run(agent.app, "enroll", "--host-id", HOST, "--out", d / "enroll.json")
    run(attest.app, "ak", "challenge", d / "enroll.json", "--out", d / "challenge.json")
    run(agent.app, "activate", d / "challenge.json", "--out", d / "response.json")
    assert "EK certificate verified" in run(attest.app, "ak", "complete", d / "response.json")
    assert "make-credential" in run(attest.app, "ak", "list", HOST, "--json")

    log = hypervisor_boot()
    swtpm.extend(log.extends)
    (d / "eventlog.bin").write_bytes(log.encode())
    evidence_args = ["--host-id", HOST, "--eventlog", d / "eventlog.bin", "--sys-root",
                     d / "nosys", "--proc-root", d / "noproc", "--set",
                     "hypervisor_version=qemu 8.2.2"]
    nonce = run(attest.app, "nonce", HOST).strip()
    run(agent.app, "evidence", "--nonce", nonce, *evidence_args, "--out",
        d / "golden.json")
    (d / "components.json").write_text(json.dumps([
        {"kind": "kernel", "vendor": "linux", "product": "linux_kernel",
         "version": "6.1.0-18"}]))
    run(attest.app, "reference", "create", d / "golden.json", "--name", "hv-base",
        "--version", "2026.05.1", "--key", d / "image.pem", "--components",
        d / "components.json", "--out", d / "references" / "hv-base.jws")
    shown = json.loads(run(attest.app, "reference", "show", d / "references" / "hv-base.jws"))
    assert shown["image"] == {"name": "hv-base", "version": "2026.05.1"}

    nonce = run(attest.app, "nonce", HOST).strip()
    run(agent.app, "evidence", "--nonce", nonce, *evidence_args, "--out",
        d / "evidence.json")
    out = json.loads(run(attest.app, "verify", d / "evidence.json", "--out", d / "result.jwt",
                         "--json"))
    assert out["status"] == "affirming" and out["image"]["version"] == "2026.05.1"
    checked = run(attest.app, "verify-result", d / "result.jwt", "--key",
                  d / "verifier.pub.pem")
    assert "signature: valid" in checked and "affirming" in checked

    # The same evidence again is a replay: exit 1, the step named.
    replay = CliRunner().invoke(attest.app, ["verify", str(d / "evidence.json")])
    assert replay.exit_code == 1 and "2 nonce" in replay.output

    # Another kernel after a reboot: contraindicated, naming the kernel.
    swtpm.reboot()
    changed = hypervisor_boot(Boot().but(kernel=b"a kernel nobody approved"))
    swtpm.extend(changed.extends)
    (d / "eventlog.bin").write_bytes(changed.encode())
    nonce = run(attest.app, "nonce", HOST).strip()
    run(agent.app, "evidence", "--nonce", nonce, *evidence_args, "--out",
        d / "evidence.json")
    bad = CliRunner().invoke(attest.app, ["verify", str(d / "evidence.json"), "--json"])
    assert bad.exit_code == 1
    assert "boot application /boot/vmlinuz-6.1.0-18-amd64" in bad.output
