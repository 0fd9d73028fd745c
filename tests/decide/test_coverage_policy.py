"""The default policy does not admit a host whose kernel, hypervisor, firmware or
microcode no loaded source covers: end to end, with the real distribution records in
../shared/data/feeds/distro."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.attest import AttestationResult, TrustVector, VerifierId, load_signing_key, sign_result
from engine.cli.main import app
from engine.model import ImageRef
from engine.pvdb import Component, Pvdb

pytestmark = pytest.mark.shared_data

RHEL = Component(kind="kernel", purl="pkg:rpm/redhat/kernel@5.14.0-427.57.1.el9_4",
                 version="5.14.0-427.57.1.el9_4")
NOBLE = Component(kind="kernel", purl="pkg:deb/ubuntu/linux@6.8.0-31.31?distro=noble",
                  version="6.8.0-31.31")


@pytest.fixture()
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, feeds_dir: Path) -> Path:
    with Pvdb.open(tmp_path / "pvdb.duckdb") as db:
        assert db.ingest([str(feeds_dir / "distro")]).problems == []
    (tmp_path / "none.toml").write_text("")
    for name, value in {"VIGIL_DB": tmp_path / "pvdb.duckdb",
                        "VIGIL_DECISION_LOG": tmp_path / "decisions.duckdb",
                        "VIGIL_CONFIG": tmp_path / "none.toml"}.items():
        monkeypatch.setenv(name, str(value))
    assert CliRunner().invoke(app, ["attest", "keygen", "--out",
                                    str(tmp_path / "verifier.pem")]).exit_code == 0
    return tmp_path


def _decide(world: Path, *components: Component) -> tuple[int, str]:
    result = AttestationResult.build(
        host_id="hv-042", verifier=VerifierId(developer="vigil"),
        trust_vector=TrustVector(instance_identity=2, hardware=2, executables=2,
                                 configuration=2),
        failures=[], nonce=b"\x01" * 32, image=ImageRef(name="hv-base", version="2026.05.1"),
        components=list(components), ak_name=None, inventory=None)
    path = world / "result.jwt"
    path.write_text(sign_result(result, load_signing_key(world / "verifier.pem")))
    out = CliRunner().invoke(app, ["decide", "--key", str(world / "verifier.pub.pem"),
                                   "--tenant", "acme", "--vm", "web-1", "--result", str(path),
                                   "--no-log", "--json", "--show-input"])
    if out.exception and not isinstance(out.exception, SystemExit):
        raise out.exception
    return out.exit_code, out.output


def _split(output: str) -> tuple[dict[str, object], dict[str, object]]:
    both = json.loads(output)  # --show-input --json: one document
    return both["input"], both["verdict"]


def test_an_uncovered_kernel_is_refused_naming_it(world: Path) -> None:
    code, output = _decide(world, NOBLE)
    document, verdict = _split(output)
    assert document["coverage"] == [{"component": 0, "status": "uncovered", "sources": [],
                                     "notes": []}]
    assert document["vulnerabilities"] == []  # "0 vulnerabilities" would have admitted it
    assert code == 1 and verdict["verdict"] == "reject"
    (reason,) = verdict["reasons"]  # type: ignore[misc]
    assert reason["rule"] == "component_not_covered"
    assert "pkg:deb/ubuntu/linux@6.8.0-31.31?distro=noble" in reason["message"]
    assert "uncovered" in reason["message"]


def test_a_covered_kernel_with_nothing_open_is_admitted(world: Path) -> None:
    code, output = _decide(world, RHEL)
    document, verdict = _split(output)
    (coverage,) = document["coverage"]  # type: ignore[misc]
    assert coverage["status"] == "covered"
    assert coverage["sources"][0]["source"] == "csaf"
    assert coverage["sources"][0]["scope"] == "rpm/redhat kernel (release 9)"
    assert verdict["verdict"] == "admit" and code == 0
