"""Step 5's reference manifests: signed, verified before they are read, checked for
consistency (no TPM needed: the PCRs are what the test log replays to)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.attest.lab import IMAGE, ec_key_pem, key_pair
from engine.attest.manifests import (
    ExpectedEvent,
    ManifestError,
    ReferenceManifest,
    load_manifest,
    sign_manifest,
)
from engine.attest.matching import ReferenceSet
from tests.attest.helpers import CREATED, NEXT, ed25519_key_pem, manifest

# -- signing ---------------------------------------------------------------------------------


@pytest.mark.parametrize("pem", [ec_key_pem(), ec_key_pem(ec.SECP384R1()), ed25519_key_pem()],
                         ids=["ES256", "ES384", "Ed25519"])
def test_a_signed_manifest_round_trips(pem: bytes) -> None:
    signer, verifier = key_pair(pem)
    original = manifest()
    token = sign_manifest(original, signer)
    assert load_manifest(token, [verifier]) == original
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header == {"alg": signer.algorithm, "typ": "vigil-reference+jws", "kid": signer.kid}


def test_a_tampered_manifest_signature_or_payload_is_rejected() -> None:
    signer, verifier = key_pair()
    token = sign_manifest(manifest(), signer)
    head, payload, signature = token.split(".")
    flipped = signature[:10] + ("A" if signature[10] != "A" else "B") + signature[11:]
    with pytest.raises(ManifestError, match="does not verify"):
        load_manifest(f"{head}.{payload}.{flipped}", [verifier])
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["image"]["version"] = "9999"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(ManifestError, match="does not verify"):
        load_manifest(f"{head}.{forged}.{signature}", [verifier])


def test_a_manifest_signed_by_an_untrusted_key_is_rejected() -> None:
    signer, _ = key_pair()
    _, stranger = key_pair()
    with pytest.raises(ManifestError, match="does not verify with any trusted key"):
        load_manifest(sign_manifest(manifest(), signer), [stranger])
    with pytest.raises(ManifestError, match="no trusted key"):
        load_manifest(sign_manifest(manifest(), signer), [])


def test_alg_none_and_a_foreign_typ_are_rejected() -> None:
    signer, verifier = key_pair()
    payload = base64.urlsafe_b64encode(manifest().payload()).rstrip(b"=").decode()
    none = base64.urlsafe_b64encode(b'{"alg":"none","typ":"vigil-reference+jws"}')
    with pytest.raises(ManifestError):
        load_manifest(f"{none.rstrip(b'=').decode()}.{payload}.", [verifier])
    from engine.keys import sign_compact

    other = sign_compact(manifest().payload(), signer, "JWT")
    with pytest.raises(ManifestError, match="typ"):
        load_manifest(other, [verifier])


def test_an_untrusted_manifest_is_refused_and_the_trusted_ones_keep_working(
        tmp_path: Path) -> None:
    """One manifest signed by an unknown key once made every verification fail."""
    signer, verifier = key_pair()
    stranger, _ = key_pair()
    (tmp_path / "a.jws").write_text(sign_manifest(manifest(), signer))
    (tmp_path / "b.jws").write_text(sign_manifest(manifest(image=NEXT), signer))
    assert len(ReferenceSet.load(tmp_path, [verifier]).manifests) == 2
    (tmp_path / "c.jws").write_text("garbage")
    (tmp_path / "d.jws").write_text(sign_manifest(manifest(image=NEXT), stranger))
    loaded = ReferenceSet.load(tmp_path, [verifier])
    assert [m.image for m in loaded.manifests] == [IMAGE, NEXT]
    assert [name for name, _ in loaded.refused] == ["c.jws", "d.jws"]
    assert "signature does not verify with any trusted key" in loaded.refused[1][1]
    only_strangers = tmp_path / "strangers"
    only_strangers.mkdir()
    (only_strangers / "d.jws").write_text(sign_manifest(manifest(), stranger))
    alone = ReferenceSet.load(only_strangers, [verifier])
    assert alone.manifests == () and [n for n, _ in alone.refused] == ["d.jws"]


def test_a_manifest_needs_pcrs_or_events() -> None:
    with pytest.raises(ValueError, match="needs expected PCR values"):
        ReferenceManifest(image=IMAGE, created_at=CREATED)
    with pytest.raises(ValueError, match="event_pcrs does not list"):
        ReferenceManifest(image=IMAGE, created_at=CREATED, event_pcrs=[4],
                          events=[ExpectedEvent(pcr=7, type="EV_SEPARATOR",
                                                component="separator", digests={})])


# -- garbage in ------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2048))
def test_garbage_manifests_are_rejected_not_crashed_on(data: bytes) -> None:
    _, verifier = key_pair(_PEM)
    with pytest.raises(ManifestError):
        load_manifest(data, [verifier])


_PEM = ec_key_pem()

