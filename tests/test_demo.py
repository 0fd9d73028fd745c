"""The README's first command, end to end: ``vigil lab demo --once`` (what
``scripts/demo.sh --once`` runs) builds the world on software TPMs, starts the service,
provisions four VMs and stops. Each report it leaves is verified here, independently of
the demo's own check, with ``vigil report verify`` (in process; signature and attestation result),
and its verdict read from the verified report; nothing the demo started may outlive it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.clirun import vigil

ROOT = Path(__file__).resolve().parents[1]
EXPECTED = {
    "web-1": ("hv-001", "admit"),
    "web-2": ("hv-002", "delay"),
    "web-3": ("hv-003", "patch"),
    "web-4": ("hv-004", "reject"),
}
TIMEOUT = 600  # a guard against a hang, not a speed check (the demo prints its own time)

pytestmark = pytest.mark.slow


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    env["PYTHONPATH"] = str(ROOT)
    return env


def _processes_using(folder: Path) -> list[str]:
    """Command lines of running processes that name ``folder``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(folder) in cmdline:
            found.append(cmdline)
    return found


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    for tool in ("swtpm", "swtpm_setup", "swtpm_ioctl"):
        if shutil.which(tool) is None:
            pytest.skip(
                f"{tool} is not installed (Debian packages swtpm and swtpm-tools; "
                "scripts/setup.sh installs them)"
            )
    try:
        import tpm2_pytss  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"tpm2-pytss cannot be imported ({exc}); run scripts/setup.sh")
    state = tmp_path_factory.mktemp("demo") / "state"
    done = subprocess.run(
        [sys.executable, "-m", "engine.cli.main", "lab", "demo", "--once", "--state", str(state)],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    return state, done


def test_the_demo_tells_the_whole_story(
    demo: tuple[Path, subprocess.CompletedProcess[str]],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    state, done = demo
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    keys = state / "keys"
    verdicts = {}
    for vm, (host, _) in EXPECTED.items():
        code, out, err = vigil(
            capsys,
            monkeypatch,
            "report",
            "verify",
            str(state / "reports" / f"{vm}.jws"),
            "--key",
            str(keys / "report.pub.pem"),
            "--ear-key",
            str(keys / "verifier.pub.pem"),
            "--json",
        )
        assert code == 0, err
        body = json.loads(out)
        assert body["verified"] and body["ear_verified"]
        assert (body["vm"], body["host"], body["tenant"]) == (vm, host, "acme")
        verdicts[vm] = body["verdict"]
        html = (state / "reports" / f"{vm}.html").read_text()
        assert vm in html and body["verdict"] in html.lower()
    assert verdicts == {vm: verdict for vm, (_, verdict) in EXPECTED.items()}
    # the patch request is placed on the host running the attested patched version
    assert "placed on hv-005 (2024.12.1-p1)" in done.stdout
    assert "reason: CVE-2025-38236 (CVSS 7.8) in linux_kernel 6.12.30: fix available" in done.stdout


def test_the_demo_leaves_nothing_running(
    demo: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    state, done = demo
    assert "stopped: service, agents, software TPMs" in done.stdout
    assert _processes_using(state) == []


def test_a_report_signed_by_another_key_does_not_verify(
    demo: tuple[Path, subprocess.CompletedProcess[str]],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    state, _ = demo
    code, _, err = vigil(
        capsys,
        monkeypatch,
        "report",
        "verify",
        str(state / "reports" / "web-1.jws"),
        "--key",
        str(state / "keys" / "images.pub.pem"),
    )
    assert code == 1
    assert err.startswith("error: ") and "Traceback" not in err
