"""Each Rego package lives in the folder of its path (Regal's directory-package-mismatch)."""

from __future__ import annotations

import re
from pathlib import Path

from tests.policies.conftest import POLICIES

_PACKAGE = re.compile(r"^package\s+([A-Za-z_][\w.]*)\s*$", re.MULTILINE)


def layout_mismatches(folder: Path) -> list[str]:
    """One line per module whose package is not its folder's path relative to ``folder``
    (a ``*_test.rego`` module may add ``_test``)."""
    problems = []
    for file in sorted(folder.rglob("*.rego")):
        rel = file.relative_to(folder)
        expected = ".".join(rel.parent.parts)
        allowed = {expected, f"{expected}_test"} if file.name.endswith("_test.rego") \
            else {expected}
        found = _PACKAGE.search(file.read_text(encoding="utf-8"))
        package = found.group(1) if found else None
        if package not in allowed:
            problems.append(f"{rel}: package {package}, expected {expected}")
    return problems


def test_every_package_lives_in_the_folder_of_its_path() -> None:
    assert sorted(POLICIES.rglob("*.rego")), f"no Rego modules under {POLICIES}"
    assert layout_mismatches(POLICIES) == []


def test_the_check_names_a_package_outside_its_folder(tmp_path: Path) -> None:
    (tmp_path / "demo" / "rules").mkdir(parents=True)
    (tmp_path / "demo" / "rules" / "rules.rego").write_text("package demo.rules\n")
    (tmp_path / "demo" / "rules" / "rules_test.rego").write_text("package demo.rules_test\n")
    (tmp_path / "demo" / "rules" / "other.rego").write_text("package demo.rules_test\n")
    (tmp_path / "demo" / "flat.rego").write_text("package demo.flat\n")
    assert layout_mismatches(tmp_path) == [
        "demo/flat.rego: package demo.flat, expected demo",
        "demo/rules/other.rego: package demo.rules_test, expected demo.rules",
    ]
