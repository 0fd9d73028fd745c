"""End to end on Debian's swtpm: enroll an AK, boot (extend PCRs as firmware would and
keep the matching event log), collect evidence over a verifier nonce, verify it, match it
to a signed reference manifest, get a signed result; then break one thing at a time."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from engine.attest.agent import TpmError, enroll
from engine.attest.ak import AkRegistry
from engine.attest.evidence import Evidence
from engine.attest.lab import (
    AK_HANDLE,
    COMPONENTS,
    HOST,
    IMAGE,
    Site,
    enroll_host,
    key_pair,
    make_site,
)
from engine.attest.result import verify_result
from engine.attest.simboot import Boot
from engine.attest.swtpm import Swtpm
from engine.attest.verify import Verifier
from tests.attest.helpers import FakeClock

pytestmark = pytest.mark.filterwarnings("error")


@pytest.fixture
def site(swtpm: Swtpm, tmp_path: Path) -> Site:
    return make_site(swtpm, tmp_path)


def steps(appraisal_failures: list) -> list[str]:  # type: ignore[type-arg]
    return [f.step for f in appraisal_failures]


def test_known_good_boot_is_affirmed_and_a_changed_kernel_is_contraindicated(
        site: Site) -> None:
    log = site.boot()
    site.approve(site.evidence(log))

    good = site.verifier.appraise(site.evidence(log))

    assert good.result.status == "affirming", good.result.failures
    assert good.result.image == IMAGE
    assert good.result.components == COMPONENTS
    vector = good.result.trust_vector
    assert (vector.instance_identity, vector.hardware, vector.executables,
            vector.configuration) == (2, 2, 3, 2)
    offline = verify_result(good.token, site.result_public)
    assert offline == good.result
    summary = offline.summary().model_dump(mode="json")
    assert set(summary) == {"status", "issued_at", "verifier_id", "image", "trust_vector",
                            "failures", "components"}
    assert summary["image"] == {"name": "hv-base", "version": "2026.05.1"}
    assert summary["trust_vector"]["instance_identity"] == 2

    # The host reboots into the same image but with another kernel binary.
    changed = site.boot(Boot().but(kernel=b"vmlinuz-6.1.0-18-amd64 with a backdoor"),
                        reboot=True)
    bad = site.verifier.appraise(site.evidence(changed))

    assert bad.result.status == "contraindicated"
    assert bad.result.image is None and bad.result.components == []
    assert bad.result.trust_vector.executables == 96
    assert bad.result.trust_vector.configuration == 2
    reasons = [f.reason for f in bad.result.failures]
    assert set(steps(bad.result.failures)) == {"5 reference values"}
    assert "closest is hv-base 2026.05.1 with 2 differences" in reasons[0]
    kernel = [r for r in reasons if "boot application /boot/vmlinuz-6.1.0-18-amd64" in r]
    assert len(kernel) == 1 and "PCR 4" in kernel[0] and "expected" in kernel[0]
    assert any("PCR 9 file /boot/vmlinuz-6.1.0-18-amd64" in r for r in reasons)
    assert verify_result(bad.token, site.result_public).status == "contraindicated"


def test_changed_secure_boot_db_is_a_configuration_difference(site: Site) -> None:
    site.approve(site.evidence(site.boot()))
    changed = site.boot(Boot().but(db=b"db: an attacker's CA"), reboot=True)

    result = site.verifier.appraise(site.evidence(changed)).result

    assert result.status == "contraindicated"
    assert (result.trust_vector.configuration, result.trust_vector.executables) == (96, 3)
    assert any("PCR 7 Secure Boot variable db (EV_EFI_VARIABLE_DRIVER_CONFIG" in f.reason
               for f in result.failures)


def test_a_replayed_quote_is_rejected(site: Site) -> None:
    log = site.boot()
    site.approve(site.evidence(log))
    evidence = site.evidence(log)
    assert site.verifier.appraise(evidence).result.status == "affirming"

    replay = site.verifier.appraise(evidence).result

    assert replay.status == "contraindicated"
    assert steps(replay.failures) == ["2 nonce"]
    assert "already used" in replay.failures[0].reason
    assert replay.trust_vector.instance_identity == 99


def test_an_expired_nonce_is_rejected(swtpm: Swtpm, tmp_path: Path) -> None:
    clock = FakeClock()
    site = make_site(swtpm, tmp_path, clock=clock)
    log = site.boot()
    site.approve(site.evidence(log))
    nonce = site.verifier.issue_nonce(HOST)
    evidence = site.evidence(log, nonce=nonce.value)
    clock.advance(301)

    result = site.verifier.appraise(evidence).result

    assert steps(result.failures) == ["2 nonce"]
    assert "expired" in result.failures[0].reason


def test_a_nonce_issued_to_another_host_or_never_issued_is_rejected(site: Site) -> None:
    log = site.boot()
    other = site.verifier.issue_nonce("hv-999").value
    result = site.verifier.appraise(site.evidence(log, nonce=other)).result
    assert "issued to another host" in result.failures[0].reason

    result = site.verifier.appraise(site.evidence(log, nonce=b"\x07" * 32)).result
    assert "was not issued by this verifier" in result.failures[0].reason


def test_evidence_whose_nonce_field_differs_from_the_quote_is_rejected(site: Site) -> None:
    evidence = site.evidence(site.boot())
    forged = evidence.model_copy(update={"nonce": site.verifier.issue_nonce(HOST).value})

    result = site.verifier.appraise(forged).result

    assert steps(result.failures) == ["2 nonce"]
    assert "extraData is not the evidence's nonce" in result.failures[0].reason


def test_a_quote_signed_by_an_unenrolled_ak_is_rejected(site: Site) -> None:
    log = site.boot()
    # A second AK in the same TPM, created but never enrolled.
    enroll(HOST, tcti=site.tpm.tcti, ak_handle=AK_HANDLE + 1)
    evidence = site.evidence(log, ak_handle=AK_HANDLE + 1)

    result = site.verifier.appraise(evidence).result

    assert steps(result.failures) == ["1 AK trust"]
    assert "not one of host hv-042's trusted AKs" in result.failures[0].reason
    assert result.trust_vector.instance_identity == 97


def test_an_ak_swapped_in_the_evidence_does_not_verify(site: Site) -> None:
    log = site.boot()
    enroll(HOST, tcti=site.tpm.tcti, ak_handle=AK_HANDLE + 1)
    trusted = site.evidence(log)
    rogue = site.evidence(log, ak_handle=AK_HANDLE + 1)
    # The rogue quote claims to come from the trusted AK.
    swapped = rogue.model_copy(update={"ak_public": trusted.ak_public})

    result = site.verifier.appraise(swapped).result

    assert steps(result.failures) == ["1 signature"]
    assert result.trust_vector.instance_identity == 99


def test_the_same_ak_is_not_trusted_for_another_host(site: Site) -> None:
    evidence = site.evidence(site.boot())
    other = evidence.model_copy(update={"host_id": "hv-007"})
    result = site.verifier.appraise(other).result
    assert steps(result.failures) == ["1 AK trust"]
    assert "host hv-007 has no trusted AK" in result.failures[0].reason


def test_tampered_pcr_values_fail_step_3(site: Site) -> None:
    evidence = site.evidence(site.boot())
    pcrs = {bank: dict(values) for bank, values in evidence.pcrs.items()}
    pcrs["sha256"][7] = bytes(32)
    result = site.verifier.appraise(evidence.model_copy(update={"pcrs": pcrs})).result
    assert steps(result.failures) == ["3 PCR digest"]
    assert result.trust_vector.executables == 99


def test_an_event_log_with_one_digest_changed_or_an_event_removed_fails_step_4(
        site: Site) -> None:
    log = site.boot()
    good = log.read_bytes()
    evidence = site.evidence(log)
    # The last event is PCR 9's initrd; flip a byte of its sha256 digest.
    digest_at = good.rindex(b"\x0b\x00") + 2
    changed = good[:digest_at] + bytes((good[digest_at] ^ 1,)) + good[digest_at + 1:]
    result = site.verifier.appraise(evidence.model_copy(update={"eventlog": changed})).result
    assert steps(result.failures) == ["4 event log"]
    assert "PCR 9" in result.failures[0].reason

    evidence = site.evidence(log)
    last = good.rindex(b"\x09\x00\x00\x00\x0d\x00\x00\x00")  # pcr 9, EV_IPL header
    result = site.verifier.appraise(evidence.model_copy(update={"eventlog": good[:last]})).result
    assert steps(result.failures) == ["4 event log"]

    evidence = site.evidence(log)
    result = site.verifier.appraise(evidence.model_copy(update={"eventlog": b"garbage"})).result
    assert steps(result.failures) == ["4 event log"]


def test_no_approved_manifest_fails_closed(site: Site) -> None:
    result = site.verifier.appraise(site.evidence(site.boot())).result
    assert result.status == "contraindicated"
    assert "no approved image manifest is configured" in result.failures[0].reason


def test_evidence_survives_a_json_round_trip(site: Site, tmp_path: Path) -> None:
    evidence = site.evidence(site.boot())
    path = tmp_path / "evidence.json"
    evidence.dump(path)
    assert Evidence.load(path) == evidence


def test_ecc_ek_without_certificate_is_refused_unless_unsafe_tofu_is_set(
        swtpm: Swtpm, tmp_path: Path) -> None:
    from engine.attest.ak import AkTrustError

    site = make_site(swtpm, tmp_path)
    # swtpm_setup certifies an RSA and a P-384 EK; a P-256 EK has no certificate.
    with pytest.raises(AkTrustError, match="no EK certificate"):
        enroll_host(swtpm, site.registry, host="hv-ecc", ak_handle=AK_HANDLE + 2,
                    ek_type="EK-ECC256", ak_type="ecc256")
    site.registry.unsafe_trust_ek_without_certificate = True
    enroll_host(swtpm, site.registry, host="hv-ecc", ak_handle=AK_HANDLE + 2,
                ek_type="EK-ECC256", ak_type="ecc256", replace=True)
    log = site.boot()
    site.approve(site.evidence(log))
    evidence = site.evidence(log, host="hv-ecc", ak_handle=AK_HANDLE + 2)

    result = site.verifier.appraise(evidence).result

    # ECDH + KDFe MakeCredential worked, the ECDSA quote verifies, but nothing vouches
    # for the TPM: no hardware claim.
    assert result.status == "affirming", result.failures
    assert result.trust_vector.hardware == 0
    assert not site.registry.trusted_aks("hv-ecc")[0].hardware_verified


def test_a_tpm_cannot_activate_a_credential_made_for_another_ak(site: Site) -> None:
    from engine.attest.agent import activate

    request = enroll("hv-043", tcti=site.tpm.tcti, ak_handle=AK_HANDLE + 3)
    challenge = site.registry.begin_enrollment(request)
    # The challenge is rebound to the already-trusted AK's name: the TPM refuses.
    trusted_name = site.registry.trusted_aks(HOST)[0].name
    wrong = challenge.model_copy(update={"ak_name": trusted_name})
    with pytest.raises(TpmError):
        activate(wrong, tcti=site.tpm.tcti, ak_handle=AK_HANDLE)
    assert site.registry.trusted_aks("hv-043") == []


def test_appraisal_needs_a_result_key(site: Site) -> None:
    from engine.errors import ConfigError

    bare = Verifier(nonces=site.nonces, aks=site.registry, references=site.verifier.references,
                    signing_key=None)
    with pytest.raises(ConfigError):
        bare.appraise(site.evidence(site.boot()))


def test_a_result_signed_by_another_key_is_rejected_offline(site: Site) -> None:
    from engine.attest.result import ResultError

    token = site.verifier.appraise(site.evidence(site.boot())).token
    _, other = key_pair()
    with pytest.raises(ResultError, match="does not verify"):
        verify_result(token, other)


def test_registry_survives_reopening(site: Site) -> None:
    again = AkRegistry(site.registry.path)
    assert [dataclasses.astuple(a) for a in again.trusted_aks(HOST)] == \
        [dataclasses.astuple(a) for a in site.registry.trusted_aks(HOST)]
    again.close()
