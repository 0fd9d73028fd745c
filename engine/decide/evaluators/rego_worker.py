"""The regorus worker process: evaluates Rego for :mod:`.regorus_engine`.

regorus holds the GIL while it evaluates, so a timeout can neither interrupt it nor even
be noticed by another thread of the same process until it is done. Evaluations therefore
run in this small child process, which the evaluator kills when its timeout passes.

Protocol over stdin/stdout, each message a 4-byte big-endian length and that many bytes:

1. parent → child: ``{"modules": {path: source}, "data": {...}, "entrypoints": [rule],
   "check": bool, "memory_limit": bytes or null}`` (JSON); child → parent:
   ``{"ok": true}`` once the modules are parsed, or ``{"ok": false, "message", "file",
   "line"}`` when a module does not parse or (with ``check``) an entry point is declared
   by no rule of the parsed modules (read from their AST, so this answer cannot depend on
   how busy the machine is).
2. with ``check``, each entry point is then evaluated once on an empty input to see that
   it is a rule, and the child sends a second answer of the same form (``ok`` false: an
   entry point is no rule). This is an evaluation like any other: the parent waits for it
   no longer than for a decision, and a policy whose work does not depend on the input
   is stopped here as it would be at its first decision.
3. then, per evaluation, parent → child: ``rule`` (``data.a.b``), a newline, the input
   document as JSON; child → parent: a JSON header (``status``: ``value`` / ``undefined``
   / ``error``, ``parse_ns``, ``eval_ns``, and ``message`` / ``file`` / ``line`` for an
   error), a newline, and for ``value`` the result as JSON.

With ``memory_limit``, the child's address space is capped (``RLIMIT_AS``) before the
policy is parsed: an evaluation that needs more fails to allocate, and the child ends
(regorus aborts on a failed allocation), which the parent reports as a failed
evaluation. The parent starts the child with mimalloc's arena reservation made small
(:data:`MIMALLOC_ENV`): regorus's allocator otherwise reserves 1 GiB of address space at
its first allocation, which would count against the cap without being used.

It imports only regorus and orjson (and the packages above it import nothing heavy:
``engine.decide`` loads its modules lazily), so that it starts in a fraction of a second.
Run it as ``python -m engine.decide.evaluators.rego_worker``.
"""

from __future__ import annotations

import re
import resource
import struct
import sys
import time
from typing import IO, Any

import orjson
import regorus

UNDEFINED = '"<undefined>"'
"""How regorus's ``eval_rule_as_json`` spells an undefined rule."""
NOT_A_RULE = "not a valid rule path"

_LOCATION = re.compile(r"-->\s*(?P<file>\S+?):(?P<line>\d+):(?P<column>\d+)")
_MESSAGE = re.compile(r"^error:\s*(?P<message>.+)$", re.MULTILINE)
FRAME_LENGTH = struct.Struct(">I")
"""The 4-byte big-endian length before each message."""
MIMALLOC_ENV = {"MIMALLOC_ARENA_RESERVE": "32MiB"}
"""Set in the child's environment: mimalloc (regorus's allocator) reserves address space
in 32 MiB arenas instead of one of 1 GiB, so that the memory cap counts what is used."""
OUT_OF_MEMORY = "memory allocation of"
"""How a failed allocation of Rust's allocator begins its message (on stderr)."""


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


class ParseError(Exception):
    """A module does not parse: (file, line, message)."""

    def __init__(self, file: str, line: int | None, message: str) -> None:
        super().__init__(message)
        self.file, self.line, self.message = file, line, message


def build_engine(modules: dict[str, str], data_json: str) -> regorus.Engine:
    """An engine holding ``modules`` (path -> source, in path order) and the data."""
    engine = regorus.Engine()
    for path, source in sorted(modules.items()):
        try:
            engine.add_policy(path, source)
        except RuntimeError as exc:
            file, line, message = located(exc)
            raise ParseError(file or path, line, message) from None
    engine.add_data_json(data_json)
    return engine


def read_frame(stream: IO[bytes]) -> bytes | None:
    head = stream.read(FRAME_LENGTH.size)
    if len(head) < FRAME_LENGTH.size:
        return None
    (size,) = FRAME_LENGTH.unpack(head)
    body = stream.read(size)
    if len(body) < size:
        return None
    return body


def write_frame(stream: IO[bytes], payload: bytes) -> None:
    stream.write(FRAME_LENGTH.pack(len(payload)))
    stream.write(payload)  # not joined to the length: an input can be megabytes
    stream.flush()


def limit_memory(limit: int | None) -> None:
    """Cap this process's address space at ``limit`` bytes (None: no cap)."""
    if limit is not None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _init(request: dict[str, Any]) -> tuple[regorus.Engine | None, dict[str, Any]]:
    try:
        engine = build_engine(request["modules"], orjson.dumps(request["data"]).decode())
    except ParseError as exc:
        return None, {"ok": False, "message": f"policy does not compile: {exc.message}",
                      "file": exc.file, "line": exc.line}
    except RuntimeError as exc:
        return None, {"ok": False, "message": f"policy data cannot be loaded: "
                                              f"{error_text(exc)}", "file": None, "line": None}
    # print() output is gathered (and dropped after each evaluation), not written on
    # stderr, which is kept for what ends the child (a failed allocation, a panic)
    engine.set_gather_prints(True)
    if request.get("check", True):
        missing = _undeclared(engine, request["entrypoints"])
        if missing is not None:
            return None, {"ok": False, "message": f"entry point {missing} is not a rule of "
                                                  "the policy", "file": None, "line": None}
    return engine, {"ok": True}


def _ref_path(node: Any) -> list[str] | None:
    """The static names of a rule head's reference (``a.b["c"]`` is a, b, c), up to its
    first non-constant part; None when the node is not a reference regorus writes."""
    if not isinstance(node, dict) or len(node) != 1:
        return None
    (kind, body), = node.items()
    if kind == "Var":
        return [str(body["value"])]
    if kind == "RefDot":
        head = _ref_path(body["refr"])
        return None if head is None else [*head, str(body["field"][1])]
    if kind == "RefBrack":
        head = _ref_path(body["refr"])
        index = body.get("index", {})
        if head is not None and isinstance(index, dict) and "String" in index:
            return [*head, str(index["String"]["value"])]
        return head
    return None


def _rule_heads(rule: Any) -> list[str] | None:
    """A rule's path inside its package, from regorus's AST (``Spec`` or ``Default``)."""
    if not isinstance(rule, dict) or len(rule) != 1:
        return None
    (kind, body), = rule.items()
    if kind == "Default":
        return _ref_path(body.get("refr"))
    head = body.get("head", {}) if kind == "Spec" else {}
    if isinstance(head, dict) and len(head) == 1:
        (_, inner), = head.items()
        return _ref_path(inner.get("refr"))
    return None


def _undeclared(engine: regorus.Engine, rules: list[str]) -> str | None:
    """The first entry point no rule of the parsed modules declares (its path, a prefix
    of it or a path below it), read from the AST: no evaluation, so the answer does not
    depend on how long one would take. None when every one is declared, or when the AST
    cannot be read (the evaluation check then decides)."""
    try:
        modules = orjson.loads(engine.get_ast_as_json())
        declared: list[list[str]] = []
        for module in modules:
            package = _ref_path(module["ast"]["package"]["refr"])
            if package is None:
                return None
            for rule in module["ast"]["rules"]:
                path = _rule_heads(rule)
                if path is None:
                    return None
                declared.append(["data", *package, *path])
    except (RuntimeError, KeyError, TypeError, ValueError, orjson.JSONDecodeError):
        return None
    for rule in rules:
        wanted = rule.split(".")
        if not any(d[:len(wanted)] == wanted or wanted[:len(d)] == d for d in declared):
            return rule
    return None


def _check(engine: regorus.Engine, request: dict[str, Any]) -> dict[str, Any]:
    """Each entry point evaluated once on an empty input: is it a rule?"""
    engine.set_input_json("{}")
    for rule in request["entrypoints"]:
        try:
            engine.eval_rule_as_json(rule)
        except RuntimeError as exc:
            # only a missing rule is a policy error here: an empty input may well make a
            # correct policy fail at run time
            if NOT_A_RULE in error_text(exc):
                return {"ok": False, "message": f"entry point {rule} is not a rule of the "
                                                "policy", "file": None, "line": None}
        finally:
            engine.take_prints()
    return {"ok": True}


def _evaluate(engine: regorus.Engine, request: bytes) -> bytes:
    rule, _, document = request.partition(b"\n")
    started = time.perf_counter_ns()
    try:
        engine.set_input_json(document.decode())
    except RuntimeError as exc:
        return orjson.dumps({"status": "error", "message": f"regorus cannot read the input: "
                                                           f"{error_text(exc)}"}) + b"\n"
    parsed = time.perf_counter_ns()
    try:
        text = engine.eval_rule_as_json(rule.decode())
    except RuntimeError as exc:
        file, line, message = located(exc)
        return orjson.dumps({"status": "error", "message": message, "file": file,
                             "line": line}) + b"\n"
    finally:
        engine.take_prints()
    done = time.perf_counter_ns()
    header = {"status": "undefined" if text == UNDEFINED else "value",
              "parse_ns": parsed - started, "eval_ns": done - parsed}
    body = b"" if text == UNDEFINED else text.encode()
    return orjson.dumps(header) + b"\n" + body


def main() -> int:
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    first = read_frame(stdin)
    if first is None:
        return 1
    init = orjson.loads(first)
    limit_memory(init.get("memory_limit"))
    engine, answer = _init(init)
    write_frame(stdout, orjson.dumps(answer))
    if engine is None:
        return 1
    if init.get("check", True):
        answer = _check(engine, init)
        write_frame(stdout, orjson.dumps(answer))
        if not answer["ok"]:
            return 1
    while (request := read_frame(stdin)) is not None:
        write_frame(stdout, _evaluate(engine, request))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
