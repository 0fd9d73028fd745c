"""``vigil fleet`` and ``vigil rollout``: JSON output, exit codes, one-line errors."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

from engine.attest.lab import ec_key_pem
from engine.fleet import synthetic, to_document
from tests.clirun import vigil
from tests.conftest import ROOT
from tests.rollout.conftest import Pipeline


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


def _catalog_env(env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                 pipeline: Pipeline, *, trusted_key: Path | None = None) -> None:
    """The image catalog: hv-kvm v1 (what the hosts run) and v2 (group-1's target, a
    patched kernel), both approved; v3 attested only."""
    from engine.images import Catalog
    from tests.rollout.conftest import KERNEL, add_version

    patched = KERNEL.model_copy(update={"version": "6.6.31"})
    with Catalog(tmp_path / "images.duckdb") as catalog:
        add_version(catalog, pipeline, "v1", [KERNEL])
        add_version(catalog, pipeline, "v2", [patched], parent="v1")
        add_version(catalog, pipeline, "v3", [patched], parent="v2", status="attested")
        catalog.set_target("group-1", "hv-kvm", "v1", actor="op")
        catalog.set_target("group-1", "hv-kvm", "v2", actor="op")
    monkeypatch.setenv("VIGIL_IMAGES_DB", str(tmp_path / "images.duckdb"))
    monkeypatch.setenv("VIGIL_IMAGES_SIGNING_KEY", str(trusted_key or pipeline.path))
    small = tmp_path / "small.json"
    small.write_bytes(orjson.dumps(to_document(synthetic(3, 2, seed=4))))
    env.write_bytes(small.read_bytes())


def test_with_the_catalog_a_rollout_it_cannot_prove_is_refused_before_anything_moves(
        env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch, pipeline: Pipeline) -> None:
    other = tmp_path / "other.pem"
    other.write_bytes(ec_key_pem())
    _catalog_env(env, tmp_path, monkeypatch, pipeline, trusted_key=other)
    vigil(capsys, monkeypatch, "fleet", "import", str(env))
    # the target's manifest was signed by a key the rollout does not trust
    code, _, err = vigil(capsys, monkeypatch, "rollout", "start", "group-1")
    assert code == 1 and err.startswith("error: the target of group-1, hv-kvm@v2, has a"
                                        " reference manifest that does not verify")
    monkeypatch.setenv("VIGIL_IMAGES_SIGNING_KEY", str(pipeline.path))
    # a version that is not the group's target (attested, not approved)
    code, _, err = vigil(capsys, monkeypatch, "rollout", "start", "group-1", "--to", "v3")
    assert code == 1 and err.startswith("error: --to v3: the target of group-1 in the"
                                        " image catalog is hv-kvm@v2")
    code, _, err = vigil(capsys, monkeypatch, "rollout", "plan", "group-1", "--to", "nope")
    assert code == 1 and "is hv-kvm@v2" in err
    code, _, err = vigil(capsys, monkeypatch, "rollout", "plan", "group-1", "--approved", "v1")
    assert code == 2 and "approved versions are the ones it approves" in err
    # a group with no target in the catalog
    code, _, err = vigil(capsys, monkeypatch, "rollout", "plan", "group-2")
    assert code == 1 and "host group group-2 has no target version in the image catalog" in err
    # no host has a verified attestation result: none may take VMs
    code, _, err = vigil(capsys, monkeypatch, "rollout", "start", "group-1")
    warning, error = err.splitlines()[:2]
    assert warning.startswith("warning: 3 of 3 hosts of group-1 are not trusted and take no"
                              " VMs: hv-00001 (no attestation result for it)")
    assert code == 1 and error.startswith("error: wave 1 (hv-00001)")
    assert "no host is attested, compliant and in service" in error
    # nothing moved: no rollout recorded, the inventory as it was
    code, out, _ = vigil(capsys, monkeypatch, "rollout", "status", "--json")
    assert orjson.loads(out)["rollouts"] == []
    code, out, _ = vigil(capsys, monkeypatch, "fleet", "list", "--json")
    assert {h["image_version"] for h in orjson.loads(out)["hosts"]} == {"v1"}


@pytest.mark.slow
@pytest.mark.usefixtures("need_swtpm")
def test_with_the_catalog_hosts_are_re_attested_on_software_tpms(
        env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch, pipeline: Pipeline) -> None:
    _catalog_env(env, tmp_path, monkeypatch, pipeline)
    vigil(capsys, monkeypatch, "fleet", "import", str(env))
    trace = tmp_path / "t.ndjson"
    code, out, err = vigil(capsys, monkeypatch, "rollout", "start", "group-1",
                           "--attest-current", "--max-unavailable", "1",
                           "--fail-attest", "hv-00002", "--trace", str(trace), "--json")
    assert code == 0, err
    assert "note:" not in err
    s = orjson.loads(out)
    assert s["ports"] == {"targets": "catalog", "untrusted": [],
                          "attestor": {"kind": "swtpm", "image": "hv-kvm"}}
    assert s["status"] == "completed"
    assert s["hosts"]["done"] == ["hv-00001", "hv-00003"]
    assert s["hosts"]["rolled_back"] == ["hv-00002"]
    assert "PCR 4 boot application /boot/vmlinuz-6.6.31" in s["failure_reasons"]["hv-00002"]
    # 3 as the hosts were, 3 on v2, and hv-00002's rollback on v1
    assert s["swtpm_attestations"] == 7
    code, out, _ = vigil(capsys, monkeypatch, "rollout", "check", str(trace))
    assert code == 0 and "all promises hold" in out
    code, out, _ = vigil(capsys, monkeypatch, "fleet", "list", "--json")
    versions = {h["id"]: h["image_version"] for h in orjson.loads(out)["hosts"]}
    assert versions == {"hv-00001": "v2", "hv-00002": "v1", "hv-00003": "v2"}


@pytest.mark.slow
@pytest.mark.usefixtures("need_swtpm")
def test_a_resumed_rollout_attests_as_it_started(
        env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch, pipeline: Pipeline) -> None:
    from engine.rollout import CatalogTargets, MemoryAttestor, plan, state
    from engine.rollout.simulator import Failures, SimTimings

    _catalog_env(env, tmp_path, monkeypatch, pipeline)
    vigil(capsys, monkeypatch, "fleet", "import", str(env))
    snap = synthetic(3, 2, seed=4)
    targets = CatalogTargets.load(tmp_path / "images.duckdb", [pipeline.public])
    p = plan(snap, "group-1", targets, MemoryAttestor())
    with state.RolloutStore(tmp_path / "rollouts.duckdb") as store:  # started, then killed
        rec = store.create(p, snap, untrusted=[], timings=SimTimings(),
                           failures=Failures(attestation=["hv-00003"]),
                           executor="simulator", attestor={"kind": "swtpm", "image": "hv-kvm"})
    monkeypatch.setenv("VIGIL_IMAGES_DB", str(tmp_path / "gone.duckdb"))
    code, _, err = vigil(capsys, monkeypatch, "rollout", "resume", rec.id)
    assert code == 5 and err.startswith("error: the rollout of group-1 re-attests its hosts"
                                        " against the image catalog, and there is none")
    monkeypatch.setenv("VIGIL_IMAGES_DB", str(tmp_path / "images.duckdb"))
    code, out, err = vigil(capsys, monkeypatch, "rollout", "resume", rec.id, "--json")
    assert code == 0, err
    s = orjson.loads(out)
    assert s["hosts"]["done"] == ["hv-00001", "hv-00002"]
    assert s["hosts"]["rolled_back"] == ["hv-00003"]  # its kernel is not v2's: found
    assert "PCR 9 file /boot/vmlinuz-6.6.31" in s["failure_reasons"]["hv-00003"]
