"""Why a Rego test failed: its failing expression, where it is, and the values involved
(what ``opa test --explain fails`` shows).

A test body is a list of expressions, all of which must hold. The test is evaluated
again as growing prefixes of that list (each prefix a rule in the test's own package,
with the test module's imports): the first prefix that is undefined ends with the
failing expression. The values shown are those of the variables it uses that earlier
expressions bound, and of the two sides of a comparison.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine.decide import bundle as _bundle
from engine.decide.evaluators.regorus_engine import located, new_engine, rule_value

if TYPE_CHECKING:
    import regorus

_IMPORT = re.compile(r"^import\s+.*$", re.MULTILINE)
_ASSIGNED = re.compile(r"^\s*(?:some\s+)?([A-Za-z_]\w*(?:\s*,\s*[A-Za-z_]\w*)*)\s*(?::=|\bin\b)")
_COMPARISON = re.compile(r"\s(==|!=|<=|>=|<|>)\s")
_LITERAL = re.compile(r'-?\d+(\.\d+)?|"[^"\\]*"|true|false|null|set\(\)|\[\]|\{\}')
_SHOWN = 300
"""Characters of a value shown."""


@dataclass(frozen=True)
class Explanation:
    file: str
    line: int
    expression: str
    values: dict[str, str]
    """Name or side of the comparison -> its value (JSON, cut short), or ``undefined``."""

    def lines(self) -> list[str]:
        shown = [f"{self.file}:{self.line}: {self.expression}"]
        shown += [f"  {name} = {value}" for name, value in self.values.items()]
        return shown


def _blank_comments(text: str) -> str:
    """``text`` with its comments turned to spaces (offsets kept)."""
    out, quote, i = list(text), "", 0
    while i < len(text):
        char = text[i]
        if quote:
            if char == "\\" and quote == '"':
                i += 1
            elif char == quote:
                quote = ""
        elif char in '"`':
            quote = char
        elif char == "#":
            end = text.find("\n", i)
            end = len(text) if end < 0 else end
            out[i:end] = " " * (end - i)
            i = end
            continue
        i += 1
    return "".join(out)


def _scan(text: str, start: int, *, split: bool) -> tuple[int, list[tuple[int, int]]]:
    """From ``start`` (inside an opened brace) to its closing brace: (the closing
    brace's offset or -1, the (begin, end) of each top-level expression when ``split``)."""
    depth, quote, begin, i = 1, "", start, start
    parts: list[tuple[int, int]] = []
    while i < len(text):
        char = text[i]
        if quote:
            if char == "\\" and quote == '"':
                i += 1
            elif char == quote:
                quote = ""
        elif char in '"`':
            quote = char
        elif char in "{[(":
            depth += 1
        elif char in "}])":
            depth -= 1
            if depth == 0:
                if split:
                    parts.append((begin, i))
                return i, parts
        elif split and depth == 1 and char in "\n;":
            parts.append((begin, i))
            begin = i + 1
        i += 1
    return -1, parts


def _statements(source: str, name: str) -> list[tuple[int, str]]:
    """(offset, text) of each top-level expression of test ``name``'s body (newline or
    ``;`` separated; brackets and strings may span lines); empty when not found."""
    text = _blank_comments(source)
    start = re.search(rf"^{re.escape(name)}\s+if\s*\{{", text, re.MULTILINE)
    if start is None:
        return []
    end, parts = _scan(text, start.end(), split=True)
    if end < 0:
        return []
    found = []
    for begin, stop in parts:
        chunk = text[begin:stop]
        if chunk.strip():
            found.append((begin + len(chunk) - len(chunk.lstrip()), chunk.strip()))
    return found


def _comparison(expression: str) -> tuple[str, str] | None:
    if " with " in expression or expression.startswith(("some ", "every ", "not ")):
        return None
    depth, quote = 0, ""
    for i, char in enumerate(expression):
        if quote:
            quote = "" if char == quote else quote
        elif char in '"`':
            quote = char
        elif char in "{[(":
            depth += 1
        elif char in "}])":
            depth -= 1
        elif depth == 0 and char == " ":
            match = _COMPARISON.match(expression, i)
            if match:
                return expression[:i].strip(), expression[match.end() :].strip()
    return None


def _shown(engine: regorus.Engine, rule: str) -> str:
    try:
        defined, value = rule_value(engine, rule)
    except RuntimeError as exc:
        return f"error: {located(exc)[2]}"
    if not defined:
        return "undefined"
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "…"


def explain(policy: _bundle.PolicySet, package: str, name: str, file: str) -> Explanation | None:
    """The failing expression of test ``package.name`` (in module ``file``), or None
    when it cannot be told (the test is not a rule body of expressions, or every
    expression holds and the test's value is what fails)."""
    source = policy.modules[file]
    statements = _statements(source, name)
    if not statements:
        return None
    imports = "\n".join(_IMPORT.findall(source))

    def prefix(count: int) -> str:
        return "\n\t".join(text for _, text in statements[:count]) or "true"

    rules = [f"__explain_{k} if {{\n\t{prefix(k)}\n}}" for k in range(1, len(statements) + 1)]
    module = f"package {package}\n\n{imports}\n\n" + "\n\n".join(rules) + "\n"
    path = file.rsplit("/", 1)[0] + "/__explain_test.rego"
    engine = new_engine(
        dataclasses.replace(policy, modules={**policy.modules, path: module}), include_tests=True
    )
    engine.set_input_json("{}")
    failing = None
    for k in range(1, len(statements) + 1):
        try:
            defined, _ = rule_value(engine, f"data.{package}.__explain_{k}")
        except RuntimeError:
            defined = False
        if not defined:
            failing = k
            break
    if failing is None:
        return None
    at, expression = statements[failing - 1]
    line = source.count("\n", 0, at) + 1
    bound: list[str] = []
    for _, text in statements[: failing - 1]:
        match = _ASSIGNED.match(text)
        if match:
            bound += [v.strip() for v in match.group(1).split(",")]
    used = [v for v in dict.fromkeys(bound) if re.search(rf"\b{re.escape(v)}\b", expression)]
    shown: dict[str, str] = {}
    extra: list[str] = []
    sides = _comparison(expression)
    targets = [(v, v) for v in used]
    if sides is not None:
        targets = [(sides[0], sides[0]), (sides[1], sides[1]), *targets]
    elif expression.startswith("not "):
        targets = [(expression[4:].strip(), expression[4:].strip()), *targets]
    targets = [(label, term) for label, term in targets if not _LITERAL.fullmatch(term)]
    for index, (label, term) in enumerate(targets):
        extra.append(f"__explain_value_{index} := ({term}) if {{\n\t{prefix(failing - 1)}\n}}")
        shown[label] = ""
    if extra:
        module += "\n" + "\n\n".join(extra) + "\n"
        engine = new_engine(
            dataclasses.replace(policy, modules={**policy.modules, path: module}),
            include_tests=True,
        )
        engine.set_input_json("{}")
        for index, (label, _) in enumerate(targets):
            shown[label] = _shown(engine, f"data.{package}.__explain_value_{index}")
    return Explanation(file=file, line=line, expression=" ".join(expression.split()), values=shown)
