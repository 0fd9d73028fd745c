"""TPM 2.0 quotes: parse the quote, its signature and the AK; verify steps 1 to 3.

The structures, as TPM 2.0 Library Part 2 (Structures) defines them; all integers are
big-endian and every TPM2B_* is a UINT16 size followed by that many bytes:

* **TPMS_ATTEST** (what ``TPM2_Quote`` signs): ``magic`` UINT32 = TPM_GENERATED_VALUE
  (0xFF544347), ``type`` TPMI_ST_ATTEST = TPM_ST_ATTEST_QUOTE (0x8018),
  ``qualifiedSigner`` TPM2B_NAME, ``extraData`` TPM2B_DATA (the verifier's nonce),
  ``clockInfo`` TPMS_CLOCK_INFO (``clock`` UINT64, ``resetCount`` UINT32,
  ``restartCount`` UINT32, ``safe`` TPMI_YES_NO), ``firmwareVersion`` UINT64, and
  ``attested`` TPMS_QUOTE_INFO: ``pcrSelect`` TPML_PCR_SELECTION (UINT32 count, then per
  bank TPMS_PCR_SELECTION: ``hash`` TPMI_ALG_HASH, ``sizeofSelect`` UINT8, ``pcrSelect``
  bitmap in which bit *j* of byte *i* selects PCR 8*i*+*j*) and ``pcrDigest``
  TPM2B_DIGEST. :func:`parse_attest` also takes the size-prefixed **TPM2B_ATTEST** that
  ``TPM2_Quote`` returns; the signature covers the TPMS_ATTEST inside it.
* **TPMT_SIGNATURE**: ``sigAlg`` (TPM_ALG_RSASSA 0x0014, TPM_ALG_RSAPSS 0x0016,
  TPM_ALG_ECDSA 0x0018), ``hash`` TPMI_ALG_HASH, then TPMS_SIGNATURE_RSA ``sig``
  TPM2B_PUBLIC_KEY_RSA or TPMS_SIGNATURE_ECC ``signatureR`` and ``signatureS``
  TPM2B_ECC_PARAMETER.
* **TPM2B_PUBLIC / TPMT_PUBLIC**: ``type`` (TPM_ALG_RSA 0x0001, TPM_ALG_ECC 0x0023),
  ``nameAlg``, ``objectAttributes`` TPMA_OBJECT, ``authPolicy`` TPM2B_DIGEST,
  ``parameters`` (TPMS_RSA_PARMS: ``symmetric``, ``scheme``, ``keyBits``, ``exponent``
  where 0 means 65537; TPMS_ECC_PARMS: ``symmetric``, ``scheme``, ``curveID``, ``kdf``)
  and ``unique`` (the RSA modulus, or the ECC point ``x``, ``y``). The key's Name is
  ``nameAlg || H_nameAlg(TPMT_PUBLIC)`` (Part 1, "Names").

Two facts the real quotes under ``shared/data/tpm/quotes`` confirm:

* ``pcrDigest`` is computed with the hash of the *signing scheme*, not that of the
  quoted bank: the Google vTPM quotes of the sha1 and sha384 banks carry a 32-byte
  SHA-256 ``pcrDigest`` because the AK signs with RSASSA-SHA256.
* ``qualifiedSigner`` is the AK's *qualified* name (a hash over its parents' names and
  its own), not its Name, so it cannot be compared with :attr:`AkPublic.name` without
  the hierarchy. The AK's identity comes from the trusted AK given to
  :func:`verify_quote` (or from an AK certificate, which is not checked here).
"""

from __future__ import annotations

import functools
import hmac
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeAlias

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from engine.attest.errors import QuoteError
from engine.attest.tpm_types import (
    ALG_AES,
    ALG_CAMELLIA,
    ALG_ECC,
    ALG_ECDAA,
    ALG_ECDH,
    ALG_ECMQV,
    ALG_ECSCHNORR,
    ALG_KDF1_SP800_56A,
    ALG_KDF1_SP800_108,
    ALG_KDF2,
    ALG_MGF1,
    ALG_NULL,
    ALG_OAEP,
    ALG_RSA,
    ALG_RSAES,
    ALG_SM2,
    ALG_SM4,
    HashAlg,
    Reader,
    SigScheme,
)

__all__ = [
    "AkPublic",
    "Attest",
    "ClockInfo",
    "HashAlg",
    "PcrSelection",
    "PublicArea",
    "SigScheme",
    "Signature",
    "load_public_key",
    "parse_attest",
    "parse_signature",
    "verify_quote",
]

STEP_QUOTE = "1 quote structure"
STEP_SIGNATURE_STRUCTURE = "1 signature structure"
STEP_AK = "1 AK public key"
STEP_SIGNATURE = "1 signature"
STEP_NONCE = "2 nonce"
STEP_PCR_DIGEST = "3 PCR digest"

TPM_GENERATED_VALUE = 0xFF544347
TPM_ST_ATTEST_QUOTE = 0x8018
_MAGIC = TPM_GENERATED_VALUE.to_bytes(4, "big")

# TPMA_OBJECT bits (Part 2, TPMA_OBJECT) that make a key an attestation key.
ATTR_RESTRICTED = 1 << 16
ATTR_SIGN = 1 << 18

_CURVES: dict[int, ec.EllipticCurve] = {
    0x0003: ec.SECP256R1(),  # TPM_ECC_NIST_P256
    0x0004: ec.SECP384R1(),  # TPM_ECC_NIST_P384
    0x0005: ec.SECP521R1(),  # TPM_ECC_NIST_P521
}
_CURVE_NAMES = {curve.name for curve in _CURVES.values()}

# The TPMU_ASYM_SCHEME members each key type may carry; the value says whether its
# details hold a hashAlg (TPMS_ENC_SCHEME_RSAES is empty).
_RSA_SCHEMES = {SigScheme.RSASSA: True, SigScheme.RSAPSS: True, ALG_RSAES: False,
                ALG_OAEP: True}
_ECC_SCHEMES = {SigScheme.ECDSA: True, ALG_ECDH: True, ALG_ECDAA: True, ALG_SM2: True,
                ALG_ECSCHNORR: True, ALG_ECMQV: True}
_SYMMETRIC = {ALG_AES, ALG_SM4, ALG_CAMELLIA}
_KDFS = {ALG_MGF1, ALG_KDF1_SP800_56A, ALG_KDF2, ALG_KDF1_SP800_108}

PublicKey: TypeAlias = rsa.RSAPublicKey | ec.EllipticCurvePublicKey


@dataclass(frozen=True, slots=True)
class ClockInfo:
    """TPMS_CLOCK_INFO: the TPM's clock when it signed."""

    clock: int
    """Milliseconds the TPM has been powered since its clock was last set."""
    reset_count: int
    """TPM resets (reboots) so far."""
    restart_count: int
    """TPM restarts / resumes since the last reset."""
    safe: bool
    """False when the clock may have gone backwards since it was last reported."""


@dataclass(frozen=True, slots=True)
class PcrSelection:
    """One TPMS_PCR_SELECTION: the PCRs of one bank that the quote covers."""

    hash_alg: HashAlg
    pcrs: tuple[int, ...]
    """PCR indexes, ascending."""

    @property
    def bank(self) -> str:
        return self.hash_alg.bank


@dataclass(frozen=True, slots=True)
class Attest:
    """A parsed TPMS_ATTEST of type TPM_ST_ATTEST_QUOTE."""

    raw: bytes
    """The TPMS_ATTEST bytes the signature covers (without any TPM2B_ATTEST size)."""
    qualified_signer: bytes
    """TPM2B_NAME of the signing key's qualified name (not its Name)."""
    extra_data: bytes
    """The qualifying data the verifier passed to TPM2_Quote: the nonce."""
    clock_info: ClockInfo
    firmware_version: int
    pcr_select: tuple[PcrSelection, ...]
    """The banks and PCRs covered, in the order the TPM hashed them."""
    pcr_digest: bytes
    """Hash of the selected PCR values, with the signing scheme's hash algorithm."""


@dataclass(frozen=True, slots=True)
class Signature:
    """A parsed TPMT_SIGNATURE."""

    scheme: SigScheme
    hash_alg: HashAlg
    value: bytes
    """RSA: the signature as is. ECDSA: ``signatureR`` and ``signatureS`` as DER."""


@dataclass(frozen=True, slots=True)
class PublicArea:
    """The TPMT_PUBLIC fields of a key that a verifier uses."""

    raw: bytes
    """The TPMT_PUBLIC bytes (what the Name hashes)."""
    name_alg: HashAlg
    object_attributes: int
    """TPMA_OBJECT bits; an AK has ``restricted`` (bit 16) and ``sign`` (bit 18)."""
    auth_policy: bytes
    scheme: int
    """TPM_ALG_ID of the key's fixed scheme; TPM_ALG_NULL (0x0010) when none is fixed."""
    scheme_hash: HashAlg | None
    """The scheme's hash algorithm; ``None`` when the scheme has none."""

    @property
    def name(self) -> bytes:
        """The key's TPM Name: ``nameAlg || H_nameAlg(TPMT_PUBLIC)``."""
        return self.name_alg.to_bytes(2, "big") + self.name_alg.digest(self.raw)


@dataclass(frozen=True, slots=True)
class AkPublic:
    """An attestation key's public part."""

    key: PublicKey
    public_area: PublicArea | None
    """The TPMT_PUBLIC it was loaded from; ``None`` for a SubjectPublicKeyInfo, which
    carries neither attributes, scheme nor Name."""

    @property
    def name(self) -> bytes | None:
        """The key's TPM Name; ``None`` when loaded from a SubjectPublicKeyInfo."""
        return self.public_area.name if self.public_area is not None else None


_MAGIC_AND_TYPE = struct.Struct(">IH")
_CLOCK_AND_FIRMWARE = struct.Struct(">QIIBQ")
"""TPMS_CLOCK_INFO (clock, resetCount, restartCount, safe) then firmwareVersion."""


def parse_attest(data: bytes) -> Attest:
    """Unmarshal a TPMS_ATTEST of a quote, bare or wrapped in a TPM2B_ATTEST.

    A bare TPMS_ATTEST starts with the magic; a TPM2B_ATTEST starts with a UINT16 size
    equal to the length of the rest, then the magic. Trailing bytes are rejected.
    """
    start = 0
    if data[:4] != _MAGIC and data[2:6] == _MAGIC:
        wrapper = Reader(data, step=STEP_QUOTE, struct="TPM2B_ATTEST")
        size = wrapper.u16("size")
        if size != len(data) - 2:
            raise wrapper.error("size", 0, f"says {size} bytes but {len(data) - 2} follow")
        start = 2
    r = Reader(data, step=STEP_QUOTE, struct="TPMS_ATTEST", offset=start)
    magic, attest_type = r.unpack(_MAGIC_AND_TYPE, "magic")
    if magic != TPM_GENERATED_VALUE:
        raise r.error("magic", start, f"0x{magic:08x} is not TPM_GENERATED_VALUE "
                      f"0x{TPM_GENERATED_VALUE:08x}")
    if attest_type != TPM_ST_ATTEST_QUOTE:
        raise r.error("type", start + 4, f"0x{attest_type:04x} is not TPM_ST_ATTEST_QUOTE "
                      f"0x{TPM_ST_ATTEST_QUOTE:04x}")
    qualified_signer = r.tpm2b("qualifiedSigner")
    extra_data = r.tpm2b("extraData")
    safe_at = r.offset + 16
    clock, reset_count, restart_count, safe, firmware_version = r.unpack(
        _CLOCK_AND_FIRMWARE, "clockInfo")
    if safe > 1:
        raise r.error("clockInfo.safe", safe_at, f"{safe} is not TPMI_YES_NO (0 or 1)")
    selections = _pcr_selections(r, "attested.quote.pcrSelect")
    pcr_digest = r.tpm2b("attested.quote.pcrDigest")
    r.finish()
    return Attest(
        raw=data[start:],
        qualified_signer=qualified_signer,
        extra_data=extra_data,
        clock_info=ClockInfo(clock, reset_count, restart_count, bool(safe)),
        firmware_version=firmware_version,
        pcr_select=selections,
        pcr_digest=pcr_digest,
    )


def _pcr_selections(r: Reader, field: str) -> tuple[PcrSelection, ...]:
    """A TPML_PCR_SELECTION."""
    count = r.u32(f"{field}.count")
    selections = []
    for i in range(count):
        item = f"{field}.pcrSelections[{i}]"
        hash_alg = r.hash_alg(f"{item}.hash")
        size = r.u8(f"{item}.sizeofSelect")
        bitmap = r.take(size, f"{item}.pcrSelect")
        pcrs = tuple(8 * octet_index + bit for octet_index, octet in enumerate(bitmap)
                     for bit in range(8) if octet >> bit & 1)
        selections.append(PcrSelection(hash_alg, pcrs))
    return tuple(selections)


def parse_signature(data: bytes) -> Signature:
    """Unmarshal a TPMT_SIGNATURE made with RSASSA, RSAPSS or ECDSA."""
    r = Reader(data, step=STEP_SIGNATURE_STRUCTURE, struct="TPMT_SIGNATURE")
    alg = r.u16("sigAlg")
    if alg == ALG_NULL:
        raise r.error("sigAlg", 0, "TPM_ALG_NULL: the quote is not signed")
    try:
        scheme = SigScheme(alg)
    except ValueError:
        raise r.error("sigAlg", 0, f"0x{alg:04x} is not TPM_ALG_RSASSA, TPM_ALG_RSAPSS or "
                      "TPM_ALG_ECDSA") from None
    hash_alg = r.hash_alg("signature.hash")
    if scheme is SigScheme.ECDSA:
        sig_r = r.tpm2b("signature.signatureR")
        sig_s = r.tpm2b("signature.signatureS")
        value = encode_dss_signature(int.from_bytes(sig_r, "big"), int.from_bytes(sig_s, "big"))
    else:
        value = r.tpm2b("signature.sig")
    r.finish()
    return Signature(scheme, hash_alg, value)


@functools.lru_cache(maxsize=1024)
def load_public_key(data: bytes) -> AkPublic:
    """Load an RSA or ECC public key: TPM2B_PUBLIC, TPMT_PUBLIC, or a PEM or DER
    SubjectPublicKeyInfo. Loaded keys are kept (they are immutable), so a verifier that
    loads each host's trusted AK for every quote pays for the parsing once.

    The format is told apart by its first bytes, in this order: ``-----BEGIN`` (PEM); a
    UINT16 size equal to the length of the rest (TPM2B_PUBLIC); 0x30, an ASN.1 SEQUENCE
    (DER); a TPMT_PUBLIC ``type`` of TPM_ALG_RSA or TPM_ALG_ECC. Only TPM forms give the
    key's Name, attributes and scheme.
    """
    if data.lstrip().startswith(b"-----BEGIN"):
        return _load_spki(data, pem=True)
    if len(data) >= 2 and int.from_bytes(data[:2], "big") == len(data) - 2:
        return _load_tpmt_public(data, offset=2)
    if data[:1] == b"\x30":
        return _load_spki(data, pem=False)
    if data[:2] in (ALG_RSA.to_bytes(2, "big"), ALG_ECC.to_bytes(2, "big")):
        return _load_tpmt_public(data, offset=0)
    raise QuoteError(STEP_AK, "not a TPM2B_PUBLIC, a TPMT_PUBLIC of an RSA or ECC key, "
                     "or a PEM or DER SubjectPublicKeyInfo")


def _load_spki(data: bytes, *, pem: bool) -> AkPublic:
    form = "PEM" if pem else "DER"
    try:
        key = (serialization.load_pem_public_key(data) if pem
               else serialization.load_der_public_key(data))
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise QuoteError(STEP_AK, f"not a {form} SubjectPublicKeyInfo: {exc}") from None
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name not in _CURVE_NAMES:
        raise QuoteError(STEP_AK, f"{form} key on curve {key.curve.name}; supported: NIST "
                         "P-256, P-384, P-521")
    if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise QuoteError(STEP_AK, f"{form} key of type {type(key).__name__}; an AK is RSA "
                         "or ECC")
    return AkPublic(key, None)


def _load_tpmt_public(data: bytes, *, offset: int) -> AkPublic:
    r = Reader(data, step=STEP_AK, struct="TPMT_PUBLIC", offset=offset)
    key_type = r.u16("type")
    if key_type not in (ALG_RSA, ALG_ECC):
        raise r.error("type", offset, f"0x{key_type:04x} is not TPM_ALG_RSA or TPM_ALG_ECC")
    name_alg = r.hash_alg("nameAlg")
    attributes = r.u32("objectAttributes")
    auth_policy = r.tpm2b("authPolicy")
    detail = "parameters.rsaDetail" if key_type == ALG_RSA else "parameters.eccDetail"
    _symmetric(r, f"{detail}.symmetric")
    schemes = _RSA_SCHEMES if key_type == ALG_RSA else _ECC_SCHEMES
    scheme, scheme_hash = _asym_scheme(r, f"{detail}.scheme", schemes)
    key: PublicKey
    if key_type == ALG_RSA:
        key_bits = r.u16(f"{detail}.keyBits")
        exponent = r.u32(f"{detail}.exponent") or 65537
        modulus_at = r.offset
        modulus = r.tpm2b("unique.rsa")
        if len(modulus) * 8 != key_bits:
            raise r.error("unique.rsa", modulus_at, f"{len(modulus)}-byte modulus for "
                          f"keyBits {key_bits}")
        try:
            key = rsa.RSAPublicNumbers(exponent, int.from_bytes(modulus, "big")).public_key()
        except ValueError as exc:
            raise r.error("unique.rsa", modulus_at, f"not an RSA public key: {exc}") from None
    else:
        curve_at = r.offset
        curve_id = r.u16(f"{detail}.curveID")
        curve = _CURVES.get(curve_id)
        if curve is None:
            raise r.error(f"{detail}.curveID", curve_at, f"0x{curve_id:04x} is not NIST "
                          "P-256 (0x0003), P-384 (0x0004) or P-521 (0x0005)")
        _kdf(r, f"{detail}.kdf")
        point_at = r.offset
        x = int.from_bytes(r.tpm2b("unique.ecc.x"), "big")
        y = int.from_bytes(r.tpm2b("unique.ecc.y"), "big")
        try:
            key = ec.EllipticCurvePublicNumbers(x, y, curve).public_key()
        except ValueError:
            raise r.error("unique.ecc", point_at, f"not a point on {curve.name}") from None
    r.finish()
    public_area = PublicArea(
        raw=data[offset:],
        name_alg=name_alg,
        object_attributes=attributes,
        auth_policy=auth_policy,
        scheme=scheme,
        scheme_hash=scheme_hash,
    )
    return AkPublic(key, public_area)


def _symmetric(r: Reader, field: str) -> None:
    """A TPMT_SYM_DEF_OBJECT: algorithm, then keyBits and mode unless it is NULL."""
    at = r.offset
    alg = r.u16(f"{field}.algorithm")
    if alg == ALG_NULL:
        return
    if alg not in _SYMMETRIC:
        raise r.error(f"{field}.algorithm", at, f"0x{alg:04x} is not a symmetric block "
                      "cipher or TPM_ALG_NULL")
    r.u16(f"{field}.keyBits")
    r.u16(f"{field}.mode")


def _asym_scheme(r: Reader, field: str, allowed: Mapping[int, bool]) -> tuple[int, HashAlg | None]:
    """A TPMT_RSA_SCHEME or TPMT_ECC_SCHEME: scheme, then its details."""
    at = r.offset
    scheme = r.u16(f"{field}.scheme")
    if scheme == ALG_NULL:
        return scheme, None
    if scheme not in allowed:
        raise r.error(f"{field}.scheme", at, f"0x{scheme:04x} is not a scheme of this key type")
    if not allowed[scheme]:
        return scheme, None
    hash_alg = r.hash_alg(f"{field}.details.hashAlg")
    if scheme == ALG_ECDAA:
        r.u16(f"{field}.details.count")
    return scheme, hash_alg


def _kdf(r: Reader, field: str) -> None:
    """A TPMT_KDF_SCHEME: scheme, then a hashAlg unless it is NULL."""
    at = r.offset
    scheme = r.u16(f"{field}.scheme")
    if scheme == ALG_NULL:
        return
    if scheme not in _KDFS:
        raise r.error(f"{field}.scheme", at, f"0x{scheme:04x} is not a key derivation scheme")
    r.hash_alg(f"{field}.details.hashAlg")


def verify_quote(
    attest_bytes: bytes,
    signature_bytes: bytes,
    ak: AkPublic,
    *,
    pcrs: Mapping[str, Mapping[int, bytes]] | None = None,
    expected_nonce: bytes | None = None,
) -> Attest:
    """Verify a TPM quote with a trusted AK and return what it attests.

    1. **Quote structure and signature.** ``attest_bytes`` is a TPMS_ATTEST of type
       TPM_ST_ATTEST_QUOTE (or a TPM2B_ATTEST around one) and ``signature_bytes`` a
       TPMT_SIGNATURE. When the AK was loaded from a TPMT_PUBLIC it must be a restricted
       signing key (a TPM signs any digest with an unrestricted key, so its "quotes" can
       be forged) and a scheme it fixes must be the signature's. The signature must
       verify over the TPMS_ATTEST bytes with the AK: RSASSA-PKCS1-v1_5; RSA-PSS with
       MGF1 of the same hash and one of the two salt lengths TPMs produce (the digest
       length, which FIPS 186-4 allows and the TCG reference code and libtpms use, or
       the largest the key allows, which TPM 2.0 Part 1 rev. 1.38 annex B.7 specifies);
       or ECDSA.
    2. **Nonce.** When ``expected_nonce`` is given, ``extraData`` must equal it. This is
       only the comparison: issuing nonces, their expiry and replay protection belong to
       the nonce store.
    3. **PCR digest.** When ``pcrs`` is given (bank name such as ``"sha256"`` → PCR
       index → value), the values of the selected PCRs, concatenated bank by bank in
       the order of ``pcrSelect`` and by ascending index, hashed with the signature's
       hash algorithm, must equal ``pcrDigest``. Every quoted PCR needs a value, and a
       value for a PCR the quote does not cover is refused: it would not be attested.
       Without ``pcrs`` only ``pcrDigest`` itself is attested.

    Each step fails with a :class:`QuoteError` whose ``step`` names it.
    """
    # (1): structure.
    attest = parse_attest(attest_bytes)
    signature = parse_signature(signature_bytes)
    _check_ak(ak, signature)
    # (1): signature over the TPMS_ATTEST bytes.
    _verify_signature(ak.key, signature, attest.raw)
    # (2): nonce.
    if expected_nonce is not None and not hmac.compare_digest(attest.extra_data,
                                                              expected_nonce):
        raise QuoteError(STEP_NONCE, f"the quote's extraData {attest.extra_data.hex() or '(empty)'}"
                         f" is not the expected nonce {expected_nonce.hex() or '(empty)'}",
                         tip="The quote was made for another challenge; request a new one.")
    # (3): PCR digest.
    if pcrs is not None:
        _check_pcr_digest(attest, signature.hash_alg, pcrs)
    return attest


def _check_ak(ak: AkPublic, signature: Signature) -> None:
    wanted = _scheme_name(signature.scheme, signature.hash_alg)
    is_rsa = isinstance(ak.key, rsa.RSAPublicKey)
    if is_rsa != (signature.scheme is not SigScheme.ECDSA):
        kind = "RSA" if is_rsa else "ECC"
        raise QuoteError(STEP_SIGNATURE, f"a {wanted} signature cannot come from an {kind} AK")
    area = ak.public_area
    if area is None:
        return
    needed = ATTR_RESTRICTED | ATTR_SIGN
    if area.object_attributes & needed != needed:
        raise QuoteError(STEP_AK, f"objectAttributes 0x{area.object_attributes:08x} lack "
                         "restricted and sign: a TPM signs any digest with such a key, so "
                         "quotes signed by it can be forged",
                         tip="Use the attestation key the host enrolled, not its EK or "
                         "another key.")
    if area.scheme != ALG_NULL and (area.scheme, area.scheme_hash) != (
            signature.scheme, signature.hash_alg):
        raise QuoteError(STEP_SIGNATURE, f"the AK's scheme is "
                         f"{_scheme_name(area.scheme, area.scheme_hash)} but the signature is "
                         f"{wanted}")


def _verify_signature(key: PublicKey, signature: Signature, data: bytes) -> None:
    if not _signature_valid(key, signature, data):
        raise QuoteError(STEP_SIGNATURE, f"the {_scheme_name(signature.scheme, signature.hash_alg)}"
                         " signature does not verify over the TPMS_ATTEST with this AK",
                         tip="Check that the AK is the host's enrolled AK and that the quote "
                         "and signature belong together.")


def _signature_valid(key: PublicKey, signature: Signature, data: bytes) -> bool:
    hash_alg = signature.hash_alg.algorithm()
    if isinstance(key, ec.EllipticCurvePublicKey):
        try:
            key.verify(signature.value, data, ec.ECDSA(hash_alg))
        except InvalidSignature:
            return False
        return True
    paddings: list[padding.AsymmetricPadding] = (
        [padding.PKCS1v15()] if signature.scheme is SigScheme.RSASSA
        else [padding.PSS(padding.MGF1(hash_alg), salt) for salt in _pss_salts(key, hash_alg)])
    for pad in paddings:
        try:
            key.verify(signature.value, data, pad, hash_alg)
        except InvalidSignature:
            continue
        return True
    return False


def _pss_salts(key: rsa.RSAPublicKey, hash_alg: hashes.HashAlgorithm) -> list[int]:
    """The two RSA-PSS salt lengths TPMs use: the digest's, then the largest the key
    allows (emLen - hLen - 2). Both are explicit: ``PSS.MAX_LENGTH`` would make OpenSSL
    accept any salt length when verifying."""
    largest = (key.key_size + 6) // 8 - hash_alg.digest_size - 2
    return [salt for salt in dict.fromkeys((hash_alg.digest_size, largest)) if salt >= 0]


def _scheme_name(scheme: int, hash_alg: HashAlg | None) -> str:
    """``RSASSA-sha256``; a scheme Vigil does not verify shows as its TPM_ALG_ID."""
    name = SigScheme(scheme).name if scheme in set(SigScheme) else f"0x{scheme:04x}"
    return f"{name}-{hash_alg.bank}" if hash_alg is not None else name


def quotes_these_values(attest: bytes, signature: bytes,
                        pcrs: Mapping[str, Mapping[int, bytes]]) -> bool:
    """Whether the marshalled quote's ``pcrDigest`` is the digest of exactly these PCR
    values (no signature check: what a host's agent asks of its own TPM's answer before
    sending it, the verifier checking everything again)."""
    try:
        parsed = parse_attest(attest)
        _check_pcr_digest(parsed, parse_signature(signature).hash_alg, pcrs)
    except QuoteError:
        return False
    return True


def _check_pcr_digest(attest: Attest, hash_alg: HashAlg,
                      pcrs: Mapping[str, Mapping[int, bytes]]) -> None:
    quoted: set[tuple[str, int]] = set()
    values: list[bytes] = []
    for selection in attest.pcr_select:
        bank = pcrs.get(selection.bank, {})
        size = selection.hash_alg.digest_size
        for index in selection.pcrs:
            value = bank.get(index)
            if value is None:
                raise QuoteError(STEP_PCR_DIGEST, f"the quote covers {selection.bank}:{index} "
                                 "but no value was given for it")
            if len(value) != size:
                raise QuoteError(STEP_PCR_DIGEST, f"{selection.bank}:{index} is {len(value)} "
                                 f"bytes; a {selection.bank} PCR holds {size}")
            values.append(value)
            quoted.add((selection.bank, index))
    # Every quoted PCR has a value, so any value beyond their number is unquoted.
    given = sum(len(bank_values) for bank_values in pcrs.values())
    if given != len(quoted):
        unquoted = sorted((name, index) for name, bank_values in pcrs.items()
                          for index in bank_values if (name, index) not in quoted)
        listed = ", ".join(f"{name}:{index}" for name, index in unquoted)
        raise QuoteError(STEP_PCR_DIGEST, f"values were given for PCRs the quote does not "
                         f"cover ({listed}); they are not attested")
    digest = hash_alg.digest(b"".join(values))
    if not hmac.compare_digest(digest, attest.pcr_digest):
        raise QuoteError(STEP_PCR_DIGEST, f"{hash_alg.bank} over the given PCR values is "
                         f"{digest.hex()}, the quote's pcrDigest is {attest.pcr_digest.hex()}",
                         tip="The PCR values reported by the host are not those the TPM "
                         "quoted.")
