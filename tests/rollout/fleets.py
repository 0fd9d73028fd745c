"""Small fleets for the rollout tests."""

from __future__ import annotations

from engine.fleet import VM, AntiAffinityGroup, FleetSnapshot, Host, HostState


def fleet(hosts: int = 4, vms: dict[str, list[tuple[int, int]]] | None = None, *,
          vcpus: int = 16, memory_mib: int = 65536, version: str = "v1",
          states: dict[str, HostState] | None = None,
          non_migratable: dict[str, str | None] | None = None,
          dirty: dict[str, float] | None = None,
          anti_affinity: dict[str, list[str]] | None = None) -> FleetSnapshot:
    """Hosts h1…hN in group g; ``vms`` maps a host to (vCPUs, MiB) per VM (named
    ``<host>-vmI``); ``non_migratable`` maps VM ids to a disruption label (or None)."""
    states = states or {}
    hs = tuple(Host(f"h{i}", "g", vcpus, memory_mib, version,
                    states.get(f"h{i}", HostState.IN_SERVICE)) for i in range(1, hosts + 1))
    out: list[VM] = []
    for host, sizes in (vms or {}).items():
        for i, (cpu, mem) in enumerate(sizes):
            vid = f"{host}-vm{i}"
            nm = (non_migratable or {})
            labels = {"vigil.disruption": nm[vid]} if nm.get(vid) else {}
            out.append(VM(vid, "acme", "custom", host, cpu, mem, vid not in nm,
                          (dirty or {}).get(vid, 5.0), labels))
    groups = tuple(AntiAffinityGroup(g, tuple(m)) for g, m in (anti_affinity or {}).items())
    return FleetSnapshot(hs, tuple(out), groups)
