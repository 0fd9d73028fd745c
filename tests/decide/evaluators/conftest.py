"""Helpers for the evaluator tests: one-module policies, and evaluations that cannot
finish until the test says so.

The timeouts these tests provoke happen by construction, whatever the load: the regorus
worker is stopped (SIGSTOP) before it is asked, and a rego-cpp evaluation waits on an
event the test sets only at its end. Nothing is left running afterwards (the stopped
worker is killed, the blocked threads are released and finish at once).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.decide.bundle import load_directory
from tests.tools import HANG_GUARD


def one_module(tmp_path: Path, source: str) -> Any:
    """A policy set of one module, ``demo/decision/decision.rego``."""
    folder = tmp_path / "demo" / "decision"
    folder.mkdir(parents=True)
    (folder / "decision.rego").write_text(source)
    return load_directory(tmp_path, ["demo"])


def quick_policy(tmp_path: Path) -> Any:
    folder = tmp_path / "quick" / "decision"
    folder.mkdir(parents=True)
    (folder / "decision.rego").write_text(
        "package quick.decision\n\nimport rego.v1\n\nresult := {\"verdict\": \"admit\"}\n")
    return load_directory(tmp_path, ["quick"])


QUICK = "quick/decision/result"


def stalled(evaluator: Any) -> Any:
    """The regorus evaluator's worker process, started if need be and stopped: it cannot
    answer until it is killed."""
    if evaluator._child is None:
        evaluator._child = evaluator._start()
    child = evaluator._child
    os.kill(child.process.pid, signal.SIGSTOP)
    return child


@pytest.fixture()
def release() -> Iterator[threading.Event]:
    """Set at the end of the test: the blocked rego-cpp evaluations then finish."""
    event = threading.Event()
    yield event
    event.set()


def blocked(evaluator: Any, release: threading.Event) -> None:
    """Every evaluation of this rego-cpp evaluator waits for ``release`` first (rego-cpp
    itself cannot be made to wait: its worker thread is what the evaluator abandons)."""
    evaluate = evaluator._run

    def waiting(*args: Any) -> Any:
        release.wait(HANG_GUARD)
        return evaluate(*args)

    evaluator._run = waiting
