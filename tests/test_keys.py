"""engine.keys: the two key profiles (Vigil's own signatures, OPA bundle signatures) and
compact JWS made and checked with them."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from engine.errors import EXIT_INPUT
from engine.keys import (
    KeyLoadError,
    SignatureError,
    algorithms,
    load_rs256_es256_key,
    load_signing_key,
    load_verification_key,
    sign_compact,
    verify_compact,
)

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


def _write(folder: Path, name: str, key: PrivateKey, *, public: bool = False) -> Path:
    path = folder / name
    if public:
        path.write_bytes(key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    else:
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return path


def test_vigil_signatures_tie_the_algorithm_to_the_key_type() -> None:
    assert algorithms(ec.generate_private_key(ec.SECP256R1())) == ("ES256",)
    assert algorithms(ec.generate_private_key(ec.SECP384R1()).public_key()) == ("ES384",)
    assert algorithms(ed25519.Ed25519PrivateKey.generate()) == ("Ed25519", "EdDSA")
    assert algorithms(rsa.generate_private_key(65537, 2048)) == ("PS256", "RS256")
    with pytest.raises(KeyLoadError, match="too weak"):
        algorithms(rsa.generate_private_key(65537, 1024))
    with pytest.raises(KeyLoadError, match="secp256k1 are not supported"):
        algorithms(ec.generate_private_key(ec.SECP256K1()))


def test_a_compact_jws_round_trips_and_a_stranger_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, "k.pem", ec.generate_private_key(ec.SECP256R1()))
    signer, verifier = load_signing_key(path), load_verification_key(path)
    assert signer.kid == verifier.kid
    token = sign_compact(b"payload", signer, "vigil-test")
    assert verify_compact(token, [verifier], "vigil-test", "test token") == b"payload"
    with pytest.raises(SignatureError, match="test token's typ is 'vigil-test', not 'JWT'"):
        verify_compact(token, [verifier], "JWT", "test token")
    stranger = load_verification_key(_write(tmp_path, "s.pem", ec.generate_private_key(
        ec.SECP256R1())))
    with pytest.raises(SignatureError, match="does not verify with any trusted key") as caught:
        verify_compact(token, [stranger], "vigil-test", "test token")
    assert caught.value.tip and caught.value.exit_code == EXIT_INPUT
    with pytest.raises(SignatureError, match="not a compact JWS"):
        verify_compact("garbage", [verifier], "vigil-test", "test token")


def test_bundle_keys_are_rsa_or_p256(tmp_path: Path) -> None:
    rsa_key = rsa.generate_private_key(65537, 2048)
    key, alg = load_rs256_es256_key(_write(tmp_path, "rsa.pem", rsa_key), private=True)
    assert alg == "RS256" and key.is_private
    key, alg = load_rs256_es256_key(
        _write(tmp_path, "p256.pub.pem", ec.generate_private_key(ec.SECP256R1()), public=True),
        private=False)
    assert alg == "ES256" and not key.is_private


def test_bundle_keys_that_cannot_be_used_are_named(tmp_path: Path) -> None:
    public = _write(tmp_path, "rsa.pub.pem", rsa.generate_private_key(65537, 2048), public=True)
    with pytest.raises(KeyLoadError, match="is a public key; signing needs the private key"):
        load_rs256_es256_key(public, private=True)
    p384 = _write(tmp_path, "p384.pem", ec.generate_private_key(ec.SECP384R1()))
    with pytest.raises(KeyLoadError, match="on curve P-384; ES256 needs P-256"):
        load_rs256_es256_key(p384, private=False)
    ed = _write(tmp_path, "ed.pem", ed25519.Ed25519PrivateKey.generate())
    with pytest.raises(KeyLoadError, match="neither an RSA nor an EC key") as caught:
        load_rs256_es256_key(ed, private=True)
    assert caught.value.tip and "openssl" in caught.value.tip
    with pytest.raises(KeyLoadError, match="cannot read key"):
        load_rs256_es256_key(tmp_path / "missing.pem", private=False)


def test_key_text_given_as_a_path_is_never_repeated(tmp_path: Path) -> None:
    from engine.keys import KeyLoadError, load_rs256_es256_key, load_signing_key

    pasted = Path("-----BEGIN PRIVATE KEY-----\nMIIEsecretbody\n-----END PRIVATE KEY-----")
    for load in (lambda: load_signing_key(pasted),
                 lambda: load_rs256_es256_key(pasted, private=True)):
        with pytest.raises(KeyLoadError) as caught:
            load()
        assert "secretbody" not in caught.value.summary
        assert "not shown" in caught.value.summary
