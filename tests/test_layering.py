"""The house plan, enforced: every part imports only parts below it, reaches another part
only through its package face, and no two modules import each other.

The layers (docs/architecture.md draws them), bottom up::

    foundation   engine.errors, engine.config, engine.gcpause, engine.keys,
                 engine.migrations, engine.model
    1            engine.pvdb, engine.attest        (neither imports the other)
    2            engine.predict
    3            engine.decide
    4            engine.images, engine.fleet   (image catalog and patch graph; inventory)
    5            engine.rollout
    6            engine.provision, engine.audit   (a placement; the auditor's reading)
    7            engine.api                        (the HTTP service)
    8            engine.cli                        (the command line; runs the service)

A part's *face* is its ``__init__`` and the names in its ``__all__``; everything else in it
is internal. The checks read the source with :mod:`ast`, so they see imports inside
functions and under ``TYPE_CHECKING`` too.
"""

from __future__ import annotations

import ast
import importlib
from collections import defaultdict
from pathlib import Path

import pytest

ENGINE = Path(__file__).resolve().parents[1] / "engine"

FOUNDATION = {"errors", "config", "gcpause", "keys", "migrations", "model", "__version__"}
LAYERS: dict[str, int] = {
    "pvdb": 1, "attest": 1,
    "predict": 2,
    "decide": 3,
    "images": 4, "fleet": 4,
    "rollout": 5,
    "provision": 6, "audit": 6,
    "api": 7,
    "cli": 8,
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ENGINE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if path.name != "__init__.py":
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def _imports() -> dict[str, list[tuple[str, str | None, int]]]:
    """module -> [(imported module, imported name or None, line)]."""
    out: dict[str, list[tuple[str, str | None, int]]] = {}
    for path in sorted(ENGINE.rglob("*.py")):
        module = _module_name(path)
        found: list[tuple[str, str | None, int]] = []
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                target = _resolve(module, path, node)
                if target.startswith("engine"):
                    found.extend((target, a.name, node.lineno) for a in node.names)
            elif isinstance(node, ast.Import):
                found.extend((a.name, None, node.lineno) for a in node.names
                             if a.name.startswith("engine"))
        out[module] = found
    return out


IMPORTS = _imports()


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _exports(part: str) -> set[str]:
    init = ENGINE / part / "__init__.py"
    if not init.exists():
        return set()
    for node in ast.parse(init.read_text()).body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            return {ast.literal_eval(e) for e in node.value.elts}  # type: ignore[attr-defined]
    return set()


@pytest.mark.parametrize("part", sorted(LAYERS))
def test_every_exported_name_exists_once(part: str) -> None:
    face = importlib.import_module(f"engine.{part}")
    exported = list(getattr(face, "__all__", []))
    assert [name for name in exported if not hasattr(face, name)] == []
    assert len(set(exported)) == len(exported)


def test_every_part_is_placed_in_a_layer() -> None:
    found = {p.name for p in ENGINE.iterdir()
             if (p.is_dir() and (p / "__init__.py").exists()) or p.suffix == ".py"}
    found = {name.removesuffix(".py") for name in found} - {"__init__", "__pycache__"}
    unplaced = sorted(found - FOUNDATION - set(LAYERS))
    assert not unplaced, f"parts with no layer in this test and docs/architecture.md: {unplaced}"


def test_parts_import_only_parts_below_them() -> None:
    wrong: list[str] = []
    for module, imports in IMPORTS.items():
        source = _part(module)
        if source not in LAYERS:
            continue  # the foundation imports only the foundation (next test)
        for target, _name, line in imports:
            other = _part(target)
            if other == source or other in FOUNDATION or other == "":
                continue
            if other not in LAYERS or LAYERS[other] >= LAYERS[source]:
                wrong.append(f"{module}:{line} imports {target} (layer "
                             f"{LAYERS.get(other)} from layer {LAYERS[source]})")
    assert not wrong, "\n".join(sorted(set(wrong)))


def test_the_foundation_imports_only_the_foundation() -> None:
    wrong = [f"{module}:{line} imports {target}"
             for module, imports in IMPORTS.items() if _part(module) in FOUNDATION
             for target, _name, line in imports
             if _part(target) not in FOUNDATION and target != "engine"]
    assert not wrong, "\n".join(sorted(set(wrong)))


def test_other_parts_are_reached_only_through_their_face() -> None:
    wrong: list[str] = []
    for module, imports in IMPORTS.items():
        source = _part(module)
        for target, name, line in imports:
            other = _part(target)
            if other == source or other not in LAYERS:
                continue
            if target != f"engine.{other}":
                wrong.append(f"{module}:{line} imports the internal module {target}")
            elif name is not None and name not in _exports(other):
                wrong.append(f"{module}:{line} imports {name}, which engine.{other} does "
                             "not export in __all__")
    assert not wrong, "\n".join(sorted(set(wrong)))


PRIVATE_READS = {"_con": "pvdb", "_index": "pvdb", "_facts": "pvdb", "_reports": "pvdb",
                 "_history": "pvdb", "_engine": "decide"}
"""Private attributes of a part's objects, and the part they belong to."""


def test_no_part_reads_another_parts_private_attributes() -> None:
    """``obj._name`` on something not ``self``/``cls`` is reaching into another object's
    internals; within the owning part's modules that is its business, across parts it is
    not."""
    wrong: list[str] = []
    for path in sorted(ENGINE.rglob("*.py")):
        module = _module_name(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_")
                    and not node.attr.startswith("__")
                    and isinstance(node.value, ast.Name)
                    and node.value.id not in {"self", "cls"}
                    and node.attr in PRIVATE_READS
                    and PRIVATE_READS[node.attr] != _part(module)):
                wrong.append(f"{module}:{node.lineno} reads {node.value.id}.{node.attr}")
    assert not wrong, "\n".join(sorted(set(wrong)))


def _cycles() -> list[list[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    modules = set(IMPORTS)
    for module, imports in IMPORTS.items():
        for target, name, _line in imports:
            sub = f"{target}.{name}" if name else target
            dep = sub if sub in modules else target
            if dep in modules and dep != module and not module.startswith(dep + "."):
                graph[module].add(dep)
    # Tarjan's strongly connected components
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(modules):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles_between_modules() -> None:
    """A package's ``__init__`` re-exporting its modules is not a cycle with them; any
    other loop (even one under ``TYPE_CHECKING``) is."""
    cycles = [c for c in _cycles()
              if not all(m == c[0] or m.startswith(c[0] + ".") for m in c)]
    assert not cycles, "\n".join(" <-> ".join(c) for c in cycles)


@pytest.mark.parametrize("part", sorted(p for p in LAYERS if (ENGINE / p).is_dir()))
def test_every_part_has_a_face(part: str) -> None:
    init = ENGINE / part / "__init__.py"
    tree = ast.parse(init.read_text())
    assert ast.get_docstring(tree), f"engine/{part}/__init__.py says nothing of the part"
    if part not in {"cli", "api"}:
        assert _exports(part), f"engine/{part}/__init__.py exports no public names"


def test_the_checks_can_fail() -> None:
    """The resolver and the face rule are exercised on a constructed bad import."""
    node = ast.parse("from engine.pvdb.query import _index").body[0]
    assert isinstance(node, ast.ImportFrom)
    target = _resolve("engine.decide.x", ENGINE / "decide" / "x.py", node)
    assert target == "engine.pvdb.query" and target != f"engine.{_part(target)}"
    rel = ast.parse("from ..pvdb import Pvdb").body[0]
    assert isinstance(rel, ast.ImportFrom)
    assert _resolve("engine.decide.x", ENGINE / "decide" / "x.py", rel) == "engine.pvdb"
