"""The service in a process of its own, for the restart tests: ``python -m
tests.api.serve_world CONFIG.json`` serves the world the JSON names on 127.0.0.1, with a
launcher that logs every call to a file (fsynced) and, as told, hangs before or after
placing the VM (so that the test can kill the process right there)."""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path
from typing import Any

import uvicorn

from engine.api import create_app
from engine.config import load_settings
from engine.provision import FleetFile, FleetLauncher, Launched, LaunchOrder


class LoggedLauncher:
    def __init__(self, fleet: FleetFile, log: Path, mode: str) -> None:
        self.inner = FleetLauncher(fleet)
        self.log = log
        self.mode = mode

    def _write(self, line: str) -> None:
        with self.log.open("a") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())

    def launch(self, order: LaunchOrder) -> Launched:
        self._write(f"called {order.request_id}")
        if self.mode == "hang-before":
            threading.Event().wait()
        done = self.inner.launch(order)
        self._write(f"{'again' if done.again else 'placed'} {order.request_id}")
        if self.mode == "hang-after":
            threading.Event().wait()
        return done


def main(config: Path) -> None:
    cfg: dict[str, Any] = json.loads(config.read_text())
    settings = load_settings(**cfg["settings"])
    launcher = LoggedLauncher(FleetFile(settings.fleet_db), Path(cfg["log"]), cfg["mode"])
    app = create_app(settings, launcher=launcher, scheduler_poll=0.05)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=int(cfg["port"]),
                                           log_level="warning"))
    original = server.startup

    async def startup(*args: Any, **kwargs: Any) -> None:
        await original(*args, **kwargs)
        print(f"listening on {cfg['port']}", file=sys.stderr, flush=True)

    server.startup = startup  # type: ignore[method-assign]
    server.run()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
