"""Where a VM goes: the eligible host with the most free memory that fits it (worst fit,
so load spreads and later VMs still fit), preferring hosts already on the target version
(a VM moved there never moves again), never onto a host holding another member of its
anti-affinity group. The planner and the executor use the same placer."""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable


class Placer:
    """Capacity and eligibility of hosts, with one lazy max-heap of free memory per tier
    (0: on the target version, 1: others)."""

    def __init__(self) -> None:
        self.cpu: dict[str, int] = {}
        self.mem: dict[str, int] = {}
        self.tier: dict[str, int | None] = {}
        self._stamp: dict[str, int] = {}
        self._heaps: tuple[list[tuple[int, str, int]], list[tuple[int, str, int]]] = ([], [])
        self.aa_of: dict[str, str] = {}
        self._aa_hosts: dict[str, Counter[str]] = {}

    def add_host(self, host: str, free_cpu: int, free_mem: int, tier: int | None) -> None:
        self.cpu[host], self.mem[host], self.tier[host] = free_cpu, free_mem, tier
        self._stamp[host] = 0
        self._push(host)

    def set_anti_affinity(self, groups: Iterable[tuple[str, Iterable[str]]],
                          location: dict[str, str]) -> None:
        for gid, vms in groups:
            c: Counter[str] = Counter()
            for vm in vms:
                self.aa_of[vm] = gid
                if vm in location:
                    c[location[vm]] += 1
            self._aa_hosts[gid] = c

    def _push(self, host: str) -> None:
        tier = self.tier[host]
        self._stamp[host] += 1
        if tier is not None:
            heapq.heappush(self._heaps[tier], (-self.mem[host], host, self._stamp[host]))

    def set_tier(self, host: str, tier: int | None) -> None:
        """``None``: not eligible (cordoned, not attested, not compliant, in the wave)."""
        if self.tier[host] != tier:
            self.tier[host] = tier
            self._push(host)

    def take(self, host: str, vm: str, cpu: int, mem: int) -> None:
        """``vm`` now occupies ``host`` (arriving, or reserved for a migration in flight)."""
        self.cpu[host] -= cpu
        self.mem[host] -= mem
        g = self.aa_of.get(vm)
        if g is not None:
            self._aa_hosts[g][host] += 1
        self._push(host)

    def free(self, host: str, vm: str, cpu: int, mem: int) -> None:
        self.cpu[host] += cpu
        self.mem[host] += mem
        g = self.aa_of.get(vm)
        if g is not None:
            self._aa_hosts[g][host] -= 1
        self._push(host)

    def _allowed(self, host: str, vm: str, cpu: int) -> bool:
        if self.cpu[host] < cpu:
            return False
        g = self.aa_of.get(vm)
        return g is None or self._aa_hosts[g][host] <= 0

    def choose(self, vm: str, cpu: int, mem: int, *, scan: int = 64) -> str | None:
        """The host for ``vm``, or None when no eligible host fits it. Does not reserve."""
        for tier in (0, 1):
            heap = self._heaps[tier]
            kept: list[tuple[int, str, int]] = []
            found: str | None = None
            exhausted = True
            while heap:
                entry = heap[0]
                negmem, host, stamp = entry
                if stamp != self._stamp[host] or self.tier[host] != tier:
                    heapq.heappop(heap)
                    continue
                if -negmem < mem:
                    break  # no host of this tier has that much memory free
                heapq.heappop(heap)
                kept.append(entry)
                if self._allowed(host, vm, cpu):
                    found = host
                    break
                if len(kept) >= scan:
                    exhausted = False
                    break
            for entry in kept:
                heapq.heappush(heap, entry)
            if found is not None:
                return found
            if not exhausted:
                for host, t in self.tier.items():  # rare: many hosts short of vCPUs
                    if t == tier and self.mem[host] >= mem and self._allowed(host, vm, cpu):
                        return host
        return None

    def most_free(self) -> tuple[str, int, int] | None:
        best = max(((h, self.cpu[h], self.mem[h]) for h, t in self.tier.items() if t is not None),
                   key=lambda x: x[2], default=None)
        return best
