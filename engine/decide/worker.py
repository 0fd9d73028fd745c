"""The worker thread of the rego-cpp evaluator, which cannot be interrupted.

rego-cpp cannot stop an evaluation half-way. With a timeout, each evaluation runs on a
:class:`Worker`; when the timeout passes the evaluator abandons that worker (the
evaluation finishes in the background on a daemon thread, whose result is dropped) and
starts the next evaluation on a fresh worker and interpreter. :class:`Abandoned` caps how
many such evaluations may still run. (regorus holds the GIL while it evaluates, so it
runs in a worker process instead: :mod:`engine.decide.regorus_engine`.)
"""

from __future__ import annotations

import concurrent.futures
import queue
import threading
from collections.abc import Callable
from typing import Any

from engine.decide.errors import EvaluatorError


class Worker:
    """One daemon thread running submitted calls in order (daemon: an abandoned,
    still-running evaluation does not hold up the interpreter's exit)."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[
            tuple[Callable[[], Any], concurrent.futures.Future[Any]] | None
        ] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            call, future = job
            try:
                future.set_result(call())
            except BaseException as exc:
                future.set_exception(exc)

    def submit(self, call: Callable[[], Any]) -> concurrent.futures.Future[Any]:
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        self._jobs.put((call, future))
        return future

    def stop(self) -> None:
        self._jobs.put(None)

    def running(self) -> bool:
        """Whether the thread is still alive (an abandoned one: still evaluating)."""
        return self._thread.is_alive()


MAX_ABANDONED = 4
"""Timed-out evaluations allowed to run on in the background at once. Past that, new
evaluations are refused (a fail-closed reject) instead of starting more threads: a
policy or input that never finishes cannot pile up threads and take every core."""


class Abandoned:
    """The workers an evaluator gave up on, while they still run."""

    def __init__(self) -> None:
        self._workers: list[Worker] = []

    def add(self, worker: Worker) -> None:
        worker.stop()
        self._workers.append(worker)

    def check(self) -> None:
        """Raise EvaluatorError while :data:`MAX_ABANDONED` of them still run."""
        self._workers = [w for w in self._workers if w.running()]
        if len(self._workers) >= MAX_ABANDONED:
            raise EvaluatorError(
                f"{len(self._workers)} evaluations that timed out are still running; no "
                "new evaluation starts until one of them ends")
