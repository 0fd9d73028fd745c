"""A real OPA, as policy authors deploy it: the pinned release `scripts/setup.sh` builds
into `.tools/bin/opa` (or one on PATH), run as a server on a free loopback port."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

ROOT = Path(__file__).resolve().parents[2]
PINNED = ROOT / ".tools" / "bin" / "opa"
READY_WITHIN = 60.0
"""A hang guard, not a timing assertion: a server not ready by then is broken."""


def opa_binary() -> Path | None:
    if PINNED.exists():
        return PINNED
    found = shutil.which("opa")
    return Path(found) if found else None


@pytest.fixture(scope="session")
def opa() -> Path:
    found = opa_binary()
    if found is None:
        pytest.skip("no OPA at .tools/bin/opa or on PATH: scripts/setup.sh builds the pinned "
                    "release (it needs Go)")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Any, what: str, within: float = READY_WITHIN) -> Any:
    """Poll ``check`` until it returns something truthy (a hang guard of ``within`` s)."""
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {within} s")
        time.sleep(0.05)


@dataclass
class OpaServer:
    binary: Path
    workdir: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, *args: str, config: str | None = None,
              wait_for_bundles: bool = False) -> str:
        """Start ``opa run --server`` with ``args``; return its URL once it answers
        ``/health`` (``?bundles``: once every configured bundle is activated)."""
        port = free_port()
        cmd = [str(self.binary), "run", "--server", f"--addr=127.0.0.1:{port}",
               "--log-level=error"]
        if config is not None:
            path = self.workdir / f"opa-{port}.yaml"
            path.write_text(config)
            cmd.append(f"--config-file={path}")
        log = (self.workdir / f"opa-{port}.log").open("wb")
        proc = subprocess.Popen([*cmd, *args], stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        health = f"{url}/health" + ("?bundles" if wait_for_bundles else "")

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"opa exited ({proc.returncode}): "
                                     f"{self.log(port)}")
            try:
                return requests.get(health, timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_until(ready, f"OPA on port {port} becoming ready")
        return url

    def run_to_exit(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``opa run --server`` that must fail at start (a bundle OPA refuses)."""
        port = free_port()
        return subprocess.run([str(self.binary), "run", "--server",
                               f"--addr=127.0.0.1:{port}", *args],
                              capture_output=True, text=True, timeout=READY_WITHIN)

    def log(self, port: int) -> str:
        path = self.workdir / f"opa-{port}.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def opa_server(opa: Path, tmp_path: Path) -> Iterator[OpaServer]:
    server = OpaServer(opa, tmp_path)
    yield server
    server.stop()


def _write_key(folder: Path, name: str, key: Any) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    private, public = folder / f"{name}.pem", folder / f"{name}.pub.pem"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """RS256 and ES256 signing keys (private, public), and a stranger's RSA key."""
    folder = tmp_path_factory.mktemp("opa-keys")
    return {
        "RS256": _write_key(folder, "rsa", rsa.generate_private_key(65537, 2048)),
        "ES256": _write_key(folder, "ec", ec.generate_private_key(ec.SECP256R1())),
        "stranger": _write_key(folder, "stranger", rsa.generate_private_key(65537, 2048)),
    }
