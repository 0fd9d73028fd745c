"""``vigil attest eventlog``, run through its own Typer app.

Errors propagate as the engine's error types (the main CLI prints them), so the tests
look at ``result.exception``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from engine.attest.errors import EventLogError
from engine.attest.eventlog import load
from engine.cli.attest import app
from engine.errors import NotFoundError, UsageError
from tests.attest.test_eventlog import event2, sample_log, spec_id

runner = CliRunner()

GLINUX = "go-tpm-tools/glinux-alex.bin"


@pytest.fixture
def log_file(tmp_path: Path) -> Path:
    path = tmp_path / "binary_bios_measurements"
    path.write_bytes(sample_log() + event2(0xFFFFFFFF, 0x00000006, b"WBCL tag"))
    return path


def test_help_lists_the_eventlog_command() -> None:
    result = runner.invoke(app, ["--help"])

    assert result.exit_code == 0
    assert "eventlog" in result.output


def test_table_lists_events_and_replayed_pcrs(log_file: Path) -> None:
    result = runner.invoke(app, ["eventlog", str(log_file)])

    assert result.exit_code == 0, result.output
    assert "crypto-agile log, 6 events, banks: sha1, sha256" in result.output
    assert "EV_EFI_ACTION" in result.output
    assert '"Calling EFI Application' in result.output
    assert "Replayed PCRs (sha1)" in result.output
    assert "Replayed PCRs (sha256)" in result.output
    assert load(log_file).replay_bank("sha1")[4].hex() in result.output
    assert "(-)" in result.output  # PCR index 0xFFFFFFFF, not extended


def test_json_has_hex_digests_and_replayed_pcrs(log_file: Path) -> None:
    result = runner.invoke(app, ["eventlog", "--json", str(log_file)])

    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    log = load(log_file)
    assert document["format"] == "crypto-agile"
    assert document["banks"] == ["sha1", "sha256"]
    assert document["spec_id"]["algorithms"][1] == {"id": "0x000b", "name": "sha256",
                                                    "digest_size": 32}
    assert [e["type_name"] for e in document["events"]] == [e.type_name for e in log.events]
    assert document["events"][3]["digests"]["sha256"] == log.events[3].digests["sha256"].hex()
    assert bytes.fromhex(document["events"][3]["data"]) == log.events[3].data
    assert document["events"][5]["extended"] is False
    assert document["pcrs"] == {bank: {str(pcr): value.hex() for pcr, value in pcrs.items()}
                                for bank, pcrs in log.replay().items()}


def test_bank_option_selects_one_bank(log_file: Path) -> None:
    result = runner.invoke(app, ["eventlog", "--json", "--bank", "sha256", str(log_file)])

    document = json.loads(result.output)
    assert document["banks"] == ["sha256"]
    assert list(document["pcrs"]) == ["sha256"]
    assert all(set(e["digests"]) <= {"sha256"} for e in document["events"])


def test_unknown_bank_is_a_usage_error(log_file: Path) -> None:
    result = runner.invoke(app, ["eventlog", "--bank", "sha512", str(log_file)])

    assert isinstance(result.exception, UsageError)
    assert result.exception.exit_code == 2
    assert "--bank sha512" in result.exception.diagnostics()
    assert "sha1, sha256" in result.exception.diagnostics()


def test_bank_that_an_event_omits_names_the_event(tmp_path: Path) -> None:
    path = tmp_path / "log"
    path.write_bytes(spec_id(("sha1", "sha256", "sha384")) + event2(4, 1, b"x", ("sha1",)))

    result = runner.invoke(app, ["eventlog", "--bank", "sha384", str(path)])

    assert isinstance(result.exception, EventLogError)
    assert "sha384 bank cannot be replayed" in str(result.exception)
    assert result.exception.event == 1


def test_missing_file_is_not_found(tmp_path: Path) -> None:
    result = runner.invoke(app, ["eventlog", str(tmp_path / "absent")])

    assert isinstance(result.exception, NotFoundError)
    assert result.exception.exit_code == 6


def test_garbage_is_an_event_log_error(tmp_path: Path) -> None:
    path = tmp_path / "garbage"
    path.write_bytes(b"this is not an event log, it is a sentence of some length")

    result = runner.invoke(app, ["eventlog", str(path)])

    assert isinstance(result.exception, EventLogError)
    assert result.exception.exit_code == 4
    assert "offset 0" in str(result.exception)


@pytest.mark.shared_data
def test_real_log_json_replay_matches_the_tpm(shared_data: Path) -> None:
    path = shared_data / "tpm" / "eventlogs" / GLINUX
    expected = json.loads(Path(f"{path}.expected-pcrs.json").read_text())["pcrs"]

    result = runner.invoke(app, ["eventlog", "--json", str(path)])

    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["pcrs"] == expected


@pytest.mark.shared_data
def test_real_log_table_shows_text_data(shared_data: Path) -> None:
    result = runner.invoke(app, ["eventlog", str(shared_data / "tpm" / "eventlogs" / GLINUX)])

    assert result.exit_code == 0, result.output
    assert "PCR 0 starts at locality 3" in result.output
    assert "EV_S_CRTM_CONTENTS" in result.output
