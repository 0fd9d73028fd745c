"""What a policy author meets: a failing test explained (expression, place, values), an
unsafe variable as one compile error, site tests that import the vigil library, a site
rule not wired into the decision reported, a bundle not built on failing tests (unless
--skip-tests, recorded in the manifest), ``vigil decide --policies/--bundle``, and a
policy file added to the tree breaking none of the repository's checks."""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import textwrap
from pathlib import Path

import pytest

from tests.clirun import vigil
from tests.decide.conftest import POLICIES, ROOT, document
from tests.policies.test_layout import layout_mismatches

FAILING_TEST = """
test_fails_on_purpose if {
	vs := [json.patch(fx.vuln_in_window, [{"op": "replace", "path": "/max_cvss", "value": 9.8}])]
	no := fx.patched_none
	deny := critical_cvss.deny with input.vulnerabilities as vs WITH_PATCHED
	# a comment, with a { brace
	count(deny) == 0
}
""".replace("WITH_PATCHED", "with input.patched_configuration as no")

UNWIRED_RULE = """package site.rules.no_tuesdays

import rego.v1

deny contains {"rule": "no_tuesdays", "message": "never on a Tuesday"} if {
	input.request.tenant == "tuesday"
}
"""

WIRED_RULE_TEST = """package site.rules.no_tuesdays_test

import rego.v1

import data.site.rules.no_tuesdays

test_tuesday_is_refused if {
	count(no_tuesdays.deny) == 1 with input.request.tenant as "tuesday"
}
"""


@pytest.fixture
def tree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the policy tree, and a clean environment."""
    for key in [k for k in os.environ if k.startswith("VIGIL_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("VIGIL_DECISION_LOG", str(tmp_path / "decisions.duckdb"))
    monkeypatch.setenv("COLUMNS", "250")
    copy = tmp_path / "policies"
    shutil.copytree(POLICIES, copy)
    return copy


def _config(tree: Path, roots: list[str]) -> Path:
    config = tree.parent / "bundle.toml"
    config.write_text(
        f'[bundle]\npolicies = "{tree.name}"\nroots = {json.dumps(roots)}\noutput = "out.tar.gz"\n'
    )
    return config


def _manifest(bundle: Path) -> dict[str, object]:
    with tarfile.open(bundle) as tar:
        member = tar.extractfile("/.manifest")
        assert member is not None
        return dict(json.load(member))


def test_a_failing_test_shows_its_expression_place_and_values(
    tree: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    test_file = tree / "site/rules/critical_cvss/critical_cvss_test.rego"
    before = test_file.read_text()
    test_file.write_text(before + FAILING_TEST)
    lines = (before + FAILING_TEST).splitlines()
    line = len(lines) - lines[::-1].index("\tcount(deny) == 0")  # the added test's
    code, out, _ = vigil(capsys, monkeypatch, "policy", "test", str(tree / "site"), "--json")
    assert code == 1
    (failed,) = [t for t in json.loads(out)["tests"] if t["status"] != "pass"]
    why = failed["explanation"]
    assert (why["file"], why["line"], why["expression"]) == (
        "site/rules/critical_cvss/critical_cvss_test.rego",
        line,
        "count(deny) == 0",
    )
    assert why["values"]["count(deny)"] == "1"
    assert "critical_cvss_unpatched" in why["values"]["deny"]
    code, out, _ = vigil(capsys, monkeypatch, "policy", "test", str(tree / "site"))
    assert f"critical_cvss_test.rego:{line}: count(deny) == 0" in out
    assert "count(deny) = 1" in out


def test_an_unsafe_variable_is_one_compile_error(
    tree: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    test_file = tree / "vigil/rules/request/request_test.rego"
    test_file.write_text(test_file.read_text() + "\ntest_unsafe if {\n\ty == 1\n}\n")
    code, out, err = vigil(capsys, monkeypatch, "policy", "test", str(tree))
    assert code == 4 and out == ""
    assert [line for line in err.splitlines() if line.startswith("error:")] == [
        "error: vigil/rules/request/request_test.rego:"
        f"{len(test_file.read_text().splitlines()) - 1}: policy does not compile: use of "
        "undefined variable `y` is unsafe"
    ]


def test_site_tests_load_the_vigil_library_they_import(
    tree: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    site_tests = {
        (line.split()[0])
        for p in (tree / "site").rglob("*_test.rego")
        for line in p.read_text().splitlines()
        if line.startswith("test_")
    }
    code, out, _ = vigil(capsys, monkeypatch, "policy", "test", str(tree / "site"), "--json")
    report = json.loads(out)
    assert code == 0 and report["failed"] == 0
    assert {t["name"] for t in report["tests"]} == site_tests  # only the site's tests ran
    # site policies kept in a folder of their own: the installed vigil library is used
    alone = tree.parent / "site-only"
    shutil.copytree(tree / "site", alone / "site")
    code, out, _ = vigil(capsys, monkeypatch, "policy", "test", str(alone), "--json")
    report = json.loads(out)
    assert code == 0 and {t["name"] for t in report["tests"]} == site_tests


def test_an_unwired_site_rule_is_reported_and_refuses_the_build(
    tree: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tree / "site/rules/no_tuesdays"
    folder.mkdir()
    (folder / "no_tuesdays.rego").write_text(UNWIRED_RULE)
    (folder / "no_tuesdays_test.rego").write_text(WIRED_RULE_TEST)
    code, out, _ = vigil(capsys, monkeypatch, "policy", "test", str(tree), "--json")
    report = json.loads(out)
    assert code == 1 and report["failed"] == 0
    assert report["unwired"] == [
        "site/rules/no_tuesdays/no_tuesdays.rego: data.site.rules.no_tuesdays.deny"
    ]
    config = _config(tree, ["vigil", "site"])
    code, _, err = vigil(capsys, monkeypatch, "bundle", "build", "--config", str(config))
    assert code == 1 and "data.site.rules.no_tuesdays.deny" in err
    assert not (tree.parent / "out.tar.gz").exists()
    # wired into site.findings: reported no more, and the bundle builds
    findings = tree / "site/findings/findings.rego"
    findings.write_text(
        findings.read_text() + "\ndeny contains f if some f in data.site.rules.no_tuesdays.deny\n"
    )
    code, out, _ = vigil(capsys, monkeypatch, "policy", "test", str(tree), "--json")
    assert (code, json.loads(out)["unwired"]) == (0, [])


def test_failing_tests_refuse_the_build_unless_skipped_which_the_manifest_records(
    tree: Path,
    ec_keys: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    private, public = ec_keys
    config = _config(tree, ["vigil", "site"])
    bundle = tree.parent / "out.tar.gz"
    code, out, err = vigil(
        capsys,
        monkeypatch,
        "bundle",
        "build",
        "--config",
        str(config),
        "--signing-key",
        str(private),
        "--json",
    )
    assert code == 0, err
    passed = json.loads(out)["tests"]
    assert passed["status"] == "passed" and passed["passed"] > 40
    assert _manifest(bundle)["metadata"] == {"vigil": {"tests": passed}}
    bundle.unlink()
    test_file = tree / "site/rules/critical_cvss/critical_cvss_test.rego"
    test_file.write_text(test_file.read_text() + FAILING_TEST)
    code, _, err = vigil(
        capsys,
        monkeypatch,
        "bundle",
        "build",
        "--config",
        str(config),
        "--signing-key",
        str(private),
    )
    assert code == 1 and "test_fails_on_purpose" in err and not bundle.exists()
    code, _, err = vigil(
        capsys,
        monkeypatch,
        "bundle",
        "build",
        "--config",
        str(config),
        "--signing-key",
        str(private),
        "--skip-tests",
    )
    assert code == 0, err
    assert _manifest(bundle)["metadata"] == {"vigil": {"tests": {"status": "skipped"}}}
    code, out, _ = vigil(
        capsys, monkeypatch, "bundle", "verify", str(bundle), "--key", str(public), "--json"
    )
    assert code == 0 and json.loads(out)["tests"] == {"status": "skipped"}
    code, out, _ = vigil(capsys, monkeypatch, "bundle", "verify", str(bundle), "--key", str(public))
    assert "policy tests skipped at build" in out


def test_decide_takes_policies_and_bundle(
    tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VIGIL_DB", str(tmp_path / "pvdb.duckdb"))
    code, _, err = vigil(capsys, monkeypatch, "feeds", "ingest", str(ROOT / "feeds" / "snapshot"))
    assert code == 0, err
    admit_all = tmp_path / "admit-all"
    (admit_all / "vigil" / "decision").mkdir(parents=True)
    (admit_all / "vigil" / "decision" / "decision.rego").write_text(
        textwrap.dedent("""\
        package vigil.decision

        result := {"verdict": "admit", "reasons": [], "obligations": [], "warnings": []}
        """)
    )
    args = ["decide", "--host-id", "hv-1", "--no-log", "--json"]
    code, out, _ = vigil(capsys, monkeypatch, *args)
    assert (code, json.loads(out)["verdict"]) == (1, "reject")  # unattested: the default
    code, out, _ = vigil(capsys, monkeypatch, *args, "--policies", str(admit_all))
    assert (code, json.loads(out)["verdict"]) == (0, "admit")
    config = tmp_path / "admit.toml"
    config.write_text(
        '[bundle]\npolicies = "admit-all"\nroots = ["vigil"]\noutput = "admit.tar.gz"\n'
    )
    code, _, err = vigil(capsys, monkeypatch, "bundle", "build", "--config", str(config))
    assert code == 0, err
    code, out, _ = vigil(capsys, monkeypatch, *args, "--bundle", str(tmp_path / "admit.tar.gz"))
    assert (code, json.loads(out)["verdict"]) == (0, "admit")
    code, _, err = vigil(
        capsys,
        monkeypatch,
        *args,
        "--bundle",
        str(tmp_path / "admit.tar.gz"),
        "--policies",
        str(admit_all),
    )
    assert code == 2 and err.startswith("error:")


def test_a_policy_file_added_to_the_tree_breaks_no_check(
    tree: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the repository checks on its policy tree (layout, every test passing, the
    bundles building, the default verdict) still holds with one more rule, its test and
    its wiring in the tree."""
    code, out, _ = vigil(capsys, monkeypatch, "policy", "test", str(tree), "--json")
    before = json.loads(out)["passed"]
    folder = tree / "site/rules/no_tuesdays"
    folder.mkdir()
    (folder / "no_tuesdays.rego").write_text(UNWIRED_RULE)
    (folder / "no_tuesdays_test.rego").write_text(WIRED_RULE_TEST)
    findings = tree / "site/findings/findings.rego"
    findings.write_text(
        findings.read_text() + "\ndeny contains f if some f in data.site.rules.no_tuesdays.deny\n"
    )
    assert layout_mismatches(tree) == []
    code, out, _ = vigil(capsys, monkeypatch, "policy", "test", str(tree), "--json")
    report = json.loads(out)
    assert (code, report["failed"], report["passed"]) == (0, 0, before + 1)
    for roots in (["vigil"], ["vigil", "site"]):
        code, _, err = vigil(
            capsys, monkeypatch, "bundle", "build", "--config", str(_config(tree, roots))
        )
        assert code == 0, err
    doc = tree.parent / "input.json"
    doc.write_text(json.dumps(document()))
    code, out, _ = vigil(
        capsys,
        monkeypatch,
        "policy",
        "eval",
        str(doc),
        "--policies",
        str(tree),
        "--no-log",
        "--json",
    )
    assert (code, json.loads(out)["verdict"]) == (0, "admit")
