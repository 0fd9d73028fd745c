"""A generated fleet, for the rollout example, tests and benchmarks: hosts of one size in
host groups, VMs of a few shapes packed onto them, anti-affinity triples.
Deterministic for a given seed."""

from __future__ import annotations

import random

from engine.fleet.model import VM, AntiAffinityGroup, FleetSnapshot, Host

SHAPES = {  # name: (vCPUs, MiB)
    "m.small": (2, 4096),
    "m.medium": (4, 8192),
    "m.large": (8, 16384),
    "m.xlarge": (16, 32768),
}
_WEIGHTS = (4, 4, 2, 1)


def synthetic(hosts: int, vms_per_host: int = 20, *, groups: int = 1, version: str = "v1",
              seed: int = 7, host_vcpus: int = 192, host_memory_mib: int = 512 * 1024,
              anti_affinity_fraction: float = 0.05, non_migratable_fraction: float = 0.0,
              unknown_dirty_fraction: float = 0.1) -> FleetSnapshot:
    """``hosts`` hosts (``hv-00001`` …) split evenly over ``groups`` host groups
    (``group-1`` …), each with ``vms_per_host`` VMs; a share of VMs placed in
    anti-affinity triples (members on distinct hosts of the same group)."""
    rng = random.Random(seed)
    width = max(5, len(str(hosts)))
    hs = tuple(Host(f"hv-{i:0{width}d}", f"group-{i % groups + 1}", host_vcpus,
                    host_memory_mib, version, agent_endpoint=f"https://hv-{i:0{width}d}:8443",
                    labels={"rack": f"r{i // 40:03d}"})
               for i in range(1, hosts + 1))
    vms: list[VM] = []
    names = list(SHAPES)
    n = 0
    for h in hs:
        free_cpu, free_mem = h.vcpus, h.memory_mib
        for _ in range(vms_per_host):
            shape = rng.choices(names, _WEIGHTS)[0]
            cpu, mem = SHAPES[shape]
            if cpu > free_cpu or mem > free_mem:
                shape, (cpu, mem) = "m.small", SHAPES["m.small"]
                if cpu > free_cpu or mem > free_mem:
                    break
            free_cpu -= cpu
            free_mem -= mem
            n += 1
            dirty = (None if rng.random() < unknown_dirty_fraction
                     else round(min(rng.lognormvariate(2.0, 0.8), 100.0), 1))
            vms.append(VM(f"vm-{n:07d}", f"tenant-{rng.randrange(1, 200):03d}", shape, h.id,
                          cpu, mem, rng.random() >= non_migratable_fraction, dirty))
    groups_out: list[AntiAffinityGroup] = []
    by_group: dict[str, list[VM]] = {}
    host_group = {h.id: h.group for h in hs}
    for vm in vms:
        by_group.setdefault(host_group[vm.host], []).append(vm)
    for members in by_group.values():
        k = int(len(members) * anti_affinity_fraction) // 3
        stride = max(1, len(members) // max(1, 3 * k))
        picked = members[::stride][: 3 * k]
        for i in range(0, len(picked) - 2, 3):
            trio = picked[i:i + 3]
            if len({v.host for v in trio}) == 3:
                groups_out.append(AntiAffinityGroup(f"aa-{len(groups_out) + 1:06d}",
                                                    tuple(v.id for v in trio)))
    return FleetSnapshot(hs, tuple(vms), tuple(groups_out))
