"""What a boot event measures: a stable name for each event of a UEFI measured boot, and
whether it measures code or configuration.

:func:`describe_event` names the S-CRTM version, firmware blobs, microcode, Secure Boot
variables (PK/KEK/db/dbx), shim/GRUB/kernel, the kernel command line… from the event's
type, PCR and data (UEFI_VARIABLE_DATA, UEFI_IMAGE_LOAD_EVENT device paths, GRUB's
strings). Reference manifests (:mod:`engine.attest.manifests`) record these names, and
matching (:mod:`engine.attest.matching`) reports a difference by them.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Literal

from engine.attest.eventlog import Event

__all__ = ["Aspect", "describe_event", "event_aspect", "label_events"]

Aspect = Literal["executables", "configuration"]

_VARIABLE_TYPES = {"EV_EFI_VARIABLE_DRIVER_CONFIG", "EV_EFI_VARIABLE_BOOT",
                   "EV_EFI_VARIABLE_BOOT2", "EV_EFI_VARIABLE_AUTHORITY"}
_IMAGE_TYPES = {"EV_EFI_BOOT_SERVICES_APPLICATION": "boot application",
                "EV_EFI_BOOT_SERVICES_DRIVER": "boot driver",
                "EV_EFI_RUNTIME_SERVICES_DRIVER": "runtime driver"}
_EXECUTABLE_TYPES = {"EV_S_CRTM_CONTENTS", "EV_S_CRTM_VERSION", "EV_POST_CODE",
                     "EV_POST_CODE2", "EV_CPU_MICROCODE", "EV_EFI_PLATFORM_FIRMWARE_BLOB",
                     "EV_EFI_PLATFORM_FIRMWARE_BLOB2", "EV_NONHOST_CODE",
                     "EV_EFI_SPDM_FIRMWARE_BLOB", "EV_COMPACT_HASH", *_IMAGE_TYPES}
_CODE_PCRS = {0, 2, 4, 9}
"""PC Client PCRs that measure code (firmware, option ROMs, boot loaders, files GRUB
loads); the others measure configuration."""


def _text(data: bytes) -> str | None:
    """Event data as text when it is printable ASCII or UTF-16LE."""
    for encoding in ("ascii", "utf-16-le"):
        try:
            text = data.decode(encoding).rstrip("\x00").strip()
        except UnicodeDecodeError:
            continue
        if text and text.isprintable():
            return text
    return None


def _variable_name(data: bytes) -> str | None:
    """UEFI_VARIABLE_DATA: GUID, UINT64 name length (CHAR16s), UINT64 data length, name."""
    if len(data) < 32:
        return None
    length = struct.unpack_from("<Q", data, 16)[0]
    if length > 256 or 32 + 2 * length > len(data):
        return None
    try:
        return data[32:32 + 2 * length].decode("utf-16-le").rstrip("\x00") or None
    except UnicodeDecodeError:
        return None


def _image_path(data: bytes) -> str | None:
    """The file path node of a UEFI_IMAGE_LOAD_EVENT's device path."""
    if len(data) < 32:
        return None
    length = struct.unpack_from("<Q", data, 24)[0]
    path = data[32:32 + min(length, len(data) - 32)]
    offset = 0
    while offset + 4 <= len(path):
        node_type, subtype, size = path[offset], path[offset + 1], int.from_bytes(
            path[offset + 2:offset + 4], "little")
        if size < 4 or node_type == 0x7F:
            return None
        if node_type == 0x04 and subtype == 0x04:
            try:
                return path[offset + 4:offset + size].decode("utf-16-le").rstrip("\x00") or None
            except UnicodeDecodeError:
                return None
        offset += size
    return None


def describe_event(event: Event) -> tuple[str, str | None]:
    """What ``event`` measures, as a stable label, and a readable summary of its data.

    The label does not carry versions (a new kernel is the same component with another
    digest); the summary does.
    """
    name = event.type_name
    text = _text(event.data)
    if name in _VARIABLE_TYPES:
        variable = _variable_name(event.data) or "?"
        if name == "EV_EFI_VARIABLE_AUTHORITY":
            return f"Secure Boot authority from {variable}", None
        if name == "EV_EFI_VARIABLE_DRIVER_CONFIG" and event.pcr == 7:
            return f"Secure Boot variable {variable}", None
        kind = "boot variable" if "BOOT" in name else "UEFI variable"
        return f"{kind} {variable}", None
    if name in _IMAGE_TYPES:
        path = _image_path(event.data)
        return (f"{_IMAGE_TYPES[name]} {path}" if path else _IMAGE_TYPES[name]), path
    if name == "EV_S_CRTM_VERSION":
        return "S-CRTM version", text
    if name == "EV_S_CRTM_CONTENTS":
        return "S-CRTM contents", text
    if name == "EV_CPU_MICROCODE":
        return "CPU microcode", text
    if name == "EV_EFI_PLATFORM_FIRMWARE_BLOB2" and event.data:
        size = event.data[0]
        description = _text(event.data[1:1 + size])
        return f"platform firmware blob {description}" if description else \
            "platform firmware blob", description
    if name == "EV_EFI_PLATFORM_FIRMWARE_BLOB":
        return "platform firmware blob", None
    if name == "EV_IPL" and text:
        if text.startswith("kernel_cmdline:"):
            return "kernel command line", text.partition(":")[2].strip()
        if text.startswith("grub_kernel_cmdline"):
            return "kernel command line", text.partition(" ")[2].strip()
        if text.startswith("grub_cmd:"):
            return "GRUB command", text.partition(":")[2].strip()
        return (f"file {text}" if event.pcr == 9 else "boot loader event"), text
    if name == "EV_SEPARATOR":
        return "separator", None
    if name in ("EV_POST_CODE", "EV_EFI_ACTION", "EV_ACTION") and text:
        return f"{'firmware code' if name == 'EV_POST_CODE' else 'action'}: {text}", None
    return name, text


def event_aspect(event_type: str | None, pcr: int | None) -> Aspect:
    """Whether an event of ``event_type`` (or, with ``None``, a PCR's value) concerns code
    that ran or configuration: the AR4SI claim a difference in it affects."""
    if event_type is not None:
        if event_type in _EXECUTABLE_TYPES:
            return "executables"
        if event_type == "EV_IPL":
            return "executables" if pcr == 9 else "configuration"
        return "configuration"
    return "executables" if pcr in _CODE_PCRS else "configuration"


def label_events(events: Iterable[Event]) -> list[tuple[Event, str, str | None]]:
    """Each event with its label, numbered (``#2``…) where a PCR repeats a label."""
    described = [(event, *describe_event(event)) for event in events]
    totals: dict[tuple[int, str], int] = {}
    for event, label, _ in described:
        totals[(event.pcr, label)] = totals.get((event.pcr, label), 0) + 1
    seen: dict[tuple[int, str], int] = {}
    out = []
    for event, label, summary in described:
        key = (event.pcr, label)
        seen[key] = seen.get(key, 0) + 1
        out.append((event, f"{label} #{seen[key]}" if totals[key] > 1 else label, summary))
    return out

