"""The fleet inventory: import with validation, refused whole, one transaction."""

from __future__ import annotations

from pathlib import Path

import duckdb
import orjson
import pytest
import yaml

from engine.fleet import (
    Fleet,
    FleetNotFound,
    HostChange,
    HostState,
    InventoryError,
    load_inventory,
    parse_inventory,
    synthetic,
    to_document,
)

DOC = {
    "shapes": {"m.large": {"vcpus": 4, "memory_mib": 16384}},
    "hosts": [
        {"id": "hv-1", "group": "rack-a", "vcpus": 16, "memory_mib": 65536,
         "image_version": "2024.05.1", "agent_endpoint": "https://hv-1:8443",
         "labels": {"rack": "a"}},
        {"id": "hv-2", "group": "rack-a", "vcpus": 16, "memory_mib": 65536,
         "image_version": "2024.05.1", "state": "cordoned"},
    ],
    "vms": [
        {"id": "vm-1", "tenant": "acme", "shape": "m.large", "host": "hv-1",
         "dirty_rate_mibps": 12.5},
        {"id": "vm-2", "tenant": "acme", "shape": "custom", "host": "hv-2", "vcpus": 2,
         "memory_mib": 2048, "live_migratable": False},
    ],
    "anti_affinity": [{"id": "acme-db", "vms": ["vm-1", "vm-2"]}],
}


def _doc(**changes: object) -> bytes:
    doc = orjson.loads(orjson.dumps(DOC))
    doc.update(changes)
    return orjson.dumps(doc)


def test_parse_json_and_yaml_alike(tmp_path: Path) -> None:
    from_json = parse_inventory(orjson.dumps(DOC), "doc.json")
    path = tmp_path / "fleet.yaml"
    path.write_text(yaml.safe_dump(DOC))
    from_yaml = load_inventory(path)
    assert from_json == from_yaml
    vm1 = from_json.vms[0]
    assert (vm1.vcpus, vm1.memory_mib, vm1.dirty_rate_mibps) == (4, 16384, 12.5)
    assert from_json.hosts[1].state is HostState.CORDONED
    assert parse_inventory(orjson.dumps(to_document(from_json)), "again") == from_json


@pytest.mark.parametrize(("change", "reason"), [
    ({"vms": [*DOC["vms"], {"id": "vm-3", "tenant": "t", "shape": "m.large",  # type: ignore[misc]
                            "host": "hv-9"}]},
     "VM vm-3 names host 'hv-9', which is not in the inventory"),
    ({"hosts": [*DOC["hosts"], DOC["hosts"][0]]},  # type: ignore[misc]
     "host id 'hv-1' appears more than once"),
    ({"vms": [{"id": f"vm-{i}", "tenant": "t", "shape": "m.large", "host": "hv-1"}
              for i in range(5)]},
     "the VMs on host hv-1 do not fit: they need 20 vCPUs and 81920 MiB, the host has"
     " 16 vCPUs and 65536 MiB"),
    ({"anti_affinity": [{"id": "g", "vms": ["vm-1", "vm-7"]}]},
     "anti-affinity group g names VM 'vm-7', which is not in the inventory"),
    ({"vms": [{"id": "vm-1", "tenant": "t", "shape": "nope", "host": "hv-1"}],
      "anti_affinity": []},
     "shape 'nope' is not in shapes"),
    ({"hosts": [{"id": "hv-1", "group": "g", "vcpus": 0, "memory_mib": 1,
                 "image_version": "v"}]},
     "hosts.0.vcpus: Input should be greater than or equal to 1"),
    ({"hosts": [{**DOC["hosts"][0], "state": "asleep"}]},  # type: ignore[dict-item]
     "hosts.0.state"),
])
def test_bad_inventory_refused_with_reason(change: dict[str, object], reason: str) -> None:
    with pytest.raises(InventoryError) as info:
        parse_inventory(_doc(**change), "bad.json")
    assert reason in info.value.summary
    assert "nothing written" in info.value.summary


def test_broken_anti_affinity_refused() -> None:
    doc = _doc(vms=[{"id": "a", "tenant": "t", "shape": "m.large", "host": "hv-1"},
                    {"id": "b", "tenant": "t", "shape": "m.large", "host": "hv-1"}],
               anti_affinity=[{"id": "g", "vms": ["a", "b"]}])
    with pytest.raises(InventoryError, match="already broken: a and b share host hv-1"):
        parse_inventory(doc, "x")


def test_import_replace_and_read(tmp_path: Path) -> None:
    snap = parse_inventory(orjson.dumps(DOC), "doc")
    with Fleet.open(tmp_path / "fleet.duckdb") as fleet:
        report = fleet.replace(snap, source="doc")
        assert (report.hosts, report.vms, report.groups) == (2, 2, {"rack-a": 2})
        assert fleet.snapshot() == snap
        assert fleet.host("hv-1").labels == {"rack": "a"}
        assert [v.id for v in fleet.vms(host="hv-2")] == ["vm-2"]
        with pytest.raises(FleetNotFound):
            fleet.vm("nope")
        fleet.apply([HostChange("hv-1", HostState.IN_SERVICE, "2024.06.1")], {"vm-1": "hv-2"})
        fleet.apply([HostChange("hv-1", HostState.IN_SERVICE, "2024.06.1")], {"vm-1": "hv-2"})
        assert fleet.host("hv-1").image_version == "2024.06.1"
        assert fleet.vm("vm-1").host == "hv-2"
    with Fleet.open(tmp_path / "fleet.duckdb", read_only=True) as fleet:
        assert fleet.counts() == {"hosts": 2, "vms": 2, "anti_affinity_groups": 1}


def test_failed_write_leaves_previous_inventory(tmp_path: Path) -> None:
    """A write that fails half-way (here: the VM insert) rolls back the whole import."""
    first = parse_inventory(orjson.dumps(DOC), "doc")
    second = synthetic(3, 2)
    with Fleet.open(tmp_path / "fleet.duckdb") as fleet:
        fleet.replace(first, source="doc")
        con = fleet._con
        real = con.execute

        def failing(sql: str, *args: object) -> object:
            if sql.startswith("INSERT INTO vms"):
                raise duckdb.IOException("disk full")
            return real(sql, *args)

        fleet._con = _Wrapped(con, failing)  # type: ignore[assignment]
        with pytest.raises(Exception, match="disk full"):
            fleet.replace(second, source="second")
        fleet._con = con
        assert fleet.snapshot() == first


class _Wrapped:
    def __init__(self, con: object, execute: object) -> None:
        self._con, self.execute = con, execute

    def __getattr__(self, name: str) -> object:
        return getattr(self._con, name)


def test_synthetic_fleet_is_valid() -> None:
    snap = synthetic(60, 20, groups=2)
    from engine.fleet import problems
    assert problems(snap) == []
    assert len(snap.vms) == 1200
    assert snap.anti_affinity
