"""Signed bundles, both directions, against the real OPA: a bundle `vigil bundle build`
signs is activated by `opa run --server` given the verification key, and refused once one
byte of a policy changes, signed by another key, or scoped otherwise; a bundle `opa build
--signing-key` signs verifies with `vigil bundle verify`."""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import requests

from engine.decide import build_bundle, embedded_evaluator, load_directory, read_bundle
from engine.decide.errors import DecideError
from tests.clirun import vigil
from tests.decide.conftest import VULN_IN_WINDOW, document
from tests.opa.conftest import OpaServer

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ROOT / "engine" / "policies"


def _bundle(tmp_path: Path, key: Path, *, scope: str | None = None,
            revision: str = "r1", roots: tuple[str, ...] = ("vigil",)) -> Path:
    target = tmp_path / f"{revision}.tar.gz"
    target.write_bytes(build_bundle(load_directory(POLICIES, list(roots)), revision=revision,
                                    signing_key=key, scope=scope))
    return target


def _revisions(url: str) -> dict[str, str]:
    answer = requests.get(f"{url}/v1/data/system/bundles", timeout=10).json()["result"]
    return {name: b["manifest"]["revision"] for name, b in answer.items()}


def _verify_args(public: Path, alg: str, scope: str | None) -> list[str]:
    args = ["--bundle", f"--verification-key={public}", "--verification-key-id=vigil",
            f"--signing-alg={alg}"]
    return [*args, f"--scope={scope}"] if scope else args


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
@pytest.mark.parametrize("scope", [None, "hv-fleet"])
def test_opa_activates_a_bundle_vigil_signed(opa_server: OpaServer, tmp_path: Path,
                                             keys: dict[str, tuple[Path, Path]], alg: str,
                                             scope: str | None) -> None:
    private, public = keys[alg]
    bundle = _bundle(tmp_path, private, scope=scope, revision=f"{alg}-{scope}")
    url = opa_server.start(*_verify_args(public, alg, scope), str(bundle))
    assert _revisions(url) == {str(bundle): f"{alg}-{scope}"}
    doc = document(vulnerabilities=[VULN_IN_WINDOW])
    answer = requests.post(f"{url}/v1/data/vigil/decision/result", json={"input": doc},
                           timeout=10).json()
    embedded = embedded_evaluator("regorus", load_directory(POLICIES, ["vigil"]), timeout=None)
    try:
        assert answer["result"] == embedded.evaluate(doc).value
    finally:
        embedded.close()


def _tampered(bundle: Path, tmp_path: Path) -> Path:
    """The same archive with one byte of one policy changed (names, order and signature
    file untouched)."""
    out = io.BytesIO()
    with tarfile.open(bundle) as src, tarfile.open(fileobj=out, mode="w:gz") as dst:
        changed = False
        for member in src.getmembers():
            data = src.extractfile(member).read() if member.isfile() else None  # type: ignore[union-attr]
            if data is not None and member.name.endswith(".rego") and not changed \
                    and b"reject" in data:
                data = data.replace(b"reject", b"rejecT", 1)
                changed = True
            if data is not None:
                member.size = len(data)
                dst.addfile(member, io.BytesIO(data))
            else:
                dst.addfile(member)
    assert changed
    target = tmp_path / "tampered.tar.gz"
    target.write_bytes(out.getvalue())
    return target


def test_opa_refuses_a_bundle_changed_by_one_byte(opa_server: OpaServer, tmp_path: Path,
                                                  keys: dict[str, tuple[Path, Path]]) -> None:
    private, public = keys["RS256"]
    bad = _tampered(_bundle(tmp_path, private), tmp_path)
    run = opa_server.run_to_exit(*_verify_args(public, "RS256", None), str(bad))
    assert run.returncode != 0
    assert "digest mismatch" in run.stdout + run.stderr
    with pytest.raises(DecideError):  # and Vigil agrees
        read_bundle(bad, verification_key=public)


def test_opa_refuses_a_bundle_signed_by_another_key_or_scope(
        opa_server: OpaServer, tmp_path: Path, keys: dict[str, tuple[Path, Path]]) -> None:
    stranger = _bundle(tmp_path, keys["stranger"][0], revision="stranger")
    run = opa_server.run_to_exit(*_verify_args(keys["RS256"][1], "RS256", None), str(stranger))
    assert run.returncode != 0, run.stdout
    scoped = _bundle(tmp_path, keys["RS256"][0], scope="other-fleet", revision="scoped")
    run = opa_server.run_to_exit(*_verify_args(keys["RS256"][1], "RS256", "hv-fleet"),
                                 str(scoped))
    assert run.returncode != 0
    assert "scope mismatch" in run.stdout + run.stderr


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_a_bundle_opa_signed_verifies_with_vigil(
        opa: Path, tmp_path: Path, keys: dict[str, tuple[Path, Path]], alg: str,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    source = tmp_path / "src"
    shutil.copytree(POLICIES / "vigil", source / "vigil")
    (source / ".manifest").write_text('{"revision": "opa-built", "roots": ["vigil"]}')
    private, public = keys[alg]
    out = tmp_path / "opa-built.tar.gz"
    subprocess.run([str(opa), "build", "--bundle", str(source), f"--signing-key={private}",
                    f"--signing-alg={alg}", "--output", str(out)], check=True,
                   capture_output=True, cwd=tmp_path, timeout=120)
    policy = read_bundle(out, verification_key=public)
    assert policy.revision == "opa-built"
    code, stdout, _ = vigil(capsys, monkeypatch, "bundle", "verify", str(out), "--key",
                            str(public))
    assert code == 0 and "verified (revision opa-built" in stdout
    code, _, stderr = vigil(capsys, monkeypatch, "bundle", "verify", str(out), "--key",
                            str(keys["stranger"][1]))
    assert code == 4 and stderr.startswith("error:")
