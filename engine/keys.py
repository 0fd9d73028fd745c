"""JOSE keys: PEM keys read into ``joserfc`` keys, and compact JWS made and checked with
them. The one place Vigil turns a key file into a key.

Two profiles, because two kinds of signature with different rules are made with them:

* **Vigil's own signatures** (reference manifests, attestation results):
  :func:`load_signing_key` and :func:`load_verification_key` read an unencrypted PEM key
  (PKCS#8, traditional or SubjectPublicKeyInfo; a private key stands for its public
  half) and tie it to the JWS algorithms its type may sign with (:func:`algorithms`):
  ES256/ES384/ES512 by curve, Ed25519, PS256 (RS256 accepted) for RSA of 2048 bits or
  more. :func:`sign_compact` and :func:`verify_compact` make and check a compact JWS
  with a ``typ`` and the key's RFC 7638 thumbprint as ``kid``.
* **OPA bundle signatures**: :func:`load_rs256_es256_key` reads what OPA signs bundles
  with, an RSA key (RS256) or an EC P-256 key (ES256).

Failures are :class:`KeyLoadError` and :class:`SignatureError`; the parts that use them
report them as their own errors.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from joserfc import jwk, jws
from joserfc.errors import JoseError

from engine.errors import EXIT_INPUT, VigilError

__all__ = [
    "JoseKey",
    "KeyLoadError",
    "SignatureError",
    "SigningKey",
    "VerificationKey",
    "algorithms",
    "load_rs256_es256_key",
    "load_signing_key",
    "load_verification_key",
    "sign_compact",
    "verify_compact",
]

JoseKey: TypeAlias = jwk.ECKey | jwk.OKPKey | jwk.RSAKey


class KeyLoadError(VigilError):
    """A key cannot be read, or is of a type or size that is refused."""

    exit_code = EXIT_INPUT

    def __init__(self, reason: str, *, tip: str | None = None) -> None:
        super().__init__(reason, tip=tip)
        self.reason = reason


class SignatureError(VigilError):
    """A compact JWS is malformed, of another ``typ``, or its signature does not verify
    with any trusted key."""

    exit_code = EXIT_INPUT

    def __init__(self, reason: str, *, tip: str | None = None) -> None:
        super().__init__(reason, tip=tip)
        self.reason = reason


# -- Vigil's own signatures ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A private key and the one JWS algorithm it signs with."""

    key: JoseKey
    algorithm: str
    kid: str


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """A trusted public key and the JWS algorithms accepted from it."""

    key: JoseKey
    algorithms: tuple[str, ...]
    kid: str


def algorithms(key: object) -> tuple[str, ...]:
    """The algorithms a key type may sign with; the first is the one Vigil signs with.
    Tying them to the key closes JWS algorithm confusion (``none``, HMAC with a public
    key, RSA for an EC key)."""
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        by_curve = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
        if key.curve.name not in by_curve:
            raise KeyLoadError(f"EC keys on {key.curve.name} are not supported; use P-256 or "
                               "P-384")
        return (by_curve[key.curve.name],)
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return ("Ed25519", "EdDSA")
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise KeyLoadError(f"a {key.key_size}-bit RSA key is too weak; use 2048 bits or "
                               "more")
        return ("PS256", "RS256")
    raise KeyLoadError(f"{type(key).__name__} keys are not supported; use EC P-256/P-384, "
                       "Ed25519 or RSA")


def _jose_key(pem: bytes, algorithm: str) -> JoseKey:
    if algorithm.startswith("ES"):
        return jwk.ECKey.import_key(pem)
    if algorithm.startswith("Ed"):
        return jwk.OKPKey.import_key(pem)
    return jwk.RSAKey.import_key(pem)


def _read_pem(source: Path | bytes, what: str) -> bytes:
    if isinstance(source, bytes):
        return source
    try:
        return source.read_bytes()
    except OSError as exc:
        raise KeyLoadError(f"cannot read the {what} {shown(source)}: "
                           f"{exc.strerror or 'unreadable'}") from None


def load_signing_key(source: Path | bytes) -> SigningKey:
    """A PEM private key (PKCS#8 or traditional, unencrypted) from a file or bytes."""
    pem = _read_pem(source, "private key")
    try:
        private = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyLoadError(f"not an unencrypted PEM private key: {exc}") from None
    algorithm = algorithms(private)[0]
    der = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    key = _jose_key(der, algorithm)
    return SigningKey(key, algorithm, key.thumbprint())


def load_verification_key(source: Path | bytes) -> VerificationKey:
    """A PEM public key (SubjectPublicKeyInfo), or the public half of a PEM private key."""
    pem = _read_pem(source, "public key")
    try:
        public = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError):
        try:
            public = serialization.load_pem_private_key(pem, password=None).public_key()
        except (ValueError, TypeError) as exc:
            raise KeyLoadError(f"not a PEM public key: {exc}") from None
    accepted = algorithms(public)
    der = public.public_bytes(serialization.Encoding.PEM,
                              serialization.PublicFormat.SubjectPublicKeyInfo)
    key = _jose_key(der, accepted[0])
    return VerificationKey(key, accepted, key.thumbprint())


def sign_compact(payload: bytes, key: SigningKey, typ: str) -> str:
    """A compact JWS over ``payload``."""
    header = {"alg": key.algorithm, "typ": typ, "kid": key.kid}
    return jws.serialize_compact(header, payload, key.key, algorithms=[key.algorithm])


def verify_compact(token: str | bytes, keys: Sequence[VerificationKey], typ: str,
                   what: str) -> bytes:
    """The payload of a compact JWS whose signature verifies with one of ``keys`` and
    whose header has ``typ``; :class:`SignatureError` naming ``what`` otherwise."""
    if isinstance(token, bytes):
        token = token.decode("ascii", "replace")
    token = token.strip()
    if not keys:
        raise SignatureError(f"no trusted key is configured to verify the {what}")
    try:
        header = jws.extract_compact(token.encode()).headers()
    except (JoseError, ValueError) as exc:
        raise SignatureError(f"the {what} is not a compact JWS: {exc}") from None
    kid = header.get("kid")
    candidates = [k for k in keys if k.kid == kid] or list(keys)
    for candidate in candidates:
        if header.get("alg") not in candidate.algorithms:
            continue
        try:
            verified = jws.deserialize_compact(token, candidate.key,
                                               algorithms=list(candidate.algorithms))
        except (JoseError, ValueError):
            continue
        if verified.headers().get("typ") != typ:
            raise SignatureError(f"the {what}'s typ is {verified.headers().get('typ')!r}, "
                                 f"not {typ!r}")
        return verified.payload
    raise SignatureError(f"the {what}'s signature does not verify with any trusted key "
                         f"(alg {header.get('alg')!r}, kid {kid!r})",
                         tip="It was altered, or signed by a key this verifier does not "
                         "trust.")


# -- OPA bundle signatures -----------------------------------------------------------------


def shown(path: Path | str) -> str:
    """A key file's name for a message, or a placeholder when what was given is key text
    (pasted where a path belongs): key material is never repeated."""
    text = str(path)
    if "-----BEGIN" in text or "\n" in text or len(text) > 1024:
        return "(key text given where a file path belongs; not shown)"
    return text


def load_rs256_es256_key(path: Path, *, private: bool
                         ) -> tuple[jwk.RSAKey | jwk.ECKey, str]:
    """Read an RSA or EC P-256 key (PEM, as ``joserfc`` imports it); return it and the
    algorithm it signs with, RS256 or ES256. ``private`` requires the private key."""
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise KeyLoadError(f"cannot read key {shown(path)}: {exc.strerror or 'unreadable'}"
                           ) from None
    for cls, alg in ((jwk.RSAKey, "RS256"), (jwk.ECKey, "ES256")):
        try:
            key = cls.import_key(pem)
        except (JoseError, ValueError, TypeError):
            continue
        if isinstance(key, jwk.ECKey) and key.curve_name != "P-256":
            raise KeyLoadError(f"key {shown(path)} is on curve {key.curve_name}; ES256 needs "
                               "P-256")
        if private and not key.is_private:
            raise KeyLoadError(f"key {shown(path)} is a public key; signing needs the private "
                               "key")
        return key, alg
    raise KeyLoadError(
        f"key {shown(path)} is neither an RSA nor an EC key in PEM form",
        tip="generate one with `openssl genpkey -algorithm RSA -out key.pem` or "
            "`openssl ecparam -name prime256v1 -genkey -noout -out key.pem`")
