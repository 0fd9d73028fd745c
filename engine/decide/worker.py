"""A worker thread for evaluators that cannot be interrupted.

Neither rego-cpp nor regorus can stop an evaluation half-way. An evaluator with a
timeout runs each evaluation on a :class:`Worker`; when the timeout passes it abandons
that worker (the evaluation finishes in the background on a daemon thread, whose result
is dropped) and starts the next evaluation on a fresh worker and interpreter.

A worker may own per-thread state made by ``setup`` on its own thread (a regorus engine
must be created, used and dropped on one thread); each call receives it.
"""

from __future__ import annotations

import concurrent.futures
import queue
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

State = TypeVar("State")


def _detached(exc: BaseException) -> BaseException:
    """``exc`` without tracebacks (its own and its chain's): their frames may hold the
    worker's state, which must not be dropped on the thread that receives the error."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        current.__traceback__ = None
        current = current.__cause__ or current.__context__
    return exc


class Worker(Generic[State]):
    """One daemon thread running submitted calls in order (daemon: an abandoned,
    still-running evaluation does not hold up the interpreter's exit)."""

    def __init__(self, name: str, setup: Callable[[], State]) -> None:
        self._jobs: queue.SimpleQueue[
            tuple[Callable[[State], Any], concurrent.futures.Future[Any]] | None
        ] = queue.SimpleQueue()
        self._setup = setup
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        state: State | None = None
        setup_error: BaseException | None = None
        try:
            state = self._setup()
        except BaseException as exc:  # reported to every caller
            setup_error = _detached(exc)
        while (job := self._jobs.get()) is not None:
            call, future = job
            if setup_error is not None:
                future.set_exception(setup_error)
                continue
            try:
                future.set_result(call(state))  # type: ignore[arg-type]
            except BaseException as exc:
                future.set_exception(_detached(exc))
        del state  # dropped on this thread

    def submit(self, call: Callable[[State], Any]) -> concurrent.futures.Future[Any]:
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
        self._workers: list[Worker[Any]] = []

    def add(self, worker: Worker[Any]) -> None:
        worker.stop()
        self._workers.append(worker)

    def check(self) -> None:
        """Raise EvaluatorError while :data:`MAX_ABANDONED` of them still run."""
        from engine.decide.errors import EvaluatorError

        self._workers = [w for w in self._workers if w.running()]
        if len(self._workers) >= MAX_ABANDONED:
            raise EvaluatorError(
                f"{len(self._workers)} evaluations that timed out are still running; no "
                "new evaluation starts until one of them ends")
