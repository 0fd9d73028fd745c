"""The policies against the real OPA (``.tools/bin/opa``, built by ``scripts/setup.sh``):
they compile in strict mode, are formatted as ``opa fmt`` formats them, and ``opa test``
runs the same tests with the same results as ``vigil policy test``."""

from __future__ import annotations

import json
import textwrap
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.cli.main import app
from tests.policies.conftest import POLICIES, ROOT, run_opa

BUNDLE_CONFIGS = sorted((ROOT / "bundles").glob("*.toml"))


def _bundle_roots(config: Path) -> tuple[Path, list[str]]:
    """The policy folder and roots a bundle build configuration names."""
    bundle = tomllib.loads(config.read_text(encoding="utf-8"))["bundle"]
    return (config.parent / bundle["policies"]).resolve(), list(bundle["roots"])


def test_the_bundle_configs_build_from_the_installed_policies() -> None:
    assert BUNDLE_CONFIGS, "no bundles/*.toml"
    for config in BUNDLE_CONFIGS:
        assert _bundle_roots(config)[0] == POLICIES.resolve(), config.name


@pytest.mark.parametrize("config", BUNDLE_CONFIGS, ids=lambda p: p.stem)
def test_opa_check_strict_passes_on_each_bundle(opa: Path, config: Path) -> None:
    folder, roots = _bundle_roots(config)
    result = run_opa(opa, "check", "--strict", *roots, cwd=folder)
    assert result.returncode == 0, result.stdout + result.stderr


def test_opa_fmt_has_nothing_to_change(opa: Path) -> None:
    result = run_opa(opa, "fmt", "--list", "--fail", ".")
    assert (result.returncode, result.stdout) == (0, ""), \
        f"run `opa fmt -w` on:\n{result.stdout}{result.stderr}"


def _opa_results(opa: Path, folder: Path) -> dict[tuple[str, str], str]:
    result = run_opa(opa, "test", "--format", "json", ".", cwd=folder)
    assert result.stdout.strip(), result.stderr
    statuses = {}
    for test in json.loads(result.stdout):
        status = ("skip" if test.get("skip") else "error" if test.get("error")
                  else "fail" if test.get("fail") else "pass")
        statuses[(test["package"].removeprefix("data."), test["name"])] = status
    return statuses


def _vigil_results(folder: Path) -> dict[tuple[str, str], str]:
    result = CliRunner().invoke(app, ["policy", "test", str(folder), "--json"])
    assert result.exit_code in (0, 1), result.output
    return {(t["package"], t["name"]): t["status"] for t in json.loads(result.stdout)["tests"]}


def test_opa_test_and_vigil_policy_test_agree_on_every_test(opa: Path) -> None:
    ours = _vigil_results(POLICIES)
    assert ours and set(ours.values()) == {"pass"}
    assert _opa_results(opa, POLICIES) == ours


def test_they_agree_on_failing_tests_too(opa: Path, tmp_path: Path) -> None:
    folder = tmp_path / "demo" / "rules"
    folder.mkdir(parents=True)
    (folder / "rules.rego").write_text(textwrap.dedent("""\
        package demo.rules

        import rego.v1

        deny contains "too big" if input.size > 10
        """))
    (folder / "rules_test.rego").write_text(textwrap.dedent("""\
        package demo.rules_test

        import rego.v1

        test_small_is_fine if count(data.demo.rules.deny) == 0 with input.size as 3

        test_false if count(data.demo.rules.deny) == 0 with input.size as 30

        test_undefined if data.demo.rules.nothing
        """))
    expected = {("demo.rules_test", "test_small_is_fine"): "pass",
                ("demo.rules_test", "test_false"): "fail",
                ("demo.rules_test", "test_undefined"): "fail"}
    assert _vigil_results(tmp_path) == expected
    assert _opa_results(opa, tmp_path) == expected
