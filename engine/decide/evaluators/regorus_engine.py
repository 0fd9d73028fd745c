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


class _Child:
    """One worker process and its pipes."""

    def __init__(self, policy: PolicySet, rules: list[str], timeout: float, *,
                 check: bool) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", WORKER_MODULE], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE)  # buffered: a large input is written whole
        init = orjson.dumps({"modules": policy.policy_modules, "data": policy.data,
                             "entrypoints": rules, "check": check})
        try:
            answer = orjson.loads(self.ask(init, timeout))
        except (EvaluatorError, orjson.JSONDecodeError):
            self.kill()
            raise
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
                code = self.process.poll()
                raise EvaluatorError(f"the regorus worker ended (exit code {code})")
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()


_START_TIMEOUT = 60.0
"""Seconds a new worker may take to start and parse the policy."""


class RegorusEvaluator(Evaluator):
    """regorus in a worker process that is killed when an evaluation times out."""

    name = "regorus"

    def __init__(self, policy: PolicySet, *, entrypoints: tuple[str, ...] = (DECISION_PATH,),
                 timeout: float | None = 1.0) -> None:
        self.policy = policy
        self.timeout = timeout
        self._entrypoints = entrypoints
        self._lock = threading.Lock()
        # parse errors and missing entry points surface now, not at the first decision
        self._child: _Child | None = self._start(check=True)

    def _start(self, *, check: bool = False) -> _Child:
        return _Child(self.policy, [_rule(p) for p in self._entrypoints], _START_TIMEOUT,
                      check=check)

    @property
    def bundle_revision(self) -> str | None:
        return self.policy.revision

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
