"""The rollout planner: which hosts of a group move to the target version, in which
waves, and the proof that every VM on a host being drained fits on another attested,
compliant, in-service host while its wave is out.

The plan is checked by playing the waves through in order with the same placer the
executor uses, each wave's hosts out of service together (more than the executor ever
takes out at once), earlier waves assumed done. A VM that fits nowhere refuses the whole
rollout, naming the wave, the VM and the best host there was. VMs that cannot be
live-migrated are never interrupted: their hosts are held (``wait``, ``ask-tenant``) or
left out (``skip-host``), each listed with its VMs.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import defaultdict

from pydantic import BaseModel, ConfigDict

from engine.fleet import VM, FleetSnapshot, Host, HostState
from engine.rollout.errors import RolloutRefused
from engine.rollout.placer import Placer
from engine.rollout.policy import NonMigratableAction, RolloutPolicy, amount
from engine.rollout.ports import Attestor, TargetSource

DISRUPTION_LABEL = "vigil.disruption"


class HeldVm(BaseModel):
    model_config = ConfigDict(frozen=True)
    vm: str
    tenant: str


class HeldHost(BaseModel):
    """A host not updated by this rollout because VMs on it cannot be live-migrated."""

    model_config = ConfigDict(frozen=True)
    host: str
    action: NonMigratableAction
    vms: list[HeldVm]


class SkippedHost(BaseModel):
    model_config = ConfigDict(frozen=True)
    host: str
    reason: str


class Plan(BaseModel):
    model_config = ConfigDict(frozen=True)

    group: str
    target: str
    start_at: dt.datetime
    policy: RolloutPolicy
    group_hosts: int
    max_unavailable: int
    already_unavailable: list[str]
    failure_threshold: int
    waves: list[list[str]]
    up_to_date: list[str]
    held: list[HeldHost]
    skipped: list[SkippedHost]
    warnings: list[str]
    vms_to_move: int
    migrations_planned: int
    """Moves in the feasibility play-through: VMs placed on a host of a later wave move
    again with it."""
    approved_versions: list[str] | None

    def hosts_to_update(self) -> int:
        return sum(len(w) for w in self.waves)


def plan(snapshot: FleetSnapshot, group: str, targets: TargetSource, attestor: Attestor,
         policy: RolloutPolicy | None = None, *, start_at: dt.datetime | None = None) -> Plan:
    """Plan moving ``group`` to its target version; :class:`RolloutRefused` when it cannot
    be done without interrupting a VM."""
    policy = policy or RolloutPolicy()
    target = targets.target(group)
    approved = targets.approved(group)
    hosts = [h for h in snapshot.hosts if h.group == group]
    if not hosts:
        raise RolloutRefused(f"host group {group} has no hosts in the fleet inventory")
    on_host = snapshot.vms_by_host()
    mig = policy.migration
    n = len(hosts)
    max_unavailable = amount(policy.max_unavailable, n, what="max-unavailable")
    out_now = [h.id for h in hosts if h.state is not HostState.IN_SERVICE]
    budget = max_unavailable - len(out_now)
    if budget <= 0:
        raise RolloutRefused(
            f"host group {group}: {len(out_now)} of {n} hosts are already out of service"
            f" ({', '.join(out_now[:5])}{'…' if len(out_now) > 5 else ''}), max-unavailable"
            f" is {max_unavailable}: no host can be taken out",
            tip="bring hosts back into service or raise --max-unavailable")

    up_to_date, held, skipped, todo = [], [], [], []
    warnings: list[str] = []
    unknown_dirty = 0
    for h in sorted(hosts, key=lambda h: h.id):
        if h.image_version == target:
            up_to_date.append(h.id)
            continue
        if h.state is not HostState.IN_SERVICE:
            skipped.append(SkippedHost(host=h.id, reason=f"host is {h.state.value}"))
            continue
        stuck = [v for v in on_host.get(h.id, []) if not v.live_migratable]
        if stuck:
            actions = {_action(v, policy) for v in stuck}
            action = (NonMigratableAction.SKIP_HOST if NonMigratableAction.SKIP_HOST in actions
                      else NonMigratableAction.ASK_TENANT
                      if NonMigratableAction.ASK_TENANT in actions
                      else NonMigratableAction.WAIT)
            held.append(HeldHost(host=h.id, action=action,
                                 vms=[HeldVm(vm=v.id, tenant=v.tenant) for v in stuck]))
            continue
        for v in on_host.get(h.id, []):
            rate = v.dirty_rate_mibps
            if rate is None:
                unknown_dirty += 1
            elif rate >= mig.bandwidth_mibps:
                warnings.append(
                    f"VM {v.id} on {h.id} dirties {rate:g} MiB/s, at least the migration"
                    f" bandwidth ({mig.bandwidth_mibps:g} MiB/s): pre-copy will not converge,"
                    " the migration will time out and the host stay on its version")
        todo.append(h.id)
    if unknown_dirty:
        warnings.append(f"{unknown_dirty} VMs have no measured dirty rate; migrations assume"
                        f" {mig.assumed_dirty_rate_mibps:g} MiB/s")

    waves: list[list[str]] = []
    rest = list(todo)
    if policy.canary and rest:
        waves.append(rest[:policy.canary])
        rest = rest[policy.canary:]
    while rest:
        waves.append(rest[:budget])
        rest = rest[budget:]
    threshold = _threshold(policy.failure_threshold, max((len(w) for w in waves), default=1))
    moves, to_move = _check_fit(snapshot, hosts, waves, target, approved, attestor, on_host,
                                policy.prefer_target)
    return Plan(group=group, target=target, start_at=start_at or dt.datetime.now(dt.UTC),
                policy=policy, group_hosts=n, max_unavailable=max_unavailable,
                already_unavailable=out_now, failure_threshold=threshold, waves=waves,
                up_to_date=up_to_date, held=held, skipped=skipped, warnings=warnings,
                vms_to_move=to_move, migrations_planned=moves,
                approved_versions=sorted(approved) if approved is not None else None)


def _action(vm: VM, policy: RolloutPolicy) -> NonMigratableAction:
    label = vm.labels.get(DISRUPTION_LABEL)
    try:
        return NonMigratableAction(label) if label else policy.non_migratable
    except ValueError:
        return policy.non_migratable


def _threshold(value: int | str, wave: int) -> int:
    if isinstance(value, int) or not str(value).endswith("%"):
        return int(value)
    return math.floor(wave * int(str(value)[:-1]) / 100)


def destination_tier(version: str, state: HostState, trusted: bool, target: str,
                     approved: frozenset[str] | None, prefer_target: bool = True
                     ) -> int | None:
    """0: a preferred destination (on the target version), 1: acceptable, None: not a
    destination (not in service, not attested, or on a version that is not approved)."""
    if state is not HostState.IN_SERVICE or not trusted:
        return None
    if version == target:
        return 0 if prefer_target else 1
    return 1 if approved is None or version in approved else None


def _check_fit(snapshot: FleetSnapshot, hosts: list[Host], waves: list[list[str]],
               target: str, approved: frozenset[str] | None, attestor: Attestor,
               on_host: dict[str, list[VM]], prefer: bool) -> tuple[int, int]:
    placer = Placer()
    location: dict[str, str] = {}
    resident: dict[str, list[VM]] = defaultdict(list)
    for h in hosts:
        vms = on_host.get(h.id, [])
        for v in vms:
            location[v.id] = h.id
            resident[h.id].append(v)
        placer.add_host(h.id, h.vcpus - sum(v.vcpus for v in vms),
                        h.memory_mib - sum(v.memory_mib for v in vms),
                        destination_tier(h.image_version, h.state, attestor.trusted(h.id),
                                         target, approved, prefer))
    placer.set_anti_affinity(((g.id, g.vms) for g in snapshot.anti_affinity), location)
    moves = 0
    first_moves = sum(len(resident[h]) for w in waves for h in w)
    for i, wave in enumerate(waves):
        for hid in wave:
            placer.set_tier(hid, None)
        for hid in wave:
            for v in sorted(resident[hid], key=lambda v: (-v.memory_mib, v.id)):
                dest = placer.choose(v.id, v.vcpus, v.memory_mib)
                if dest is None:
                    raise _no_room(i, wave, hid, v, placer)
                placer.take(dest, v.id, v.vcpus, v.memory_mib)
                resident[dest].append(v)
                moves += 1
        for hid in wave:  # done: empty and back on the target version
            for v in resident[hid]:
                placer.free(hid, v.id, v.vcpus, v.memory_mib)
            resident[hid] = []
            placer.set_tier(hid, 0 if prefer else 1)
    return moves, first_moves


def _no_room(i: int, wave: list[str], host: str, vm: VM, placer: Placer) -> RolloutRefused:
    best = placer.most_free()
    where = (f"the most free is {best[2]} MiB and {best[1]} vCPUs on {best[0]}" if best
             else "no host is attested, compliant and in service")
    aa = placer.aa_of.get(vm.id)
    names = ", ".join(wave[:4]) + ("…" if len(wave) > 4 else "")
    return RolloutRefused(
        f"wave {i + 1} ({names}): VM {vm.id} ({vm.vcpus} vCPUs, {vm.memory_mib} MiB) on {host}"
        f" fits on no other attested, compliant, in-service host while the wave is out;"
        f" {where}" + (f" (anti-affinity group {aa} rules out hosts with its members)"
                       if aa else ""),
        tip="lower --max-unavailable, add capacity, or approve more versions as destinations")
