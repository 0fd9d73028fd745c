"""Measured-boot event logs (``binary_bios_measurements``): parse and replay.

The structures are those of the TCG PC Client Platform Firmware Profile Specification
(rev. 1.05/1.06, section 10 "Event Logging"). Every integer is little-endian.

``TCG_PCR_EVENT``, the SHA1 format of TCG 1.2 logs and the first event of every log::

    UINT32 pcrIndex; UINT32 eventType; BYTE digest[20]; UINT32 eventSize; BYTE event[eventSize]

``TCG_EfiSpecIDEventStruct``, the data of that first event in a crypto-agile log::

    BYTE signature[16] = "Spec ID Event03\\0"; UINT32 platformClass;
    UINT8 specVersionMinor; UINT8 specVersionMajor; UINT8 specErrata; UINT8 uintnSize;
    UINT32 numberOfAlgorithms; {UINT16 algorithmId; UINT16 digestSize}[numberOfAlgorithms];
    UINT8 vendorInfoSize; BYTE vendorInfo[vendorInfoSize]

``TCG_PCR_EVENT2``, every later event of a crypto-agile log::

    UINT32 pcrIndex; UINT32 eventType;
    TPML_DIGEST_VALUES digests = {UINT32 count; {UINT16 hashAlg; BYTE digest[]}[count]};
    UINT32 eventSize; BYTE event[eventSize]

A digest's size is the one the Spec ID event gives for its ``hashAlg``.

``TCG_EfiStartupLocalityEvent``, the data of an EV_NO_ACTION event::

    BYTE signature[16] = "StartupLocality\\0"; UINT8 startupLocality

:func:`parse` follows these steps; each fails with an :class:`EventLogError` that names
the event index and byte offset:

1. Refuse an empty log, or one that holds nothing but filler.
2. Read the first event as ``TCG_PCR_EVENT``. If it is the Spec ID event, the log is
   crypto-agile: the Spec ID table fixes the banks and their digest sizes, and every
   later event is a ``TCG_PCR_EVENT2`` with at most one digest per bank (a bank that an
   extended event omits cannot be replayed). Otherwise the whole log is SHA1-only
   ``TCG_PCR_EVENT``.
3. Read events until the input ends, or until the rest of it is 0xFF or 0x00 filler (as
   in logs copied out of a fixed-size firmware area; at least 8 bytes, or it would be a
   truncated event). Each length is checked against the
   bytes left before it is used, and at most ``max_events`` events are read.
4. Find PCR 0's starting locality: an EV_EFI_HCRTM_EVENT means 4; otherwise a
   StartupLocality event (PCR 0, at most one, before anything extends PCR 0) gives it.

:meth:`EventLog.replay` then computes, for each bank, ``PCR = H(PCR || digest)`` over the
events in order. It extends the digest as logged (never a hash of the event data, which
firmware is free to compute differently) and skips EV_NO_ACTION events and events with
PCR index 0xFFFFFFFF. Every PCR starts at zero, except PCR 0, whose last byte holds the
starting locality.
"""

from __future__ import annotations

import hashlib
import re
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

from engine.attest.errors import EventLogError
from engine.errors import NotFoundError

__all__ = [
    "EV_EFI_HCRTM_EVENT",
    "EV_NO_ACTION",
    "MAX_EVENTS",
    "MAX_LOG_BYTES",
    "PCR_INDEX_NOT_EXTENDED",
    "Algorithm",
    "Event",
    "EventLog",
    "LogFormat",
    "PcrValues",
    "SpecId",
    "event_type_name",
    "load",
    "parse",
]

EV_NO_ACTION = 0x00000003
"""Events of this type are information only; they are never extended into a PCR."""

EV_EFI_HCRTM_EVENT = 0x80000010
"""The H-CRTM measured itself before the TPM started: PCR 0 starts at locality 4."""

PCR_INDEX_NOT_EXTENDED = 0xFFFFFFFF
"""The PCR index of events that describe but do not extend (Windows logs use it)."""

MAX_EVENTS = 65_536
"""The most events :func:`parse` reads; a real firmware log has a few hundred."""

MAX_LOG_BYTES = 16 * 1024 * 1024
"""The largest file :func:`load` reads; a real firmware log is well under 1 MiB."""

LogFormat = Literal["tcg1.2-sha1", "crypto-agile"]

PcrValues = dict[str, dict[int, bytes]]
"""Replayed PCRs: bank name -> PCR index -> value."""

_EVENT_TYPE_NAMES: dict[int, str] = {
    0x00000000: "EV_PREBOOT_CERT",
    0x00000001: "EV_POST_CODE",
    0x00000002: "EV_UNUSED",
    0x00000003: "EV_NO_ACTION",
    0x00000004: "EV_SEPARATOR",
    0x00000005: "EV_ACTION",
    0x00000006: "EV_EVENT_TAG",
    0x00000007: "EV_S_CRTM_CONTENTS",
    0x00000008: "EV_S_CRTM_VERSION",
    0x00000009: "EV_CPU_MICROCODE",
    0x0000000A: "EV_PLATFORM_CONFIG_FLAGS",
    0x0000000B: "EV_TABLE_OF_DEVICES",
    0x0000000C: "EV_COMPACT_HASH",
    0x0000000D: "EV_IPL",
    0x0000000E: "EV_IPL_PARTITION_DATA",
    0x0000000F: "EV_NONHOST_CODE",
    0x00000010: "EV_NONHOST_CONFIG",
    0x00000011: "EV_NONHOST_INFO",
    0x00000012: "EV_OMIT_BOOT_DEVICE_EVENTS",
    0x00000013: "EV_POST_CODE2",
    0x80000001: "EV_EFI_VARIABLE_DRIVER_CONFIG",
    0x80000002: "EV_EFI_VARIABLE_BOOT",
    0x80000003: "EV_EFI_BOOT_SERVICES_APPLICATION",
    0x80000004: "EV_EFI_BOOT_SERVICES_DRIVER",
    0x80000005: "EV_EFI_RUNTIME_SERVICES_DRIVER",
    0x80000006: "EV_EFI_GPT_EVENT",
    0x80000007: "EV_EFI_ACTION",
    0x80000008: "EV_EFI_PLATFORM_FIRMWARE_BLOB",
    0x80000009: "EV_EFI_HANDOFF_TABLES",
    0x8000000A: "EV_EFI_PLATFORM_FIRMWARE_BLOB2",
    0x8000000B: "EV_EFI_HANDOFF_TABLES2",
    0x8000000C: "EV_EFI_VARIABLE_BOOT2",
    0x8000000D: "EV_EFI_GPT_EVENT2",
    0x80000010: "EV_EFI_HCRTM_EVENT",
    0x800000E0: "EV_EFI_VARIABLE_AUTHORITY",
    0x800000E1: "EV_EFI_SPDM_FIRMWARE_BLOB",
    0x800000E2: "EV_EFI_SPDM_FIRMWARE_CONFIG",
    0x800000E3: "EV_EFI_SPDM_DEVICE_POLICY",
    0x800000E4: "EV_EFI_SPDM_DEVICE_AUTHORITY",
}


class _Hash(NamedTuple):
    name: str
    digest_size: int
    hashlib_name: str


_HASHES: dict[int, _Hash] = {
    0x0004: _Hash("sha1", 20, "sha1"),
    0x000B: _Hash("sha256", 32, "sha256"),
    0x000C: _Hash("sha384", 48, "sha384"),
    0x000D: _Hash("sha512", 64, "sha512"),
    0x0012: _Hash("sm3_256", 32, "sm3"),
    0x0027: _Hash("sha3_256", 32, "sha3_256"),
    0x0028: _Hash("sha3_384", 48, "sha3_384"),
    0x0029: _Hash("sha3_512", 64, "sha3_512"),
}
"""TPM_ALG_ID (TCG Algorithm Registry) -> bank name, digest size, hashlib name."""

_HASH_BY_NAME = {h.name: h for h in _HASHES.values()}

_SPEC_ID_SIGNATURE = b"Spec ID Event03\x00"
_STARTUP_LOCALITY_SIGNATURE = b"StartupLocality\x00"
_STARTUP_LOCALITIES = (0, 3, 4)
"""TPM2_Startup comes from locality 0 or 3 on a PC Client; 4 marks an H-CRTM."""

_EVENT1_HEADER = struct.Struct("<II20sI")  # pcrIndex, eventType, digest, eventSize
_EVENT2_HEADER = struct.Struct("<III")  # pcrIndex, eventType, digests.count
_SPEC_ID_FIXED = struct.Struct("<16sIBBBBI")  # signature .. numberOfAlgorithms
_ALGORITHM_SIZE = struct.Struct("<HH")  # algorithmId, digestSize
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_MAX_PCR_INDEX = 23  # a PC Client TPM has PCRs 0 to 23
_FILLER_MIN = 8
_NOT_ZERO = re.compile(rb"[^\x00]")
_NOT_FF = re.compile(rb"[^\xff]")


def event_type_name(event_type: int) -> str:
    """The specification's name of an event type, e.g. ``EV_SEPARATOR``."""
    return _EVENT_TYPE_NAMES.get(event_type, f"EV_UNKNOWN_0x{event_type:08X}")


@dataclass(frozen=True, slots=True)
class Algorithm:
    """One digest bank of the log."""

    alg_id: int
    """The TPM_ALG_ID, e.g. 0x000B."""
    name: str
    """The bank name, e.g. ``sha256``."""
    digest_size: int
    """Bytes per digest, as the Spec ID event states (and as the hash produces)."""


_SHA1 = Algorithm(0x0004, "sha1", 20)  # the only bank of a TCG 1.2-format log


@dataclass(frozen=True, slots=True)
class SpecId:
    """The Spec ID Event03 of a crypto-agile log (``TCG_EfiSpecIDEventStruct``)."""

    platform_class: int
    """0 for a client platform, 1 for a server."""
    spec_version: tuple[int, int]
    """(major, minor) of the profile the firmware follows; 2.0 for TPM 2.0 logs."""
    errata: int
    uintn_size: int
    """Size of a UEFI UINTN in the log's structures: 1 for 32 bits, 2 for 64 bits."""
    algorithms: tuple[Algorithm, ...]
    """The banks, in the order the Spec ID event lists them."""
    vendor_info: bytes


@dataclass(frozen=True, slots=True)
class Event:
    """One event of the log."""

    index: int
    """Position in the log; 0 is the first event (the Spec ID event, if any)."""
    offset: int
    """Byte offset of the event in the log."""
    pcr: int
    """PCR index; :data:`PCR_INDEX_NOT_EXTENDED` for events that extend nothing."""
    type: int
    """Event type, e.g. 0x80000003; see :attr:`type_name`."""
    digests: dict[str, bytes]
    """Bank name -> the digest the firmware logged (and extended)."""
    data: bytes
    """The event data, as logged."""

    @property
    def type_name(self) -> str:
        """The specification's name of :attr:`type`."""
        return event_type_name(self.type)

    @property
    def extended(self) -> bool:
        """Whether the event was extended into its PCR (and so is replayed)."""
        return self.type != EV_NO_ACTION and self.pcr != PCR_INDEX_NOT_EXTENDED


@dataclass(frozen=True, slots=True)
class EventLog:
    """A parsed event log. Build it with :func:`parse` or :func:`load`."""

    format: LogFormat
    spec_id: SpecId | None
    """The Spec ID event of a crypto-agile log; ``None`` for a TCG 1.2 log."""
    algorithms: tuple[Algorithm, ...]
    """The digest algorithms: the Spec ID table, or SHA1 alone for a TCG 1.2 log."""
    banks: tuple[str, ...]
    """The banks the log can be replayed in: the algorithms of which every extended event
    carries a digest. (A TCG_PCR_EVENT2 may omit banks; the Linux kernel and tpm2-tools
    accept that, and cut-down logs do it.)"""
    events: tuple[Event, ...]
    startup_locality: int | None
    """The locality of the StartupLocality event, if the log has one."""
    hcrtm: bool
    """Whether the log has an EV_EFI_HCRTM_EVENT."""

    @property
    def pcr0_locality(self) -> int:
        """The last byte of PCR 0's starting value.

        An H-CRTM sets it to 4 whatever the startup locality was (TPM 2.0 Library, Part 3,
        TPM2_Startup); otherwise it is the StartupLocality event's locality, or 0.
        """
        if self.hcrtm:
            return 4
        return self.startup_locality or 0

    def replay(self) -> PcrValues:
        """Every bank's PCR values after the log, for the PCRs the log sets."""
        return {bank: self.replay_bank(bank) for bank in self.banks}

    def replay_bank(self, bank: str) -> dict[int, bytes]:
        """One bank's PCR values after the log: each PCR that an event extends, and PCR 0
        when it starts at a non-zero locality. Raises :class:`EventLogError` for a bank
        that is not in :attr:`banks`."""
        if bank not in self.banks:
            raise self._unreplayable(bank)
        digest = _digest_function(bank)
        zero = bytes(_HASH_BY_NAME[bank].digest_size)
        pcrs: dict[int, bytes] = {}
        if self.pcr0_locality:
            pcrs[0] = zero[:-1] + bytes((self.pcr0_locality,))
        for event in self.events:
            if event.extended:
                pcrs[event.pcr] = digest(pcrs.get(event.pcr, zero) + event.digests[bank])
        return dict(sorted(pcrs.items()))

    def _unreplayable(self, bank: str) -> EventLogError:
        if bank in (algorithm.name for algorithm in self.algorithms):
            event = next(e for e in self.events if e.extended and bank not in e.digests)
            return EventLogError(f"the {bank} bank cannot be replayed: the event extends "
                                 f"PCR {event.pcr} but logs no {bank} digest",
                                 offset=event.offset, event=event.index)
        return EventLogError(f"the log has no {bank} bank "
                             f"(it has {', '.join(self.banks) or 'none'})")


def load(path: Path, *, max_events: int = MAX_EVENTS) -> EventLog:
    """Read and :func:`parse` the event log file at ``path`` (at most
    :data:`MAX_LOG_BYTES`)."""
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_LOG_BYTES + 1)
    except FileNotFoundError as exc:
        raise NotFoundError(f"event log {path} does not exist") from exc
    except OSError as exc:
        raise EventLogError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if len(data) > MAX_LOG_BYTES:
        raise EventLogError(f"{path} is larger than {MAX_LOG_BYTES} bytes; "
                            "a firmware event log is far smaller")
    return parse(data, max_events=max_events)


def parse(data: bytes | bytearray | memoryview, *, max_events: int = MAX_EVENTS) -> EventLog:
    """Parse a TCG event log (SHA1-only TCG 1.2 format or crypto-agile).

    Raises :class:`EventLogError` naming the event and offset of the first problem.
    """
    buf = bytes(data)
    # (1) There must be at least one event.
    if not buf:
        raise EventLogError("the log is empty", offset=0,
                            tip="copy /sys/kernel/security/tpm0/binary_bios_measurements with "
                                "cat, as root: securityfs reports its size as 0, so tools "
                                "that trust the size copy nothing")
    if _is_filler(buf, 0):
        raise EventLogError("the log holds only filler bytes, no events", offset=0)
    # (2) The first event decides the format.
    first, offset = _read_event1(buf, 0, 0)
    spec_id = _read_spec_id(first)
    algorithms = spec_id.algorithms if spec_id else (_SHA1,)
    read_event = _event2_reader(algorithms) if spec_id else _read_event1
    # (3) The rest, up to the end or the filler.
    events = [first]
    while offset < len(buf) and not _is_filler(buf, offset):
        if len(events) >= max_events:
            raise EventLogError(f"the log has more than {max_events} events",
                                offset=offset, event=len(events))
        event, offset = read_event(buf, offset, len(events))
        events.append(event)
    # (4) PCR 0's starting locality; the banks that can be replayed.
    return EventLog(
        format="crypto-agile" if spec_id else "tcg1.2-sha1",
        spec_id=spec_id,
        algorithms=algorithms,
        banks=_complete_banks(algorithms, events),
        events=tuple(events),
        startup_locality=_startup_locality(events),
        hcrtm=any(event.type == EV_EFI_HCRTM_EVENT for event in events),
    )


def _complete_banks(algorithms: Sequence[Algorithm], events: Sequence[Event]) -> tuple[str, ...]:
    """The algorithms of which every extended event carries a digest."""
    counts = {len(event.digests) for event in events if event.extended}
    if counts <= {len(algorithms)}:  # no event omits a bank: the common, fast case
        return tuple(algorithm.name for algorithm in algorithms)
    return tuple(algorithm.name for algorithm in algorithms
                 if all(algorithm.name in event.digests for event in events if event.extended))


def _digest_function(bank: str) -> Callable[[bytes], bytes]:
    hashlib_name = _HASH_BY_NAME[bank].hashlib_name
    try:
        hashlib.new(hashlib_name)
    except ValueError as exc:
        raise EventLogError(f"cannot replay the {bank} bank: this Python's hashlib "
                            f"has no {hashlib_name}") from exc

    def digest(data: bytes) -> bytes:
        return hashlib.new(hashlib_name, data).digest()

    return digest


def _is_filler(buf: bytes, offset: int) -> bool:
    """Whether the rest of the log, from ``offset``, is filler: all 0xFF or all 0x00, and at
    least a pcrIndex and eventType long (a shorter tail is a truncated event)."""
    if len(buf) - offset < _FILLER_MIN:
        return False
    first = buf[offset]
    if first == 0xFF:
        return _NOT_FF.search(buf, offset) is None
    return first == 0 and _NOT_ZERO.search(buf, offset) is None


def _check_left(buf: bytes, start: int, needed: int, what: str, offset: int,
                index: int) -> None:
    left = len(buf) - start
    if needed > left:
        raise EventLogError(f"truncated: {what} needs {needed} bytes, {left} are left",
                            offset=offset, event=index)


def _check_pcr(pcr: int, offset: int, index: int) -> None:
    if pcr > _MAX_PCR_INDEX and pcr != PCR_INDEX_NOT_EXTENDED:
        raise EventLogError(f"PCR index {pcr} is out of range (0-{_MAX_PCR_INDEX}, or "
                            "0xFFFFFFFF for an event that is not extended)",
                            offset=offset, event=index)


def _read_event1(buf: bytes, offset: int, index: int) -> tuple[Event, int]:
    """Read a ``TCG_PCR_EVENT``; return it and the offset after it."""
    _check_left(buf, offset, _EVENT1_HEADER.size, "the TCG_PCR_EVENT header", offset, index)
    pcr, event_type, digest, size = _EVENT1_HEADER.unpack_from(buf, offset)
    _check_pcr(pcr, offset, index)
    start = offset + _EVENT1_HEADER.size
    _check_left(buf, start, size, f"eventSize {size}", offset, index)
    end = start + size
    return Event(index, offset, pcr, event_type, {"sha1": digest}, buf[start:end]), end


_EventReader = Callable[[bytes, int, int], tuple[Event, int]]


def _event2_reader(algorithms: Sequence[Algorithm]) -> _EventReader:
    """A reader of ``TCG_PCR_EVENT2`` for the banks of the Spec ID event."""
    sizes = {algorithm.alg_id: (algorithm.name, algorithm.digest_size)
             for algorithm in algorithms}
    bank_count = len(algorithms)

    def read_event2(buf: bytes, offset: int, index: int) -> tuple[Event, int]:
        _check_left(buf, offset, _EVENT2_HEADER.size, "the TCG_PCR_EVENT2 header",
                    offset, index)
        pcr, event_type, count = _EVENT2_HEADER.unpack_from(buf, offset)
        _check_pcr(pcr, offset, index)
        if count > bank_count:
            raise EventLogError(f"the event has {count} digests, but the Spec ID event "
                                f"lists {bank_count} banks", offset=offset, event=index)
        position = offset + _EVENT2_HEADER.size
        digests: dict[str, bytes] = {}
        for _ in range(count):
            _check_left(buf, position, 2, "a digest's hashAlg", offset, index)
            (alg_id,) = _U16.unpack_from(buf, position)
            bank = sizes.get(alg_id)
            if bank is None:
                raise EventLogError(f"digest algorithm 0x{alg_id:04X} is not in the Spec ID "
                                    "event", offset=position, event=index)
            name, size = bank
            if name in digests:
                raise EventLogError(f"two {name} digests", offset=position, event=index)
            position += 2
            _check_left(buf, position, size, f"a {name} digest", offset, index)
            digests[name] = buf[position:position + size]
            position += size
        _check_left(buf, position, 4, "eventSize", offset, index)
        (size,) = _U32.unpack_from(buf, position)
        position += 4
        _check_left(buf, position, size, f"eventSize {size}", offset, index)
        end = position + size
        return Event(index, offset, pcr, event_type, digests, buf[position:end]), end

    return read_event2


def _read_spec_id(first: Event) -> SpecId | None:
    """The Spec ID Event03 if ``first`` is one (so the log is crypto-agile), else None."""
    data = first.data
    if first.type != EV_NO_ACTION or not data.startswith(_SPEC_ID_SIGNATURE):
        return None
    if first.pcr != 0 or any(first.digests["sha1"]):
        raise EventLogError("Spec ID event: it must be in PCR 0 with an all-zero digest",
                            offset=0, event=0)
    if len(data) < _SPEC_ID_FIXED.size + 1:
        raise _spec_id_error(f"eventSize {len(data)} is too small for a Spec ID event")
    _, platform_class, minor, major, errata, uintn_size, count = _SPEC_ID_FIXED.unpack_from(data)
    table = _SPEC_ID_FIXED.size
    vendor_at = table + count * _ALGORITHM_SIZE.size
    if count == 0 or vendor_at >= len(data):
        raise _spec_id_error(f"numberOfAlgorithms {count} does not fit its eventSize "
                             f"{len(data)}", table - 4)
    algorithms = tuple(_spec_id_algorithm(data, at)
                       for at in range(table, vendor_at, _ALGORITHM_SIZE.size))
    if len({algorithm.alg_id for algorithm in algorithms}) != count:
        raise _spec_id_error("an algorithm is listed twice", table)
    vendor_end = vendor_at + 1 + data[vendor_at]
    if vendor_end != len(data):
        raise _spec_id_error(f"its fields take {vendor_end} bytes but its eventSize is "
                             f"{len(data)}", vendor_at)
    return SpecId(platform_class, (major, minor), errata, uintn_size, algorithms,
                  data[vendor_at + 1:vendor_end])


def _spec_id_algorithm(data: bytes, at: int) -> Algorithm:
    alg_id, digest_size = _ALGORITHM_SIZE.unpack_from(data, at)
    known = _HASHES.get(alg_id)
    if known is None:
        raise _spec_id_error(f"algorithm 0x{alg_id:04X} is not one Vigil can replay", at)
    if digest_size != known.digest_size:
        raise _spec_id_error(f"{known.name} has digestSize {digest_size}, "
                             f"not {known.digest_size}", at)
    return Algorithm(alg_id, known.name, digest_size)


def _spec_id_error(reason: str, at: int = 0) -> EventLogError:
    """An error at offset ``at`` of the Spec ID event's data."""
    return EventLogError(f"Spec ID event: {reason}", offset=_EVENT1_HEADER.size + at, event=0)


def _startup_locality(events: Sequence[Event]) -> int | None:
    """The locality of the log's StartupLocality event, checked; None if there is none."""
    locality: int | None = None
    pcr0_extended = False
    for event in events:
        if event.type == EV_NO_ACTION and event.data.startswith(_STARTUP_LOCALITY_SIGNATURE):
            _check_startup_locality(event, locality, pcr0_extended)
            locality = event.data[-1]
        elif event.pcr == 0 and event.extended:
            pcr0_extended = True
    return locality


def _check_startup_locality(event: Event, earlier: int | None, pcr0_extended: bool) -> None:
    def fail(reason: str) -> EventLogError:
        return EventLogError(f"StartupLocality event: {reason}", offset=event.offset,
                             event=event.index)

    if len(event.data) != len(_STARTUP_LOCALITY_SIGNATURE) + 1:
        raise fail(f"eventSize is {len(event.data)}, not 17")
    if event.pcr != 0:
        raise fail(f"it is in PCR {event.pcr}, not PCR 0")
    if earlier is not None:
        raise fail("the log has a second one")
    if pcr0_extended:
        raise fail("it comes after an event that extends PCR 0")
    if event.data[-1] not in _STARTUP_LOCALITIES:
        raise fail(f"locality {event.data[-1]} is not 0, 3 or 4")
