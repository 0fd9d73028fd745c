"""The part's face and its layer: ``engine.images`` imports the foundation and other
parts' faces only."""

from __future__ import annotations

import ast
from pathlib import Path

import engine.images

PART = Path(engine.images.__file__).resolve().parent
FOUNDATION = {"engine.errors", "engine.config", "engine.keys", "engine.migrations", "engine.model",
              "engine.gcpause"}
FACES = {"engine.pvdb", "engine.attest", "engine.predict", "engine.decide"}


def test_every_exported_name_exists() -> None:
    missing = [name for name in engine.images.__all__ if not hasattr(engine.images, name)]
    assert not missing
    assert len(set(engine.images.__all__)) == len(engine.images.__all__)


def test_the_part_imports_the_foundation_and_faces_only() -> None:
    bad = []
    for path in sorted(PART.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                if not name.startswith("engine"):
                    continue
                if name.startswith("engine.images") or name in FOUNDATION | FACES or \
                        name == "engine":
                    continue
                bad.append(f"{path.name}: {name}")
    assert bad == []
