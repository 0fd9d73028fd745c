"""The keys attestation signs and verifies with: the image pipeline's (reference
manifests) and the verifier's (attestation results).

They are read by :mod:`engine.keys`; a key that cannot be used fails here as the
attestation error :class:`KeyError_`.
"""

from __future__ import annotations

from pathlib import Path

from engine import keys
from engine.attest.errors import AttestError
from engine.keys import SigningKey, VerificationKey

__all__ = ["KeyError_", "SigningKey", "VerificationKey", "load_signing_key",
           "load_verification_key"]


class KeyError_(AttestError):
    """A signing or verification key cannot be loaded."""

    def __init__(self, reason: str, *, tip: str | None = None) -> None:
        super().__init__("key", reason, tip=tip)


def load_signing_key(source: Path | bytes) -> SigningKey:
    """A PEM private key (PKCS#8 or traditional, unencrypted) from a file or bytes."""
    try:
        return keys.load_signing_key(source)
    except keys.KeyLoadError as exc:
        raise KeyError_(exc.reason, tip=exc.tip) from exc


def load_verification_key(source: Path | bytes) -> VerificationKey:
    """A PEM public key (SubjectPublicKeyInfo), or the public half of a PEM private key."""
    try:
        return keys.load_verification_key(source)
    except keys.KeyLoadError as exc:
        raise KeyError_(exc.reason, tip=exc.tip) from exc
