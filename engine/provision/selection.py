"""Candidate hosts for one VM, from the fleet inventory.

:func:`candidates` keeps the hosts in service that have room for the VM (capacity minus
the VMs on them), carry every host label the tenant requires, belong to the allowed
hosts when the tenant names some, and run the requested image version when one is
asked for; it orders them so that hosts the policy will likely admit come first (the
cheapest signal: a :class:`DecisionMemo` of the last verdict on the host's current
attested result), then spreads VMs (the most free vCPUs, relative to the host's size,
first), then by host id. When no host is left it says, per constraint, how many hosts
it ruled out.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

from engine.fleet import FleetSnapshot, Host, HostState

VERDICT_RANK = {"admit": 0, "patch": 1, "delay": 3, "reject": 4}
UNKNOWN_RANK = 2
"""A host whose verdict is not known yet ranks after admit and patch hosts, before hosts
known to delay or reject."""


@dataclass(frozen=True)
class Constraints:
    """What the tenant asks of the host."""

    vcpus: int
    memory_mib: int
    image_version: str | None = None
    """Only hosts running this image version (the request's ``requested_image``)."""
    host_labels: Mapping[str, str] = field(default_factory=dict)
    """Every one of these labels, with this value, on the host."""
    hosts: tuple[str, ...] | None = None
    """Only these hosts (None: any)."""


@dataclass(frozen=True)
class Candidate:
    host: Host
    free_vcpus: int
    free_memory_mib: int
    rank: int


@dataclass(frozen=True)
class Selection:
    """The hosts to try, best first, or why there are none."""

    candidates: tuple[Candidate, ...]
    ruled_out: tuple[str, ...] = ()
    """One sentence per constraint that ruled hosts out."""

    def why_none(self) -> str:
        if not self.ruled_out:
            return "the fleet inventory has no host"
        return "no host fits: " + "; ".join(self.ruled_out)


class DecisionMemo:
    """The last verdict decided per host, for the attested result it was decided on (a
    hint for ordering only: every placement is decided afresh)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: dict[str, tuple[dt.datetime, str]] = {}

    def remember(self, host_id: str, issued_at: dt.datetime, verdict: str) -> None:
        with self._lock:
            self._last[host_id] = (issued_at, verdict)

    def rank(self, host_id: str) -> int:
        with self._lock:
            known = self._last.get(host_id)
        return UNKNOWN_RANK if known is None else VERDICT_RANK.get(known[1], UNKNOWN_RANK)

    def forget(self, host_id: str) -> None:
        with self._lock:
            self._last.pop(host_id, None)


def usage(snapshot: FleetSnapshot) -> dict[str, tuple[int, int]]:
    """Per host, the vCPUs and MiB its VMs use."""
    used: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for vm in snapshot.vms:
        used[vm.host][0] += vm.vcpus
        used[vm.host][1] += vm.memory_mib
    return {h: (u[0], u[1]) for h, u in used.items()}


def candidates(snapshot: FleetSnapshot, want: Constraints,
               memo: DecisionMemo | None = None) -> Selection:
    """The hosts that can take the VM, best first (see the module docstring)."""
    used = usage(snapshot)
    out: list[Candidate] = []
    out_of_service = no_room = labels = not_named = other_version = 0
    for h in snapshot.hosts:
        if want.hosts is not None and h.id not in want.hosts:
            not_named += 1
            continue
        if h.state != HostState.IN_SERVICE:
            out_of_service += 1
            continue
        if any(h.labels.get(k) != v for k, v in want.host_labels.items()):
            labels += 1
            continue
        if want.image_version is not None and h.image_version != want.image_version:
            other_version += 1
            continue
        u = used.get(h.id, (0, 0))
        free_cpu, free_mem = h.vcpus - u[0], h.memory_mib - u[1]
        if free_cpu < want.vcpus or free_mem < want.memory_mib:
            no_room += 1
            continue
        out.append(Candidate(h, free_cpu, free_mem,
                             memo.rank(h.id) if memo is not None else UNKNOWN_RANK))
    out.sort(key=lambda c: (c.rank, -(c.free_vcpus / max(1, c.host.vcpus)), -c.free_vcpus,
                            c.host.id))
    ruled: list[str] = []
    if not_named:
        ruled.append(f"{not_named} host(s) are not among those the request allows")
    if out_of_service:
        ruled.append(f"{out_of_service} host(s) are not in service")
    if labels:
        wanted = ", ".join(f"{k}={v}" for k, v in sorted(want.host_labels.items()))
        ruled.append(f"{labels} host(s) lack the required labels {wanted}")
    if other_version:
        ruled.append(f"{other_version} host(s) do not run the requested image version "
                     f"{want.image_version}")
    if no_room:
        ruled.append(f"{no_room} host(s) have not {want.vcpus} vCPUs and "
                     f"{want.memory_mib} MiB free")
    return Selection(tuple(out), tuple(ruled))
