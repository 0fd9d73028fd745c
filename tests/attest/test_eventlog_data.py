"""engine.attest.eventlog on the real logs of ../shared/data/tpm/eventlogs.

Three independent references check the replay:

* ``<log>.expected-pcrs.json``: PCR values read from the machine's TPM or quoted by it,
  classified per PCR by the data collectors (``match``, ``MISMATCH``, ``not-in-log``,
  ``not-extended-by-log``);
* ``<log>.yaml``: the ``pcrs:`` section printed by tpm2_eventlog (tpm2-tools 5.4), except
  the PCRs that MANIFEST.json lists under ``pcrs_section_differs_from_correct_replay``
  (5.4 extends every EV_NO_ACTION and ignores StartupLocality and H-CRTM);
* MANIFEST.json ``replayed_pcrs``, derived by the collectors with its ``replay_rule``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.attest.errors import EventLogError
from engine.attest.eventlog import EventLog, PcrValues, load, parse
from tests.conftest import SHARED_DATA

pytestmark = pytest.mark.shared_data

EVENTLOGS = SHARED_DATA / "tpm" / "eventlogs"
LOGS = sorted(str(p.relative_to(EVENTLOGS)) for p in EVENTLOGS.glob("*/*.bin")) or ["(none)"]

REJECTED = {
    # 0 bytes; tpm2_eventlog fails too.
    "keylime/binary_bios_measurements-empty.bin": "the log is empty (offset 0)",
    # The Spec ID eventSize says 37, but its vendorInfoSize (4) makes its fields 41 bytes.
    # tpm2_eventlog believes the fields; a verifier should not pick one of two
    # contradictory lengths. tpm2-tss ships the same event with eventSize 41 (parsed).
    "tpm2-tools/specid-vendordata.bin":
        "Spec ID event: its fields take 41 bytes but its eventSize is 37 (event 0, offset 68)",
}

WRONG_IN_TPM2_EVENTLOG_5_4 = {
    "go-tpm-tools/glinux-alex.bin", "go-tpm-tools/confidential-gke-debug-251000_eventlog.bin",
    "go-tpm-tools/eventlogwithsp800155.bin", "keylime/binary_bios_measurements.bin",
    "tpm2-tss/binary_measurements_hcrtm.bin",
}

FORMATS = {"crypto-agile": "crypto-agile", "sha1-legacy": "tcg1.2-sha1"}


@cache
def manifest() -> dict[str, dict[str, Any]]:
    logs = json.loads((EVENTLOGS / "MANIFEST.json").read_text())["logs"]
    return {entry["file"]: entry for entry in logs}


@cache
def parsed(name: str) -> EventLog:
    return load(EVENTLOGS / name)


def hex_pcrs(values: PcrValues) -> dict[str, dict[str, str]]:
    return {bank: {str(pcr): v.hex() for pcr, v in pcrs.items()} for bank, pcrs in values.items()}


def yaml_pcrs(path: Path, log: EventLog) -> dict[str, dict[str, str]]:
    """tpm2_eventlog's ``pcrs:`` section as hex strings (YAML reads ``0x…`` as an int)."""
    document = yaml.load(path.read_text(), Loader=yaml.CSafeLoader)
    sizes = {a.name: a.digest_size for a in log.algorithms}
    return {bank: {str(pcr): f"{value:0{2 * sizes[bank]}x}" for pcr, value in pcrs.items()}
            for bank, pcrs in (document.get("pcrs") or {}).items()}


def logs_with(suffix: str) -> list[str]:
    return [name for name in LOGS if (EVENTLOGS / (name + suffix)).exists()] or ["(none)"]


# -- every log --------------------------------------------------------------------------

@pytest.mark.parametrize("name", LOGS)
def test_every_log_parses_or_is_rejected_with_a_reason(shared_data: Path, name: str) -> None:
    if name in REJECTED:
        with pytest.raises(EventLogError, match=re.escape(REJECTED[name])):
            load(EVENTLOGS / name)
        return
    log = parsed(name)
    facts = manifest()[name]

    assert log.format == FORMATS[facts["format"]]
    assert len(log.events) == facts["n_events"]
    assert log.pcr0_locality == facts["startup_locality"]
    assert log.hcrtm == facts["hcrtm"]
    if facts["digest_algs"]:
        assert list(log.banks) == facts["digest_algs"]
    assert log.replay().keys() == set(log.banks)


@pytest.mark.parametrize("name", LOGS)
def test_replay_equals_the_manifest_derivation(shared_data: Path, name: str) -> None:
    if name in REJECTED:
        pytest.skip(f"refused on purpose: {REJECTED[name]}")
    if name == "go-attestation/short_no_action_eventlog.bin":
        pytest.skip("the manifest leaves PCR0 out for this StartupLocality-only log; "
                    "test_short_no_action_log_is_a_startup_locality_only_log checks it")
    derived = {bank: pcrs for bank, pcrs in manifest()[name]["replayed_pcrs"].items()
               if bank in parsed(name).banks}

    assert hex_pcrs(parsed(name).replay()) == derived


def test_short_no_action_log_is_a_startup_locality_only_log(shared_data: Path) -> None:
    """tpm2_eventlog fails on it ("invalid eventDataSize in specid event"): it takes any
    leading EV_NO_ACTION for a Spec ID event. The PC Client profile keeps the Spec ID
    format for the "Spec ID Event03" signature only, so this is a valid one-event TCG 1.2
    log, as go-attestation (where it comes from) also holds. Its one fact is that PCR 0
    starts at locality 3, so the replay reports PCR 0 = 00..03 (MANIFEST's derivation
    leaves PCR 0 out because no event extends it)."""
    log = parsed("go-attestation/short_no_action_eventlog.bin")

    assert log.format == "tcg1.2-sha1"
    assert [(e.pcr, e.type_name, e.data) for e in log.events] == [
        (0, "EV_NO_ACTION", b"StartupLocality\x00\x03")]
    assert log.startup_locality == 3
    assert log.replay() == {"sha1": {0: bytes(19) + b"\x03"}}


# -- PCRs read from real TPMs -----------------------------------------------------------

@pytest.mark.parametrize("name", logs_with(".expected-pcrs.json"))
def test_replay_matches_the_tpm_where_the_collectors_say_match(shared_data: Path,
                                                               name: str) -> None:
    expected = json.loads((EVENTLOGS / (name + ".expected-pcrs.json")).read_text())
    replay = hex_pcrs(parsed(name).replay())
    check: dict[str, list[str]] = expected["replay_check"]

    def ours(key: str) -> str | None:
        bank, pcr = key.split(":")
        return replay.get(bank, {}).get(pcr)

    def theirs(key: str) -> str:
        bank, pcr = key.split(":")
        return str(expected["pcrs"][bank][pcr])

    assert [ours(key) for key in check.get("match", [])] == [
        theirs(key) for key in check.get("match", [])]
    for key in check.get("MISMATCH", []):
        assert ours(key) is not None and ours(key) != theirs(key)
    for key in check.get("not-in-log", []) + check.get("not-extended-by-log", []):
        assert ours(key) is None


def test_ebs_log_matches_once_the_unlogged_exit_boot_services_events_are_added(
        shared_data: Path) -> None:
    """The firmware extended two ExitBootServices EV_EFI_ACTION strings into PCR 5 without
    logging them; adding them to our replay reproduces the TPM's PCR 5."""
    name = "go-attestation/ebs_event_missing_eventlog.bin"
    expected = json.loads((EVENTLOGS / (name + ".expected-pcrs.json")).read_text())
    pcr5 = parsed(name).replay()["sha1"][5]
    for action in (b"Exit Boot Services Invocation", b"Exit Boot Services Returned with Success"):
        pcr5 = hashlib.sha1(pcr5 + hashlib.sha1(action).digest()).digest()

    assert pcr5.hex() == expected["pcrs"]["sha1"]["5"]


# -- tpm2_eventlog ----------------------------------------------------------------------

@pytest.mark.parametrize("name", logs_with(".yaml"))
def test_replay_equals_tpm2_eventlog_pcrs_except_where_5_4_is_wrong(shared_data: Path,
                                                                   name: str) -> None:
    if name in REJECTED:
        pytest.skip(f"rejected on purpose: {REJECTED[name]}")
    log = parsed(name)
    theirs = yaml_pcrs(EVENTLOGS / (name + ".yaml"), log)
    ours = {bank: pcrs for bank, pcrs in hex_pcrs(log.replay()).items() if pcrs}
    wrong = manifest()[name]["tpm2_eventlog"]["pcrs_section_differs_from_correct_replay"] or []
    assert bool(wrong) == (name in WRONG_IN_TPM2_EVENTLOG_5_4)

    for key in wrong:
        bank, pcr = key.split(":")
        assert ours[bank].pop(pcr) != theirs[bank].pop(pcr)
    assert ours == theirs


# -- tampering with real logs -----------------------------------------------------------

TAMPER_LOG = "go-tpm-tools/gce-cos-85-attestation.bin"


def test_one_changed_digest_byte_changes_the_replayed_pcr(shared_data: Path) -> None:
    data = bytearray((EVENTLOGS / TAMPER_LOG).read_bytes())
    log = parse(data)
    event = next(e for e in log.events if e.extended and e.pcr == 4)
    data[event.offset + 12 + 2 + 5] ^= 0x80  # the sha1 digest, the Spec ID's first bank

    tampered = parse(data).replay()

    assert tampered["sha1"][4] != log.replay()["sha1"][4]
    assert tampered["sha256"] == log.replay()["sha256"]


def test_removing_an_event_changes_the_replayed_pcr(shared_data: Path) -> None:
    data = (EVENTLOGS / TAMPER_LOG).read_bytes()
    log = parse(data)
    events = log.events
    i = next(i for i, e in enumerate(events) if e.extended and e.pcr == 7)
    end = events[i + 1].offset if i + 1 < len(events) else len(data)

    tampered = parse(data[:events[i].offset] + data[end:])

    assert len(tampered.events) == len(events) - 1
    for bank in log.banks:
        assert tampered.replay_bank(bank)[7] != log.replay_bank(bank)[7]


def test_truncated_real_log_names_the_cut_event(shared_data: Path) -> None:
    data = (EVENTLOGS / TAMPER_LOG).read_bytes()
    last = parse(data).events[-1]

    with pytest.raises(EventLogError, match=f"truncated.*event {last.index}, offset "
                                            f"{last.offset}"):
        parse(data[:-1])


@pytest.mark.parametrize("name", ["go-tpm-tools/ubuntu-2104-no-dbx.bin",
                                  "tpm2-tss/binary_measurements_hcrtm.bin"])
def test_ff_padding_after_a_real_log_is_ignored(shared_data: Path, name: str) -> None:
    data = (EVENTLOGS / name).read_bytes()

    assert parse(data + b"\xff" * 1000).replay() == parsed(name).replay()


FUZZ_LOGS = ["go-tpm-tools/glinux-alex.bin", "go-attestation/windows_gcp_shielded_vm.bin",
             "tpm2-tools/event-postcode.bin", "tpm2-tss/binary_measurements_hcrtm.bin"]


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(FUZZ_LOGS), st.data())
def test_mutated_real_logs_parse_or_raise_event_log_error(shared_data: Path, name: str,
                                                          draw: st.DataObject) -> None:
    data = bytearray((EVENTLOGS / name).read_bytes())
    for _ in range(draw.draw(st.integers(1, 6))):
        position = draw.draw(st.integers(0, len(data) - 1))
        data[position] = draw.draw(st.integers(0, 255))
    cut = draw.draw(st.integers(0, len(data)))
    with contextlib.suppress(EventLogError):
        parse(bytes(data[:cut])).replay()
