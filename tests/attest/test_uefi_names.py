"""What each event of a measured boot is named as."""

from __future__ import annotations

from engine.attest.eventlog import parse
from engine.attest.simboot import hypervisor_boot
from engine.attest.uefi_names import describe_event


def test_event_labels_name_what_was_measured() -> None:
    labels = [describe_event(e)[0] for e in parse(hypervisor_boot().encode()).events]
    for expected in ["S-CRTM version", "platform firmware blob fvMain", "CPU microcode",
                     "Secure Boot variable PK", "Secure Boot variable KEK",
                     "Secure Boot variable db", "Secure Boot variable dbx",
                     r"boot application \EFI\debian\shimx64.efi",
                     r"boot application \EFI\debian\grubx64.efi", "kernel command line",
                     "Secure Boot authority from db"]:
        assert expected in labels

