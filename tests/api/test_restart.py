"""kill -9 of the service between an approval and its launch: the approval is not lost
and the VM is launched once (a real subprocess, killed with SIGKILL, then started
again on the same files)."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.fleet import Fleet
from tests.api.conftest import free_port
from tests.api.world import World, bearer, build_world
from tests.tools import HANG_GUARD, ROOT, Watched


def _start(world: World, mode: str) -> tuple[Watched, str]:
    port = free_port()
    config = world.folder / f"serve-{mode}.json"
    config.write_text(json.dumps({"settings": {k: str(v) for k, v in world.settings.items()},
                                  "log": str(world.folder / "launches.log"), "mode": mode,
                                  "port": port}))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "VIGIL_CONFIG": str(world.folder / "none.toml")}
    child = Watched([sys.executable, "-m", "tests.api.serve_world", config], env=env, cwd=ROOT)
    child.wait_for(r"listening on \d+")
    return child, f"http://127.0.0.1:{port}"


def _kill(child: Watched) -> None:
    child.process.send_signal(signal.SIGKILL)
    child.process.wait(timeout=HANG_GUARD)
    child.stop()


def _get(url: str, world: World, request_id: str) -> dict[str, Any]:
    r = httpx.get(f"{url}/v1/provisioning-requests/{request_id}",
                  headers=bearer(world.tokens["acme"]), timeout=HANG_GUARD)
    return dict(r.json())


def _until(url: str, world: World, request_id: str, status: str) -> dict[str, Any]:
    deadline = time.monotonic() + HANG_GUARD
    while True:
        body = _get(url, world, request_id)
        if body["status"] == status:
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"never {status}: {body}")
        time.sleep(0.05)


def _log(world: World, until: str) -> list[str]:
    path = world.folder / "launches.log"
    deadline = time.monotonic() + HANG_GUARD
    while not (path.exists() and until in path.read_text()):
        if time.monotonic() > deadline:
            raise AssertionError(f"the launcher never logged {until!r}")
        time.sleep(0.02)
    return path.read_text().split("\n")[:-1]


@pytest.mark.slow
@pytest.mark.parametrize("hang", ["hang-before", "hang-after"])
def test_kill_9_between_approval_and_launch_launches_once(tmp_path: Path, hang: str) -> None:
    world = build_world(tmp_path / "world", now=dt.datetime.now(dt.UTC))
    (world.folder / "none.toml").write_text("")
    child, url = _start(world, hang)
    try:
        r = httpx.post(f"{url}/v1/provisioning-requests", headers=bearer(world.tokens["acme"]),
                       json={"vm": {"name": "web-1", "vcpus": 2, "memory_mib": 1024},
                             "hosts": ["hv-admit"]}, timeout=HANG_GUARD)
        assert r.status_code == 201, r.text
        request_id = r.json()["request_id"]
        # the approval is answered only after the launch, which hangs: send it and go on
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{url}/v1/provisioning-requests/{request_id}/approve",
                       headers=bearer(world.tokens["acme"]), timeout=1.0)
        _log(world, "placed" if hang == "hang-after" else "called")
        assert _get(url, world, request_id)["status"] == "approved"
    finally:
        _kill(child)
    child, url = _start(world, "normal")
    try:
        done = _until(url, world, request_id, "launched")
        assert done["target_host"] == "hv-admit"
        again = httpx.post(f"{url}/v1/provisioning-requests/{request_id}/approve",
                           headers=bearer(world.tokens["acme"]), timeout=HANG_GUARD)
        assert again.json()["status"] == "launched"
    finally:
        child.stop()
    lines = _log(world, f"{'again' if hang == 'hang-after' else 'placed'} {request_id}")
    assert sum(line.startswith("placed ") for line in lines) == 1, lines
    with Fleet.open(world.folder / "fleet.duckdb", read_only=True) as fleet:
        assert [(vm.id, vm.host) for vm in fleet.vms()] == [(request_id, "hv-admit")]


@pytest.mark.slow
def test_requests_survive_a_restart(tmp_path: Path) -> None:
    world = build_world(tmp_path / "world", now=dt.datetime.now(dt.UTC))
    (world.folder / "none.toml").write_text("")
    child, url = _start(world, "normal")
    try:
        r = httpx.post(f"{url}/v1/provisioning-requests", headers=bearer(world.tokens["acme"]),
                       json={"vm": {"name": "web-1", "vcpus": 2, "memory_mib": 1024},
                             "hosts": ["hv-admit"]}, timeout=HANG_GUARD)
        request_id = r.json()["request_id"]
    finally:
        child.stop()
    child, url = _start(world, "normal")
    try:
        body = _get(url, world, request_id)
        assert (body["status"], body["verdict"]) == ("awaiting_approval", "admit")
        assert body["signed_report"] == r.json()["signed_report"]
        approved = httpx.post(f"{url}/v1/provisioning-requests/{request_id}/approve",
                              headers=bearer(world.tokens["acme"]), timeout=HANG_GUARD)
        assert approved.json()["status"] == "launched"
    finally:
        child.stop()
