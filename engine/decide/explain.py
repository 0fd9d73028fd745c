"""Why a Rego test failed: its failing expression, where it is, and the values involved
(what ``opa test --explain fails`` shows).

A test body is a list of expressions, all of which must hold; they are read from
regorus's own parse of the module (its AST, with byte spans), not from the text. The test
is evaluated
again as growing prefixes of that list (each prefix a rule in the test's own package,
with the test module's imports): the first prefix that is undefined ends with the
failing expression. The values shown are those of the variables it uses that earlier
expressions bound, and of the two sides of a comparison.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

import regorus

from engine.decide import bundle as _bundle
from engine.decide.evaluators.regorus_engine import located, new_engine, rule_value

_SHOWN = 300
"""Characters of a value shown."""
_LITERALS = {"Number", "String", "RawString", "Bool", "Null"}
_QUOTED = {"String", "RawString"}
"""Nodes whose span leaves out their quotes."""


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


@dataclass(frozen=True)
class _Statement:
    line: int
    text: str
    literal: dict[str, Any]
    """The statement's node in regorus's AST (``{kind: {...}}``)."""
    with_mods: bool


def _kind(node: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    (kind, body), = node.items()
    return kind, body


def _vars(node: Any) -> list[str]:
    """Every variable named under ``node``, in order."""
    found: list[str] = []
    if isinstance(node, dict):
        if set(node) == {"Var"} and isinstance(node["Var"], dict):
            found.append(str(node["Var"]["value"]))
        for value in node.values():
            found += _vars(value)
    elif isinstance(node, list):
        for value in node:
            found += _vars(value)
    return found


class _Source:
    """A module's text and regorus's parse of it (spans are byte offsets)."""

    def __init__(self, file: str, text: str) -> None:
        engine = regorus.Engine()
        engine.add_policy(file, text)
        (module,) = json.loads(engine.get_ast_as_json())
        self.ast: dict[str, Any] = module["ast"]
        self.raw = text.encode()

    def text(self, node: dict[str, Any]) -> str:
        """The source text of ``node``: from the first to the last byte of any span under
        it (a string's span leaves out its quotes, so a node ending in one would be cut)."""
        start, end = _extent(node)
        return self.raw[start:end].decode()

    def imports(self) -> list[str]:
        return [self.text(i) for i in self.ast.get("imports") or []]

    def statements(self, name: str) -> list[_Statement]:
        """The top-level expressions of test ``name``'s first body; empty when there is
        no such rule body."""
        for rule in self.ast.get("rules") or []:
            kind, spec = _kind(rule)
            if kind != "Spec" or _vars(_kind(spec["head"])[1].get("refr"))[:1] != [name]:
                continue
            for body in spec.get("bodies") or []:
                return [_Statement(line=st["span"]["line"], text=self.text(st),
                                   literal=st["literal"], with_mods=bool(st.get("with_mods")))
                        for st in body["query"]["stmts"]]
        return []


def _extent(node: Any, kind: str = "") -> tuple[int, int]:
    start, end = 1 << 62, -1
    if isinstance(node, dict):
        span = node.get("span")
        if isinstance(span, dict) and "start" in span:
            quote = 1 if kind in _QUOTED else 0
            start, end = span["start"] - quote, span["end"] + quote
        for key, value in node.items():
            if key != "span":
                s, e = _extent(value, key)
                start, end = min(start, s), max(end, e)
    elif isinstance(node, list):
        for value in node:
            s, e = _extent(value)
            start, end = min(start, s), max(end, e)
    return start, end


def _bound(statement: _Statement) -> list[str]:
    """Variables the statement binds (``x := …``, ``[a, b] := …``, ``some a, b in …``,
    ``some x``)."""
    kind, body = _kind(statement.literal)
    if kind == "SomeIn":
        return _vars(body.get("key")) + _vars(body.get("value"))
    if kind == "SomeVars":
        return _vars(body.get("vars"))
    if kind == "Expr":
        expr_kind, expr = _kind(body["expr"])
        if expr_kind == "AssignExpr":
            return _vars(expr["lhs"])
    return []


def _targets(source: _Source, statement: _Statement) -> list[str]:
    """The terms whose values explain the failing statement: the two sides of a
    comparison, or what a ``not`` negates (literals left out)."""
    kind, body = _kind(statement.literal)
    terms: list[dict[str, Any]] = []
    if kind == "NotExpr":
        terms = [body["expr"]]
    elif kind == "Expr" and not statement.with_mods:
        expr_kind, expr = _kind(body["expr"])
        if expr_kind == "BoolExpr":
            terms = [expr["lhs"], expr["rhs"]]
    return [source.text(t) for t in terms if not _is_literal(t)]


def _is_literal(node: dict[str, Any]) -> bool:
    kind, body = _kind(node)
    if kind in _LITERALS:
        return True
    items = body.get("items") if kind in {"Array", "Set"} else \
        body.get("fields") if kind == "Object" else None
    return items == []


def _shown(engine: regorus.Engine, rule: str) -> str:
    try:
        defined, value = rule_value(engine, rule)
    except RuntimeError as exc:
        return f"error: {located(exc)[2]}"
    if not defined:
        return "undefined"
    text = json.dumps(value, sort_keys=True, ensure_ascii=False)
    return text if len(text) <= _SHOWN else text[:_SHOWN] + "…"


def explain(policy: _bundle.PolicySet, package: str, name: str, file: str) -> Explanation | None:
    """The failing expression of test ``package.name`` (in module ``file``), or None
    when it cannot be told (the test is not a rule body of expressions, or every
    expression holds and the test's value is what fails)."""
    try:
        source = _Source(file, policy.modules[file])
    except (RuntimeError, ValueError, KeyError):
        return None  # the module does not parse here: its compile error says why
    statements = source.statements(name)
    if not statements:
        return None
    imports = "\n".join(source.imports())

    def prefix(count: int) -> str:
        return "\n\t".join(st.text for st in statements[:count]) or "true"

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
    statement = statements[failing - 1]
    bound = [v for st in statements[: failing - 1] for v in _bound(st)]
    named = set(_vars(statement.literal))
    used = [v for v in dict.fromkeys(bound) if v in named]
    targets = list(dict.fromkeys([*_targets(source, statement), *used]))
    shown: dict[str, str] = {}
    extra: list[str] = []
    for index, term in enumerate(targets):
        extra.append(f"__explain_value_{index} := ({term}) if {{\n\t{prefix(failing - 1)}\n}}")
        shown[term] = ""
    if extra:
        module += "\n" + "\n\n".join(extra) + "\n"
        engine = new_engine(
            dataclasses.replace(policy, modules={**policy.modules, path: module}),
            include_tests=True,
        )
        engine.set_input_json("{}")
        for index, term in enumerate(targets):
            shown[term] = _shown(engine, f"data.{package}.__explain_value_{index}")
    return Explanation(file=file, line=statement.line, expression=" ".join(statement.text.split()),
                       values=shown)
