"""``vigil report verify`` and ``vigil report show`` on reports of real placements."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from engine.provision import ADVICE_NOT_PATCHED, build_report, sign_report
from tests.clirun import vigil
from tests.provision.conftest import KERNEL, NOW, XEN, Keys, Placed


@pytest.fixture()
def signed(place: Callable[..., Placed], report_keys: Keys, tmp_path: Path,
           monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "none.toml").write_text("")
    monkeypatch.setenv("VIGIL_CONFIG", str(tmp_path / "none.toml"))
    monkeypatch.delenv("VIGIL_REPORT_VERIFICATION_KEY", raising=False)
    placed = place([KERNEL, XEN])
    path = tmp_path / "report.jws"
    path.write_text(sign_report(build_report(placed.placement, ear=placed.ear, now=NOW),
                                report_keys.signing))
    return path


Capsys = pytest.CaptureFixture[str]


def test_verify_exits_0(signed: Path, report_keys: Keys, verifier_keys: Keys,
                        capsys: Capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = vigil(capsys, monkeypatch, "report", "verify", str(signed),
                           "--key", str(report_keys.public))
    assert code == 0, err
    assert out.startswith("verified: report ") and "REJECT" in out and ADVICE_NOT_PATCHED in out
    code, out, _ = vigil(capsys, monkeypatch, "report", "verify", str(signed), "--key",
                         str(report_keys.public), "--ear-key", str(verifier_keys.public),
                         "--json")
    answer = json.loads(out)
    assert code == 0 and answer["verified"] and answer["ear_verified"]
    assert (answer["tenant"], answer["host"]) == ("acme", "hv-042")


def test_verify_exits_1_on_a_changed_byte(signed: Path, report_keys: Keys, capsys: Capsys,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    text = signed.read_text().strip()
    header, payload, signature = text.split(".")
    signed.write_text(f"{header}.{payload[:40]}{'A' if payload[40] != 'A' else 'B'}"
                      f"{payload[41:]}.{signature}")
    code, out, err = vigil(capsys, monkeypatch, "report", "verify", str(signed),
                           "--key", str(report_keys.public), "--json")
    assert code == 1
    assert json.loads(out)["verified"] is False
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "does not verify" in errors[0]
    assert "Traceback" not in err


def test_verify_exits_1_with_the_wrong_key(signed: Path, other_keys: Keys,
                                           report_keys: Keys, capsys: Capsys,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = vigil(capsys, monkeypatch, "report", "verify", str(signed),
                         "--key", str(other_keys.public))
    assert code == 1 and err.startswith("error: report ") and "does not verify" in err
    # the report key is not the verifier's: checking the EAR with it fails
    code, _, err = vigil(capsys, monkeypatch, "report", "verify", str(signed), "--key",
                         str(report_keys.public), "--ear-key", str(report_keys.public))
    assert code == 1 and "attestation result is not verified" in err


def test_verify_without_a_key_is_a_configuration_error(signed: Path, capsys: Capsys,
                                                       monkeypatch: pytest.MonkeyPatch
                                                       ) -> None:
    code, _, err = vigil(capsys, monkeypatch, "report", "verify", str(signed))
    assert code == 3 and "VIGIL_REPORT_VERIFICATION_KEY" in err


def test_show_prints_and_renders(signed: Path, report_keys: Keys, tmp_path: Path,
                                 capsys: Capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    out_html = tmp_path / "report.html"
    code, out, err = vigil(capsys, monkeypatch, "report", "show", str(signed), "--key",
                           str(report_keys.public), "--html", str(out_html))
    assert code == 0, err
    assert out.startswith("REJECT  " + ADVICE_NOT_PATCHED)
    assert "kev_without_patched_configuration" in out and "CVE-2024-36971" in out
    assert f"HTML: {out_html}" in out
    page = out_html.read_text()
    assert page.startswith("<!DOCTYPE html>") and "CVE-2024-36971" in page
    code, out, _ = vigil(capsys, monkeypatch, "report", "show", str(signed), "--json")
    assert code == 0 and json.loads(out)["vex"]["bomFormat"] == "CycloneDX"
    code, _, err = vigil(capsys, monkeypatch, "report", "show", str(tmp_path / "nope.jws"))
    assert code == 6 and "does not exist" in err
