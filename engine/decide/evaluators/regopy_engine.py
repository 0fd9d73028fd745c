"""The rego-cpp evaluator: ``regopy``, in-process (``evaluator = "regopy"``).

Policies are compiled once into a rego-cpp bundle with the decision entry points;
each evaluation sets the input and runs the compiled plan. Known gaps of rego-cpp 1.5
that the policies avoid (and tests pin): ``time.parse_rfc3339_ns`` rejects a trailing
``Z``, no ``net.*`` built-ins, floats print with noise (``%v`` of 9.8 is
``9.800000000000001``; use ``%.1f``), ``object.union`` does not merge nested objects and
``object.keys`` returns an array. Two defects of the binding are worked around here:
reading an error output as JSON crashes the process, so errors are read from the
interpreter instead; and ``with input as …`` over a whole document fails to compile in
some rules, so policy tests replace ``input.<field>`` one field at a time.

rego-cpp builds sets and objects in quadratic time and reads its input node by node
(~0.1 ms per vulnerability), so it is the slower of the two embedded evaluators; see
docs/performance.md. It cannot be interrupted: with a timeout, each evaluation runs on a
:class:`Worker` thread; when the timeout passes the evaluator abandons that worker (the
evaluation finishes in the background on a daemon thread, whose result is dropped) and
starts the next evaluation on a fresh worker and interpreter. :class:`Abandoned` caps how
many such evaluations may still run. (regorus holds the GIL while it evaluates, so it
runs in a worker process instead: :mod:`.regorus_engine`.)
"""

from __future__ import annotations

import concurrent.futures
import json
import queue
import re
import threading
import time
from collections.abc import Callable
from typing import Any

import regopy
from regopy import rego_shared

from engine.decide.bundle import PolicySet
from engine.decide.errors import PolicyError
from engine.decide.evaluators import (
    DECISION_PATH,
    Evaluation,
    EvaluationTimeout,
    Evaluator,
    EvaluatorError,
)

_ERROR_AT = re.compile(r"\(error\s+\d+:(?P<file>[^|\s]+)\|(?P<offset>\d+)\|\d+\s*"
                       r"\(errormsg\s+\d+:(?P<msg>[^)]*)\)", re.S)
_PRETTY_AT = re.compile(r"^(?P<msg>[^\n]+)\n-- (?P<file>[^:\n]+):(?P<line>\d+):\d+", re.M)


def interpreter_error(interpreter: regopy.Interpreter) -> str:
    """The last error message of an interpreter (safe on error outputs)."""
    try:
        return str(rego_shared.rego_get_error(interpreter._impl)).strip()
    except Exception as exc:  # pragma: no cover - the binding failed to report
        return f"rego-cpp reported an error it could not describe ({exc})"


def _locate(message: str, sources: dict[str, str]) -> tuple[str | None, int | None, str]:
    """Find file and line in a rego-cpp error message."""
    match = _PRETTY_AT.search(message)
    if match:
        return match.group("file"), int(match.group("line")), match.group("msg").strip()
    match = _ERROR_AT.search(message)
    if match:
        file, offset = match.group("file"), int(match.group("offset"))
        source = sources.get(file)
        line = source[:offset].count("\n") + 1 if source is not None else None
        return file, line, match.group("msg").strip()
    return None, None, message.splitlines()[0] if message else "unknown error"


def compile_error(exc_or_message: object, sources: dict[str, str]) -> PolicyError:
    message = str(exc_or_message)
    file, line, summary = _locate(message, sources)
    return PolicyError(f"policy does not compile: {summary}", file=file, line=line)


def new_interpreter(policy: PolicySet, *, include_tests: bool = False) -> regopy.Interpreter:
    """An interpreter holding ``policy``'s modules and data; compile errors name the file."""
    interpreter = regopy.Interpreter()
    sources = policy.modules if include_tests else policy.policy_modules
    for path, source in sorted(sources.items()):
        try:
            interpreter.add_module(path, source)
        except regopy.RegoError as exc:
            raise compile_error(exc, sources) from exc
    try:
        interpreter.add_data_json(json.dumps(policy.data))
    except regopy.RegoError as exc:
        raise PolicyError(f"policy data cannot be loaded: {exc}") from exc
    return interpreter


def output_value(output: regopy.Output, interpreter: regopy.Interpreter) -> tuple[bool, Any]:
    """(defined, value) of a query output; raise EvaluatorError on an error output."""
    if not output.ok():
        raise EvaluatorError(f"rego-cpp evaluation failed: {interpreter_error(interpreter)}")
    if not output.results:
        return False, None
    expressions = output.results[0].expressions
    if not expressions:
        return False, None
    return True, expressions[0]


# --- the worker thread ------------------------------------------------------------


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


# --- the evaluator ----------------------------------------------------------------


class EmbeddedEvaluator(Evaluator):
    """rego-cpp in-process; compiled once per policy set."""

    name = "regopy"

    def __init__(self, policy: PolicySet, *, entrypoints: tuple[str, ...] = (DECISION_PATH,),
                 timeout: float | None = 1.0) -> None:
        self.policy = policy
        self.timeout = timeout
        self._entrypoints = entrypoints
        builder = new_interpreter(policy)
        self._builder = builder
        bundle = builder.build(None, list(entrypoints))
        if not bundle.ok():
            raise compile_error(interpreter_error(builder), policy.policy_modules)
        self._bundle = bundle
        self._lock = threading.Lock()
        self._runner = regopy.Interpreter()
        self._worker: Worker | None = None
        self._abandoned = Abandoned()

    @property
    def bundle_revision(self) -> str | None:
        return self.policy.revision

    def _run(self, runner: regopy.Interpreter, document: dict[str, Any],
             path: str) -> Evaluation:
        started = time.perf_counter_ns()
        runner.set_input(regopy.Input(document))
        converted = time.perf_counter_ns()
        if path in self._entrypoints:
            output = runner.query_bundle_entrypoint(self._bundle, path)
        else:
            raise EvaluatorError(f"{path} is not an entry point of the compiled policy "
                                 f"(entry points: {', '.join(self._entrypoints)})")
        defined, value = output_value(output, runner)
        done = time.perf_counter_ns()
        return Evaluation(defined=defined, value=value, timings_ns={
            "timer_rego_input_parse_ns": converted - started,
            "timer_rego_query_eval_ns": done - converted,
        })

    def evaluate(self, input_document: dict[str, Any], path: str = DECISION_PATH) -> Evaluation:
        with self._lock:
            runner = self._runner
            if self.timeout is None:
                return self._run(runner, input_document, path)
            self._abandoned.check()
            if self._worker is None:
                self._worker = Worker("vigil-rego-cpp")
            future = self._worker.submit(lambda: self._run(runner, input_document, path))
            try:
                result: Evaluation = future.result(timeout=self.timeout)
                return result
            except concurrent.futures.TimeoutError:
                # rego-cpp cannot be interrupted: abandon this worker and interpreter
                self._abandoned.add(self._worker)
                self._worker = None
                self._runner = regopy.Interpreter()
                raise EvaluationTimeout(
                    f"evaluation of data.{path.replace('/', '.')} did not finish within "
                    f"{self.timeout} s") from None

    def close(self) -> None:
        if self._worker is not None:
            self._worker.stop()
            self._worker = None
