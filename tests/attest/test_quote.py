"""TPM 2.0 quote parsing and verification (steps 1-3) against the real quotes in
``../shared/data/tpm/quotes`` and against quotes signed here with fresh software keys
(the data has no ECDSA or RSA-PSS quote)."""

from __future__ import annotations

import contextlib
import json
import random
import struct
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.attest.errors import QuoteError
from engine.attest.lab import QUOTE_CASES as CASES
from engine.attest.lab import LoadedQuote as Loaded
from engine.attest.lab import QuoteCase as Case
from engine.attest.lab import load_quote_case as load_case
from engine.attest.quote import (
    HashAlg,
    SigScheme,
    load_public_key,
    parse_attest,
    parse_signature,
    verify_quote,
)

# ---------------------------------------------------------------------------------------
# The real cases (engine.attest.lab: nonce, PCR values and the independently parsed
# TPMS_ATTEST come from each case's own info.json / quotes.json / PCR files).

CASE_IDS = [case.id for case in CASES]
SMALL_RSA = "keylime/tpm_util_test-checkquote"


@pytest.fixture(scope="session")
def quotes_dir(shared_data: Path) -> Path:
    return shared_data / "tpm" / "quotes"


@pytest.fixture(scope="session")
def loaded(shared_data: Path) -> dict[str, Loaded]:
    return {case.id: load_case(shared_data, case) for case in CASES}


@pytest.fixture(params=CASE_IDS)
def real(request: pytest.FixtureRequest, loaded: dict[str, Loaded]) -> Loaded:
    return loaded[request.param]


def flipped(data: bytes, index: int, mask: int = 0xFF) -> bytes:
    return data[:index] + bytes([data[index] ^ mask]) + data[index + 1:]


# ---------------------------------------------------------------------------------------
# Every real quote verifies, with every shipped form of its AK.


@pytest.mark.shared_data
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_real_quote_verifies_with_each_ak_form(case: Case, loaded: dict[str, Loaded]) -> None:
    real = loaded[case.id]
    for name, ak_bytes in real.aks.items():
        attest = real.verify(ak=load_public_key(ak_bytes))
        assert attest == parse_attest(real.attest), name


@pytest.mark.shared_data
def test_parsed_attest_matches_upstream_fields(real: Loaded) -> None:
    attest = parse_attest(real.attest)
    want = real.expected["attest"]
    assert attest.raw == real.attest
    assert attest.qualified_signer.hex() == want["qualifiedSigner"]
    assert attest.extra_data.hex() == want["extraData"] == real.nonce.hex()
    assert attest.clock_info.clock == want["clock"]
    assert attest.clock_info.reset_count == want["resetCount"]
    assert attest.clock_info.restart_count == want["restartCount"]
    assert attest.clock_info.safe == bool(want["safe"])
    assert attest.firmware_version == int(want["firmwareVersion"], 16)
    assert [(s.bank, list(s.pcrs)) for s in attest.pcr_select] == [
        (s["hash"], s["pcrs"]) for s in want["pcrSelect"]]
    assert attest.pcr_digest.hex() == want["pcrDigest"]


@pytest.mark.shared_data
def test_parsed_signature_matches_upstream_fields(real: Loaded) -> None:
    signature = parse_signature(real.signature)
    want = real.expected["signature"]
    assert signature.scheme == int(want["sigAlg"], 16) == SigScheme.RSASSA
    assert signature.hash_alg.bank == want["hash"]
    assert len(signature.value) == want["size"]


@pytest.mark.shared_data
def test_pcr_digest_uses_the_signing_hash_not_the_bank(loaded: dict[str, Loaded]) -> None:
    """The Google vTPM quotes of the sha1 and sha384 banks carry a SHA-256 pcrDigest."""
    for bank in ("sha1", "sha384"):
        real = loaded[f"go-tpm-tools/gce-cos-85-nonce9009/{bank}"]
        assert len(parse_attest(real.attest).pcr_digest) == 32
        assert parse_signature(real.signature).hash_alg is HashAlg.SHA256
        real.verify()


@pytest.mark.shared_data
def test_json_pcr_values_verify_too(quotes_dir: Path, loaded: dict[str, Loaded]) -> None:
    """The PCR values shipped as JSON are the same the serialized files hold."""
    windows = quotes_dir / "go-attestation/windows_gcp_shielded_vm/pcrs.json"
    sha1 = json.loads(windows.read_text())["sha1"]
    loaded["go-attestation/windows_gcp_shielded_vm"].verify(
        pcrs={"sha1": {int(i): bytes.fromhex(v) for i, v in sha1.items()}})
    info = json.loads((quotes_dir / "keylime/tpm_util_test-checkquote/info.json").read_text())
    loaded[SMALL_RSA].verify(pcrs={"sha256": {
        int(i): bytes.fromhex(v) for i, v in info["pcrs"]["sha256"].items()}})
    for quote in json.loads((quotes_dir / "go-tpm-tools/gce-cos-85-no-nonce/quotes.json")
                            .read_text())["quotes"]:
        bank = quote["bank"]
        loaded[f"go-tpm-tools/gce-cos-85-no-nonce/{bank}"].verify(
            pcrs={bank: {int(i): bytes.fromhex(v) for i, v in quote["pcrs"].items()}})


@pytest.mark.shared_data
def test_ak_name_matches_the_tpm(quotes_dir: Path) -> None:
    keylime = quotes_dir / "keylime/test-data-files"
    ak = load_public_key((keylime / "ak.pub").read_bytes())
    assert ak.name == (keylime / "ak.name").read_bytes()
    # The Windows AK's creation was certified: TPMS_CREATION_INFO (objectName TPM2B_NAME,
    # creationHash TPM2B_DIGEST) ends its TPMS_ATTEST.
    windows = quotes_dir / "go-attestation/windows_gcp_shielded_vm"
    creation = (windows / "ak.creation_attest.bin").read_bytes()
    object_name = creation[-70 + 2:-70 + 2 + 34]
    assert load_public_key((windows / "ak.pub").read_bytes()).name == object_name
    assert load_public_key((windows / "ak.tpmt_public.bin").read_bytes()).name == object_name
    assert load_public_key((windows / "ak.pem").read_bytes()).name is None


@pytest.mark.shared_data
def test_pcrs_are_optional(real: Loaded) -> None:
    assert real.verify(pcrs=None) == parse_attest(real.attest)


@pytest.mark.shared_data
def test_tpm2b_attest_wrapper_verifies(real: Loaded) -> None:
    wrapped = len(real.attest).to_bytes(2, "big") + real.attest
    assert real.verify(attest_bytes=wrapped).raw == real.attest
    with pytest.raises(QuoteError, match=r"TPM2B_ATTEST.size at offset 0"):
        parse_attest((len(real.attest) + 1).to_bytes(2, "big") + real.attest)


# ---------------------------------------------------------------------------------------
# Any change to the evidence fails.


@pytest.mark.shared_data
def test_every_bit_flip_of_the_attest_fails(real: Loaded) -> None:
    for index in range(len(real.attest)):
        for bit in range(8):
            with pytest.raises(QuoteError) as caught:
                real.verify(attest_bytes=flipped(real.attest, index, 1 << bit))
            assert caught.value.step.startswith("1 "), (index, bit, caught.value)


@pytest.mark.shared_data
def test_every_byte_flip_of_the_signature_fails(real: Loaded) -> None:
    for index in range(len(real.signature)):
        with pytest.raises(QuoteError) as caught:
            real.verify(signature_bytes=flipped(real.signature, index))
        assert caught.value.step.startswith("1 "), (index, caught.value)


@pytest.mark.shared_data
def test_every_bit_flip_of_one_signature_fails(loaded: dict[str, Loaded]) -> None:
    real = loaded[SMALL_RSA]
    for index in range(len(real.signature)):
        for bit in range(8):
            with pytest.raises(QuoteError):
                real.verify(signature_bytes=flipped(real.signature, index, 1 << bit))


@pytest.mark.shared_data
def test_another_cases_ak_fails(loaded: dict[str, Loaded]) -> None:
    gce = loaded["go-tpm-tools/gce-cos-85-nonce9009/sha256"]
    for other in (SMALL_RSA, "keylime/test-data-files"):
        with pytest.raises(QuoteError, match="does not verify") as caught:
            gce.verify(ak=loaded[other].ak)
        assert caught.value.step == "1 signature"


@pytest.mark.shared_data
def test_a_fresh_ak_fails(real: Loaded) -> None:
    key = rsa.generate_private_key(65537, 2048).public_key()
    for ak_bytes in (pem(key), tpm2b(rsa_public(key))):
        with pytest.raises(QuoteError, match="does not verify"):
            real.verify(ak=load_public_key(ak_bytes))


@pytest.mark.shared_data
def test_an_ak_with_another_scheme_fails(loaded: dict[str, Loaded]) -> None:
    """The Windows AK fixes RSASSA-SHA1; a signature with another hash is refused."""
    windows = loaded["go-attestation/windows_gcp_shielded_vm"]
    gce = loaded["go-tpm-tools/gce-cos-85-nonce9009/sha256"]
    with pytest.raises(QuoteError, match="AK's scheme is RSASSA-sha1 but the signature is "
                       "RSASSA-sha256"):
        gce.verify(ak=windows.ak)


@pytest.mark.shared_data
def test_an_ek_is_not_an_ak(quotes_dir: Path, loaded: dict[str, Loaded]) -> None:
    ek = load_public_key((quotes_dir / "keylime/test-data-files/ek.pub").read_bytes())
    with pytest.raises(QuoteError, match="lack restricted and sign") as caught:
        loaded["keylime/test-data-files"].verify(ak=ek)
    assert caught.value.step == "1 AK public key"


@pytest.mark.shared_data
def test_a_wrong_nonce_fails(real: Loaded) -> None:
    for nonce in (real.nonce + b"\x00", b"other", real.nonce[:-1]):
        if nonce == real.nonce:
            continue
        with pytest.raises(QuoteError) as caught:
            real.verify(expected_nonce=nonce)
        assert caught.value.step == "2 nonce"
    if real.nonce:
        with pytest.raises(QuoteError, match="2 nonce"):
            real.verify(expected_nonce=flipped(real.nonce, 0))
    assert real.verify(expected_nonce=None)


@pytest.mark.shared_data
def test_wrong_pcr_values_fail(real: Loaded) -> None:
    bank, values = next(iter(real.pcrs.items()))
    index = max(values)
    changed = {**real.pcrs, bank: {**values, index: flipped(values[index], 0)}}
    missing = {**real.pcrs, bank: {i: v for i, v in values.items() if i != index}}
    short = {**real.pcrs, bank: {**values, index: values[index][:-1]}}
    unquoted = {**real.pcrs, "sha512": {0: bytes(64)}}
    for pcrs, message in ((changed, "is not|pcrDigest is"), (missing, "no value was given"),
                          (short, "bytes; a"), (unquoted, r"does not cover \(sha512:0\)")):
        with pytest.raises(QuoteError, match=message) as caught:
            real.verify(pcrs=pcrs)
        assert caught.value.step == "3 PCR digest"


@pytest.mark.shared_data
def test_a_certify_creation_attest_is_not_a_quote(quotes_dir: Path) -> None:
    creation = (quotes_dir / "go-attestation/windows_gcp_shielded_vm/ak.creation_attest.bin")
    with pytest.raises(QuoteError, match=r"TPMS_ATTEST.type at offset 4: 0x801a is not "
                       "TPM_ST_ATTEST_QUOTE") as caught:
        parse_attest(creation.read_bytes())
    assert caught.value.step == "1 quote structure"


@pytest.mark.shared_data
def test_truncated_and_extended_inputs_fail(real: Loaded) -> None:
    """PEM is left out: it tolerates a missing final newline and trailing text."""
    tpm_aks = [data for name, data in real.aks.items() if not name.endswith(".pem")]
    for parse, data in ((parse_attest, real.attest), (parse_signature, real.signature),
                        *((load_public_key, ak) for ak in tpm_aks)):
        for end in range(len(data)):
            with pytest.raises(QuoteError):
                parse(data[:end])
        with pytest.raises(QuoteError):
            parse(data + b"\x00")
    with pytest.raises(QuoteError, match="2 trailing bytes"):
        parse_attest(real.attest + b"\x00\x00")
    with pytest.raises(QuoteError, match=r"truncated: needs \d+ bytes, \d+ left"):
        parse_attest(real.attest[:-1])


def test_wrong_magic_names_field_and_offset() -> None:
    with pytest.raises(QuoteError, match=r"TPMS_ATTEST.magic at offset 0: 0x00544347 is not "
                       "TPM_GENERATED_VALUE"):
        parse_attest(b"\x00\x54\x43\x47" + attest_body()[4:])


@pytest.mark.parametrize("parse", [parse_attest, parse_signature, load_public_key])
def test_empty_and_garbage_fail(parse: Any) -> None:
    noise = random.Random(2024)
    for data in (b"", b"\x00", b"\xff" * 3, bytes(noise.randrange(256) for _ in range(300)),
                 b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"):
        with pytest.raises(QuoteError):
            parse(data)


def test_unsigned_quote_is_refused() -> None:
    with pytest.raises(QuoteError, match="TPM_ALG_NULL: the quote is not signed"):
        parse_signature(struct.pack(">H", 0x0010))


# ---------------------------------------------------------------------------------------
# Quotes signed here: ECDSA, RSA-PSS, and AK attributes. Marshalling helpers build the
# TPM structures the parser reads.

RESTRICTED_SIGN = 0x00050072  # fixedTPM, fixedParent, sensitiveDataOrigin, userWithAuth,
#                               restricted, sign: the attributes of the Google vTPM AK
ECC_CURVE_IDS = {"secp256r1": 0x0003, "secp384r1": 0x0004, "secp521r1": 0x0005}


def b2(data: bytes) -> bytes:
    return struct.pack(">H", len(data)) + data


def tpm2b(public_area: bytes) -> bytes:
    return b2(public_area)


def pem(key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo)


def rsa_public(key: rsa.RSAPublicKey, *, attributes: int = RESTRICTED_SIGN,
               scheme: int = 0x0010, scheme_hash: int | None = None) -> bytes:
    numbers = key.public_numbers()
    details = struct.pack(">H", scheme_hash) if scheme_hash is not None else b""
    return (struct.pack(">HHI", 0x0001, HashAlg.SHA256, attributes) + b2(b"")
            + struct.pack(">HH", 0x0010, scheme) + details
            + struct.pack(">HI", key.key_size, 0 if numbers.e == 65537 else numbers.e)
            + b2(numbers.n.to_bytes(key.key_size // 8, "big")))


def ecc_public(key: ec.EllipticCurvePublicKey, *, scheme_hash: HashAlg) -> bytes:
    numbers = key.public_numbers()
    size = (key.curve.key_size + 7) // 8
    return (struct.pack(">HHI", 0x0023, HashAlg.SHA256, RESTRICTED_SIGN) + b2(b"")
            + struct.pack(">HHHHH", 0x0010, SigScheme.ECDSA, scheme_hash,
                          ECC_CURVE_IDS[key.curve.name], 0x0010)
            + b2(numbers.x.to_bytes(size, "big")) + b2(numbers.y.to_bytes(size, "big")))


def attest_body(*, nonce: bytes = b"nonce", pcrs: dict[int, bytes] | None = None,
                digest_alg: HashAlg = HashAlg.SHA256) -> bytes:
    """A TPMS_ATTEST quoting sha256 PCRs (index → value)."""
    pcrs = pcrs if pcrs is not None else {0: bytes(32), 7: b"\x07" * 32}
    bitmap = bytearray(3)
    for index in pcrs:
        bitmap[index // 8] |= 1 << index % 8
    digest = digest_alg.digest(b"".join(pcrs[i] for i in sorted(pcrs)))
    return (struct.pack(">IH", 0xFF544347, 0x8018) + b2(b"\x00\x0b" + bytes(32)) + b2(nonce)
            + struct.pack(">QIIBQ", 1234, 1, 0, 1, 0x2016051100162800)
            + struct.pack(">IHB", 1, HashAlg.SHA256, 3) + bytes(bitmap) + b2(digest))


def ecdsa_signature(private: ec.EllipticCurvePrivateKey, data: bytes, hash_alg: HashAlg) -> bytes:
    r, s = decode_dss_signature(private.sign(data, ec.ECDSA(hash_alg.algorithm())))
    size = (private.curve.key_size + 7) // 8
    return (struct.pack(">HH", SigScheme.ECDSA, hash_alg)
            + b2(r.to_bytes(size, "big")) + b2(s.to_bytes(size, "big")))


def rsa_signature(private: rsa.RSAPrivateKey, data: bytes, scheme: SigScheme,
                  hash_alg: HashAlg, salt: int = 0) -> bytes:
    pad: padding.AsymmetricPadding = (
        padding.PKCS1v15() if scheme is SigScheme.RSASSA
        else padding.PSS(padding.MGF1(hash_alg.algorithm()), salt))
    return struct.pack(">HH", scheme, hash_alg) + b2(private.sign(data, pad,
                                                                  hash_alg.algorithm()))


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 2048)


CURVES = [(ec.SECP256R1(), HashAlg.SHA256), (ec.SECP384R1(), HashAlg.SHA384),
          (ec.SECP521R1(), HashAlg.SHA512)]


@pytest.mark.parametrize(("curve", "hash_alg"), CURVES, ids=lambda v: getattr(v, "name", ""))
def test_ecdsa_quote_verifies(curve: ec.EllipticCurve, hash_alg: HashAlg) -> None:
    private = ec.generate_private_key(curve)
    pcrs = {0: bytes(32), 7: b"\x07" * 32}
    attest = attest_body(pcrs=pcrs, digest_alg=hash_alg)
    signature = ecdsa_signature(private, attest, hash_alg)
    public = private.public_key()
    for ak_bytes in (tpm2b(ecc_public(public, scheme_hash=hash_alg)),
                     ecc_public(public, scheme_hash=hash_alg), pem(public),
                     public.public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)):
        ak = load_public_key(ak_bytes)
        verify_quote(attest, signature, ak, pcrs={"sha256": pcrs}, expected_nonce=b"nonce")
        for index in range(len(attest)):
            with pytest.raises(QuoteError):
                verify_quote(flipped(attest, index), signature, ak)
    other = load_public_key(pem(ec.generate_private_key(curve).public_key()))
    with pytest.raises(QuoteError, match=r"ECDSA-sha\d+ signature does not verify"):
        verify_quote(attest, signature, other)


def test_ecc_ak_name_and_point_check() -> None:
    public = ec.generate_private_key(ec.SECP256R1()).public_key()
    area = ecc_public(public, scheme_hash=HashAlg.SHA256)
    assert load_public_key(tpm2b(area)).name == b"\x00\x0b" + HashAlg.SHA256.digest(area)
    off_curve = area[:-1] + bytes([area[-1] ^ 1])
    with pytest.raises(QuoteError, match=r"TPMT_PUBLIC.unique.ecc at offset \d+: not a point "
                       "on secp256r1"):
        load_public_key(tpm2b(off_curve))


@pytest.mark.parametrize("salt", ["digest", "max"])
def test_rsa_pss_quote_verifies_with_both_salt_rules(rsa_key: rsa.RSAPrivateKey,
                                                      salt: str) -> None:
    """The digest length (TCG reference code, libtpms, FIPS mode) and the largest salt
    (TPM 2.0 Part 1 rev. 1.38 B.7) are both produced by real TPMs."""
    attest = attest_body()
    length = 32 if salt == "digest" else rsa_key.key_size // 8 - 32 - 2
    signature = rsa_signature(rsa_key, attest, SigScheme.RSAPSS, HashAlg.SHA256, length)
    ak = load_public_key(tpm2b(rsa_public(rsa_key.public_key(), scheme=SigScheme.RSAPSS,
                                          scheme_hash=HashAlg.SHA256)))
    verify_quote(attest, signature, ak, pcrs={"sha256": {0: bytes(32), 7: b"\x07" * 32}})
    with pytest.raises(QuoteError, match="RSAPSS-sha256 signature does not verify"):
        verify_quote(flipped(attest, 40), signature, ak)


def test_rsa_pss_other_salt_lengths_are_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    attest = attest_body()
    ak = load_public_key(pem(rsa_key.public_key()))
    for salt in (0, 20, 33):
        signature = rsa_signature(rsa_key, attest, SigScheme.RSAPSS, HashAlg.SHA256, salt)
        with pytest.raises(QuoteError, match="does not verify"):
            verify_quote(attest, signature, ak)


def test_scheme_and_key_type_must_agree(rsa_key: rsa.RSAPrivateKey) -> None:
    attest = attest_body()
    rsassa = rsa_signature(rsa_key, attest, SigScheme.RSASSA, HashAlg.SHA256)
    pss_ak = load_public_key(tpm2b(rsa_public(rsa_key.public_key(), scheme=SigScheme.RSAPSS,
                                              scheme_hash=HashAlg.SHA256)))
    with pytest.raises(QuoteError, match="AK's scheme is RSAPSS-sha256 but the signature is "
                       "RSASSA-sha256"):
        verify_quote(attest, rsassa, pss_ak)
    ecdsa = ecdsa_signature(ec.generate_private_key(ec.SECP256R1()), attest, HashAlg.SHA256)
    with pytest.raises(QuoteError, match="ECDSA-sha256 signature cannot come from an RSA AK"):
        verify_quote(attest, ecdsa, pss_ak)
    ecc_ak = load_public_key(pem(ec.generate_private_key(ec.SECP256R1()).public_key()))
    with pytest.raises(QuoteError, match="cannot come from an ECC AK"):
        verify_quote(attest, rsassa, ecc_ak)


def test_unrestricted_key_is_refused(rsa_key: rsa.RSAPrivateKey) -> None:
    attest = attest_body()
    signature = rsa_signature(rsa_key, attest, SigScheme.RSASSA, HashAlg.SHA256)
    unrestricted = load_public_key(tpm2b(rsa_public(rsa_key.public_key(),
                                                    attributes=0x00040072)))
    with pytest.raises(QuoteError, match="lack restricted and sign"):
        verify_quote(attest, signature, unrestricted)
    # The same key as a SubjectPublicKeyInfo carries no attributes: the caller vouches.
    verify_quote(attest, signature, load_public_key(pem(rsa_key.public_key())))


def test_rsa_exponent_zero_means_65537(rsa_key: rsa.RSAPrivateKey) -> None:
    area = rsa_public(rsa_key.public_key())
    assert struct.unpack_from(">I", area, 16)[0] == 0
    assert load_public_key(tpm2b(area)).key.public_numbers() == \
        rsa_key.public_key().public_numbers()


def test_unsupported_key_forms_are_refused() -> None:
    ed25519 = Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(QuoteError, match="Ed25519PublicKey; an AK is RSA or ECC"):
        load_public_key(ed25519)
    secp256k1 = pem(ec.generate_private_key(ec.SECP256K1()).public_key())
    with pytest.raises(QuoteError, match="curve secp256k1"):
        load_public_key(secp256k1)
    keyedhash = struct.pack(">HH", 0x0008, HashAlg.SHA256) + bytes(8)
    with pytest.raises(QuoteError, match=r"TPMT_PUBLIC\.type at offset 2: 0x0008 is not"):
        load_public_key(tpm2b(keyedhash))


# ---------------------------------------------------------------------------------------
# Fuzzing: the parsers and the verifier only ever raise QuoteError.

FUZZ = settings(max_examples=200, deadline=None)


@FUZZ
@given(st.binary(max_size=600))
def test_fuzz_parsers_raise_only_quote_error(data: bytes) -> None:
    for parse in (parse_attest, parse_signature, load_public_key):
        with contextlib.suppress(QuoteError):
            parse(data)


@FUZZ
@given(st.sampled_from([b"\x00\x01", b"\x00\x23", b"\xff\x54\x43\x47\x80\x18",
                        b"\x00\x14\x00\x0b", b"\x00\x18\x00\x0b", b"\x00\x16\x00\x0c"]),
       st.binary(max_size=400), st.booleans())
def test_fuzz_structured_prefixes(prefix: bytes, rest: bytes, sized: bool) -> None:
    """Inputs that get past the first fields, bare or with a TPM2B size."""
    data = prefix + rest
    if sized:
        data = b2(data)
    for parse in (parse_attest, parse_signature, load_public_key):
        with contextlib.suppress(QuoteError):
            parse(data)


@pytest.mark.shared_data
@FUZZ
@given(case=st.sampled_from(CASE_IDS), which=st.sampled_from(["attest", "signature"]),
       edits=st.lists(st.tuples(st.integers(0, 300), st.integers(0, 255)), min_size=1,
                      max_size=4))
def test_fuzz_edited_real_quotes_never_verify(loaded: dict[str, Loaded], case: str, which: str,
                                              edits: list[tuple[int, int]]) -> None:
    real = loaded[case]
    data = bytearray(real.attest if which == "attest" else real.signature)
    for index, value in edits:
        data[index % len(data)] = value
    if bytes(data) in (real.attest, real.signature):
        return
    with pytest.raises(QuoteError):
        real.verify(**{f"{which}_bytes": bytes(data)})
