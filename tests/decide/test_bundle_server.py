"""The bundle server: OPA's download protocol (ETag, If-None-Match, 304), verification."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from engine.decide.bundle import build, load_directory, read
from engine.decide.bundle_server import BundleFolder, app
from tests.decide.conftest import POLICIES
from tests.tools import HANG_GUARD, Watched


class AsgiClient:
    """Requests to an ASGI application in-process, through httpx's ASGI transport."""

    def __init__(self, application: Starlette) -> None:
        self.application = application

    def _send(self, method: str, path: str, headers: dict[str, str] | None) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.application)
            async with httpx.AsyncClient(transport=transport, base_url="http://vigil") as c:
                return await c.request(method, path, headers=headers)

        return asyncio.run(go())

    def get(self, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
        return self._send("GET", path, headers)

    def head(self, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
        return self._send("HEAD", path, headers)


@pytest.fixture()
def folder(tmp_path: Path, rsa_keys: tuple[Path, Path]) -> Path:
    out = tmp_path / "bundles"
    out.mkdir()
    policy = load_directory(POLICIES, ["vigil"])
    (out / "vigil.tar.gz").write_bytes(build(policy, signing_key=rsa_keys[0], key_id="vigil"))
    (out / "unsigned.tar.gz").write_bytes(build(policy))
    return out


def test_download_then_not_modified(folder: Path, rsa_keys: tuple[Path, Path]) -> None:
    client = AsgiClient(app(BundleFolder(folder)))
    first = client.get("/bundles/vigil.tar.gz")
    assert first.status_code == 200
    assert first.headers["content-type"] == "application/gzip"
    etag = first.headers["etag"]
    assert etag.startswith('"') and len(etag) == 66
    # what was served is the signed bundle, byte for byte
    assert read("served", first.content, verification_key=rsa_keys[1]).signed_by == "vigil"
    again = client.get("/bundles/vigil.tar.gz", headers={"If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    weak = client.get("/bundles/vigil.tar.gz", headers={"If-None-Match": f'"x", W/{etag}'})
    assert weak.status_code == 304
    head = client.head("/bundles/vigil.tar.gz")
    assert head.status_code == 200 and head.headers["etag"] == etag


def test_a_rebuilt_bundle_gets_a_new_etag(folder: Path) -> None:
    client = AsgiClient(app(BundleFolder(folder)))
    etag = client.get("/bundles/vigil.tar.gz").headers["etag"]
    policy = load_directory(POLICIES, ["vigil", "site"])
    target = folder / "vigil.tar.gz"
    target.write_bytes(build(policy))
    os.utime(target, ns=(time.time_ns(), time.time_ns() + 1_000_000))
    changed = client.get("/bundles/vigil.tar.gz", headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag
    assert read("served", changed.content).roots == ("vigil", "site")


@pytest.mark.parametrize("name", ["nope.tar.gz", "..%2Fsecret.tar.gz", ".hidden.tar.gz",
                                  "vigil.toml"])
def test_unknown_or_unsafe_names_are_404(folder: Path, name: str) -> None:
    (folder.parent / "secret.tar.gz").write_bytes(b"SECRET-BYTES")
    (folder / ".hidden.tar.gz").write_bytes(b"HIDDEN-BYTES")
    response = AsgiClient(app(BundleFolder(folder))).get(f"/bundles/{name}")
    assert response.status_code == 404
    assert b"-BYTES" not in response.content
    assert str(folder).encode() not in response.content


def test_with_a_verification_key_only_verified_bundles_are_served(
        folder: Path, rsa_keys: tuple[Path, Path], other_rsa_keys: tuple[Path, Path]) -> None:
    client = AsgiClient(app(BundleFolder(folder, verification_key=rsa_keys[1])))
    assert client.get("/bundles/vigil.tar.gz").status_code == 200
    unsigned = client.get("/bundles/unsigned.tar.gz")
    assert unsigned.status_code == 503
    assert "does not verify" in unsigned.json()["error"]
    wrong_key = AsgiClient(app(BundleFolder(folder, verification_key=other_rsa_keys[1])))
    refused = wrong_key.get("/bundles/vigil.tar.gz")
    assert refused.status_code == 503
    assert refused.content.find(b"\x1f\x8b") == -1  # no gzip bytes leak out


def test_vigil_bundle_serve_answers_like_an_opa_bundle_service(folder: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    # --port 0: the system chooses a free port, and the line that says the server listens
    # names it (no port is guessed, no sleep waits for the server)
    with Watched([sys.executable, "-m", "engine.cli.main", "bundle", "serve", "--folder",
                  folder, "--port", "0"], env=env) as server:
        ready = server.wait_for(r"^serving .+ at (http://127\.0\.0\.1:\d+)/bundles/$")
        url = ready.group(1)
        first = httpx.get(f"{url}/bundles/vigil.tar.gz", timeout=HANG_GUARD)
        assert first.status_code == 200
        assert first.content == (folder / "vigil.tar.gz").read_bytes()
        second = httpx.get(f"{url}/bundles/vigil.tar.gz",
                           headers={"If-None-Match": first.headers["etag"]}, timeout=HANG_GUARD)
        assert second.status_code == 304
        assert httpx.get(f"{url}/health", timeout=HANG_GUARD).status_code == 200
