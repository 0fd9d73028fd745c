"""Attestation-key trust: which AK may sign a host's quotes.

A quote only proves something if its signing key is an attestation key (AK) that lives
in a genuine TPM of that host. Vigil never trusts the AK a piece of evidence brings
along; it trusts the AKs this registry recorded, each by one of two paths:

**AK bound to the EK by MakeCredential / ActivateCredential** (as Keylime's registrar
does; TPM 2.0 Part 1, "Credential Protection"; Part 3, TPM2_MakeCredential):

1. The host sends an :class:`EnrollmentRequest`: its EK public area, the EK certificate
   from the TPM's NV index, and the new AK's public area.
2. :meth:`AkRegistry.begin_enrollment` checks that the EK certificate chains to a
   configured manufacturer CA (``attest_ek_ca``) and holds the same key as the EK, that
   the EK is a restricted decryption key and the AK a restricted signing key that never
   leaves its TPM (``fixedTPM``, ``fixedParent``, ``sensitiveDataOrigin``). It then
   wraps a random 32-byte secret to the EK, bound to the AK's Name
   (:func:`make_credential`), and keeps only a MAC of the answer it expects.
3. The host's TPM releases the secret (TPM2_ActivateCredential) only if it holds both
   the EK's private key and an object with exactly that Name; the host answers with
   :func:`activation_proof`, an HMAC keyed with the secret, never the secret itself.
4. :meth:`AkRegistry.complete_enrollment` compares the answer in constant time and
   records the AK as trusted for the host.

**AK certificate from a provider CA**: :meth:`AkRegistry.trust_ak_certificate` checks
with ``cryptography`` that the certificate chains to a configured provider CA
(``attest_ak_ca``), names the host, and certifies exactly this AK's key, and that the AK
is a restricted signing key.

An AK that took neither path, a pending enrollment that was never completed, or an AK
trusted for another host is never trusted: :meth:`AkRegistry.trusted_ak` raises
:class:`AkTrustError`. Without an EK certificate the first path is refused unless the
operator sets the unsafe ``attest_unsafe_trust_ek_without_certificate``; such AKs are
recorded as not hardware-verified and the attestation result says so.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
import sqlite3
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.x509 import verification

try:  # AES-CFB moved to the "decrepit" corner in cryptography 47; TPMs still use it.
    from cryptography.hazmat.decrepit.ciphers.modes import CFB
except ImportError:  # pragma: no cover - older cryptography
    from cryptography.hazmat.primitives.ciphers.modes import CFB
from pydantic import BaseModel, ConfigDict

from engine.attest.errors import AttestError
from engine.attest.nonce import connect_state, write_transaction
from engine.attest.quote import AkPublic, PublicArea, load_public_key
from engine.attest.tpm_types import ALG_AES, ALG_ECC, ALG_NULL, ALG_RSA, HashAlg, Reader
from engine.model import B64, Hex

__all__ = [
    "STEP_AK",
    "ActivationResponse",
    "AkRegistry",
    "AkTrustError",
    "CredentialChallenge",
    "EnrollmentRequest",
    "TrustedAk",
    "activation_proof",
    "load_certificates",
    "make_credential",
]

STEP_AK = "1 AK trust"
STEP_ENROLL = "AK enrollment"

# TPMA_OBJECT bits (TPM 2.0 Part 2).
FIXED_TPM = 1 << 1
FIXED_PARENT = 1 << 4
SENSITIVE_DATA_ORIGIN = 1 << 5
RESTRICTED = 1 << 16
DECRYPT = 1 << 17
SIGN = 1 << 18
_AK_REQUIRED = {FIXED_TPM: "fixedTPM", FIXED_PARENT: "fixedParent",
                SENSITIVE_DATA_ORIGIN: "sensitiveDataOrigin", RESTRICTED: "restricted",
                SIGN: "sign"}

_CHALLENGE_TTL = dt.timedelta(minutes=10)
_PROOF_LABEL = b"vigil AK activation v1\x00"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS attest_trusted_aks (
    host_id TEXT NOT NULL,
    ak_name BLOB NOT NULL,
    ak_public BLOB NOT NULL,
    method TEXT NOT NULL,
    hardware_verified INTEGER NOT NULL,
    ek_name BLOB,
    trusted_at REAL NOT NULL,
    PRIMARY KEY (host_id, ak_name)
);
CREATE TABLE IF NOT EXISTS attest_ak_enrollments (
    host_id TEXT NOT NULL,
    ak_name BLOB NOT NULL,
    ak_public BLOB NOT NULL,
    ek_name BLOB NOT NULL,
    hardware_verified INTEGER NOT NULL,
    expected_proof BLOB NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (host_id, ak_name)
);
"""

TrustMethod = Literal["make-credential", "ak-certificate"]


class AkTrustError(AttestError):
    """An attestation key is unknown, unbound, or its enrollment is refused."""


class EnrollmentRequest(BaseModel):
    """What a host sends to enroll an AK (``vigil agent enroll``). Binary fields are
    base64 (RFC 4648, with padding)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_: Literal["vigil.ak-enrollment/1"] = "vigil.ak-enrollment/1"
    host_id: str
    ek_public: B64
    """The EK's TPM2B_PUBLIC."""
    ek_certificate: B64 | None = None
    """The EK certificate (DER) from the TPM's NV index, if the TPM has one."""
    ek_intermediates: list[B64] = []
    """DER CA certificates between the EK certificate and a manufacturer root."""
    ak_public: B64
    """The AK's TPM2B_PUBLIC."""


class CredentialChallenge(BaseModel):
    """The verifier's answer to an :class:`EnrollmentRequest`: a secret only the host's
    TPM can unwrap, and only for this AK."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_: Literal["vigil.ak-challenge/1"] = "vigil.ak-challenge/1"
    host_id: str
    ak_name: Hex
    credential_blob: B64
    """TPM2B_ID_OBJECT for TPM2_ActivateCredential."""
    encrypted_secret: B64
    """TPM2B_ENCRYPTED_SECRET for TPM2_ActivateCredential."""
    expires_at: dt.datetime


class ActivationResponse(BaseModel):
    """The host's proof that its TPM activated the credential."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_: Literal["vigil.ak-activation/1"] = "vigil.ak-activation/1"
    host_id: str
    ak_name: Hex
    proof: B64
    """:func:`activation_proof` of the activated secret."""


@dataclass(frozen=True, slots=True)
class TrustedAk:
    """An AK the verifier trusts to sign one host's quotes."""

    host_id: str
    name: bytes
    """The AK's TPM Name (nameAlg || H(TPMT_PUBLIC))."""
    public: bytes
    """The AK's TPM2B_PUBLIC as enrolled."""
    method: TrustMethod
    hardware_verified: bool
    """True when a certificate chain to a configured CA vouches for the TPM (EK
    certificate) or for the AK itself (AK certificate)."""
    ek_name: bytes | None
    trusted_at: dt.datetime

    def key(self) -> AkPublic:
        return load_public_key(self.public)


def activation_proof(secret: bytes, host_id: str, ak_name: bytes) -> bytes:
    """What the host returns after TPM2_ActivateCredential: HMAC-SHA256 keyed with the
    secret over a label, the host id and the AK Name (the secret is never sent)."""
    message = _PROOF_LABEL + host_id.encode() + b"\x00" + ak_name
    return hmac.new(secret, message, hashlib.sha256).digest()


def load_certificates(paths: Sequence[Path]) -> list[x509.Certificate]:
    """Every certificate of the PEM (or DER) files ``paths``."""
    certificates: list[x509.Certificate] = []
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise AkTrustError(STEP_ENROLL, f"cannot read CA file {path}: "
                               f"{exc.strerror or exc}") from exc
        try:
            if b"-----BEGIN" in data:
                certificates.extend(x509.load_pem_x509_certificates(data))
            else:
                certificates.append(x509.load_der_x509_certificate(data))
        except ValueError as exc:
            raise AkTrustError(STEP_ENROLL, f"{path} holds no readable certificate: "
                               f"{exc}") from exc
    return certificates


class AkRegistry:
    """The verifier's trusted AKs per host, and the enrollments in progress.

    Lives in the attestation state file (``Settings.attest_db``) beside the nonces.
    ``ek_roots`` are the TPM manufacturers' CA certificates; ``ak_roots`` the provider
    CAs that issue AK certificates.
    """

    def __init__(self, path: Path, *, ek_roots: Sequence[x509.Certificate] = (),
                 ak_roots: Sequence[x509.Certificate] = (),
                 unsafe_trust_ek_without_certificate: bool = False,
                 challenge_ttl: dt.timedelta = _CHALLENGE_TTL,
                 now: Callable[[], float] = time.time) -> None:
        self.path = path
        self.ek_roots = tuple(ek_roots)
        self.ak_roots = tuple(ak_roots)
        self.unsafe_trust_ek_without_certificate = unsafe_trust_ek_without_certificate
        self.challenge_ttl = challenge_ttl
        self._now = now
        self._db = connect_state(path, _SCHEMA)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> AkRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- MakeCredential / ActivateCredential -------------------------------------------

    def begin_enrollment(self, request: EnrollmentRequest) -> CredentialChallenge:
        """Check the EK and the AK, and challenge the host's TPM to prove it holds both."""
        ek = _load_key(request.ek_public, "EK")
        ak = _load_key(request.ak_public, "AK")
        assert ek.public_area is not None and ak.public_area is not None
        _check_ek(ek.public_area)
        _check_ak_attributes(ak.public_area, step=STEP_ENROLL)
        hardware_verified = False
        if request.ek_certificate is not None:
            certificate = _parse_certificate(request.ek_certificate, "EK certificate")
            intermediates = [_parse_certificate(der, "EK intermediate")
                             for der in request.ek_intermediates]
            _verify_chain(certificate, intermediates, self.ek_roots, "EK certificate",
                          self._now())
            _check_same_key(certificate, ek, "EK certificate", "the EK")
            hardware_verified = True
        elif not self.unsafe_trust_ek_without_certificate:
            raise AkTrustError(STEP_ENROLL, "the host sent no EK certificate, so nothing "
                               "proves its EK belongs to a genuine TPM",
                               tip="Read the EK certificate from the TPM's NV index (vigil "
                               "agent enroll does), or, in a lab only, set "
                               "VIGIL_ATTEST_UNSAFE_TRUST_EK_WITHOUT_CERTIFICATE=true.")
        secret = secrets.token_bytes(32)
        ak_name = ak.public_area.name
        blob, encrypted = make_credential(request.ek_public, secret, ak_name)
        expires = self._now() + self.challenge_ttl.total_seconds()
        expected = activation_proof(secret, request.host_id, ak_name)
        with write_transaction(self._db, self.path) as db:
            db.execute("INSERT OR REPLACE INTO attest_ak_enrollments (host_id, ak_name, "
                       "ak_public, ek_name, hardware_verified, expected_proof, expires_at) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (request.host_id, ak_name, request.ak_public, ek.public_area.name,
                        int(hardware_verified), expected, expires))
        return CredentialChallenge(host_id=request.host_id, ak_name=ak_name,
                                   credential_blob=blob, encrypted_secret=encrypted,
                                   expires_at=dt.datetime.fromtimestamp(expires, dt.UTC))

    def complete_enrollment(self, response: ActivationResponse) -> TrustedAk:
        """Trust the AK if the host proved its TPM activated the credential."""
        now = self._now()
        with write_transaction(self._db, self.path) as db:
            row = db.execute("SELECT ak_public, ek_name, hardware_verified, expected_proof, "
                             "expires_at FROM attest_ak_enrollments WHERE host_id = ? AND "
                             "ak_name = ?", (response.host_id, response.ak_name)).fetchone()
            if row is None:
                raise AkTrustError(STEP_ENROLL, f"no enrollment of AK {response.ak_name.hex()} "
                                   f"for host {response.host_id} is pending",
                                   tip="Start again with vigil attest ak challenge.")
            ak_public, ek_name, hardware_verified, expected, expires = row
            db.execute("DELETE FROM attest_ak_enrollments WHERE host_id = ? AND ak_name = ?",
                       (response.host_id, response.ak_name))
            # A failed attempt ends the enrollment too: the errors are raised after the
            # commit, so that no one gets a second guess.
            refused: AkTrustError | None = None
            if now >= expires:
                refused = AkTrustError(STEP_ENROLL, "the credential challenge expired; start "
                                       "the enrollment again")
            elif not hmac.compare_digest(bytes(expected), response.proof):
                refused = AkTrustError(STEP_ENROLL, "the activation proof is wrong: the host's "
                                       "TPM did not release the credential for this EK and AK",
                                       tip="The AK is not bound to that EK; it stays untrusted.")
            else:
                trusted = TrustedAk(response.host_id, response.ak_name, bytes(ak_public),
                                    "make-credential", bool(hardware_verified), bytes(ek_name),
                                    dt.datetime.fromtimestamp(now, dt.UTC))
                self._store(db, trusted)
        if refused is not None:
            raise refused
        return trusted

    # -- AK certificate ----------------------------------------------------------------

    def trust_ak_certificate(self, host_id: str, ak_public: bytes, certificate: bytes,
                             intermediates: Sequence[bytes] = ()) -> TrustedAk:
        """Trust ``ak_public`` for ``host_id`` on the strength of an AK certificate
        (PEM or DER) issued by a configured provider CA."""
        ak = _load_key(ak_public, "AK")
        assert ak.public_area is not None
        _check_ak_attributes(ak.public_area, step=STEP_ENROLL)
        cert = _parse_certificate(certificate, "AK certificate")
        chain = [_parse_certificate(der, "AK intermediate") for der in intermediates]
        _verify_chain(cert, chain, self.ak_roots, "AK certificate", self._now())
        _check_same_key(cert, ak, "AK certificate", "the AK")
        if host_id not in _certificate_names(cert):
            raise AkTrustError(STEP_ENROLL, f"the AK certificate names "
                               f"{', '.join(sorted(_certificate_names(cert))) or 'no host'}, "
                               f"not {host_id}")
        trusted = TrustedAk(host_id, ak.public_area.name, ak_public, "ak-certificate", True,
                            None, dt.datetime.fromtimestamp(self._now(), dt.UTC))
        with write_transaction(self._db, self.path) as db:
            self._store(db, trusted)
        return trusted

    # -- lookups -----------------------------------------------------------------------

    def trusted_ak(self, host_id: str, name: bytes) -> TrustedAk:
        """The trusted AK ``name`` of ``host_id``; :class:`AkTrustError` when there is
        none."""
        row = self._db.execute("SELECT ak_public, method, hardware_verified, ek_name, "
                               "trusted_at FROM attest_trusted_aks WHERE host_id = ? AND "
                               "ak_name = ?", (host_id, name)).fetchone()
        if row is None:
            known = self.trusted_aks(host_id)
            why = (f"host {host_id} has no trusted AK" if not known else
                   f"AK {name.hex()} is not one of host {host_id}'s trusted AKs "
                   f"({', '.join(ak.name.hex() for ak in known)})")
            raise AkTrustError(STEP_AK, why, tip="Enroll the AK first (vigil agent enroll, "
                               "then vigil attest ak challenge/complete).")
        return TrustedAk(host_id, name, bytes(row[0]), row[1], bool(row[2]),
                         None if row[3] is None else bytes(row[3]),
                         dt.datetime.fromtimestamp(row[4], dt.UTC))

    def trusted_aks(self, host_id: str) -> list[TrustedAk]:
        rows = self._db.execute("SELECT ak_name, ak_public, method, hardware_verified, ek_name,"
                                " trusted_at FROM attest_trusted_aks WHERE host_id = ? "
                                "ORDER BY trusted_at", (host_id,)).fetchall()
        return [TrustedAk(host_id, bytes(r[0]), bytes(r[1]), r[2], bool(r[3]),
                          None if r[4] is None else bytes(r[4]),
                          dt.datetime.fromtimestamp(r[5], dt.UTC)) for r in rows]

    def revoke(self, host_id: str, name: bytes) -> bool:
        """Stop trusting an AK; True if it was trusted."""
        with write_transaction(self._db, self.path) as db:
            cursor = db.execute("DELETE FROM attest_trusted_aks WHERE host_id = ? AND "
                                "ak_name = ?", (host_id, name))
        return cursor.rowcount > 0

    @staticmethod
    def _store(db: sqlite3.Connection, ak: TrustedAk) -> None:
        db.execute("INSERT OR REPLACE INTO attest_trusted_aks (host_id, ak_name, ak_public, "
                   "method, hardware_verified, ek_name, trusted_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                   (ak.host_id, ak.name, ak.public, ak.method, int(ak.hardware_verified),
                    ak.ek_name, ak.trusted_at.timestamp()))


# -- key and certificate checks ----------------------------------------------------------


def _load_key(data: bytes, what: str) -> AkPublic:
    try:
        key = load_public_key(data)
    except AttestError as exc:
        raise AkTrustError(STEP_ENROLL, f"the {what} public area is unreadable: "
                           f"{exc.reason}") from exc
    if key.public_area is None:
        raise AkTrustError(STEP_ENROLL, f"the {what} must be a TPM2B_PUBLIC, not a "
                           "SubjectPublicKeyInfo: its attributes and Name are needed")
    return key


def _check_ak_attributes(area: PublicArea, *, step: str) -> None:
    missing = [name for bit, name in _AK_REQUIRED.items() if not area.object_attributes & bit]
    if missing:
        raise AkTrustError(step, f"the AK lacks {', '.join(missing)} "
                           f"(objectAttributes 0x{area.object_attributes:08x}): it is not a "
                           "restricted signing key that never leaves its TPM")
    if area.object_attributes & DECRYPT:
        raise AkTrustError(step, "the AK is also a decryption key; an AK only signs")


def _check_ek(area: PublicArea) -> None:
    attributes = area.object_attributes
    if not (attributes & RESTRICTED and attributes & DECRYPT) or attributes & SIGN:
        raise AkTrustError(STEP_ENROLL, f"the EK is not a restricted decryption key "
                           f"(objectAttributes 0x{attributes:08x})")


def _parse_certificate(data: bytes, what: str) -> x509.Certificate:
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(_strip_nv_padding(data))
    except ValueError as exc:
        raise AkTrustError(STEP_ENROLL, f"the {what} is not an X.509 certificate: {exc}") from exc


def _strip_nv_padding(data: bytes) -> bytes:
    """A certificate read from an NV index may carry padding after its DER SEQUENCE."""
    if len(data) >= 4 and data[0] == 0x30 and data[1] == 0x82:
        return data[:4 + int.from_bytes(data[2:4], "big")]
    return data


def _verify_chain(certificate: x509.Certificate, intermediates: Sequence[x509.Certificate],
                  roots: Sequence[x509.Certificate], what: str, now: float) -> None:
    if not roots:
        raise AkTrustError(STEP_ENROLL, f"no CA is configured to check the {what} against",
                           tip="Set VIGIL_ATTEST_EK_CA (EK certificates) or "
                           "VIGIL_ATTEST_AK_CA (AK certificates) to the CA's PEM file.")
    # EK and AK certificates are no web certificates: their subject may be empty, their
    # SAN a directoryName, their EKU a TCG OID. The CAs still follow the usual rules.
    policy = (verification.PolicyBuilder()
              .store(verification.Store(list(roots)))
              .time(dt.datetime.fromtimestamp(now, dt.UTC))
              .extension_policies(ca_policy=verification.ExtensionPolicy.webpki_defaults_ca(),
                                  ee_policy=verification.ExtensionPolicy.permit_all()))
    try:
        policy.build_client_verifier().verify(certificate, list(intermediates))
    except verification.VerificationError as exc:
        raise AkTrustError(STEP_ENROLL, f"the {what} does not chain to a configured CA: "
                           f"{exc}") from exc


def _check_same_key(certificate: x509.Certificate, key: AkPublic, what: str,
                    whose: str) -> None:
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if certificate.public_key().public_bytes(der, spki) != key.key.public_bytes(der, spki):
        raise AkTrustError(STEP_ENROLL, f"the {what} certifies another key than {whose}")


def _certificate_names(certificate: x509.Certificate) -> set[str]:
    names = {str(attribute.value) for attribute in
             certificate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)}
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return names
    names.update(san.value.get_values_for_type(x509.DNSName))
    names.update(san.value.get_values_for_type(x509.UniformResourceIdentifier))
    return names


# -- TPM2_MakeCredential in software -----------------------------------------------------


def make_credential(ek_public: bytes, credential: bytes, object_name: bytes
                    ) -> tuple[bytes, bytes]:
    """TPM2_MakeCredential without a TPM: wrap ``credential`` to the EK so that only
    TPM2_ActivateCredential with that EK and an object named ``object_name`` unwraps it.

    Returns the TPM2B_ID_OBJECT and the TPM2B_ENCRYPTED_SECRET (TPM 2.0 Part 1,
    "Credential Protection" and "Secret Sharing"): a seed is shared with the EK (RSA-OAEP
    with label ``IDENTITY``, or ECDH with an ephemeral key and KDFe), ``symKey =
    KDFa(seed, "STORAGE", name)`` encrypts the credential with the EK's symmetric
    cipher in CFB mode and a zero IV, and ``HMAC(KDFa(seed, "INTEGRITY"), encIdentity ||
    name)`` protects it.
    """
    ek = _EkParameters.parse(ek_public)
    hash_alg = ek.name_alg
    if not 0 < len(credential) <= hash_alg.digest_size:
        raise AkTrustError(STEP_ENROLL, f"a credential holds 1 to {hash_alg.digest_size} bytes")
    seed, encrypted_secret = ek.share_seed()
    sym_key = _kdfa(hash_alg, seed, b"STORAGE", object_name, b"", ek.sym_bits)
    encryptor = Cipher(algorithms.AES(sym_key), CFB(bytes(16))).encryptor()
    enc_identity = encryptor.update(_tpm2b(credential)) + encryptor.finalize()
    hmac_key = _kdfa(hash_alg, seed, b"INTEGRITY", b"", b"", hash_alg.digest_size * 8)
    outer_hmac = hmac.new(hmac_key, enc_identity + object_name,
                          hash_alg.bank).digest()
    id_object = _tpm2b(_tpm2b(outer_hmac) + enc_identity)
    return id_object, _tpm2b(encrypted_secret)


def _tpm2b(data: bytes) -> bytes:
    return struct.pack(">H", len(data)) + data


def _kdfa(hash_alg: HashAlg, key: bytes, label: bytes, context_u: bytes, context_v: bytes,
          bits: int) -> bytes:
    """KDFa (TPM 2.0 Part 1, SP 800-108 counter mode with HMAC)."""
    out = b""
    counter = 0
    while len(out) * 8 < bits:
        counter += 1
        out += hmac.new(key, struct.pack(">I", counter) + label + b"\x00" + context_u
                        + context_v + struct.pack(">I", bits), hash_alg.bank).digest()
    return out[:(bits + 7) // 8]


def _kdfe(hash_alg: HashAlg, z: bytes, label: bytes, party_u: bytes, party_v: bytes,
          bits: int) -> bytes:
    """KDFe (TPM 2.0 Part 1, SP 800-56A concatenation KDF)."""
    out = b""
    counter = 0
    while len(out) * 8 < bits:
        counter += 1
        digest = hashes.Hash(hash_alg.algorithm())
        digest.update(struct.pack(">I", counter) + z + label + b"\x00" + party_u + party_v)
        out += digest.finalize()
    return out[:(bits + 7) // 8]


@dataclass(frozen=True, slots=True)
class _EkParameters:
    name_alg: HashAlg
    sym_bits: int
    key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey

    @classmethod
    def parse(cls, ek_public: bytes) -> _EkParameters:
        loaded = _load_key(ek_public, "EK")
        area = loaded.public_area
        assert area is not None
        # TPMT_PUBLIC: type, nameAlg, objectAttributes, authPolicy, then the symmetric
        # definition that protects the EK's children (and credentials).
        r = Reader(area.raw, step=STEP_ENROLL, struct="EK TPMT_PUBLIC")
        key_type = r.u16("type")
        r.u16("nameAlg")
        r.u32("objectAttributes")
        r.tpm2b("authPolicy")
        symmetric = r.u16("parameters.symmetric.algorithm")
        if key_type not in (ALG_RSA, ALG_ECC) or symmetric == ALG_NULL:
            raise AkTrustError(STEP_ENROLL, "the EK has no symmetric algorithm: it is not a "
                               "storage key that can activate credentials")
        if symmetric != ALG_AES:
            raise AkTrustError(STEP_ENROLL, f"the EK's symmetric algorithm 0x{symmetric:04x} "
                               "is not AES")
        bits = r.u16("parameters.symmetric.keyBits")
        mode = r.u16("parameters.symmetric.mode")
        if mode != 0x0043:  # TPM_ALG_CFB
            raise AkTrustError(STEP_ENROLL, f"the EK's symmetric mode 0x{mode:04x} is not CFB")
        return cls(area.name_alg, bits, loaded.key)

    def share_seed(self) -> tuple[bytes, bytes]:
        """A fresh seed and its encryption to the EK (the TPM2B_ENCRYPTED_SECRET body)."""
        size = self.name_alg.digest_size
        if isinstance(self.key, rsa.RSAPublicKey):
            seed = secrets.token_bytes(size)
            oaep = padding.OAEP(mgf=padding.MGF1(self.name_alg.algorithm()),
                                algorithm=self.name_alg.algorithm(), label=b"IDENTITY\x00")
            return seed, self.key.encrypt(seed, oaep)
        curve = self.key.curve
        ephemeral = ec.generate_private_key(curve)
        width = (curve.key_size + 7) // 8
        z = ephemeral.exchange(ec.ECDH(), self.key)
        point = ephemeral.public_key().public_numbers()
        ek_point = self.key.public_numbers()
        ephemeral_x = point.x.to_bytes(width, "big")
        seed = _kdfe(self.name_alg, z, b"IDENTITY", ephemeral_x,
                     ek_point.x.to_bytes(width, "big"), size * 8)
        return seed, _tpm2b(ephemeral_x) + _tpm2b(point.y.to_bytes(width, "big"))
