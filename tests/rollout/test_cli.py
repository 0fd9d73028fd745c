"""``vigil fleet`` and ``vigil rollout``: JSON output, exit codes, one-line errors."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

from engine.fleet import synthetic, to_document
from tests.clirun import vigil
from tests.conftest import ROOT


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for key in [k for k in os.environ if k.startswith("VIGIL_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("VIGIL_FLEET_DB", str(tmp_path / "fleet.duckdb"))
    monkeypatch.setenv("VIGIL_ROLLOUT_DB", str(tmp_path / "rollouts.duckdb"))
    monkeypatch.setenv("VIGIL_IMAGES_DB", str(tmp_path / "no-catalog.duckdb"))
    monkeypatch.setenv("COLUMNS", "200")
    inventory = tmp_path / "fleet.json"
    inventory.write_bytes(orjson.dumps(to_document(synthetic(12, 5, seed=4))))
    return inventory


def test_fleet_import_list_show(env: Path, capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = vigil(capsys, monkeypatch, "fleet", "import", str(env), "--json")
    assert code == 0 and orjson.loads(out)["hosts"] == 12
    code, out, _ = vigil(capsys, monkeypatch, "fleet", "list", "--json")
    hosts = orjson.loads(out)["hosts"]
    assert len(hosts) == 12 and hosts[0]["vm_count"] == 5
    code, out, _ = vigil(capsys, monkeypatch, "fleet", "show", "hv-00001", "--json")
    assert len(orjson.loads(out)["vms"]) == 5
    code, _, err = vigil(capsys, monkeypatch, "fleet", "show", "nope")
    assert code == 6 and err.startswith("error: nope is neither a host nor a VM")
    code, out, _ = vigil(capsys, monkeypatch, "fleet", "list", "--vms")
    assert code == 0 and "60 VMs" in out


def test_bad_inventory_is_refused(env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    doc = orjson.loads(env.read_bytes())
    doc["vms"][0]["host"] = "hv-99999"
    bad = tmp_path / "bad.json"
    bad.write_bytes(orjson.dumps(doc))
    code, _, err = vigil(capsys, monkeypatch, "fleet", "import", str(bad))
    assert code == 4
    assert err.splitlines()[0].startswith("error: inventory")
    assert "names host 'hv-99999', which is not in the inventory" in err
    assert "Traceback" not in err


def test_rollout_plan_start_status_check(env: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    vigil(capsys, monkeypatch, "fleet", "import", str(env))
    code, out, _ = vigil(capsys, monkeypatch, "rollout", "plan", "group-1", "--to", "v2",
                         "--max-unavailable", "25%", "--json")
    assert code == 0
    p = orjson.loads(out)
    assert p["max_unavailable"] == 3 and p["waves"][0] == {"wave": 1, "hosts": ["hv-00001"]}
    trace = tmp_path / "t.ndjson"
    code, out, err = vigil(capsys, monkeypatch, "rollout", "start", "group-1", "--to", "v2",
                           "--max-unavailable", "25%", "--fail-attest", "hv-00003",
                           "--fail-migration", "vm-0000002", "--trace", str(trace), "--json")
    assert code == 0, err
    s = orjson.loads(out)
    assert s["status"] == "completed" and s["hosts"]["rolled_back"] == ["hv-00003"]
    assert s["retried_migrations"] == 1
    code, out, _ = vigil(capsys, monkeypatch, "rollout", "status", "--json")
    [row] = orjson.loads(out)["rollouts"]
    assert row["id"] == s["id"] and row["status"] == "completed"
    code, out, _ = vigil(capsys, monkeypatch, "rollout", "check", str(trace))
    assert code == 0 and "all promises hold" in out
    # the outcome is in the inventory
    code, out, _ = vigil(capsys, monkeypatch, "fleet", "list", "--json")
    versions = {h["id"]: h["image_version"] for h in orjson.loads(out)["hosts"]}
    assert versions["hv-00003"] == "v1" and versions["hv-00001"] == "v2"
    code, _, err = vigil(capsys, monkeypatch, "rollout", "resume", s["id"])
    assert code == 5 and "is completed" in err
    code, _, err = vigil(capsys, monkeypatch, "rollout", "pause", "r-nope")
    assert code == 6 and err.startswith("error: rollout r-nope does not exist")


def test_rollout_refused_and_bad_options(env: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    tight = synthetic(2, 20, seed=4, host_vcpus=192, host_memory_mib=256 * 1024)
    path = tmp_path / "tight.json"
    path.write_bytes(orjson.dumps(to_document(tight)))
    vigil(capsys, monkeypatch, "fleet", "import", str(path))
    code, _, err = vigil(capsys, monkeypatch, "rollout", "plan", "group-1", "--to", "v2")
    note, error = err.splitlines()[:2]
    assert note.startswith("note: no image catalog at ") and "simulated in memory" in note
    assert code == 1 and error.startswith("error: wave 1 (hv-00001): VM")
    code, _, err = vigil(capsys, monkeypatch, "rollout", "plan", "group-1", "--to", "v2",
                         "--max-unavailable", "lots")
    assert code == 2 and "give a count (5) or a percentage (10%)" in err
    code, _, err = vigil(capsys, monkeypatch, "rollout", "plan", "group-1", "--to", "v2",
                         "--window", "9pm-4am")
    assert code == 2 and err.startswith("error: maintenance window '9pm-4am'")


def test_example_trace_checks_from_the_command_line(capsys: pytest.CaptureFixture[str],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = vigil(capsys, monkeypatch, "rollout", "check",
                         str(ROOT / "docs" / "rollout-example.trace.ndjson"), "--json")
    assert code == 0 and orjson.loads(out)["ok"]
