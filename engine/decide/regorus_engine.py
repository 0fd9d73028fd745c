"""The default evaluator: regorus (a Rust Rego interpreter), in-process.

``evaluator = "regorus"`` (the default). Policies are parsed once into an engine holding
the modules and the bundle data; each evaluation sets the input from JSON and evaluates
the entry point rule. Parse errors name the file and line when the policy is loaded;
errors regorus finds only while evaluating (an unknown function, a type error) fail that
evaluation, which the decider turns into a reject.

Known differences from OPA that the policies avoid (``policies/vigil/testing`` pins the
built-ins they use): ``sprintf("%.1f", [7])`` of an integer prints ``7`` (OPA prints
``%!f(int=7)``; the engine sends every score as a decimal, which prints as expected).
An undefined rule reads as the JSON string ``"<undefined>"``; that string is taken as
undefined (a policy that produced it would be rejected either way, as malformed).

A regorus engine may only be used (and dropped) by the thread that created it, so every
evaluation runs on the evaluator's worker thread, which owns the engine. regorus cannot
be interrupted: a timeout abandons the worker, which finishes in the background, and the
next evaluation runs on a new worker with a newly parsed engine (a few milliseconds).
"""

from __future__ import annotations

import concurrent.futures
import json
import re
import threading
import time
from typing import Any

import orjson
import regorus

from engine.decide.bundle import PolicySet
from engine.decide.errors import EvaluationTimeout, EvaluatorError, PolicyError
from engine.decide.evaluator import DECISION_PATH, Evaluation, Evaluator
from engine.decide.worker import Worker

_LOCATION = re.compile(r"-->\s*(?P<file>\S+?):(?P<line>\d+):(?P<column>\d+)")
_MESSAGE = re.compile(r"^error:\s*(?P<message>.+)$", re.MULTILINE)
_UNDEFINED = '"<undefined>"'
_NOT_A_RULE = "not a valid rule path"


def error_text(exc: BaseException) -> str:
    """regorus's message without the Rust backtrace it appends when RUST_BACKTRACE is set."""
    return str(exc).split("Stack backtrace:", 1)[0].strip()


def located(exc: BaseException) -> tuple[str | None, int | None, str]:
    """(file, line, message) of a regorus error."""
    text = error_text(exc)
    where = _LOCATION.search(text)
    what = _MESSAGE.search(text)
    message = what.group("message").strip() if what else (text.splitlines() or ["error"])[-1]
    if where is None:
        return None, None, message
    return where.group("file"), int(where.group("line")), message


def new_engine(policy: PolicySet, *, include_tests: bool = False) -> regorus.Engine:
    """An engine holding ``policy``'s modules and data; a parse error names the file."""
    engine = regorus.Engine()
    sources = policy.modules if include_tests else policy.policy_modules
    for path, source in sorted(sources.items()):
        try:
            engine.add_policy(path, source)
        except RuntimeError as exc:
            file, line, message = located(exc)
            raise PolicyError(f"policy does not compile: {message}", file=file or path,
                              line=line) from None
    try:
        engine.add_data_json(json.dumps(policy.data))
    except RuntimeError as exc:
        raise PolicyError(f"policy data cannot be loaded: {error_text(exc)}") from None
    return engine


def rule_value(engine: regorus.Engine, rule: str) -> tuple[bool, Any]:
    """(defined, value) of ``data.…`` rule ``rule``; RuntimeError when evaluation fails."""
    text = engine.eval_rule_as_json(rule)
    if text == _UNDEFINED:
        return False, None
    return True, orjson.loads(text)


def _rule(path: str) -> str:
    return "data." + path.strip("/").replace("/", ".")


class RegorusEvaluator(Evaluator):
    """regorus in-process, on a worker thread that owns the engine."""

    name = "regorus"

    def __init__(self, policy: PolicySet, *, entrypoints: tuple[str, ...] = (DECISION_PATH,),
                 timeout: float | None = 1.0) -> None:
        self.policy = policy
        self.timeout = timeout
        self._entrypoints = entrypoints
        self._lock = threading.Lock()
        self._worker: Worker[regorus.Engine] = self._start()
        # parse errors and missing entry points surface now, not at the first decision
        self._worker.submit(self._check).result()

    def _start(self) -> Worker[regorus.Engine]:
        return Worker("vigil-regorus", lambda: new_engine(self.policy))

    def _check(self, engine: regorus.Engine) -> None:
        engine.set_input_json("{}")
        for path in self._entrypoints:
            try:
                rule_value(engine, _rule(path))
            except RuntimeError as exc:
                # only a missing rule is a policy error here: an empty input may well
                # make a correct policy fail at run time
                if _NOT_A_RULE in error_text(exc):
                    raise PolicyError(f"entry point data.{path.replace('/', '.')} is not a "
                                      "rule of the policy") from None

    @property
    def bundle_revision(self) -> str | None:
        return self.policy.revision

    def _run(self, engine: regorus.Engine, document: dict[str, Any], path: str) -> Evaluation:
        if path not in self._entrypoints:
            raise EvaluatorError(f"{path} is not an entry point of the compiled policy "
                                 f"(entry points: {', '.join(self._entrypoints)})")
        started = time.perf_counter_ns()
        try:
            engine.set_input_json(orjson.dumps(document).decode())
        except (RuntimeError, TypeError) as exc:
            raise EvaluatorError(f"regorus cannot read the input: {error_text(exc)}") from None
        converted = time.perf_counter_ns()
        try:
            defined, value = rule_value(engine, _rule(path))
        except RuntimeError as exc:
            file, line, message = located(exc)
            where = f" ({file}:{line})" if file else ""
            raise EvaluatorError(f"regorus evaluation failed{where}: {message}") from None
        done = time.perf_counter_ns()
        return Evaluation(defined=defined, value=value, timings_ns={
            "timer_rego_input_parse_ns": converted - started,
            "timer_rego_query_eval_ns": done - converted,
        })

    def evaluate(self, input_document: dict[str, Any], path: str = DECISION_PATH) -> Evaluation:
        with self._lock:
            future = self._worker.submit(lambda engine: self._run(engine, input_document, path))
            try:
                result: Evaluation = future.result(timeout=self.timeout)
                return result
            except concurrent.futures.TimeoutError:
                # regorus cannot be interrupted: abandon this worker (and its engine)
                self._worker.stop()
                self._worker = self._start()
                raise EvaluationTimeout(
                    f"evaluation of data.{path.replace('/', '.')} did not finish within "
                    f"{self.timeout} s") from None

    def close(self) -> None:
        self._worker.stop()
