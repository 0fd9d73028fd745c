"""`vigil agent simulate`: a software-TPM host that starts, boots and stops; a simulated
fleet with an agent per host."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.attest import eventlog
from engine.cli.main import app


@pytest.fixture()
def state(tmp_path: Path) -> Path:
    for tool in ("swtpm", "swtpm_setup", "swtpm_ioctl"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (scripts/setup.sh installs it)")
    return tmp_path / "swtpm"


def _run(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result.output


def test_start_boot_stop(state: Path, tmp_path: Path) -> None:
    info = json.loads(_run("agent", "simulate", "start", "--state", str(state), "--json"))
    try:
        assert info["tcti"].startswith("swtpm:host=127.0.0.1,port=")
        assert all(Path(p).is_file() for p in info["ek_ca"])
        os.kill(info["pid"], 0)  # running
        log_path = tmp_path / "eventlog.bin"
        _run("agent", "simulate", "boot", "--state", str(state), "--eventlog", str(log_path))
        replayed = eventlog.load(log_path).replay_bank("sha256")

        from tpm2_pytss import ESAPI, TCTILdr
        from tpm2_pytss.types import TPML_PCR_SELECTION

        esapi = ESAPI(TCTILdr.parse(info["tcti"]))
        try:
            _, _, digests = esapi.pcr_read(TPML_PCR_SELECTION.parse("sha256:0,4,7,9"))
        finally:
            esapi.close()
        assert [bytes(d) for d in digests] == [replayed[p] for p in (0, 4, 7, 9)]
        # a second start while it runs is refused
        again = CliRunner().invoke(app, ["agent", "simulate", "start", "--state", str(state)])
        assert again.exit_code != 0 and "already runs" in str(again.exception)
    finally:
        _run("agent", "simulate", "stop", "--state", str(state))
    # the process ends (it is this test's child here: reap it, then it is gone)
    with pytest.raises(ProcessLookupError):
        for _ in range(100):
            os.waitpid(info["pid"], os.WNOHANG)
            os.kill(info["pid"], 0)
            time.sleep(0.05)


def test_a_simulated_fleet_runs_an_agent_per_host_until_interrupted(state: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    process = subprocess.Popen(
        [sys.executable, "-m", "engine.cli.main", "agent", "simulate", "fleet", "--hosts", "2",
         "--state", str(state), "--json"], cwd=root, text=True, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(root)})
    try:
        assert process.stdout is not None
        started = json.loads(process.stdout.readline())
        hosts = {h["host_id"]: h for h in started["hosts"]}
        assert set(hosts) == {"hv-001", "hv-002"}
        assert {h["image"] for h in hosts.values()} == {"hv-base 2026.05.1",
                                                        "hv-base 2026.06.1"}
        for host_id, host in hosts.items():
            result = CliRunner().invoke(app, ["agent", "challenge", host["endpoint"],
                                              "--host-id", host_id, "--json"],
                                        env=started["settings"])
            assert result.exit_code == 0, result.output
            assert json.loads(result.output)["image"]["version"] == host["image"].split()[1]
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert "simulated fleet stopped" in stderr
    for host in hosts.values():  # agents and TPMs are gone
        for address in (host["endpoint"].removeprefix("http://"),
                        host["tcti"].removeprefix("swtpm:host=").replace(",port=", ":")):
            name, port = address.split(":")
            with pytest.raises(OSError):
                socket.create_connection((name, int(port)), timeout=5).close()
