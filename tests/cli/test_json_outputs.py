"""What the data commands promise: ``--json`` on every command that prints data, every
column of a table kept in its JSON, and the last ingest's problems and warnings listed
again by ``vigil feeds problems``."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.cli.test_bad_input_sweep import COMMANDS
from tests.clirun import vigil
from tests.conftest import ROOT
from tests.decide.conftest import document

# Commands without --json, and why: each writes a document that is JSON (or NDJSON, or
# a format chosen by --fmt) itself, serves, or only acts and says so in one line.
NO_JSON = {
    "agent activate": "writes the activation proof (JSON)",
    "agent enroll": "writes the enrollment request (JSON)",
    "agent evidence": "writes the evidence (JSON)",
    "agent simulate boot": "acts: boots the software TPM, writes an event log",
    "agent simulate stop": "acts: stops the software TPM",
    "attest ak challenge": "writes the credential challenge (JSON)",
    "attest ak complete": "acts: trusts the AK",
    "attest ak trust-cert": "acts: trusts the AK",
    "attest keygen": "writes key files",
    "attest reference create": "writes the signed manifest (JSON)",
    "attest reference show": "prints the manifest as JSON",
    "audit report": "--fmt json|csv|html",
    "bundle serve": "serves",
    "decisions export": "writes NDJSON",
    "lab demo": "acts: runs the provisioning story and serves it; its reports are JSON files",
    "schema input": "prints a JSON Schema",
    "serve": "serves",
    "version": "prints the version",
}


def test_every_data_command_takes_json() -> None:
    without = {
        " ".join(path)
        for path, command in COMMANDS
        if not any("--json" in p.opts for p in command.params)
    }
    assert without == set(NO_JSON), (
        "a command without --json that is not listed (or listed and now has it): "
        f"{sorted(without ^ set(NO_JSON))}"
    )


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for key in [k for k in os.environ if k.startswith("VIGIL_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("VIGIL_DB", str(tmp_path / "pvdb.duckdb"))
    monkeypatch.setenv("VIGIL_DECISION_LOG", str(tmp_path / "decisions.duckdb"))
    monkeypatch.setenv("COLUMNS", "250")
    return tmp_path


def test_decisions_list_json_keeps_every_column(
    env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    doc = env / "input.json"
    doc.write_text(json.dumps(document()))
    code, _, err = vigil(capsys, monkeypatch, "policy", "eval", str(doc))
    assert code == 0, err
    code, out, _ = vigil(capsys, monkeypatch, "decisions", "list", "--json")
    (row,) = json.loads(out)
    code, table, _ = vigil(capsys, monkeypatch, "decisions", "list")
    header = next(line for line in table.splitlines() if "decision" in line and "tenant" in line)
    named = {"decision": "decision_id", "time": "timestamp", "revision": "bundle_revision"}
    for column in header.replace("┃", " ").replace("|", " ").split():
        assert named.get(column, column) in row, f"column {column} missing from --json"
    assert row["tenant"] == document()["request"]["tenant"]


def test_feeds_problems_lists_the_last_ingests_problems_and_warnings(
    env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    feeds = env / "feeds"
    feeds.mkdir()
    record = json.loads(
        (ROOT / "tests/pvdb/feeds/testdata/nvd/happy/CVE-2024-3446.json").read_text()
    )
    text = json.dumps(record).replace('"baseScore": 8.2', '"baseScore": 5.5', 1)
    assert text != json.dumps(record)
    (feeds / "CVE-2024-3446.json").write_text(text)  # a stated score the vector denies
    (feeds / "broken.json").write_text('{"id": ')  # looks like a feed, does not parse
    shutil.copy(ROOT / "feeds/snapshot/kev.json", feeds / "kev.json")

    code, out, _ = vigil(capsys, monkeypatch, "feeds", "problems")
    assert code == 5  # no PVDB yet (the README: database error)
    code, out, _ = vigil(capsys, monkeypatch, "feeds", "ingest", str(feeds), "--json")
    assert code == 4
    reported = json.loads(out)
    code, out, err = vigil(capsys, monkeypatch, "feeds", "problems", "--json")
    assert code == 0, err
    last = json.loads(out)
    assert last["run_id"] == reported["run_id"]
    assert [(p["origin"], p["reason"]) for p in last["problems"]] == [
        (p["origin"], p["reason"]) for p in reported["problems"]
    ]
    assert any(p["origin"].endswith("broken.json") for p in last["problems"])
    (warning,) = last["warnings"]
    assert warning["origin"].endswith("CVE-2024-3446.json")
    assert "differs from the vector" in warning["reason"]
    code, table, _ = vigil(capsys, monkeypatch, "feeds", "problems")
    assert code == 0
    assert "broken.json" in table and "differs from the vector" in table
