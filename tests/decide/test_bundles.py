"""Bundles: build, sign, verify the way OPA does, and refuse anything tampered with."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.cli.main import app
from engine.decide import bundle, signing
from engine.decide.errors import BundleError, BundleVerificationError
from tests.decide.conftest import POLICIES, ROOT


def _files(raw: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:gz") as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]


def _repack(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return out.getvalue()


@pytest.fixture
def signed(rsa_keys: tuple[Path, Path], tmp_path: Path) -> Path:
    private, _ = rsa_keys
    target = tmp_path / "vigil.tar.gz"
    result = CliRunner().invoke(app, [
        "bundle", "build", "--config", str(ROOT / "bundles" / "vigil.toml"),
        "--signing-key", str(private), "--revision", "r1", "--out", str(target), "--json"])
    assert result.exit_code == 0, result.output
    return target


def test_build_writes_an_opa_bundle(signed: Path) -> None:
    files = _files(signed.read_bytes())
    assert set(files) == {"/.manifest", "/.signatures.json", "/vigil/decision/decision.rego",
                          "/vigil/lib/lib.rego", "/vigil/combine/combine.rego",
                          "/vigil/posture/posture.rego",
                          "/vigil/rules/attestation/attestation.rego",
                          "/vigil/rules/request/request.rego",
                          "/vigil/rules/vulnerabilities/vulnerabilities.rego",
                          "/vigil/config/data.json"}
    manifest = json.loads(files["/.manifest"])
    tests = manifest.pop("metadata")["vigil"]["tests"]  # the policy tests ran first
    assert tests["status"] == "passed" and tests["passed"] > 0
    assert manifest == {"revision": "r1", "roots": ["vigil"], "rego_version": 1}
    token = json.loads(files["/.signatures.json"])["signatures"][0]
    extracted = signing.jws.extract_compact(token.encode())
    assert extracted.protected["alg"] == "RS256" and extracted.protected["kid"] == "vigil"
    claims = json.loads(extracted.payload)
    assert {f["name"] for f in claims["files"]} == {n.lstrip("/") for n in files} - {
        ".signatures.json"}
    assert all(f["algorithm"] == "SHA-256" for f in claims["files"])


def test_verify_accepts_the_signed_bundle(signed: Path, rsa_keys: tuple[Path, Path]) -> None:
    result = CliRunner().invoke(app, ["bundle", "verify", str(signed), "--key",
                                      str(rsa_keys[1]), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["revision"] == "r1"


def test_one_tampered_byte_in_a_policy_is_refused(signed: Path, rsa_keys: tuple[Path, Path],
                                                  tmp_path: Path) -> None:
    files = _files(signed.read_bytes())
    policy = bytearray(files["/vigil/rules/attestation/attestation.rego"])
    policy[policy.index(b"!=")] = ord("=")  # "!=" -> "==": one byte
    files["/vigil/rules/attestation/attestation.rego"] = bytes(policy)
    tampered = tmp_path / "tampered.tar.gz"
    tampered.write_bytes(_repack(files))
    result = CliRunner().invoke(app, ["bundle", "verify", str(tampered), "--key",
                                      str(rsa_keys[1])])
    assert isinstance(result.exception, BundleVerificationError)
    assert result.exception.exit_code == 4
    assert "vigil/rules/attestation/attestation.rego: digest mismatch" in result.exception.summary
    assert result.exception.file == "vigil/rules/attestation/attestation.rego"


def test_wrong_key_is_refused(signed: Path, other_rsa_keys: tuple[Path, Path]) -> None:
    with pytest.raises(BundleVerificationError, match=r"does not verify"):
        bundle.read(signed, verification_key=other_rsa_keys[1])


def test_wrong_key_id_and_scope_are_refused(signed: Path, rsa_keys: tuple[Path, Path]) -> None:
    with pytest.raises(BundleVerificationError, match=r"key id"):
        bundle.read(signed, verification_key=rsa_keys[1], key_id="someone-else")
    with pytest.raises(BundleVerificationError, match=r"scope mismatch"):
        bundle.read(signed, verification_key=rsa_keys[1], scope="write")


def test_added_or_removed_files_are_refused(signed: Path, rsa_keys: tuple[Path, Path]) -> None:
    files = _files(signed.read_bytes())
    extra = dict(files, **{"/vigil/extra.rego": b"package vigil.extra\n"})
    with pytest.raises(BundleVerificationError, match=r"not included in bundle signature"):
        bundle.read("extra", _repack(extra), verification_key=rsa_keys[1])
    fewer = {k: v for k, v in files.items() if k != "/vigil/rules/request/request.rego"}
    with pytest.raises(BundleVerificationError, match=r"not found in the target bundle"):
        bundle.read("fewer", _repack(fewer), verification_key=rsa_keys[1])


def test_unsigned_bundle_is_refused_when_a_key_is_configured(
        rsa_keys: tuple[Path, Path]) -> None:
    raw = bundle.build(bundle.load_directory(POLICIES, ["vigil"]))
    with pytest.raises(BundleVerificationError, match=r"missing .signatures.json"):
        bundle.read("unsigned", raw, verification_key=rsa_keys[1])
    assert bundle.read("unsigned", raw).signed_by is None


def test_es256_and_json_hashed_in_canonical_form(ec_keys: tuple[Path, Path]) -> None:
    policy = bundle.load_directory(POLICIES, ["vigil"])
    raw = bundle.build(policy, signing_key=ec_keys[0], key_id="ec-1", scope="read")
    files = _files(raw)
    # re-indenting data.json changes its bytes but not its canonical hash: still verifies
    data = json.loads(files["/vigil/config/data.json"])
    files["/vigil/config/data.json"] = json.dumps(data, indent=7).encode()
    loaded = bundle.read("ec", _repack(files), verification_key=ec_keys[1], scope="read")
    assert loaded.signed_by == "ec-1"
    # a changed value does not verify
    data["window_days"] = 3650
    files["/vigil/config/data.json"] = json.dumps(data).encode()
    with pytest.raises(BundleVerificationError, match=r"vigil/config/data.json: digest"):
        bundle.read("ec", _repack(files), verification_key=ec_keys[1], scope="read")


def test_canonical_hash_matches_opa_rules() -> None:
    # keys sorted, no whitespace, numbers keep their literal text, no HTML escaping
    text = b'{"b": [1, 2.50, true, null], "a": "<&>\\u2028"}'
    expected = '{"a":"<&>\\u2028","b":[1,2.50,true,null]}'
    import hashlib
    assert signing.file_hash("x/data.json", text) == hashlib.sha256(expected.encode()).hexdigest()
    assert signing.file_hash("x/p.rego", text) == hashlib.sha256(text).hexdigest()


def test_overlapping_roots_are_refused(tmp_path: Path) -> None:
    raw = _repack({"/.manifest": json.dumps({"revision": "x", "roots": ["vigil",
                                                                       "vigil/rules"]}).encode(),
                   "/vigil/decision.rego": b"package vigil.decision\n"})
    with pytest.raises(BundleError, match=r"overlapped roots: 'vigil' and 'vigil/rules'"):
        bundle.read("overlap", raw)
    with pytest.raises(BundleError, match=r"overlapped roots"):
        bundle.load_directory(POLICIES, ["vigil", "vigil/rules"])


def test_module_outside_the_roots_is_refused() -> None:
    raw = _repack({"/.manifest": json.dumps({"revision": "x", "roots": ["vigil"]}).encode(),
                   "/site/x.rego": b"package site.x\n"})
    with pytest.raises(BundleError, match=r"do not permit package site.x"):
        bundle.read("outside", raw)


def test_engine_loads_only_verifying_bundles(signed: Path, rsa_keys: tuple[Path, Path],
                                             tmp_path: Path) -> None:
    from engine.config import load_settings
    from engine.decide.bundle import load_policy
    from engine.errors import ConfigError

    settings = load_settings(bundle=signed, bundle_verification_key=rsa_keys[1],
                             decision_log=tmp_path / "d.duckdb")
    policy = load_policy(settings)
    assert policy.revision == "r1" and policy.signed_by == "vigil"
    with pytest.raises(ConfigError, match=r"no bundle"):
        load_policy(load_settings(bundle_verification_key=rsa_keys[1]))
