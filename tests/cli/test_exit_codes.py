"""The README's exit codes for inputs issue 10 found answered with the wrong one: an
invalid input document is a usage error (2), a missing policy folder is not found (6), a
result whose signature fails is a check that did not pass (1). Each ends in one `error:`
line on stderr, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from engine.attest.lab import key_pair
from engine.attest.result import AttestationResult, TrustVector, VerifierId, sign_result

ROOT = Path(__file__).resolve().parents[2]


def _vigil(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    run = subprocess.run([sys.executable, "-m", "engine.cli.main", *args],
                         capture_output=True, text=True, timeout=120, cwd=ROOT,
                         env=env)
    assert "Traceback" not in run.stderr, run.stderr
    return run.returncode, run.stderr


def test_an_invalid_input_document_is_a_usage_error(tmp_path: Path) -> None:
    doc = tmp_path / "input.json"
    doc.write_text(json.dumps({"schema_version": 1, "host": "not an object"}))
    code, stderr = _vigil("policy", "eval", str(doc), "--no-log")
    assert code == 2
    assert stderr.startswith("error: input document does not match schema version 1")


def test_a_missing_policy_folder_is_not_found(tmp_path: Path) -> None:
    code, stderr = _vigil("policy", "test", str(tmp_path / "absent"))
    assert code == 6
    assert stderr.startswith("error:") and "absent" in stderr


def test_a_result_whose_signature_fails_is_a_check_that_did_not_pass(tmp_path: Path) -> None:
    signer, _ = key_pair()
    other = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    result = AttestationResult.build(
        host_id="hv-1", verifier=VerifierId(developer="vigil"),
        trust_vector=TrustVector(instance_identity=2, hardware=2, executables=2,
                                 configuration=2),
        failures=[], nonce=None, image=None, components=[], ak_name=None, inventory=None)
    token = tmp_path / "result.jwt"
    token.write_text(sign_result(result, signer))
    key = tmp_path / "other.pub.pem"
    key.write_bytes(other)
    code, stderr = _vigil("attest", "verify-result", str(token), "--key", str(key))
    assert code == 1
    assert stderr.startswith("error:") and "signature" in stderr
