"""A real OPA server polling `vigil bundle serve` (OPA's `services` + `bundles`
configuration): it activates the signed bundle, gets 304s while it is unchanged, picks up
a new revision, and never activates one that does not verify.

Waits are on events (responses counted by the server, revisions read from OPA), each
with a hang guard; no outcome depends on how fast the machine is."""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import uvicorn

from engine.decide import BundleFolder, build_bundle, bundle_server_app, load_directory
from engine.decide.evaluators.remote import RemoteEvaluator
from tests.opa.conftest import OpaServer, free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ROOT / "engine" / "policies"


class _Counting:
    """The bundle server's ASGI app, counting the statuses it answers per path."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.statuses: Counter[tuple[str, int]] = Counter()
        self.lock = threading.Lock()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def counting_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                with self.lock:
                    self.statuses[(scope["path"], message["status"])] += 1
            await send(message)

        await self.app(scope, receive, counting_send)

    def count(self, path: str, status: int) -> int:
        with self.lock:
            return self.statuses[(path, status)]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path, _Counting]]:
    folder = tmp_path / "bundles"
    folder.mkdir()
    app = _Counting(bundle_server_app(BundleFolder(folder)))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, "the bundle server starting")
    yield f"http://127.0.0.1:{port}", folder, app
    server.should_exit = True
    thread.join(timeout=30)


def _publish(folder: Path, key: Path, revision: str) -> None:
    """Write the bundle as a publisher would: whole, then renamed into place."""
    body = build_bundle(load_directory(POLICIES, ["vigil"]), revision=revision,
                        signing_key=key)
    tmp = folder / ".vigil.tar.gz.tmp"
    tmp.write_bytes(body)
    os.replace(tmp, folder / "vigil.tar.gz")


def _config(service: str, public: Path) -> str:
    key = public.read_text().replace("\n", "\n      ")
    return f"""
services:
  vigil:
    url: {service}
bundles:
  vigil:
    service: vigil
    resource: bundles/vigil.tar.gz
    polling:
      min_delay_seconds: 1
      max_delay_seconds: 1
    signing:
      keyid: vigil
keys:
  vigil:
    algorithm: RS256
    key: |
      {key}
"""


def _revision(url: str) -> str | None:
    answer = requests.get(f"{url}/v1/data/system/bundles/vigil", timeout=10).json()
    return ((answer.get("result") or {}).get("manifest") or {}).get("revision")


def test_opa_polls_vigil_bundle_serve(opa_server: OpaServer,
                                      served: tuple[str, Path, _Counting],
                                      keys: dict[str, tuple[Path, Path]]) -> None:
    service, folder, app = served
    private, public = keys["RS256"]
    path = "/bundles/vigil.tar.gz"
    _publish(folder, private, "rev-1")
    url = opa_server.start(config=_config(service, public), wait_for_bundles=True)
    assert _revision(url) == "rev-1"
    # unchanged: OPA asks again with its ETag and is told 304, twice at least
    wait_until(lambda: app.count(path, 304) >= 2, "two 304 answers to OPA's polls")
    assert app.count(path, 200) == 1
    # a new revision is picked up
    _publish(folder, private, "rev-2")
    wait_until(lambda: _revision(url) == "rev-2", "OPA activating rev-2")
    assert RemoteEvaluator(url, timeout=10.0).bundle_revision == "rev-2"  # named "vigil"
    # a bundle signed by another key is fetched but never activated
    _publish(folder, keys["stranger"][0], "rev-evil")
    fetched = app.count(path, 200)
    wait_until(lambda: app.count(path, 200) >= fetched + 2,
               "OPA fetching the bad bundle twice")
    assert _revision(url) == "rev-2"
    answer = requests.post(f"{url}/v1/data/vigil/decision/result", json={"input": {}},
                           timeout=10)
    assert answer.status_code == 200  # still serving the last good revision
