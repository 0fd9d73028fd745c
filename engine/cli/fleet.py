"""``vigil fleet``: import, list and show the fleet inventory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from engine.cli import output
from engine.cli.common import JsonOption, settings
from engine.fleet import Fleet, FleetNotFound, load_inventory

app = typer.Typer(help="The fleet inventory: hosts, VMs, anti-affinity groups.",
                  no_args_is_help=True)

FleetDbOption = Annotated[
    Path | None,
    typer.Option("--fleet-db", help="Inventory file (default: VIGIL_FLEET_DB or the user"
                 " data folder)."),
]


def fleet_path(fleet_db: Path | None) -> Path:
    return fleet_db if fleet_db is not None else settings().fleet_db


@app.command("import")
def import_(
    path: Annotated[Path, typer.Argument(help="Inventory file, JSON or YAML.")],
    fleet_db: FleetDbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Replace the inventory with FILE, checked whole first: unknown hosts, duplicate ids
    or VMs that do not fit refuse it, and nothing is written."""
    snapshot = load_inventory(path)
    with Fleet.open(fleet_path(fleet_db)) as fleet:
        report = fleet.replace(snapshot, source=str(path))
    if as_json:
        output.emit_json({"source": report.source, "hosts": report.hosts, "vms": report.vms,
                          "anti_affinity_groups": report.anti_affinity_groups,
                          "groups": report.groups})
        return
    output.table(f"imported {path}", ["host group", "hosts"], report.groups.items())
    typer.echo(f"{report.hosts} hosts, {report.vms} VMs, {report.anti_affinity_groups}"
               " anti-affinity groups")


@app.command("list")
def list_(
    group: Annotated[str | None, typer.Option("--group", help="Only this host group.")] = None,
    state: Annotated[str | None, typer.Option("--state", help="Only hosts in this state.")
                     ] = None,
    vms: Annotated[bool, typer.Option("--vms", help="List VMs instead of hosts.")] = False,
    fleet_db: FleetDbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Hosts (with their VM count and free capacity), or VMs with --vms."""
    with Fleet.open(fleet_path(fleet_db), read_only=True) as fleet:
        hosts = fleet.hosts(group=group, state=state)
        all_vms = fleet.vms()
    names = {h.id for h in hosts}
    if vms:
        rows = [v for v in all_vms if v.host in names]
        if as_json:
            output.emit_json({"vms": [_vm(v) for v in rows]})
            return
        output.table(f"{len(rows)} VMs", ["vm", "tenant", "shape", "host", "vCPUs", "MiB",
                                          "live-migratable", "dirty MiB/s"],
                     [(v.id, v.tenant, v.shape, v.host, v.vcpus, v.memory_mib,
                       "yes" if v.live_migratable else "no",
                       "" if v.dirty_rate_mibps is None else f"{v.dirty_rate_mibps:g}")
                      for v in rows])
        return
    used: dict[str, list[int]] = {}
    for v in all_vms:
        u = used.setdefault(v.host, [0, 0, 0])
        u[0] += 1
        u[1] += v.vcpus
        u[2] += v.memory_mib
    if as_json:
        output.emit_json({"hosts": [{**_host(h), "vm_count": used.get(h.id, [0])[0]}
                                    for h in hosts]})
        return
    output.table(f"{len(hosts)} hosts", ["host", "group", "version", "state", "VMs",
                                         "vCPUs used", "MiB used"],
                 [(h.id, h.group, h.image_version, h.state.value, used.get(h.id, [0])[0],
                   f"{used.get(h.id, [0, 0])[1]}/{h.vcpus}",
                   f"{used.get(h.id, [0, 0, 0])[2]}/{h.memory_mib}") for h in hosts])


@app.command()
def show(
    ident: Annotated[str, typer.Argument(metavar="ID", help="A host or VM id.")],
    fleet_db: FleetDbOption = None,
    as_json: JsonOption = False,
) -> None:
    """One host (with its VMs) or one VM."""
    with Fleet.open(fleet_path(fleet_db), read_only=True) as fleet:
        try:
            host = fleet.host(ident)
        except FleetNotFound:
            try:
                vm = fleet.vm(ident)
            except FleetNotFound:
                raise FleetNotFound(f"{ident} is neither a host nor a VM of the fleet"
                                    " inventory", tip="list them with `vigil fleet list`"
                                    " and `vigil fleet list --vms`") from None
            data: dict[str, Any] = {"vm": _vm(vm)}
        else:
            data = {"host": _host(host), "vms": [_vm(v) for v in fleet.vms(host=ident)]}
    if as_json:
        output.emit_json(data)
        return
    record = data.get("host") or data["vm"]
    output.table(ident, ["field", "value"], [(k, v) for k, v in record.items()])
    if "vms" in data:
        output.table(f"{len(data['vms'])} VMs on {ident}", ["vm", "tenant", "vCPUs", "MiB"],
                     [(v["id"], v["tenant"], v["vcpus"], v["memory_mib"]) for v in data["vms"]])


def _host(h: Any) -> dict[str, Any]:
    return {"id": h.id, "group": h.group, "vcpus": h.vcpus, "memory_mib": h.memory_mib,
            "image_version": h.image_version, "state": h.state.value,
            "agent_endpoint": h.agent_endpoint, "labels": dict(h.labels)}


def _vm(v: Any) -> dict[str, Any]:
    return {"id": v.id, "tenant": v.tenant, "shape": v.shape, "host": v.host,
            "vcpus": v.vcpus, "memory_mib": v.memory_mib, "live_migratable": v.live_migratable,
            "dirty_rate_mibps": v.dirty_rate_mibps, "labels": dict(v.labels)}
