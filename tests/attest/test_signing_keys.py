"""The keys manifests and results are signed and verified with (engine.keys underneath,
failures as the attestation error KeyError_)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from engine.attest.lab import ec_key_pem
from engine.attest.signing_keys import KeyError_, load_signing_key, load_verification_key


def test_keys_are_checked() -> None:
    with pytest.raises(KeyError_):
        load_signing_key(b"-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")
    with pytest.raises(KeyError_, match="P-256"):
        load_signing_key(ec_key_pem(ec.SECP256K1()))
    with pytest.raises(KeyError_, match="cannot read"):
        load_verification_key(Path("/nonexistent/key.pem"))

