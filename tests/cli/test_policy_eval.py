"""`vigil policy eval` ends like `vigil decide`: exit 0 on admit, 1 on any other verdict,
a fail-closed reject included."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.clirun import vigil
from tests.decide.conftest import document


def _doc(tmp_path: Path, **changes: object) -> Path:
    path = tmp_path / "input.json"
    path.write_text(json.dumps(document(**changes)))
    return path


def test_admit_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                       monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = vigil(capsys, monkeypatch, "policy", "eval", str(_doc(tmp_path)),
                           "--no-log", "--json")
    assert (code, json.loads(out)["verdict"]) == (0, "admit"), err


def test_a_reject_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                          monkeypatch: pytest.MonkeyPatch) -> None:
    unattested = document()
    unattested["host"]["attestation"]["status"] = "none"
    path = tmp_path / "input.json"
    path.write_text(json.dumps(unattested))
    code, out, _ = vigil(capsys, monkeypatch, "policy", "eval", str(path), "--no-log",
                         "--json")
    assert (code, json.loads(out)["verdict"]) == (1, "reject")


def test_a_fail_closed_reject_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A policy whose decision is undefined for this input: the decider rejects,
    failing closed."""
    policies = tmp_path / "policies"
    (policies / "vigil" / "decision").mkdir(parents=True)
    (policies / "vigil" / "decision" / "decision.rego").write_text(
        "package vigil.decision\n\nresult := input.no_such_field\n")
    code, out, _ = vigil(capsys, monkeypatch, "policy", "eval", str(_doc(tmp_path)),
                         "--policies", str(policies), "--no-log", "--json")
    verdict = json.loads(out)
    assert (code, verdict["verdict"], verdict["fail_closed"]) == (1, "reject", True)
    assert [r["rule"] for r in verdict["reasons"]] == ["evaluation_undefined"]
