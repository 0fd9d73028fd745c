"""For the tests that run other programs: where the project's OPA is, and a child process
whose readiness is a line it prints (never a sleep).

Timeouts here are hang guards only: long enough that no correct run comes near them on a
loaded machine, so a test that reaches one has found a program that hangs.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

ROOT = Path(__file__).resolve().parents[1]
LOCAL_OPA = ROOT / ".tools" / "bin" / "opa"
"""Where ``scripts/setup.sh`` builds the pinned OPA."""

HANG_GUARD = 120.0
"""Seconds after which a wait is taken for a hang (no correct run takes nearly as long)."""


def opa_binary() -> Path | None:
    """The project's OPA (``.tools/bin/opa``), else ``opa`` on PATH, else None."""
    if LOCAL_OPA.is_file() and os.access(LOCAL_OPA, os.X_OK):
        return LOCAL_OPA
    found = shutil.which("opa")
    return Path(found) if found else None


class Watched:
    """A child process whose stderr is read line by line on a thread (so its pipe never
    fills), to wait for the line that says it is ready."""

    def __init__(self, args: Sequence[str | Path], *, env: dict[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        self.process = subprocess.Popen([str(a) for a in args], stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                        text=True, env=env, cwd=cwd)
        self.lines: list[str] = []
        self._queue: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, pattern: str, timeout: float = HANG_GUARD) -> re.Match[str]:
        """The first stderr line matching ``pattern``; fails, showing what the child
        printed, when it exits first or nothing matches within the hang guard."""
        wanted = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.stop()
                raise AssertionError(f"no line matching {pattern!r} within {timeout} s; "
                                     f"stderr: {self.lines}") from None
            if line is None:
                code = self.process.wait(timeout=HANG_GUARD)
                raise AssertionError(f"exited with code {code} before printing {pattern!r}; "
                                     f"stderr: {self.lines}")
            self.lines.append(line)
            found = wanted.search(line)
            if found:
                return found

    def stop(self) -> None:
        """Terminate the child (kill it when it does not end within the hang guard)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=HANG_GUARD)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._reader.join(timeout=HANG_GUARD)
        if self.process.stderr is not None:
            self.process.stderr.close()

    def __enter__(self) -> Watched:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()
