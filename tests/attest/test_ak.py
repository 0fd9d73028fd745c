"""Attestation-key trust: the EK-bound enrollment's checks, and the AK certificate path
(proved end to end on swtpm: a provider CA certifies the AK, whose quotes then verify)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from engine.attest.agent import activate, enroll
from engine.attest.ak import (
    ActivationResponse,
    AkRegistry,
    AkTrustError,
    EnrollmentRequest,
    load_certificates,
    make_credential,
)
from engine.attest.lab import AK_HANDLE, HOST, make_site
from engine.attest.quote import load_public_key
from engine.attest.swtpm import Swtpm
from tests.attest.helpers import FakeClock

NOW = dt.datetime.now(dt.UTC)


def make_ca(name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW - dt.timedelta(days=1))
            .not_valid_after(NOW + dt.timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return key, cert


def ak_certificate(ca: tuple[ec.EllipticCurvePrivateKey, x509.Certificate], ak_public: bytes,
                   host: str) -> bytes:
    from cryptography.hazmat.primitives import serialization

    ca_key, ca_cert = ca
    public = load_public_key(ak_public).key
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"AK of {host}")]))
            .issuer_name(ca_cert.subject).public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(NOW - dt.timedelta(days=1))
            .not_valid_after(NOW + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture
def request_(swtpm: Swtpm) -> EnrollmentRequest:
    return enroll(HOST, tcti=swtpm.tcti, ak_handle=AK_HANDLE)


def test_ak_certificate_from_the_provider_ca_is_trusted_and_its_quotes_verify(
        swtpm: Swtpm, tmp_path: Path) -> None:
    site = make_site(swtpm, tmp_path)
    ca = make_ca("Provider AK CA")
    site.registry.ak_roots = (ca[1],)
    request = enroll("hv-cert", tcti=swtpm.tcti, ak_handle=AK_HANDLE + 1)

    trusted = site.registry.trust_ak_certificate(
        "hv-cert", request.ak_public, ak_certificate(ca, request.ak_public, "hv-cert"))

    assert trusted.method == "ak-certificate" and trusted.hardware_verified
    log = site.boot()
    site.approve(site.evidence(log))
    result = site.verifier.appraise(site.evidence(log, host="hv-cert",
                                                  ak_handle=AK_HANDLE + 1)).result
    assert result.status == "affirming", result.failures


def test_ak_certificate_from_another_ca_naming_another_host_or_key_is_refused(
        swtpm: Swtpm, tmp_path: Path, request_: EnrollmentRequest) -> None:
    provider, rogue = make_ca("Provider AK CA"), make_ca("Rogue CA")
    registry = AkRegistry(tmp_path / "a.sqlite3", ak_roots=[provider[1]])
    with pytest.raises(AkTrustError, match="does not chain to a configured CA"):
        registry.trust_ak_certificate(HOST, request_.ak_public,
                                      ak_certificate(rogue, request_.ak_public, HOST))
    with pytest.raises(AkTrustError, match="not hv-042"):
        registry.trust_ak_certificate(HOST, request_.ak_public,
                                      ak_certificate(provider, request_.ak_public, "hv-007"))
    # A certificate over another key (here the EK's) does not vouch for this AK.
    with pytest.raises(AkTrustError, match="certifies another key"):
        registry.trust_ak_certificate(HOST, request_.ak_public,
                                      ak_certificate(provider, request_.ek_public, HOST))
    with pytest.raises(AkTrustError, match="no CA is configured"):
        AkRegistry(tmp_path / "b.sqlite3").trust_ak_certificate(
            HOST, request_.ak_public, ak_certificate(provider, request_.ak_public, HOST))
    assert registry.trusted_aks(HOST) == []


def test_a_key_that_is_not_a_restricted_signing_key_is_never_an_ak(
        tmp_path: Path, request_: EnrollmentRequest) -> None:
    registry = AkRegistry(tmp_path / "a.sqlite3", unsafe_trust_ek_without_certificate=True)
    # The EK is a restricted *decryption* key.
    as_ak = request_.model_copy(update={"ak_public": request_.ek_public})
    with pytest.raises(AkTrustError, match="lacks sign"):
        registry.begin_enrollment(as_ak)


def test_an_ek_certificate_from_an_unknown_ca_is_refused(
        tmp_path: Path, request_: EnrollmentRequest) -> None:
    registry = AkRegistry(tmp_path / "a.sqlite3", ek_roots=[make_ca("Some TPM vendor")[1]])
    with pytest.raises(AkTrustError, match="EK certificate does not chain"):
        registry.begin_enrollment(request_)


def test_an_ek_certificate_for_another_ek_is_refused(
        swtpm: Swtpm, tmp_path: Path, request_: EnrollmentRequest) -> None:
    registry = AkRegistry(tmp_path / "a.sqlite3",
                          ek_roots=load_certificates([swtpm.template.ek_root,
                                                      swtpm.template.ek_intermediate]))
    other_ek = enroll(HOST, tcti=swtpm.tcti, ak_handle=AK_HANDLE + 1,
                      ek_type="EK-ECC256").ek_public
    with pytest.raises(AkTrustError, match="certifies another key than the EK"):
        registry.begin_enrollment(request_.model_copy(update={"ek_public": other_ek}))


def test_a_pending_enrollment_is_not_trust_and_a_wrong_proof_ends_it(
        swtpm: Swtpm, tmp_path: Path, request_: EnrollmentRequest) -> None:
    registry = AkRegistry(tmp_path / "a.sqlite3",
                          ek_roots=load_certificates([swtpm.template.ek_root,
                                                      swtpm.template.ek_intermediate]))
    challenge = registry.begin_enrollment(request_)
    name = load_public_key(request_.ak_public).name
    assert name is not None
    with pytest.raises(AkTrustError, match="no trusted AK"):
        registry.trusted_ak(HOST, name)
    wrong = ActivationResponse(host_id=HOST, ak_name=challenge.ak_name, proof=bytes(32))
    with pytest.raises(AkTrustError, match="activation proof is wrong"):
        registry.complete_enrollment(wrong)
    # The enrollment is over: even the right proof no longer counts.
    right = activate(challenge, tcti=swtpm.tcti, ak_handle=AK_HANDLE)
    with pytest.raises(AkTrustError, match="no enrollment"):
        registry.complete_enrollment(right)
    assert registry.trusted_aks(HOST) == []


def test_an_expired_challenge_is_refused(swtpm: Swtpm, tmp_path: Path,
                                         request_: EnrollmentRequest) -> None:
    clock = FakeClock()
    registry = AkRegistry(tmp_path / "a.sqlite3", now=clock,
                          ek_roots=load_certificates([swtpm.template.ek_root,
                                                      swtpm.template.ek_intermediate]))
    challenge = registry.begin_enrollment(request_)
    response = activate(challenge, tcti=swtpm.tcti, ak_handle=AK_HANDLE)
    clock.advance(11 * 60)
    with pytest.raises(AkTrustError, match="expired"):
        registry.complete_enrollment(response)


def test_the_activation_proof_never_contains_the_secret(
        swtpm: Swtpm, tmp_path: Path, request_: EnrollmentRequest) -> None:
    registry = AkRegistry(tmp_path / "a.sqlite3", unsafe_trust_ek_without_certificate=True)
    challenge = registry.begin_enrollment(request_.model_copy(update={"ek_certificate": None}))
    response = activate(challenge, tcti=swtpm.tcti, ak_handle=AK_HANDLE)
    trusted = registry.complete_enrollment(response)
    assert not trusted.hardware_verified
    assert len(response.proof) == 32
    row = registry._db.execute("SELECT count(*) FROM attest_ak_enrollments").fetchone()
    assert row == (0,)


def test_revoked_ak_is_no_longer_trusted(swtpm: Swtpm, tmp_path: Path) -> None:
    site = make_site(swtpm, tmp_path)
    name = site.registry.trusted_aks(HOST)[0].name
    assert site.registry.revoke(HOST, name)
    with pytest.raises(AkTrustError):
        site.registry.trusted_ak(HOST, name)


def test_make_credential_refuses_oversized_credentials(request_: EnrollmentRequest) -> None:
    with pytest.raises(AkTrustError, match="credential holds"):
        make_credential(request_.ek_public, bytes(33), b"\x00\x0b" + bytes(32))
    with pytest.raises(AkTrustError, match="unreadable"):
        make_credential(b"garbage", bytes(32), b"\x00\x0b" + bytes(32))
