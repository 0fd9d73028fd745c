"""The fleet inventory's DuckDB file (setting ``fleet_db``).

An import replaces the whole inventory in one transaction: a crash, a refused document
or a failed write leaves the previous inventory as it was. Rollouts write their outcome
(host versions and states, VM placement) back through :meth:`Fleet.apply`, also in one
transaction. The schema is migrated forward-only, like the PVDB's.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import orjson
import pyarrow as pa

from engine.fleet.errors import FleetDbError, FleetError, FleetNotFound
from engine.fleet.model import VM, AntiAffinityGroup, FleetSnapshot, Host, HostState
from engine.migrations import StateFile

SCHEMA_VERSION = 1
_MIGRATIONS = {
    1: """
    CREATE TABLE hosts (
        host_id VARCHAR PRIMARY KEY,
        host_group VARCHAR NOT NULL,
        vcpus INTEGER NOT NULL,
        memory_mib BIGINT NOT NULL,
        image_version VARCHAR NOT NULL,
        state VARCHAR NOT NULL,
        agent_endpoint VARCHAR,
        labels JSON NOT NULL
    );
    CREATE TABLE vms (
        vm_id VARCHAR PRIMARY KEY,
        tenant VARCHAR NOT NULL,
        shape VARCHAR NOT NULL,
        host_id VARCHAR NOT NULL,
        vcpus INTEGER NOT NULL,
        memory_mib BIGINT NOT NULL,
        live_migratable BOOLEAN NOT NULL,
        dirty_rate_mibps DOUBLE,
        labels JSON NOT NULL
    );
    CREATE TABLE anti_affinity (
        group_id VARCHAR NOT NULL,
        vm_id VARCHAR NOT NULL,
        position INTEGER NOT NULL,
        PRIMARY KEY (group_id, vm_id)
    );
    CREATE TABLE inventory_imports (
        imported_at TIMESTAMPTZ NOT NULL,
        source VARCHAR NOT NULL,
        hosts INTEGER NOT NULL,
        vms INTEGER NOT NULL
    );
    """,
}


@dataclass(frozen=True, slots=True)
class ImportReport:
    source: str
    hosts: int
    vms: int
    anti_affinity_groups: int
    groups: dict[str, int]
    """Hosts per host group."""


@dataclass(frozen=True, slots=True)
class HostChange:
    """What a rollout changed on one host."""

    host: str
    state: HostState
    image_version: str


class Fleet(StateFile):
    """The inventory file, open for reading (and writing unless ``read_only``)."""

    MIGRATIONS = _MIGRATIONS
    NAME = "the fleet inventory"
    SETTING = "VIGIL_FLEET_DB"
    ERROR = FleetDbError

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = path
        try:
            if read_only and not path.exists():
                raise FleetDbError(f"no fleet inventory at {path} yet",
                                   tip="import one with `vigil fleet import FILE`")
            path.parent.mkdir(parents=True, exist_ok=True)
            self._con = duckdb.connect(str(path), read_only=read_only)
        except duckdb.Error as exc:
            raise FleetDbError(f"cannot open the fleet inventory {path}: {exc}",
                               tip="check VIGIL_FLEET_DB, or wait for another Vigil command"
                               ) from exc
        except OSError as exc:
            raise FleetDbError(f"cannot open the fleet inventory {path}: {exc}") from exc
        if not read_only:
            self._migrate()

    @classmethod
    def open(cls, path: Path, *, read_only: bool = False) -> Fleet:
        return cls(path, read_only=read_only)

    def _transaction(self, body: object, what: str) -> None:
        con = self._con
        con.execute("BEGIN TRANSACTION")
        try:
            body()  # type: ignore[operator]
            con.execute("COMMIT")
        except BaseException as exc:
            con.execute("ROLLBACK")
            if isinstance(exc, duckdb.Error):
                raise FleetDbError(f"{what} the fleet inventory failed: {exc}") from exc
            raise

    # -- writing -----------------------------------------------------------------------

    def replace(self, snapshot: FleetSnapshot, *, source: str) -> ImportReport:
        """Make ``snapshot`` (already checked, see :func:`engine.fleet.model.problems`) the
        whole inventory, in one transaction."""
        con = self._con
        hosts = pa.table({
            "host_id": [h.id for h in snapshot.hosts],
            "host_group": [h.group for h in snapshot.hosts],
            "vcpus": pa.array([h.vcpus for h in snapshot.hosts], pa.int32()),
            "memory_mib": pa.array([h.memory_mib for h in snapshot.hosts], pa.int64()),
            "image_version": [h.image_version for h in snapshot.hosts],
            "state": [h.state.value for h in snapshot.hosts],
            "agent_endpoint": pa.array([h.agent_endpoint for h in snapshot.hosts], pa.string()),
            "labels": [_json(h.labels) for h in snapshot.hosts],
        })
        vms = pa.table({
            "vm_id": [v.id for v in snapshot.vms],
            "tenant": [v.tenant for v in snapshot.vms],
            "shape": [v.shape for v in snapshot.vms],
            "host_id": [v.host for v in snapshot.vms],
            "vcpus": pa.array([v.vcpus for v in snapshot.vms], pa.int32()),
            "memory_mib": pa.array([v.memory_mib for v in snapshot.vms], pa.int64()),
            "live_migratable": pa.array([v.live_migratable for v in snapshot.vms], pa.bool_()),
            "dirty_rate_mibps": pa.array([v.dirty_rate_mibps for v in snapshot.vms],
                                         pa.float64()),
            "labels": [_json(v.labels) for v in snapshot.vms],
        })
        aa = pa.table({
            "group_id": [g.id for g in snapshot.anti_affinity for _ in g.vms],
            "vm_id": [vm for g in snapshot.anti_affinity for vm in g.vms],
            "position": pa.array([i for g in snapshot.anti_affinity for i in range(len(g.vms))],
                                 pa.int32()),
        })

        def body() -> None:
            con.execute("DELETE FROM anti_affinity")
            con.execute("DELETE FROM vms")
            con.execute("DELETE FROM hosts")
            con.register("new_hosts", hosts)
            con.register("new_vms", vms)
            con.register("new_aa", aa)
            try:
                con.execute("INSERT INTO hosts SELECT * FROM new_hosts")
                con.execute("INSERT INTO vms SELECT * FROM new_vms")
                con.execute("INSERT INTO anti_affinity SELECT * FROM new_aa")
            finally:
                for name in ("new_hosts", "new_vms", "new_aa"):
                    con.unregister(name)
            con.execute("INSERT INTO inventory_imports VALUES (?, ?, ?, ?)",
                        [dt.datetime.now(dt.UTC), source, len(snapshot.hosts),
                         len(snapshot.vms)])

        self._transaction(body, "importing into")
        groups: dict[str, int] = {}
        for h in snapshot.hosts:
            groups[h.group] = groups.get(h.group, 0) + 1
        return ImportReport(source, len(snapshot.hosts), len(snapshot.vms),
                            len(snapshot.anti_affinity), dict(sorted(groups.items())))

    def apply(self, hosts: Iterable[HostChange], vm_hosts: Mapping[str, str]) -> None:
        """Record a rollout's outcome in one transaction: each host's state and image
        version, and the host each moved VM now runs on. Writing the same outcome twice
        changes nothing."""
        con = self._con
        host_rows = [(c.state.value, c.image_version, c.host) for c in hosts]
        vm_rows = [(h, vm) for vm, h in vm_hosts.items()]

        def body() -> None:
            if host_rows:
                con.executemany("UPDATE hosts SET state = ?, image_version = ? WHERE host_id = ?",
                                host_rows)
            if vm_rows:
                con.executemany("UPDATE vms SET host_id = ? WHERE vm_id = ?", vm_rows)

        self._transaction(body, "updating")

    def place_vm(self, vm: VM, *, image_version: str | None = None) -> bool:
        """Record a newly launched VM on its host, in one transaction: the host must be in
        the inventory, in service, on ``image_version`` when given, with room for it.
        Returns False (and changes nothing) when a VM with the same id is already there,
        so that launching the same VM twice places it once."""
        con = self._con
        placed = [False]

        def body() -> None:
            if con.execute("SELECT 1 FROM vms WHERE vm_id = ?", [vm.id]).fetchone():
                return
            row = con.execute("SELECT state, image_version, vcpus, memory_mib FROM hosts "
                              "WHERE host_id = ?", [vm.host]).fetchone()
            if row is None:
                raise FleetNotFound(f"host {vm.host} is not in the fleet inventory")
            if str(row[0]) != HostState.IN_SERVICE.value:
                raise FleetError(f"host {vm.host} is {row[0]}, not in service")
            if image_version is not None and str(row[1]) != image_version:
                raise FleetError(f"host {vm.host} runs image version {row[1]}, not "
                                 f"{image_version}")
            used = con.execute("SELECT coalesce(sum(vcpus), 0), coalesce(sum(memory_mib), 0)"
                               " FROM vms WHERE host_id = ?", [vm.host]).fetchone()
            assert used is not None
            if (int(used[0]) + vm.vcpus > int(row[2])
                    or int(used[1]) + vm.memory_mib > int(row[3])):
                raise FleetError(f"host {vm.host} has no room left for {vm.vcpus} vCPUs and "
                                 f"{vm.memory_mib} MiB")
            con.execute("INSERT INTO vms VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [vm.id, vm.tenant, vm.shape, vm.host, vm.vcpus, vm.memory_mib,
                         vm.live_migratable, vm.dirty_rate_mibps, _json(vm.labels)])
            placed[0] = True

        self._transaction(body, "placing a VM in")
        return placed[0]

    # -- reading -----------------------------------------------------------------------

    def hosts(self, *, group: str | None = None, state: str | None = None) -> list[Host]:
        sql, args = "SELECT * FROM hosts WHERE 1=1", []
        if group is not None:
            sql += " AND host_group = ?"
            args.append(group)
        if state is not None:
            sql += " AND state = ?"
            args.append(state)
        return [_host(r) for r in self._con.execute(sql + " ORDER BY host_id", args).fetchall()]

    def vms(self, *, host: str | None = None, tenant: str | None = None) -> list[VM]:
        sql, args = "SELECT * FROM vms WHERE 1=1", []
        if host is not None:
            sql += " AND host_id = ?"
            args.append(host)
        if tenant is not None:
            sql += " AND tenant = ?"
            args.append(tenant)
        return [_vm(r) for r in self._con.execute(sql + " ORDER BY vm_id", args).fetchall()]

    def anti_affinity(self) -> list[AntiAffinityGroup]:
        rows = self._con.execute("SELECT group_id, list(vm_id ORDER BY position) FROM"
                                 " anti_affinity GROUP BY group_id ORDER BY group_id"
                                 ).fetchall()
        return [AntiAffinityGroup(str(g), tuple(vms)) for g, vms in rows]

    def host(self, host_id: str) -> Host:
        row = self._con.execute("SELECT * FROM hosts WHERE host_id = ?", [host_id]).fetchone()
        if row is None:
            raise FleetNotFound(f"host {host_id} is not in the fleet inventory",
                                tip="list hosts with `vigil fleet list`")
        return _host(row)

    def vm(self, vm_id: str) -> VM:
        row = self._con.execute("SELECT * FROM vms WHERE vm_id = ?", [vm_id]).fetchone()
        if row is None:
            raise FleetNotFound(f"VM {vm_id} is not in the fleet inventory",
                                tip="list VMs with `vigil fleet list --vms`")
        return _vm(row)

    def snapshot(self) -> FleetSnapshot:
        return FleetSnapshot(tuple(self.hosts()), tuple(self.vms()), tuple(self.anti_affinity()))

    def counts(self) -> dict[str, int]:
        row = self._con.execute("SELECT (SELECT count(*) FROM hosts), (SELECT count(*) FROM vms),"
                                " (SELECT count(DISTINCT group_id) FROM anti_affinity)"
                                ).fetchone()
        assert row is not None
        return {"hosts": int(row[0]), "vms": int(row[1]), "anti_affinity_groups": int(row[2])}


def _json(value: Mapping[str, str]) -> str:
    return orjson.dumps(dict(value), option=orjson.OPT_SORT_KEYS).decode()


def _host(r: Sequence[object]) -> Host:
    return Host(str(r[0]), str(r[1]), int(r[2]), int(r[3]), str(r[4]),  # type: ignore[call-overload]
                HostState(str(r[5])), None if r[6] is None else str(r[6]),
                orjson.loads(str(r[7])))


def _vm(r: Sequence[object]) -> VM:
    return VM(str(r[0]), str(r[1]), str(r[2]), str(r[3]), int(r[4]), int(r[5]),  # type: ignore[call-overload]
              bool(r[6]), None if r[7] is None else float(r[7]),  # type: ignore[arg-type]
              orjson.loads(str(r[8])))
