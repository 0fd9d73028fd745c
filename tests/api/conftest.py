"""The service on loopback (uvicorn on a free port), a fake placement gate, and the real
KubeVirt objects of ../shared/data/kubevirt (read in place; tests skip where absent)."""

from __future__ import annotations

import datetime as dt
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import yaml

from engine.api import GateAnswer, TokenStore, create_app
from engine.config import load_settings
from engine.decide import BundleFolder, Image, VmShape
from tests.api.world import NOW, World, bearer, build_pvdb, build_world
from tests.conftest import SHARED_DATA
from tests.tools import HANG_GUARD

KUBEVIRT = SHARED_DATA / "kubevirt"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class FakeGate:
    """Answers what it is told, and remembers what it was asked."""

    answer: GateAnswer = field(default_factory=lambda: GateAnswer("admit", hosts=("h1",)))
    problems: list[str] = field(default_factory=list)
    delay_s: float = 0.0
    asked: list[dict[str, Any]] = field(default_factory=list)

    def decide(self, tenant: str, vm_shape: VmShape, requested_image: Image | None, *,
               requested_patch_level: str | None = None, record: bool = True) -> GateAnswer:
        self.asked.append({"tenant": tenant, "vm": vm_shape, "image": requested_image,
                           "level": requested_patch_level, "record": record})
        if self.delay_s:
            time.sleep(self.delay_s)
        return self.answer

    def readiness(self) -> list[str]:
        return list(self.problems)


@dataclass
class Served:
    url: str
    gate: Any
    headers: dict[str, str] = field(default_factory=dict)
    """An ``Authorization`` header with a ``service`` token (the API server's)."""
    tokens: Any = None


def run_server(app: Any) -> Iterator[str]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise AssertionError("the service did not start within 30 s")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture
def bundle_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "bundles"
    folder.mkdir()
    return folder


@pytest.fixture
def served(tmp_path: Path, bundle_dir: Path) -> Iterator[Served]:
    gate = FakeGate()
    settings = load_settings(db=tmp_path / "pvdb.duckdb",
                             decision_log=tmp_path / "decisions.duckdb",
                             tokens_db=tmp_path / "tokens.sqlite3",
                             requests_db=tmp_path / "requests.duckdb")
    tokens = TokenStore(settings.tokens_db)
    token, _ = tokens.create("kube-apiserver", "service")
    app = create_app(settings, gate=gate, bundles=BundleFolder(bundle_dir), max_body=64 * 1024,
                     decision_timeout=1.0, tokens=tokens)
    try:
        yield from (Served(url, gate, bearer(token), tokens) for url in run_server(app))
    finally:
        tokens.close()


def kubevirt_objects(kind: str | None = None) -> list[tuple[str, dict[str, Any]]]:
    """(file name, object) of the KubeVirt examples, of ``kind`` when given."""
    if not KUBEVIRT.is_dir():
        return []
    out = []
    for path in sorted(KUBEVIRT.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and (kind is None or doc.get("kind") == kind):
                out.append((path.name, doc))
    return out


def need_kubevirt() -> None:
    if not KUBEVIRT.is_dir():
        pytest.skip(f"the KubeVirt example objects are not at {KUBEVIRT} "
                    "(set VIGIL_SHARED_DATA)")


def review(obj: dict[str, Any], *, namespace: str = "acme", operation: str = "CREATE",
           dry_run: bool = False, group: str = "kubevirt.io") -> dict[str, Any]:
    """An AdmissionReview as the API server sends it for ``obj``."""
    kind = obj.get("kind", "VirtualMachineInstance")
    plural = kind.lower() + "s"
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": str(uuid.uuid4()),
            "kind": {"group": group, "version": "v1", "kind": kind},
            "resource": {"group": group, "version": "v1", "resource": plural},
            "requestKind": {"group": group, "version": "v1", "kind": kind},
            "requestResource": {"group": group, "version": "v1", "resource": plural},
            "name": obj.get("metadata", {}).get("name", ""),
            "namespace": namespace,
            "operation": operation,
            "userInfo": {"username": "kubernetes-admin", "groups": ["system:masters"]},
            "object": obj,
            "oldObject": None,
            "dryRun": dry_run,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
        },
    }


# -- the provisioning world, served -----------------------------------------------------

class Clock:
    """The service's clock, moved by the test."""

    def __init__(self, now: dt.datetime) -> None:
        self.now = now
        self._lock = threading.Lock()

    def __call__(self) -> dt.datetime:
        with self._lock:
            return self.now

    def advance(self, **delta: float) -> None:
        with self._lock:
            self.now += dt.timedelta(**delta)


@dataclass
class Service:
    url: str
    world: World
    clock: Clock
    app: Any = None
    """The application as served (the FastAPI app inside the service's middleware)."""

    @property
    def state(self) -> Any:
        """The FastAPI app's ``state`` (the dashboard's caches)."""
        return self.app.app.state

    def call(self, method: str, path: str, who: str | None = "acme", **kwargs: Any
             ) -> httpx.Response:
        headers = bearer(self.world.tokens[who]) if who else {}
        return httpx.request(method, f"{self.url}{path}", headers=headers,
                             timeout=HANG_GUARD, **kwargs)

    def submit(self, host: str, who: str = "acme", **extra: Any) -> dict[str, Any]:
        body = {"vm": {"name": "web-1", "vcpus": 2, "memory_mib": 4096}, "hosts": [host],
                **extra}
        r = self.call("POST", "/v1/provisioning-requests", who, json=body)
        assert r.status_code == 201, r.text
        return dict(r.json())

    def wait(self, request_id: str, done: Any, who: str = "acme") -> dict[str, Any]:
        deadline = time.monotonic() + HANG_GUARD
        while True:
            body = self.call("GET", f"/v1/provisioning-requests/{request_id}", who).json()
            if done(body):
                return dict(body)
            if time.monotonic() > deadline:
                raise AssertionError(f"the request never got there: {body}")
            time.sleep(0.05)


@pytest.fixture(scope="module")
def pvdb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_pvdb(tmp_path_factory.mktemp("pvdb") / "pvdb.duckdb")


@pytest.fixture
def service(tmp_path: Path, pvdb: Path) -> Iterator[Service]:
    world = build_world(tmp_path / "world", pvdb=pvdb)
    clock = Clock(NOW)
    app = create_app(load_settings(**world.settings), clock=clock, scheduler_poll=0.05)
    for url in run_server(app):
        yield Service(url, world, clock, app)


