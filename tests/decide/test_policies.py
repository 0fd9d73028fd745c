"""The Rego tests themselves, run as `vigil policy test` does, and the runner's failure path."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.cli.main import app
from engine.decide import policytest
from engine.decide.errors import PolicyError
from tests.decide.conftest import POLICIES

RULE_ID = re.compile(r'"rule": "(\w+)"')


def test_every_rego_test_passes_via_the_cli() -> None:
    result = CliRunner().invoke(app, ["policy", "test", str(POLICIES), "--json"])
    report = json.loads(result.stdout)
    failed = [t for t in report["tests"] if t["status"] != "pass"]
    assert failed == [], failed
    assert result.exit_code == 0
    assert report["passed"] >= 45
    # each verdict and each reason of the default policy is covered by a Rego test
    sources = "\n".join(p.read_text() for p in (POLICIES / "vigil").rglob("*_test.rego"))
    rules = {m for p in (POLICIES / "vigil").rglob("*.rego") if not p.name.endswith("_test.rego")
             for m in RULE_ID.findall(p.read_text())}
    assert rules, "no rule ids found"
    for rule in rules:
        assert rule in sources, f"reason {rule} has no Rego test"
    for verdict in ("admit", "patch", "delay", "reject"):
        assert f'_expect(d, "{verdict}")' in sources


def test_every_reason_is_declared_in_its_metadata() -> None:
    for path in (POLICIES).rglob("*.rego"):
        if path.name.endswith("_test.rego"):
            continue
        text = path.read_text()
        declared = set(re.findall(r"#\s+rule: (\w+)", text))
        emitted = set(RULE_ID.findall(text))
        assert emitted == declared, f"{path}: METADATA custom.rule {declared} vs {emitted}"


def _tmp_policies(tmp_path: Path, test_body: str) -> Path:
    (tmp_path / "demo" / "rules").mkdir(parents=True)
    (tmp_path / "demo" / "rules" / "rules.rego").write_text(textwrap.dedent("""\
        package demo.rules

        import rego.v1

        deny contains "too big" if input.size > 10
        """))
    (tmp_path / "demo" / "rules" / "rules_test.rego").write_text(textwrap.dedent(test_body))
    return tmp_path


def test_a_failing_rego_test_makes_the_command_fail(tmp_path: Path) -> None:
    folder = _tmp_policies(tmp_path, """\
        package demo.rules_test

        import rego.v1

        test_small_is_fine if {
            count(data.demo.rules.deny) == 0 with input.size as 3
        }

        test_deliberately_wrong if {
            d := data.demo.rules.deny with input.size as 30
            print("deny was", d)
            count(d) == 0
        }
        """)
    result = CliRunner().invoke(app, ["policy", "test", str(folder)])
    assert result.exit_code == 1
    assert "test_deliberately_wrong: FAIL" in result.stdout
    assert 'deny was {"too big"}' in result.stdout
    assert "1 passed, 1 failed" in result.stdout


def test_a_policy_that_does_not_compile_is_refused_naming_file_and_line(tmp_path: Path) -> None:
    folder = _tmp_policies(tmp_path, """\
        package demo.rules_test

        import rego.v1

        test_x if {
            input.size ==
        }
        """)
    with pytest.raises(PolicyError) as caught:
        policytest.run(policytest.load(folder))
    assert caught.value.file is not None and caught.value.file.endswith("rules_test.rego")
    # the operand is missing on line 6; the parser finds out at the `}` on line 7
    assert caught.value.line == 7
    assert "expecting expression" in caught.value.summary


def test_package_must_follow_the_directory(tmp_path: Path) -> None:
    (tmp_path / "demo" / "rules").mkdir(parents=True)
    (tmp_path / "demo" / "rules" / "rules.rego").write_text("package demo.other\n")
    with pytest.raises(PolicyError, match=r"does not follow the directory"):
        policytest.load(tmp_path)


def test_the_rego_tests_evaluate_every_line_of_the_policies() -> None:
    """A rule added without a test shows up here as an uncovered line."""
    results, coverage = policytest.run_with_coverage(policytest.load(POLICIES))
    assert results and all(r.passed for r in results)
    assert set(coverage.files) == {
        "vigil/decision/decision.rego", "vigil/lib/lib.rego", "vigil/combine/combine.rego",
        "vigil/posture/posture.rego", "vigil/rules/attestation/attestation.rego",
        "vigil/rules/request/request.rego",
        "vigil/rules/vulnerabilities/vulnerabilities.rego", "site/findings/findings.rego",
        "site/rules/critical_cvss/critical_cvss.rego"}
    uncovered = {path: f.not_covered for path, f in coverage.files.items() if f.not_covered}
    assert uncovered == {}


def test_coverage_names_the_lines_no_test_reaches(tmp_path: Path) -> None:
    folder = _tmp_policies(tmp_path, """\
        package demo.rules_test

        import rego.v1

        import data.demo.rules

        test_small_is_fine if {
            count(rules.deny) == 0 with input.size as 3
        }
        """)
    (folder / "demo" / "rules" / "rules.rego").write_text(textwrap.dedent("""\
        package demo.rules

        import rego.v1

        deny contains "too big" if input.size > 10

        deny contains "negative" if {
            input.size < 0
            input.strict == true
        }
        """))
    results, coverage = policytest.run_with_coverage(policytest.load(folder))
    assert [r.status for r in results] == ["pass"]
    lines = coverage.files["demo/rules/rules.rego"]
    assert 9 in lines.not_covered  # `input.strict == true`: no test gets past line 8
    assert 0 < lines.percent < 100
