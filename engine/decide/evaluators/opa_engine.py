"""OPA's own Rego engine, in process: the Go ``rego`` package of the pinned OPA release,
built by ``scripts/setup.sh`` into a C shared library (``oparego/``, ``go build
-buildmode=c-shared``) and called through :mod:`ctypes` (``evaluator = "opa"``).

It decides exactly as the OPA servers of a fleet do (same parser, same built-ins, same
number printing), because it is their code. The query is prepared once per policy (parse,
compile, plan); each evaluation passes the input as JSON and gets the value back as JSON.
The decision timeout is a Go context deadline: OPA stops evaluating at the deadline and
the call returns, so nothing is left running and no process is killed. :mod:`ctypes`
releases the GIL for the call, so other threads run while Go evaluates.

Go's garbage collector is tuned by the library when the environment does not tune it
(``GOGC``, ``GOMEMLIMIT`` are honoured): GC percent 800 under a soft limit of 512 MiB.
With Go's default (100) the collector ran every few evaluations, because the live heap
(the prepared queries) is a few MB while one evaluation allocates several times that; it
cost about half of the CPU time of a 500-finding evaluation and most of the p99 tail of
the small decision document (docs/performance.md). :func:`gc_settings` reports the
settings in force.
"""

from __future__ import annotations

import ctypes
import os
import threading
from pathlib import Path
from typing import Any

import orjson

from engine.decide.bundle import PolicySet
from engine.decide.errors import PolicyError
from engine.decide.evaluators import (
    DECISION_PATH,
    Evaluation,
    EvaluationTimeout,
    Evaluator,
    EvaluatorError,
)
from engine.errors import ConfigError

LIBRARY_NAME = "libvigilopa.so"
_ROOT = Path(__file__).resolve().parents[3]
_lock = threading.Lock()
_library: ctypes.CDLL | None = None


def library_path() -> Path:
    """Where the bridge is: ``VIGIL_OPA_LIBRARY``, else the project's ``.tools/lib``."""
    given = os.environ.get("VIGIL_OPA_LIBRARY")
    return Path(given) if given else _ROOT / ".tools" / "lib" / LIBRARY_NAME


def _load() -> ctypes.CDLL:
    global _library
    with _lock:
        if _library is None:
            path = library_path()
            if not path.is_file():
                raise ConfigError(
                    f"OPA's Rego engine is not built ({path} is missing)",
                    tip="run scripts/setup.sh (it builds it with Go), or set "
                        "VIGIL_EVALUATOR=regorus")
            try:
                lib = ctypes.CDLL(str(path))
            except OSError as exc:
                raise ConfigError(f"cannot load OPA's Rego engine {path}: {exc}") from exc
            lib.vigil_prepare.argtypes = [ctypes.c_char_p]
            lib.vigil_prepare.restype = ctypes.c_void_p
            lib.vigil_eval.argtypes = [ctypes.c_longlong, ctypes.c_char_p, ctypes.c_longlong]
            lib.vigil_eval.restype = ctypes.c_void_p
            lib.vigil_release.argtypes = [ctypes.c_longlong]
            lib.vigil_free.argtypes = [ctypes.c_void_p]
            if hasattr(lib, "vigil_gc_settings"):  # a library built before it lacks it
                lib.vigil_gc_settings.argtypes = []
                lib.vigil_gc_settings.restype = ctypes.c_void_p
            _library = lib
        return _library


def _call(lib: ctypes.CDLL, fn: Any, *args: Any) -> dict[str, Any]:
    pointer = fn(*args)
    try:
        raw = ctypes.string_at(pointer)
    finally:
        lib.vigil_free(pointer)
    answer: dict[str, Any] = orjson.loads(raw)
    return answer


def gc_settings() -> dict[str, int]:
    """The Go collector's settings in force in the library: ``gc_percent`` and
    ``memory_limit`` (bytes)."""
    lib = _load()
    if not hasattr(lib, "vigil_gc_settings"):
        raise ConfigError(f"OPA's Rego engine at {library_path()} is out of date",
                          tip="run scripts/setup.sh (it rebuilds it)")
    return {k: int(v) for k, v in _call(lib, lib.vigil_gc_settings).items()}


class OpaEvaluator(Evaluator):
    """OPA's Go engine through the shared library; one prepared query per entry point."""

    name = "opa"

    def __init__(self, policy: PolicySet, *, entrypoints: tuple[str, ...] = (DECISION_PATH,),
                 timeout: float | None = 1.0) -> None:
        self.policy = policy
        self.timeout = timeout
        self._lib = _load()
        self._handles: dict[str, int] = {}
        self._entrypoints = entrypoints
        data = policy.data
        for path in entrypoints:
            request = orjson.dumps({"modules": dict(policy.policy_modules), "data": data,
                                    "query": f"data.{path.replace('/', '.')}"})
            answer = _call(self._lib, self._lib.vigil_prepare, request)
            if answer.get("error"):
                raise PolicyError(f"OPA cannot compile the policy: {answer['error']}")
            self._handles[path] = int(answer["handle"])

    @property
    def bundle_revision(self) -> str | None:
        return self.policy.revision

    def evaluate(self, input_document: dict[str, Any], path: str = DECISION_PATH) -> Evaluation:
        handle = self._handles.get(path)
        if handle is None:
            raise EvaluatorError(f"{path} is not an entry point of the compiled policy "
                                 f"(entry points: {', '.join(self._handles)})")
        try:
            raw = orjson.dumps(input_document)
        except TypeError as exc:
            raise EvaluatorError(f"the input is not JSON: {exc}") from None
        millis = 0 if self.timeout is None else max(1, round(self.timeout * 1000))
        answer = _call(self._lib, self._lib.vigil_eval, handle, raw, millis)
        timings = {"timer_rego_query_eval_ns": int(answer.get("eval_ns") or 0)}
        if answer.get("timeout"):
            raise EvaluationTimeout(f"evaluation of data.{path.replace('/', '.')} did not "
                                    f"finish within {self.timeout} s")
        if answer.get("error"):
            raise EvaluatorError(f"OPA: {answer['error']}")
        if not answer.get("defined"):
            return Evaluation(defined=False, value=None, timings_ns=timings)
        return Evaluation(defined=True, value=answer.get("value"), timings_ns=timings)

    def close(self) -> None:
        for handle in self._handles.values():
            self._lib.vigil_release(handle)
        self._handles.clear()
