"""Step 5: matching evidence against reference manifests (no TPM needed: the PCRs are
what the test log replays to)."""

from __future__ import annotations

from engine.attest.eventlog import parse
from engine.attest.lab import IMAGE
from engine.attest.matching import ReferenceSet
from engine.attest.simboot import Boot, LogBuilder
from tests.attest.helpers import NEXT, boot, manifest, match


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

