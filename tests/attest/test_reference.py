"""Step 5: signed reference manifests and matching evidence against them (no TPM needed:
the PCRs are what the test log replays to)."""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.attest.eventlog import parse
from engine.attest.evidence import Evidence, EvidenceError
from engine.attest.lab import COMPONENTS, IMAGE, ec_key_pem, key_pair
from engine.attest.manifests import (
    ExpectedEvent,
    ManifestError,
    ReferenceManifest,
    load_manifest,
    manifest_from_log,
    sign_manifest,
)
from engine.attest.matching import MatchReport, ReferenceSet
from engine.attest.signing_keys import KeyError_, load_signing_key, load_verification_key
from engine.attest.simboot import DEFAULT_BOOT, Boot, LogBuilder, hypervisor_boot
from engine.attest.uefi_names import describe_event
from engine.model import ImageRef
from tests.attest.helpers import ed25519_key_pem

NEXT = ImageRef(name="hv-base", version="2026.06.1")
CREATED = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def boot(boot_: Boot = DEFAULT_BOOT) -> tuple[dict[str, dict[int, bytes]], LogBuilder]:
    log = hypervisor_boot(boot_)
    pcrs = log.replay()
    for values in pcrs.values():  # the quote covers PCRs 0-23; 10-23 stay zero here
        for index in range(24):
            values.setdefault(index, bytes(len(next(iter(values.values())))))
    return pcrs, log


def manifest(boot_: Boot = DEFAULT_BOOT, image: ImageRef = IMAGE, **options: object
             ) -> ReferenceManifest:
    pcrs, log = boot(boot_)
    return manifest_from_log(image, pcrs, parse(log.encode()), components=COMPONENTS,
                             **options)  # type: ignore[arg-type]


def match(references: ReferenceSet, boot_: Boot = DEFAULT_BOOT,
          log_bytes: bytes | None = None) -> MatchReport:
    pcrs, log = boot(boot_)
    return references.match(pcrs, parse(log_bytes or log.encode()))


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


def test_keys_are_checked() -> None:
    with pytest.raises(KeyError_):
        load_signing_key(b"-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")
    with pytest.raises(KeyError_, match="P-256"):
        load_signing_key(ec_key_pem(ec.SECP256K1()))
    with pytest.raises(KeyError_, match="cannot read"):
        load_verification_key(Path("/nonexistent/key.pem"))


def test_reference_set_loads_a_folder_and_one_bad_signature_fails_it(tmp_path: Path) -> None:
    signer, verifier = key_pair()
    (tmp_path / "a.jws").write_text(sign_manifest(manifest(), signer))
    (tmp_path / "b.jws").write_text(sign_manifest(manifest(image=NEXT), signer))
    assert len(ReferenceSet.load(tmp_path, [verifier]).manifests) == 2
    (tmp_path / "c.jws").write_text("garbage")
    with pytest.raises(ManifestError, match=r"c\.jws"):
        ReferenceSet.load(tmp_path, [verifier])


def test_a_manifest_needs_pcrs_or_events() -> None:
    with pytest.raises(ValueError, match="needs expected PCR values"):
        ReferenceManifest(image=IMAGE, created_at=CREATED)
    with pytest.raises(ValueError, match="event_pcrs does not list"):
        ReferenceManifest(image=IMAGE, created_at=CREATED, event_pcrs=[4],
                          events=[ExpectedEvent(pcr=7, type="EV_SEPARATOR",
                                                component="separator", digests={})])


# -- matching --------------------------------------------------------------------------------


def test_the_same_boot_matches_its_image_version() -> None:
    references = ReferenceSet([manifest(Boot().but(kernel=b"new kernel"), NEXT), manifest()])
    report = match(references)
    assert report.matched is not None and report.matched.image == IMAGE
    assert report.differences == ()
    other = match(references, Boot().but(kernel=b"new kernel")).matched
    assert other is not None and other.image == NEXT


def test_one_changed_component_is_named_with_expected_and_actual() -> None:
    references = ReferenceSet([manifest()])
    report = match(references, Boot().but(microcode=b"intel-ucode rev 0x5003605"))
    assert report.matched is None
    (difference,) = report.differences
    assert (difference.kind, difference.pcr, difference.component, difference.aspect) == \
        ("event-changed", 1, "CPU microcode", "executables")
    assert difference.expected != difference.actual
    assert "PCR 1 CPU microcode (EV_CPU_MICROCODE, event 3): sha256 digest expected" in \
        difference.reason()


def test_a_changed_kernel_command_line_is_a_configuration_difference() -> None:
    report = match(ReferenceSet([manifest()]), Boot().but(
        cmdline="/boot/vmlinuz-6.1.0-18-amd64 root=/dev/vda1 ro init=/bin/sh"))
    (difference,) = report.differences
    assert difference.component == "kernel command line"
    assert difference.aspect == "configuration"


def test_a_missing_and_an_extra_event_are_told_apart() -> None:
    references = ReferenceSet([manifest()])
    pcrs, full = boot()
    # The same boot without the Secure Boot dbx measurement (as if dbx were empty), and
    # with an extra driver in PCR 2: built by hand, then quoted PCRs follow the log.
    shorter = LogBuilder()
    for chunk in full.chunks[1:]:
        if "dbx".encode("utf-16-le") not in chunk:
            shorter.chunks.append(chunk)
    shorter.add(2, 0x80000004, b"option ROM driver")
    log = parse(shorter.encode())
    quoted = {bank: {**pcrs[bank], **values} for bank, values in log.replay().items()}
    kinds = {(d.kind, d.pcr, d.component) for d in references.match(quoted, log).differences}
    assert ("event-missing", 7, "Secure Boot variable dbx") in kinds
    assert ("event-unexpected", 2, "boot driver") in kinds


def test_a_pcr_only_manifest_names_the_pcr() -> None:
    pcr_only = manifest(pcrs=range(8))
    pcr_only = pcr_only.model_copy(update={"events": [], "event_pcrs": []})
    report = match(ReferenceSet([pcr_only]), Boot().but(pk=b"another PK"))
    banks = {d.bank for d in report.differences}
    assert {d.pcr for d in report.differences} == {7} and banks == {"sha1", "sha256", "sha384"}
    assert report.differences[0].reason().startswith("PCR 7 sha")


def test_the_closest_image_is_reported() -> None:
    references = ReferenceSet([manifest(Boot().but(shim=b"x", grub=b"y"), NEXT), manifest()])
    report = match(references, Boot().but(grub=b"grub 2.12-2"))
    assert report.closest is not None and report.closest.manifest.image == IMAGE
    assert len(report.differences) == 1
    assert "grubx64.efi" in (report.differences[0].component or "")


def test_evidence_without_an_event_log_cannot_match_event_pins() -> None:
    pcrs, _ = boot()
    report = ReferenceSet([manifest()]).match(pcrs, None)
    assert "no event log" in (report.differences[0].actual or "")


def test_event_labels_name_what_was_measured() -> None:
    labels = [describe_event(e)[0] for e in parse(hypervisor_boot().encode()).events]
    for expected in ["S-CRTM version", "platform firmware blob fvMain", "CPU microcode",
                     "Secure Boot variable PK", "Secure Boot variable KEK",
                     "Secure Boot variable db", "Secure Boot variable dbx",
                     r"boot application \EFI\debian\shimx64.efi",
                     r"boot application \EFI\debian\grubx64.efi", "kernel command line",
                     "Secure Boot authority from db"]:
        assert expected in labels


# -- garbage in ------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2048))
def test_garbage_manifests_are_rejected_not_crashed_on(data: bytes) -> None:
    _, verifier = key_pair(_PEM)
    with pytest.raises(ManifestError):
        load_manifest(data, [verifier])


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.binary(max_size=512), st.text(max_size=512)))
def test_garbage_evidence_is_rejected_not_crashed_on(data: bytes | str) -> None:
    with pytest.raises(EvidenceError):
        Evidence.from_json(data)


_PEM = ec_key_pem()
