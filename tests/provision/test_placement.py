"""`vigil decide`: a signed attestation result, the PVDB and the policy, end to end."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.attest import (
    AttestationResult,
    Failure,
    TrustVector,
    VerifierId,
    load_signing_key,
    sign_result,
)
from engine.cli.main import app
from engine.decide.decision_log import DecisionLog
from engine.images import Catalog
from engine.model import ImageRef
from engine.pvdb import Component, Pvdb
from tests.pvdb.records import cve5_record, kernel_affected, write_json
from tests.tools import HANG_GUARD

HIGH = "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H"
KERNEL = Component(kind="kernel", vendor="linux", product="linux_kernel", version="6.6.30")


@pytest.fixture()
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A PVDB with one high kernel vulnerability fixed in 6.6.31, a verifier key pair,
    and the settings pointing at them."""
    feed = tmp_path / "feed"
    write_json(feed / "CVE-2099-0001.json", cve5_record(
        "CVE-2099-0001", affected=kernel_affected("6.1", ["6.6.31"], mainline="6.7"),
        metrics=[{"cvssV3_1": {"vectorString": HIGH}}]))
    with Pvdb.open(tmp_path / "pvdb.duckdb") as db:
        db.ingest([str(feed)])
    (tmp_path / "none.toml").write_text("")
    for name, value in {"VIGIL_DB": tmp_path / "pvdb.duckdb",
                        "VIGIL_DECISION_LOG": tmp_path / "decisions.duckdb",
                        "VIGIL_CONFIG": tmp_path / "none.toml",
                        # a hang guard, not the 1 s default: no decision here may time out
                        "VIGIL_DECISION_TIMEOUT": HANG_GUARD}.items():
        monkeypatch.setenv(name, str(value))
    runner = CliRunner()
    assert runner.invoke(app, ["attest", "keygen", "--out",
                               str(tmp_path / "verifier.pem")]).exit_code == 0
    return tmp_path


def _result(world: Path, *, failures: list[Failure] | None = None,
            issued_at: dt.datetime | None = None) -> Path:
    result = AttestationResult.build(
        host_id="hv-042", verifier=VerifierId(developer="vigil"),
        trust_vector=TrustVector(instance_identity=2, hardware=2, executables=2,
                                 configuration=2),
        failures=failures or [], nonce=b"\x01" * 32,
        image=ImageRef(name="hv-base", version="2026.05.1"), components=[KERNEL],
        ak_name=None, inventory=None, issued_at=issued_at)
    path = world / "result.jwt"
    path.write_text(sign_result(result, load_signing_key(world / "verifier.pem")))
    return path


def _decide(world: Path, *args: str) -> tuple[int, str]:
    out = CliRunner().invoke(app, ["decide", "--key", str(world / "verifier.pub.pem"),
                                   "--tenant", "acme", "--vm", "web-1", *args])
    if out.exception and not isinstance(out.exception, SystemExit):
        raise out.exception
    return out.exit_code, out.output


def test_the_attested_components_are_asked_about_and_the_decision_logged(world: Path) -> None:
    code, output = _decide(world, "--result", str(_result(world)), "--json", "--show-input")
    both = json.loads(output)  # --show-input --json: one document
    document, verdict = both["input"], both["verdict"]
    assert document["host"]["id"] == "hv-042"
    assert document["host"]["attestation"]["image"] == {"name": "hv-base",
                                                        "version": "2026.05.1"}
    assert document["host"]["components"][0]["version"] == "6.6.30"
    (vulnerability,) = document["vulnerabilities"]
    assert vulnerability["id"] == "CVE-2099-0001"
    assert vulnerability["fix"]["closing_version"] == "6.6.31"
    assert vulnerability["max_cvss"] == 7.8
    # relevant (CVSS >= 7), no patched configuration, no dated fix: tolerated, warned
    assert verdict["verdict"] == "admit" and code == 0
    assert [w["rule"] for w in verdict["warnings"]] == ["no_fix_within_window"]
    with DecisionLog(world / "decisions.duckdb") as log:
        posture, record = log.since()  # the host's posture once, then the request
    assert record.decision_id == verdict["decision_id"]
    assert record.path == "vigil/decision/result" and posture.path == "vigil/posture/result"
    assert record.input["posture"]["decision_id"] == posture.decision_id
    assert posture.input["vulnerabilities"][0]["id"] == "CVE-2099-0001"
    assert [w["rule"] for w in posture.result["warn"]] == ["no_fix_within_window"]


def _catalog(world: Path, child_status: str) -> None:
    """The image catalog holding the attested image and a patched version of it."""
    with Catalog(world / "images.duckdb") as catalog:
        catalog.create("hv-base", "2026.05.1", components=[KERNEL], actor="test",
                       manifest="signed-manifest", status="approved")
        catalog.create("hv-base", "2026.06.1", components=[KERNEL], actor="test",
                       parent_version="2026.05.1", manifest="signed-manifest",
                       status=child_status)  # type: ignore[arg-type]


def test_a_ready_patched_configuration_turns_it_into_patch(
        world: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_IMAGES_DB", str(world / "images.duckdb"))
    _catalog(world, "approved")
    code, output = _decide(world, "--result", str(_result(world)), "--no-log")
    assert code == 1
    assert output.startswith("PATCH")
    assert "[patched_configuration_ready] CVE-2099-0001 (CVSS 7.8) in linux_kernel 6.6.30" \
        in output


def test_a_patched_version_still_building_is_not_ready(
        world: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_IMAGES_DB", str(world / "images.duckdb"))
    _catalog(world, "building")
    code, output = _decide(world, "--result", str(_result(world)), "--no-log")
    # as with no patched configuration at all: tolerated and warned, not "patch"
    assert (code, output.split()[0]) == (0, "ADMIT")
    assert "patched_configuration_ready" not in output
    assert "[no_fix_within_window] CVE-2099-0001" in output


def test_a_contraindicated_host_is_rejected_naming_the_step(world: Path) -> None:
    failed = _result(world, failures=[Failure(step="5 reference values",
                                              reason="PCR 4 differs from the image")])
    code, output = _decide(world, "--result", str(failed), "--no-log")
    assert code == 1 and output.startswith("REJECT")
    assert "step 5 reference values failed: PCR 4 differs from the image" in output


def test_an_unattested_host_is_rejected(world: Path) -> None:
    code, output = _decide(world, "--host-id", "hv-007", "--no-log")
    assert code == 1
    assert "[attestation_not_affirming] host hv-007 attestation is missing" in output


def test_a_result_that_does_not_verify_is_refused(world: Path) -> None:
    token = _result(world)
    text = token.read_text()
    header, payload, signature = text.split(".")
    token.write_text(f"{header}.{payload}.{signature[:-4]}AAAA")
    out = CliRunner().invoke(app, ["decide", "--key", str(world / "verifier.pub.pem"),
                                   "--result", str(token), "--no-log"])
    assert out.exit_code != 0
    assert isinstance(out.exception, Exception)
    assert "signature" in str(out.exception).lower()


def test_a_patched_configuration_file_is_refused_as_unverified(world: Path) -> None:
    """A self-made JSON once turned a KEV reject into "patch": nothing was attested."""
    patched = world / "patched.json"
    patched.write_text(json.dumps({"state": "ready", "image": {"name": "hv-base",
                                                               "version": "2026.06.1"},
                                   "attested": True, "attestation_status": "affirming"}))
    out = CliRunner().invoke(app, ["decide", "--key", str(world / "verifier.pub.pem"),
                                   "--result", str(_result(world)), "--patched", str(patched),
                                   "--no-log"])
    assert out.exit_code != 0
    message = str(out.exception)
    assert "patched.json" in message and "not verified" in message
