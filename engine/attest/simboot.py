"""A simulated measured boot: crypto-agile TCG event logs (TCG PC Client Platform
Firmware Profile) written together with the PCR extends that produce them.

This plays the firmware's part on a software-TPM host (``vigil agent simulate boot``,
the demo, the tests): a real host's firmware writes its own log.

:class:`LogBuilder` writes the Spec ID event and ``TCG_PCR_EVENT2`` events, and records
for each extended event the digests to extend into a TPM, so that a software TPM
extended with :attr:`LogBuilder.extends` holds exactly the PCRs the log replays to.
:func:`hypervisor_boot` is a realistic UEFI Secure Boot of a Linux/KVM host (S-CRTM,
firmware blob, microcode, PK/KEK/db/dbx, shim, GRUB, kernel, command line), each
component replaceable, so a test can change exactly one measured component.

Run as a script to write a sample log: ``python -m engine.attest.simboot OUT``.
"""

from __future__ import annotations

import hashlib
import struct
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path

EV_NO_ACTION = 0x03
EV_SEPARATOR = 0x04
EV_S_CRTM_VERSION = 0x08
EV_CPU_MICROCODE = 0x09
EV_IPL = 0x0D
EV_EFI_VARIABLE_DRIVER_CONFIG = 0x80000001
EV_EFI_VARIABLE_BOOT = 0x80000002
EV_EFI_BOOT_SERVICES_APPLICATION = 0x80000003
EV_EFI_ACTION = 0x80000007
EV_EFI_PLATFORM_FIRMWARE_BLOB2 = 0x8000000A
EV_EFI_VARIABLE_AUTHORITY = 0x800000E0

ALG_IDS = {"sha1": 0x0004, "sha256": 0x000B, "sha384": 0x000C, "sha512": 0x000D}
EFI_GLOBAL_VARIABLE = bytes.fromhex("61dfe48bca93d211aa0d00e098032b8c")
EFI_IMAGE_SECURITY_DATABASE = bytes.fromhex("cbb219d73a3d9645a3bcdad00e67656f")


def spec_id_event(banks: tuple[str, ...]) -> bytes:
    """The first event: a TCG_PCR_EVENT (SHA1 format) whose data is Spec ID Event03."""
    data = b"Spec ID Event03\x00" + struct.pack("<IBBBBI", 0, 0, 2, 0, 2, len(banks))
    for bank in banks:
        data += struct.pack("<HH", ALG_IDS[bank], hashlib.new(bank).digest_size)
    data += b"\x00"
    return struct.pack("<II20sI", 0, EV_NO_ACTION, bytes(20), len(data)) + data


def uefi_variable(name: str, data: bytes, guid: bytes = EFI_GLOBAL_VARIABLE) -> bytes:
    """UEFI_VARIABLE_DATA."""
    encoded = name.encode("utf-16-le")
    return guid + struct.pack("<QQ", len(name), len(data)) + encoded + data


def image_load(path: str) -> bytes:
    """UEFI_IMAGE_LOAD_EVENT with a device path of one file path node."""
    text = (path + "\x00").encode("utf-16-le")
    device_path = struct.pack("<BBH", 4, 4, 4 + len(text)) + text + struct.pack("<BBH", 0x7F,
                                                                                0xFF, 4)
    return struct.pack("<QQQQ", 0x7000_0000, 0x10_0000, 0, len(device_path)) + device_path


def firmware_blob2(description: str, base: int, length: int) -> bytes:
    raw = description.encode()
    return bytes((len(raw),)) + raw + struct.pack("<QQ", base, length)


@dataclass
class LogBuilder:
    """A crypto-agile log under construction."""

    banks: tuple[str, ...] = ("sha1", "sha256", "sha384")
    chunks: list[bytes] = field(default_factory=list)
    extends: list[tuple[int, dict[str, bytes]]] = field(default_factory=list)
    """(PCR, bank -> digest) for each extended event, in order."""

    def __post_init__(self) -> None:
        self.chunks.append(spec_id_event(self.banks))

    def add(self, pcr: int, event_type: int, data: bytes, measured: bytes | None = None
            ) -> LogBuilder:
        """An event whose digests are the hashes of ``measured`` (default: ``data``)."""
        payload = data if measured is None else measured
        digests = {bank: hashlib.new(bank, payload).digest() for bank in self.banks}
        return self.add_digests(pcr, event_type, data, digests)

    def add_digests(self, pcr: int, event_type: int, data: bytes,
                    digests: dict[str, bytes]) -> LogBuilder:
        body = struct.pack("<III", pcr, event_type, len(digests))
        for bank, digest in digests.items():
            body += struct.pack("<H", ALG_IDS[bank]) + digest
        body += struct.pack("<I", len(data)) + data
        self.chunks.append(body)
        if event_type != EV_NO_ACTION:
            self.extends.append((pcr, digests))
        return self

    def encode(self) -> bytes:
        return b"".join(self.chunks)

    def replay(self) -> dict[str, dict[int, bytes]]:
        """The PCR values the log replays to (PCR 0 starting at locality 0)."""
        pcrs: dict[str, dict[int, bytes]] = {bank: {} for bank in self.banks}
        for pcr, digests in self.extends:
            for bank, digest in digests.items():
                size = hashlib.new(bank).digest_size
                old = pcrs[bank].get(pcr, bytes(size))
                pcrs[bank][pcr] = hashlib.new(bank, old + digest).digest()
        return pcrs


@dataclass(frozen=True)
class Boot:
    """The measured components of one boot of a hypervisor host."""

    crtm_version: str = "EDK II 2024.02"
    firmware: bytes = b"OVMF firmware volume fvMain 2024.02"
    microcode: bytes = b"intel-ucode 06-55-07 rev 0x5003604"
    secure_boot: bytes = b"\x01"
    pk: bytes = b"PK: Vigil test platform key"
    kek: bytes = b"KEK: Microsoft Corporation KEK CA 2011"
    db: bytes = b"db: Microsoft UEFI CA 2011; Debian Secure Boot CA"
    dbx: bytes = b"dbx: revoked shim 15.4 hashes"
    shim: bytes = b"shimx64.efi 15.8-1"
    grub: bytes = b"grubx64.efi 2.12-1"
    kernel: bytes = b"vmlinuz-6.1.0-18-amd64"
    kernel_path: str = "/boot/vmlinuz-6.1.0-18-amd64"
    initrd: bytes = b"initrd.img-6.1.0-18-amd64"
    cmdline: str = "/boot/vmlinuz-6.1.0-18-amd64 root=/dev/vda1 ro intel_iommu=on"
    grub_commands: int = 0
    """Extra ``grub_cmd`` events in PCR 8, to make the log as long as a real one."""

    def but(self, **changes: object) -> Boot:
        return replace(self, **changes)  # type: ignore[arg-type]


DEFAULT_BOOT = Boot()


def hypervisor_boot(boot: Boot = DEFAULT_BOOT, banks: tuple[str, ...] = ("sha1", "sha256", "sha384")
                    ) -> LogBuilder:
    """The event log of a UEFI Secure Boot of a Debian KVM host."""
    log = LogBuilder(banks)
    separator = b"\x00\x00\x00\x00"
    log.add(0, EV_S_CRTM_VERSION, (boot.crtm_version + "\x00").encode("utf-16-le"))
    log.add(0, EV_EFI_PLATFORM_FIRMWARE_BLOB2, firmware_blob2("fvMain", 0xFF84_0000, 0x3C_0000),
            measured=boot.firmware)
    log.add(1, EV_CPU_MICROCODE, b"microcode", measured=boot.microcode)
    log.add(1, EV_EFI_VARIABLE_BOOT, uefi_variable("BootOrder", b"\x01\x00\x00\x00"))
    log.add(7, EV_EFI_VARIABLE_DRIVER_CONFIG, uefi_variable("SecureBoot", boot.secure_boot))
    log.add(7, EV_EFI_VARIABLE_DRIVER_CONFIG, uefi_variable("PK", boot.pk))
    log.add(7, EV_EFI_VARIABLE_DRIVER_CONFIG, uefi_variable("KEK", boot.kek))
    log.add(7, EV_EFI_VARIABLE_DRIVER_CONFIG,
            uefi_variable("db", boot.db, EFI_IMAGE_SECURITY_DATABASE))
    log.add(7, EV_EFI_VARIABLE_DRIVER_CONFIG,
            uefi_variable("dbx", boot.dbx, EFI_IMAGE_SECURITY_DATABASE))
    for pcr in range(8):
        log.add(pcr, EV_SEPARATOR, separator)
    log.add(4, EV_EFI_ACTION, b"Calling EFI Application from Boot Option")
    log.add(7, EV_EFI_VARIABLE_AUTHORITY,
            uefi_variable("db", b"Debian Secure Boot CA", EFI_IMAGE_SECURITY_DATABASE))
    log.add(4, EV_EFI_BOOT_SERVICES_APPLICATION, image_load(r"\EFI\debian\shimx64.efi"),
            measured=boot.shim)
    log.add(4, EV_EFI_BOOT_SERVICES_APPLICATION, image_load(r"\EFI\debian\grubx64.efi"),
            measured=boot.grub)
    log.add(8, EV_IPL, b"grub_cmd: set root=hd0,gpt1\x00")
    for n in range(boot.grub_commands):
        log.add(8, EV_IPL, f"grub_cmd: insmod module{n}\x00".encode())
    log.add(8, EV_IPL, f"grub_cmd: linux {boot.kernel_path}\x00".encode())
    log.add(9, EV_IPL, f"{boot.kernel_path}\x00".encode(), measured=boot.kernel)
    log.add(4, EV_EFI_BOOT_SERVICES_APPLICATION, image_load(boot.kernel_path),
            measured=boot.kernel)
    log.add(8, EV_IPL, f"kernel_cmdline: {boot.cmdline}\x00".encode())
    log.add(9, EV_IPL, b"/boot/initrd.img-6.1.0-18-amd64\x00", measured=boot.initrd)
    return log


if __name__ == "__main__":  # pragma: no cover
    Path(sys.argv[1]).write_bytes(hypervisor_boot().encode())
