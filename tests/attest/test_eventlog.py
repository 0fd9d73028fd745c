"""engine.attest.eventlog on logs built here, field by field, from the TCG structures.

The builders below write TCG_PCR_EVENT, the Spec ID Event03 and TCG_PCR_EVENT2 exactly
as the PC Client Platform Firmware Profile lays them out, so each test states the bytes
it feeds the parser. Real logs are in test_eventlog_data.py.
"""

from __future__ import annotations

import contextlib
import hashlib
import random
import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.attest import eventlog
from engine.attest.errors import EventLogError
from engine.attest.eventlog import EventLog, event_type_name, load, parse
from engine.errors import NotFoundError

EV_POST_CODE = 0x00000001
EV_NO_ACTION = 0x00000003
EV_SEPARATOR = 0x00000004
EV_EFI_ACTION = 0x80000007
EV_EFI_HCRTM_EVENT = 0x80000010

ALG_IDS = {"sha1": 0x0004, "sha256": 0x000B, "sha384": 0x000C, "sha512": 0x000D,
           "sm3_256": 0x0012}
SIZES = {"sha1": 20, "sha256": 32, "sha384": 48, "sha512": 64, "sm3_256": 32}
HASHLIB = {"sha1": "sha1", "sha256": "sha256", "sha384": "sha384", "sha512": "sha512",
           "sm3_256": "sm3"}
BANKS = ("sha1", "sha256")


# -- builders ---------------------------------------------------------------------------

def event1(pcr: int, event_type: int, digest: bytes, data: bytes) -> bytes:
    """A TCG_PCR_EVENT."""
    return struct.pack("<II20sI", pcr, event_type, digest, len(data)) + data


def spec_id_data(banks: tuple[str, ...] = BANKS, *, vendor: bytes = b"",
                 table: list[tuple[int, int]] | None = None) -> bytes:
    """A TCG_EfiSpecIDEventStruct; ``table`` overrides the (algorithmId, digestSize) list."""
    rows = table if table is not None else [(ALG_IDS[b], SIZES[b]) for b in banks]
    return (b"Spec ID Event03\x00" + struct.pack("<IBBBBI", 0, 0, 2, 0, 2, len(rows))
            + b"".join(struct.pack("<HH", alg, size) for alg, size in rows)
            + bytes([len(vendor)]) + vendor)


def spec_id(banks: tuple[str, ...] = BANKS) -> bytes:
    return event1(0, EV_NO_ACTION, bytes(20), spec_id_data(banks))


def event2(pcr: int, event_type: int, data: bytes, banks: tuple[str, ...] = BANKS,
           digests: dict[str, bytes] | None = None) -> bytes:
    """A TCG_PCR_EVENT2 whose digests default to H(data) in each bank."""
    if digests is None:
        digests = {b: hashlib.new(HASHLIB[b], data).digest() for b in banks}
    body = b"".join(struct.pack("<H", ALG_IDS[b]) + d for b, d in digests.items())
    return (struct.pack("<III", pcr, event_type, len(digests)) + body
            + struct.pack("<I", len(data)) + data)


def startup_locality(locality: int, banks: tuple[str, ...] = BANKS, pcr: int = 0) -> bytes:
    return event2(pcr, EV_NO_ACTION, b"StartupLocality\x00" + bytes([locality]), banks,
                  {b: bytes(SIZES[b]) for b in banks})


def extend(value: bytes, digest: bytes, bank: str) -> bytes:
    return hashlib.new(HASHLIB[bank], value + digest).digest()


def sample_log() -> bytes:
    """Spec ID, then PCR 0, PCR 7 separator, PCR 4, PCR 0 again."""
    return (spec_id()
            + event2(0, EV_POST_CODE, b"firmware volume")
            + event2(7, EV_SEPARATOR, bytes(4))
            + event2(4, EV_EFI_ACTION, b"Calling EFI Application from Boot Option")
            + event2(0, EV_SEPARATOR, bytes(4)))


def expected_replay(log: EventLog, bank: str, start0: int = 0) -> dict[int, bytes]:
    """An independent replay: every extended event, PCR 0 from ``start0``."""
    size = SIZES[bank]
    pcrs: dict[int, bytes] = {0: bytes(size - 1) + bytes([start0])} if start0 else {}
    for ev in log.events:
        if ev.type != EV_NO_ACTION and ev.pcr != 0xFFFFFFFF:
            pcrs[ev.pcr] = extend(pcrs.get(ev.pcr, bytes(size)), ev.digests[bank], bank)
    return pcrs


def offsets(data: bytes) -> list[int]:
    return [ev.offset for ev in parse(data).events]


# -- formats ----------------------------------------------------------------------------

def test_crypto_agile_log_is_parsed_field_by_field() -> None:
    log = parse(sample_log())

    assert log.format == "crypto-agile"
    assert log.banks == ("sha1", "sha256")
    assert log.spec_id is not None
    assert log.spec_id.spec_version == (2, 0)
    assert log.spec_id.uintn_size == 2
    assert [(a.alg_id, a.name, a.digest_size) for a in log.spec_id.algorithms] == [
        (0x0004, "sha1", 20), (0x000B, "sha256", 32)]
    assert [ev.index for ev in log.events] == [0, 1, 2, 3, 4]
    assert [ev.pcr for ev in log.events] == [0, 0, 7, 4, 0]
    assert [ev.type_name for ev in log.events] == [
        "EV_NO_ACTION", "EV_POST_CODE", "EV_SEPARATOR", "EV_EFI_ACTION", "EV_SEPARATOR"]
    assert log.events[3].data == b"Calling EFI Application from Boot Option"
    assert log.events[3].digests["sha256"] == hashlib.sha256(log.events[3].data).digest()
    assert log.events[1].offset == len(spec_id())
    assert not log.events[0].extended and log.events[1].extended


def test_crypto_agile_replay_is_h_of_pcr_and_digest_in_each_bank() -> None:
    log = parse(sample_log())

    replay = log.replay()

    assert set(replay) == {"sha1", "sha256"}
    for bank in BANKS:
        assert replay[bank] == expected_replay(log, bank)
        assert list(replay[bank]) == [0, 4, 7]  # sorted by PCR index


def test_tcg12_sha1_log_has_one_bank() -> None:
    data = (event1(0, 0x00000008, hashlib.sha1(b"v1").digest(), b"v1")
            + event1(7, EV_SEPARATOR, hashlib.sha1(bytes(4)).digest(), bytes(4)))

    log = parse(data)

    assert log.format == "tcg1.2-sha1"
    assert log.spec_id is None
    assert log.banks == ("sha1",)
    assert log.replay() == {"sha1": expected_replay(log, "sha1")}


def test_replay_extends_the_logged_digest_never_a_hash_of_the_data() -> None:
    logged = bytes(range(32))
    data = spec_id(("sha256",)) + event2(8, 0x0000000D, b"grub_cmd linux", ("sha256",),
                                          {"sha256": logged})

    assert parse(data).replay() == {"sha256": {8: hashlib.sha256(bytes(32) + logged).digest()}}


def test_input_may_be_a_bytearray_or_memoryview() -> None:
    data = sample_log()

    assert parse(bytearray(data)) == parse(memoryview(data)) == parse(data)


def test_more_banks_are_replayed_with_their_own_hash() -> None:
    banks = ("sha1", "sha256", "sha384", "sha512", "sm3_256")
    log = parse(spec_id(banks) + event2(2, EV_POST_CODE, b"x", banks))

    for bank in banks:
        assert log.replay_bank(bank) == expected_replay(log, bank)
        assert len(log.replay_bank(bank)[2]) == SIZES[bank]


@pytest.mark.parametrize(("type_", "name"), [
    (0x00000001, "EV_POST_CODE"), (0x00000004, "EV_SEPARATOR"), (0x0000000D, "EV_IPL"),
    (0x00000006, "EV_EVENT_TAG"), (0x00000008, "EV_S_CRTM_VERSION"),
    (0x0000000C, "EV_COMPACT_HASH"), (0x80000001, "EV_EFI_VARIABLE_DRIVER_CONFIG"),
    (0x80000003, "EV_EFI_BOOT_SERVICES_APPLICATION"), (0x80000006, "EV_EFI_GPT_EVENT"),
    (0x8000000A, "EV_EFI_PLATFORM_FIRMWARE_BLOB2"), (0x8000000B, "EV_EFI_HANDOFF_TABLES2"),
    (0x8000000C, "EV_EFI_VARIABLE_BOOT2"), (0x80000010, "EV_EFI_HCRTM_EVENT"),
    (0x800000E0, "EV_EFI_VARIABLE_AUTHORITY"), (0x800000E1, "EV_EFI_SPDM_FIRMWARE_BLOB"),
    (0x800000E4, "EV_EFI_SPDM_DEVICE_AUTHORITY"), (0x12345678, "EV_UNKNOWN_0x12345678"),
])
def test_event_type_names(type_: int, name: str) -> None:
    assert event_type_name(type_) == name


# -- replay rules -----------------------------------------------------------------------

def test_no_action_events_and_pcr_ffffffff_are_never_extended() -> None:
    data = (spec_id() + event2(5, EV_NO_ACTION, b"SP800-155 Event3 ...")
            + event2(0xFFFFFFFF, 0x00000006, b"WBCL tag") + event2(5, EV_SEPARATOR, bytes(4)))
    log = parse(data)

    assert [ev.extended for ev in log.events] == [False, False, False, True]
    assert log.replay_bank("sha256") == {
        5: extend(bytes(32), log.events[3].digests["sha256"], "sha256")}


def test_startup_locality_3_starts_pcr0_at_3() -> None:
    data = spec_id() + startup_locality(3) + event2(0, EV_POST_CODE, b"crtm")
    log = parse(data)

    assert log.startup_locality == 3
    assert log.pcr0_locality == 3
    for bank in BANKS:
        assert log.replay_bank(bank) == expected_replay(log, bank, start0=3)
        assert log.replay_bank(bank) != expected_replay(log, bank)


def test_startup_locality_sets_pcr0_even_when_nothing_extends_it() -> None:
    log = parse(spec_id() + startup_locality(3))

    assert log.replay() == {b: {0: bytes(SIZES[b] - 1) + b"\x03"} for b in BANKS}


def test_hcrtm_event_starts_pcr0_at_4_and_is_extended() -> None:
    log = parse(spec_id() + event2(0, EV_EFI_HCRTM_EVENT, b"HCRTM")
                + event2(0, EV_SEPARATOR, bytes(4)))

    assert log.hcrtm and log.startup_locality is None
    for bank in BANKS:
        assert log.replay_bank(bank) == expected_replay(log, bank, start0=4)


def test_hcrtm_wins_over_a_startup_locality_of_3() -> None:
    # TPM2_Startup reports locality 0 whenever an H-CRTM ran first (TPM 2.0 Part 3).
    log = parse(spec_id() + startup_locality(3) + event2(0, EV_EFI_HCRTM_EVENT, b"HCRTM"))

    assert log.pcr0_locality == 4


def test_zero_and_ff_filler_end_the_log_cleanly() -> None:
    data = sample_log()
    expected = parse(data)

    assert parse(data + b"\xff" * 4096) == expected
    assert parse(data + bytes(4096)) == expected
    assert parse(data + b"\xff" * 8) == expected


def test_a_tail_shorter_than_a_header_is_truncation_not_filler() -> None:
    for tail in (b"\xff", bytes(4), b"\xff" * 7):
        with pytest.raises(EventLogError, match="truncated"):
            parse(sample_log() + tail)


def test_a_log_that_is_only_filler_is_refused() -> None:
    for filler in (b"\xff" * 64, bytes(64)):
        with pytest.raises(EventLogError, match="only filler"):
            parse(filler)


def test_filler_followed_by_data_is_not_filler() -> None:
    with pytest.raises(EventLogError, match=f"offset {len(sample_log())}"):
        parse(sample_log() + b"\xff" * 40 + b"\x01")


def test_an_event_may_omit_a_bank_which_then_cannot_be_replayed() -> None:
    # tpm2-tools' event-uefiaction.bin: the Spec ID lists four banks, the event logs two.
    four = ("sha1", "sha256", "sha384", "sha512")
    log = parse(spec_id(four) + event2(4, EV_EFI_ACTION, b"Calling", BANKS))

    assert [a.name for a in log.algorithms] == list(four)
    assert log.banks == BANKS
    assert set(log.replay()) == set(BANKS)
    with pytest.raises(EventLogError, match=r"sha384 bank cannot be replayed.*event 1"):
        log.replay_bank("sha384")
    with pytest.raises(EventLogError, match="no sm3_256 bank"):
        log.replay_bank("sm3_256")


# -- tampering --------------------------------------------------------------------------

def test_one_changed_digest_byte_changes_that_pcr_only() -> None:
    data = bytearray(sample_log())
    log = parse(data)
    target = log.events[3]  # PCR 4; its sha1 digest starts after pcr, type, count, alg id
    data[target.offset + 12 + 2] ^= 0x01

    tampered = parse(data).replay()

    assert tampered["sha1"][4] != log.replay()["sha1"][4]
    assert tampered["sha256"] == log.replay()["sha256"]
    assert {k: v for k, v in tampered["sha1"].items() if k != 4} == {
        k: v for k, v in log.replay()["sha1"].items() if k != 4}


def test_removing_an_event_changes_its_pcr() -> None:
    data = sample_log()
    starts = [*offsets(data), len(data)]
    without_third = data[:starts[3]] + data[starts[4]:]

    assert 4 in parse(data).replay()["sha256"]
    assert 4 not in parse(without_third).replay()["sha256"]
    without_first = data[:starts[1]] + data[starts[2]:]
    assert parse(without_first).replay()["sha256"][0] != parse(data).replay()["sha256"][0]


def test_reordering_events_of_one_pcr_changes_it() -> None:
    first, second = event2(0, EV_POST_CODE, b"a"), event2(0, EV_POST_CODE, b"b")

    assert (parse(spec_id() + first + second).replay()
            != parse(spec_id() + second + first).replay())


# -- refusals ---------------------------------------------------------------------------

def test_empty_log_is_refused() -> None:
    with pytest.raises(EventLogError, match=r"empty \(offset 0\)") as info:
        parse(b"")
    assert info.value.offset == 0
    assert info.value.exit_code == 4


def test_truncated_log_names_the_event_and_offset() -> None:
    data = sample_log()
    last = offsets(data)[-1]

    for cut in range(last + 1, len(data)):
        with pytest.raises(EventLogError, match="truncated") as info:
            parse(data[:cut])
        assert info.value.offset == last
        assert info.value.event == 4
        assert f"(event 4, offset {last})" in str(info.value)


def test_every_cut_is_a_shorter_log_or_an_error() -> None:
    data = sample_log()
    boundaries = set(offsets(data))

    for cut in range(1, len(data)):
        if cut in boundaries:
            assert len(parse(data[:cut]).events) == sorted(boundaries).index(cut)
        else:
            with pytest.raises(EventLogError):
                parse(data[:cut])


def test_absurd_event_size_is_refused_before_reading() -> None:
    data = spec_id() + struct.pack("<III", 4, EV_POST_CODE, 0) + struct.pack("<I", 0xFFFFFFFF)

    with pytest.raises(EventLogError, match="eventSize 4294967295 needs 4294967295 bytes, 0"):
        parse(data)


def test_absurd_event_size_in_a_sha1_log_is_refused() -> None:
    data = struct.pack("<II20sI", 0, EV_POST_CODE, bytes(20), 0x7FFFFFFF) + b"x"

    with pytest.raises(EventLogError, match=r"eventSize 2147483647.*\(event 0, offset 0\)"):
        parse(data)


def test_digest_algorithm_not_in_spec_id_is_refused() -> None:
    data = (spec_id() + struct.pack("<IIIH", 4, EV_POST_CODE, 1, 0x1234) + bytes(32)
            + struct.pack("<I", 0))

    with pytest.raises(EventLogError, match="algorithm 0x1234 is not in the Spec ID"):
        parse(data)


def test_more_digests_than_banks_is_refused() -> None:
    data = spec_id() + struct.pack("<III", 4, EV_POST_CODE, 0xFFFFFFFF)

    with pytest.raises(EventLogError, match=r"4294967295 digests.*2 banks"):
        parse(data)


def test_a_bank_logged_twice_is_refused() -> None:
    data = spec_id() + (struct.pack("<III", 4, EV_POST_CODE, 2)
             + struct.pack("<H", 0x0004) + bytes(20) + struct.pack("<H", 0x0004) + bytes(20)
             + struct.pack("<I", 0))

    with pytest.raises(EventLogError, match="two sha1 digests"):
        parse(data)


def test_too_many_events_are_refused() -> None:
    data = spec_id() + event2(1, EV_POST_CODE, b"a") * 10

    assert len(parse(data, max_events=11).events) == 11
    with pytest.raises(EventLogError, match="more than 5 events"):
        parse(data, max_events=5)


def test_pcr_index_out_of_range_is_refused() -> None:
    with pytest.raises(EventLogError, match="PCR index 24 is out of range"):
        parse(spec_id() + event2(24, EV_POST_CODE, b"a"))


@pytest.mark.parametrize(("data", "reason"), [
    pytest.param(spec_id_data(table=[(0x0004, 20), (0x9999, 32)]),
                 "algorithm 0x9999 is not one", id="unknown-algorithm"),
    pytest.param(spec_id_data(table=[(0x000B, 20)]), "sha256 has digestSize 20, not 32",
                 id="wrong-digest-size"),
    pytest.param(spec_id_data(table=[(0x0004, 20), (0x0004, 20)]),
                 "an algorithm is listed twice", id="duplicate-algorithm"),
    pytest.param(spec_id_data(table=[]), "numberOfAlgorithms 0", id="no-algorithms"),
    pytest.param(spec_id_data()[:24] + struct.pack("<I", 0x40000000) + spec_id_data()[28:],
                 "numberOfAlgorithms 1073741824 does not fit", id="absurd-algorithm-count"),
    pytest.param(spec_id_data(vendor=b"\xde\xad\xbe\xef")[:-4],
                 "its fields take 41 bytes but its eventSize is 37", id="vendor-info-overrun"),
    pytest.param(spec_id_data() + b"\x00", "its fields take 37 bytes but its eventSize is 38",
                 id="trailing-bytes"),
    pytest.param(b"Spec ID Event03\x00" + bytes(8), "eventSize 24 is too small",
                 id="too-short"),
])
def test_malformed_spec_id_event_is_refused(data: bytes, reason: str) -> None:
    with pytest.raises(EventLogError, match=f"Spec ID event: {reason}.*event 0") as info:
        parse(event1(0, EV_NO_ACTION, bytes(20), data))
    assert info.value.event == 0


def test_spec_id_event_outside_pcr0_or_with_a_digest_is_refused() -> None:
    for pcr, digest in ((1, bytes(20)), (0, b"\x01" * 20)):
        with pytest.raises(EventLogError, match="must be in PCR 0 with an all-zero digest"):
            parse(event1(pcr, EV_NO_ACTION, digest, spec_id_data()))


def test_tcg12_spec_id_event00_is_an_ordinary_sha1_log() -> None:
    log = parse(event1(0, EV_NO_ACTION, bytes(20), b"Spec ID Event00\x00" + bytes(8)))

    assert log.format == "tcg1.2-sha1"


@pytest.mark.parametrize(("events", "reason"), [
    pytest.param(startup_locality(3) + startup_locality(3), "the log has a second one",
                 id="twice"),
    pytest.param(startup_locality(3, pcr=1), "it is in PCR 1, not PCR 0", id="not-pcr0"),
    pytest.param(event2(0, EV_POST_CODE, b"a") + startup_locality(3),
                 "it comes after an event that extends PCR 0", id="late"),
    pytest.param(startup_locality(7), "locality 7 is not 0, 3 or 4", id="bad-locality"),
    pytest.param(event2(0, EV_NO_ACTION, b"StartupLocality\x00\x03\x00"),
                 "eventSize is 18, not 17", id="wrong-size"),
])
def test_malformed_startup_locality_is_refused(events: bytes, reason: str) -> None:
    with pytest.raises(EventLogError, match=f"StartupLocality event: {reason}"):
        parse(spec_id() + events)


def test_random_bytes_are_refused() -> None:
    rng = random.Random(20240501)
    for size in (1, 7, 31, 32, 33, 100, 1000, 65536):
        with pytest.raises(EventLogError):
            parse(rng.randbytes(size))


# -- load -------------------------------------------------------------------------------

def test_load_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "binary_bios_measurements"
    path.write_bytes(sample_log())

    assert load(path) == parse(sample_log())


def test_load_of_a_missing_file_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="does not exist"):
        load(tmp_path / "absent")


def test_load_of_a_directory_is_an_event_log_error(tmp_path: Path) -> None:
    with pytest.raises(EventLogError, match="cannot read"):
        load(tmp_path)


def test_load_refuses_an_oversized_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "big"
    path.write_bytes(sample_log())
    monkeypatch.setattr(eventlog, "MAX_LOG_BYTES", 64)

    with pytest.raises(EventLogError, match="larger than 64 bytes"):
        load(path)


# -- fuzzing ----------------------------------------------------------------------------

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_parse_or_raise_event_log_error(data: bytes) -> None:
    with contextlib.suppress(EventLogError):
        parse(data).replay()


@FUZZ
@given(st.binary(max_size=512))
def test_arbitrary_events_after_a_spec_id_parse_or_raise_event_log_error(tail: bytes) -> None:
    with contextlib.suppress(EventLogError):
        parse(spec_id() + tail).replay()


@FUZZ
@given(st.data())
def test_mutated_logs_parse_or_raise_event_log_error(draw: st.DataObject) -> None:
    data = bytearray(spec_id() + startup_locality(3) + sample_log()[len(spec_id()):])
    for _ in range(draw.draw(st.integers(1, 8))):
        position = draw.draw(st.integers(0, len(data) - 1))
        data[position] = draw.draw(st.integers(0, 255))
    cut = draw.draw(st.integers(0, len(data)))
    with contextlib.suppress(EventLogError):
        parse(bytes(data[:cut])).replay()
