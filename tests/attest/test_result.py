"""Step 6: the EAR attestation result, signed, and checked offline."""

from __future__ import annotations

import base64
import datetime as dt
import json

import pytest

from engine.attest.lab import COMPONENTS, IMAGE, INVENTORY, key_pair
from engine.attest.result import (
    EAR_PROFILE,
    AttestationResult,
    Failure,
    ResultError,
    TrustVector,
    VerifierId,
    sign_result,
    tier,
    verify_result,
)
from engine.keys import sign_compact
from tests.attest.helpers import ed25519_key_pem

ISSUED = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)


def affirming() -> AttestationResult:
    return AttestationResult.build(
        host_id="hv-042", verifier=VerifierId(developer="vigil"),
        trust_vector=TrustVector(instance_identity=2, hardware=2, executables=3,
                                 configuration=2),
        failures=[], nonce=b"\x01" * 32, image=IMAGE, components=COMPONENTS,
        ak_name=b"\x00\x0b" + b"\xaa" * 32, inventory=INVENTORY, issued_at=ISSUED)


def test_result_is_an_ear_with_the_ar4si_vector() -> None:
    claims = affirming().claims()
    assert claims["eat_profile"] == EAR_PROFILE
    assert claims["iat"] == int(ISSUED.timestamp())
    assert claims["ear.verifier-id"] == {"developer": "vigil", "build": "vigil 0.1.0"}
    assert base64.urlsafe_b64decode(claims["eat_nonce"] + "=") == b"\x01" * 32
    submod = claims["submods"]["hv-042"]
    assert submod["ear.status"] == "affirming"
    assert submod["ear.trustworthiness-vector"] == {
        "instance-identity": 2, "configuration": 2, "executables": 3, "file-system": 0,
        "hardware": 2, "runtime-opaque": 0, "storage-opaque": 0, "sourced-data": 0}
    assert submod["vigil.image"] == {"name": "hv-base", "version": "2026.05.1"}
    assert submod["vigil.failures"] == []
    assert len(submod["vigil.components"]) == 3


@pytest.mark.parametrize("pem", [None, ed25519_key_pem()], ids=["ES256", "Ed25519"])
def test_a_signed_result_verifies_offline(pem: bytes | None) -> None:
    signer, public = key_pair(pem)
    token = sign_result(affirming(), signer)
    assert verify_result(token, public) == affirming()
    from cryptography.hazmat.primitives import serialization

    pem_public = public.key.as_pem(private=False)
    assert serialization.load_pem_public_key(pem_public)
    assert verify_result(token.encode(), pem_public) == affirming()


def test_a_tampered_result_is_rejected() -> None:
    signer, public = key_pair()
    head, payload, signature = sign_result(affirming(), signer).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["submods"]["hv-042"]["ear.status"] = "affirming"
    claims["submods"]["hv-042"]["vigil.image"]["version"] = "2099.01.1"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(ResultError, match="does not verify") as caught:
        verify_result(f"{head}.{forged}.{signature}", public)
    assert caught.value.step == "6 attestation result"
    with pytest.raises(ResultError):
        verify_result(f"{head}.{payload}.{signature[:-4]}AAAA", public)
    with pytest.raises(ResultError):
        verify_result("", public)


def test_a_result_signed_with_the_right_key_but_not_an_ear_is_rejected() -> None:
    signer, public = key_pair()
    token = sign_compact(json.dumps({"eat_profile": "other"}).encode(), signer, "JWT")
    with pytest.raises(ResultError, match="eat_profile"):
        verify_result(token, public)
    token = sign_compact(b"[1, 2]", signer, "JWT")
    with pytest.raises(ResultError, match="not a JSON object"):
        verify_result(token, public)


def test_max_age_refuses_old_results() -> None:
    signer, public = key_pair()
    token = sign_result(affirming(), signer)
    later = ISSUED + dt.timedelta(hours=2)
    with pytest.raises(ResultError, match="issued"):
        verify_result(token, public, max_age=dt.timedelta(hours=1), now=later)
    assert verify_result(token, public, max_age=dt.timedelta(hours=3), now=later)


def test_a_result_from_the_future_is_refused_beyond_the_clock_skew() -> None:
    """Signed by the verifier's own key with ``iat`` ahead: it would stay fresh for as
    long as its issuer chose."""
    signer, public = key_pair()
    token = sign_result(affirming(), signer)
    with pytest.raises(ResultError, match="from now, beyond the 60 s clock skew"):
        verify_result(token, public, now=ISSUED - dt.timedelta(days=365))
    with pytest.raises(ResultError, match="clock skew"):
        verify_result(token, public, now=ISSUED - dt.timedelta(seconds=61))
    assert verify_result(token, public, now=ISSUED - dt.timedelta(seconds=59))


def test_any_failure_makes_the_result_contraindicated_and_drops_the_image() -> None:
    result = AttestationResult.build(
        host_id="hv-042", verifier=VerifierId(developer="vigil"),
        trust_vector=TrustVector(instance_identity=2, executables=96, configuration=2),
        failures=[Failure(step="5 reference values", reason="PCR 4 …")], nonce=None,
        image=IMAGE, components=COMPONENTS, ak_name=None, inventory=None, issued_at=ISSUED)
    assert result.status == "contraindicated"
    assert result.image is None and result.components == []
    summary = result.summary().model_dump(mode="json")
    assert summary == {
        "status": "contraindicated", "issued_at": "2026-05-01T12:00:00Z",
        "verifier_id": "vigil / vigil 0.1.0", "image": None,
        "trust_vector": {"instance_identity": 2, "configuration": 2, "executables": 96,
                         "file_system": 0, "hardware": 0, "runtime_opaque": 0,
                         "storage_opaque": 0, "sourced_data": 0},
        "failures": [{"step": "5 reference values", "reason": "PCR 4 …"}],
        "components": []}


def test_the_status_is_the_worst_tier_of_the_vector() -> None:
    assert TrustVector(instance_identity=2, executables=33).worst_tier() == "warning"
    assert TrustVector(instance_identity=2, executables=3).worst_tier() == "affirming"
    assert TrustVector().worst_tier() == "none"
    assert [tier(v) for v in (0, 1, -1, 2, 31, 32, 95, 96, 127, -2, -33, -97)] == [
        "none", "none", "none", "affirming", "affirming", "warning", "warning",
        "contraindicated", "contraindicated", "affirming", "warning", "contraindicated"]
