"""The default evaluator: regorus (a Rust Rego interpreter), in a worker process.

``evaluator = "regorus"`` (the default). The policy is parsed once in a child process
(:mod:`.rego_worker`) holding the modules and the bundle data; each evaluation sends the
input as JSON and reads the entry point's value back. Parse errors name the
file and line when the policy is loaded; errors regorus finds only while evaluating (an
unknown function, a type error) fail that evaluation, which the decider turns into a
reject.

Why a process: regorus holds the GIL while it evaluates, so no thread of this process
could even notice a timeout before the evaluation ended. When the timeout passes, the
child is killed (nothing runs on in the background) and the next evaluation starts a
new one (~0.1 s). Hand-over costs about as much as a thread hand-off (tens of µs).

The decision timeout and the memory cap (``decision_memory_limit``, the child's address
space) hold from the first evaluation on: the check made when the policy is loaded
(each entry point evaluated once on an empty input, to see that it is a rule) is waited
for no longer than a decision, under the same cap, so a policy whose work does not depend
on the input stalls neither loading nor the first decision beyond the timeout. A check
that times out or runs out of memory says the entry point is a rule (a missing one is
refused at once); the child is killed and the first decision starts a new one. An
evaluation that needs more memory than the cap ends the child and is a failed evaluation
(a reject), saying so.

Known differences from OPA that the policies avoid (``engine/policies/vigil/testing``
pins the built-ins they use): ``sprintf("%.1f", [7])`` of an integer prints ``7`` (OPA prints
``%!f(int=7)``; the engine sends every score as a decimal, which prints as expected).
An undefined rule reads as the JSON string ``"<undefined>"``; that string is taken as
undefined (a policy that produced it would be rejected either way, as malformed).
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import orjson
import regorus

from engine.decide.bundle import PolicySet
from engine.decide.errors import PolicyError
from engine.decide.evaluators import (
    DECISION_PATH,
    Evaluation,
    EvaluationTimeout,
    Evaluator,
    EvaluatorError,
)
from engine.decide.evaluators.rego_worker import (
    FRAME_LENGTH,
    MIMALLOC_ENV,
    OUT_OF_MEMORY,
    UNDEFINED,
    ParseError,
    build_engine,
    error_text,
    located,
    write_frame,
)

__all__ = ["RegorusEvaluator", "located", "new_engine", "rule_value"]

WORKER_MODULE = "engine.decide.evaluators.rego_worker"
"""The worker process's module, run with ``python -m``: no module on its import path
imports more than regorus and orjson, so it starts in a few tens of milliseconds."""


def new_engine(policy: PolicySet, *, include_tests: bool = False) -> regorus.Engine:
    """An in-process engine holding ``policy``'s modules and data (the policy tests run
    on one); a parse error names the file."""
    sources = policy.modules if include_tests else policy.policy_modules
    try:
        return build_engine(dict(sources), json.dumps(policy.data))
    except ParseError as exc:
        raise PolicyError(f"policy does not compile: {exc.message}", file=exc.file,
                          line=exc.line) from None
    except RuntimeError as exc:
        raise PolicyError(f"policy data cannot be loaded: {error_text(exc)}") from None


def rule_value(engine: regorus.Engine, rule: str) -> tuple[bool, Any]:
    """(defined, value) of ``data.…`` rule ``rule``; RuntimeError when evaluation fails."""
    text = engine.eval_rule_as_json(rule)
    if text == UNDEFINED:
        return False, None
    return True, orjson.loads(text)


def _rule(path: str) -> str:
    return "data." + path.strip("/").replace("/", ".")


class _Unchecked(Exception):
    """The entry points' check did not finish (timeout, memory cap): they are rules (a
    missing one is refused at once), whose evaluation on an empty input fails the way a
    decision would. The child is gone."""


class _Child:
    """One worker process and its pipes."""

    def __init__(self, policy: PolicySet, rules: list[str], timeout: float | None, *,
                 check: bool, memory_limit: int | None) -> None:
        self.memory_limit = memory_limit
        # what the child writes on stderr (an allocation failure, a panic) is kept for the
        # error message, never mixed into the command's own output
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the child)
        self.process = subprocess.Popen(
            [sys.executable, "-m", WORKER_MODULE], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self.stderr,  # buffered: an input is written whole
            env={**os.environ, **MIMALLOC_ENV})
        init = orjson.dumps({"modules": policy.policy_modules, "data": policy.data,
                             "entrypoints": rules, "check": check,
                             "memory_limit": memory_limit})
        try:
            self._loaded(self.ask(init, _START_TIMEOUT))
        except (EvaluatorError, orjson.JSONDecodeError):
            self.kill()
            raise
        if check:
            try:
                # an evaluation like any other: no longer than a decision may take
                self._loaded(self._answer(_START_TIMEOUT if timeout is None else timeout))
            except (EvaluatorError, orjson.JSONDecodeError) as exc:
                self.kill()
                raise _Unchecked(str(exc)) from None

    def _loaded(self, raw: bytes) -> None:
        answer = orjson.loads(raw)
        if not answer.get("ok"):
            self.kill()
            raise PolicyError(answer.get("message", "policy does not load"),
                              file=answer.get("file"), line=answer.get("line"))

    def ask(self, request: bytes, timeout: float | None) -> bytes:
        """Send one frame and read the answer; EvaluationTimeout when it takes longer."""
        assert self.process.stdin is not None and self.process.stdout is not None
        try:
            write_frame(self.process.stdin, request)
        except (BrokenPipeError, OSError) as exc:
            raise EvaluatorError(f"the regorus worker is gone ({exc})") from None
        return self._answer(timeout)

    def _answer(self, timeout: float | None) -> bytes:
        """Read one answer frame; EvaluationTimeout when it takes longer than ``timeout``."""
        assert self.process.stdout is not None
        deadline = None if timeout is None else time.monotonic() + timeout
        fd = self.process.stdout.fileno()
        head = self._read(fd, FRAME_LENGTH.size, deadline)
        (size,) = FRAME_LENGTH.unpack(head)
        return self._read(fd, size, deadline)

    def _read(self, fd: int, size: int, deadline: float | None) -> bytes:
        chunks: list[bytes] = []
        left = size
        while left:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([fd], [], [], wait)
            if not ready:
                raise EvaluationTimeout("timeout")
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                raise EvaluatorError(self._ended())
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def _ended(self) -> str:
        """Why the worker ended: out of its memory cap, or its exit code and last words."""
        try:
            code = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self.stderr.seek(0, os.SEEK_END)
        self.stderr.seek(max(0, self.stderr.tell() - 4096))
        tail = self.stderr.read().decode("utf-8", "replace")
        if OUT_OF_MEMORY in tail:
            return (f"the regorus worker ran out of its memory limit ({self.memory_limit} "
                    "bytes, VIGIL_DECISION_MEMORY_LIMIT) and ended")
        last = next((line.strip() for line in reversed(tail.splitlines()) if line.strip()),
                    "")
        return f"the regorus worker ended (exit code {code})" + (f": {last}" if last else "")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout, self.stderr):
            if stream is not None:
                stream.close()


_START_TIMEOUT = 60.0
"""Seconds a new worker may take to start and parse the policy (no evaluation: that is
bounded by the decision timeout)."""

DEFAULT_MEMORY_LIMIT = 2 * 1024**3
"""The worker's address space when no limit is given (``decision_memory_limit``)."""


class RegorusEvaluator(Evaluator):
    """regorus in a worker process that is killed when an evaluation times out."""

    name = "regorus"

    def __init__(self, policy: PolicySet, *, entrypoints: tuple[str, ...] = (DECISION_PATH,),
                 timeout: float | None = 1.0,
                 memory_limit: int | None = DEFAULT_MEMORY_LIMIT) -> None:
        self.policy = policy
        self.timeout = timeout
        self.memory_limit = memory_limit
        self._entrypoints = entrypoints
        self._lock = threading.Lock()
        # parse errors and missing entry points surface now, not at the first decision
        self._child: _Child | None = None
        try:
            self._child = self._start(check=True)
        except _Unchecked:
            # the entry points are rules whose evaluation on an empty input takes longer
            # (or more memory) than a decision may: the child was stopped, and the first
            # decision starts a new one (and fails the same way, unless its input makes
            # the policy quicker)
            self._child = None

    def _start(self, *, check: bool = False) -> _Child:
        return _Child(self.policy, [_rule(p) for p in self._entrypoints], self.timeout,
                      check=check, memory_limit=self.memory_limit)

    @property
    def bundle_revision(self) -> str | None:
        return self.policy.revision

    @property
    def worker_pid(self) -> int | None:
        """The worker process's id (None while none runs): what a benchmark adds to this
        process's CPU time."""
        child = self._child
        return child.process.pid if child is not None else None

    def evaluate(self, input_document: dict[str, Any], path: str = DECISION_PATH) -> Evaluation:
        if path not in self._entrypoints:
            raise EvaluatorError(f"{path} is not an entry point of the compiled policy "
                                 f"(entry points: {', '.join(self._entrypoints)})")
        try:
            request = _rule(path).encode() + b"\n" + orjson.dumps(input_document)
        except TypeError as exc:
            raise EvaluatorError(f"the input is not JSON: {exc}") from None
        with self._lock:
            if self._child is None:
                self._child = self._start()
            child = self._child
            try:
                answer = child.ask(request, self.timeout)
            except EvaluationTimeout:
                child.kill()  # nothing keeps running: the next evaluation starts afresh
                self._child = None
                raise EvaluationTimeout(
                    f"evaluation of data.{path.replace('/', '.')} did not finish within "
                    f"{self.timeout} s") from None
            except EvaluatorError:
                child.kill()
                self._child = None
                raise
        header_text, _, body = answer.partition(b"\n")
        header = orjson.loads(header_text)
        if header["status"] == "error":
            where = f" ({header['file']}:{header['line']})" if header.get("file") else ""
            raise EvaluatorError(f"regorus evaluation failed{where}: {header['message']}")
        defined = header["status"] == "value"
        return Evaluation(defined=defined, value=orjson.loads(body) if defined else None,
                          timings_ns={"timer_rego_input_parse_ns": header["parse_ns"],
                                      "timer_rego_query_eval_ns": header["eval_ns"]})

    def close(self) -> None:
        with self._lock:
            if self._child is not None:
                self._child.kill()
                self._child = None
