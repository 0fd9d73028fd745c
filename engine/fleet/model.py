"""The fleet's records: hosts, VMs and anti-affinity groups, as light frozen dataclasses
(the planner and the simulator handle hundreds of thousands of them), and the checks a
whole inventory must pass before it is written."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class HostState(StrEnum):
    """Where a host stands: only ``in_service`` hosts take VMs."""

    IN_SERVICE = "in_service"
    CORDONED = "cordoned"
    IN_MAINTENANCE = "in_maintenance"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class Host:
    id: str
    group: str
    vcpus: int
    memory_mib: int
    image_version: str
    state: HostState = HostState.IN_SERVICE
    agent_endpoint: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class VM:
    id: str
    tenant: str
    shape: str
    host: str
    vcpus: int
    memory_mib: int
    live_migratable: bool = True
    dirty_rate_mibps: float | None = None
    """Guest memory dirtied per second while it runs (MiB/s); None when not measured."""
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AntiAffinityGroup:
    """VMs that must never share a host."""

    id: str
    vms: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class FleetSnapshot:
    """A whole inventory at one moment."""

    hosts: tuple[Host, ...]
    vms: tuple[VM, ...]
    anti_affinity: tuple[AntiAffinityGroup, ...] = ()

    def host_map(self) -> dict[str, Host]:
        return {h.id: h for h in self.hosts}

    def vms_by_host(self) -> dict[str, list[VM]]:
        out: dict[str, list[VM]] = defaultdict(list)
        for vm in self.vms:
            out[vm.host].append(vm)
        return out

    def group_of(self) -> dict[str, str]:
        """VM id -> its anti-affinity group id (a VM is in at most one)."""
        return {vm: g.id for g in self.anti_affinity for vm in g.vms}


def problems(snapshot: FleetSnapshot, *, limit: int = 50) -> list[str]:
    """Every reason the inventory cannot be accepted (at most ``limit``), empty when it
    can: duplicate ids, VMs on unknown hosts, hosts whose VMs exceed their capacity,
    anti-affinity groups naming unknown VMs, listing a VM twice or already broken."""
    out: list[str] = []
    out += _duplicates("host", (h.id for h in snapshot.hosts))
    out += _duplicates("VM", (v.id for v in snapshot.vms))
    out += _duplicates("anti-affinity group", (g.id for g in snapshot.anti_affinity))
    hosts = snapshot.host_map()
    used: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for vm in snapshot.vms:
        if vm.host not in hosts:
            out.append(f"VM {vm.id} names host {vm.host!r}, which is not in the inventory")
            continue
        u = used[vm.host]
        u[0] += vm.vcpus
        u[1] += vm.memory_mib
    for host_id, (vcpus, mem) in sorted(used.items()):
        h = hosts[host_id]
        if vcpus > h.vcpus or mem > h.memory_mib:
            out.append(f"the VMs on host {host_id} do not fit: they need {vcpus} vCPUs and"
                       f" {mem} MiB, the host has {h.vcpus} vCPUs and {h.memory_mib} MiB")
    vm_host = {v.id: v.host for v in snapshot.vms}
    seen: dict[str, str] = {}
    for g in snapshot.anti_affinity:
        on: dict[str, str] = {}
        for vm_id in g.vms:
            if vm_id not in vm_host:
                out.append(f"anti-affinity group {g.id} names VM {vm_id!r}, which is not in"
                           " the inventory")
                continue
            if vm_id in seen:
                out.append(f"VM {vm_id} is in two anti-affinity groups ({seen[vm_id]},"
                           f" {g.id})")
            seen[vm_id] = g.id
            other = on.get(vm_host[vm_id])
            if other is not None:
                out.append(f"anti-affinity group {g.id} is already broken: {other} and"
                           f" {vm_id} share host {vm_host[vm_id]}")
            on[vm_host[vm_id]] = vm_id
    return out[:limit]


def _duplicates(what: str, ids: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    dup: list[str] = []
    for i in ids:
        if i in seen and i not in dup:
            dup.append(i)
        seen.add(i)
    return [f"{what} id {i!r} appears more than once" for i in dup]
