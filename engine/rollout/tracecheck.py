"""Check a rollout's promises from its trace alone (docs/rollout.md).

Given the NDJSON trace (its ``plan`` line first), the checker replays the events and
reports every violation of:

1. **one host per VM**: every VM is on exactly one host at every step; a migration
   starts from the host the VM is on, to another known host, never while another of the
   same VM is in flight, and ends (or fails) on the one that started;
2. **no reimage with VMs**: a host is reimaged (``reimage_start``, ``rollback``) only when
   cordoned, with no VM on it and none migrating to or from it;
3. **attested before service**: a host reimaged since it was cordoned returns to service
   (``uncordon``) only after an ``attest_ok`` following its last reimage; a migration
   goes only to an in-service host;
4. **max-unavailable held**: hosts out of service (cordoned, in maintenance, failed)
   never exceed ``max_unavailable``;
5. **downtime bounded**: every completed migration's ``downtime_ms`` is within the
   plan's ``downtime_limit_ms`` (the stop-and-copy phase only);
6. time never goes backwards; once the trace says ``end``, no migration is in flight.

``python -m engine.rollout.tracecheck TRACE`` prints the violations; exit 1 if any.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.rollout import trace

_HOST_STEPS = frozenset({"cordon", "reimage_start", "reimage_end", "rollback", "attest_ok",
                         "attest_failed", "uncordon"})


@dataclass
class Report:
    events: int = 0
    violations: list[str] = field(default_factory=list)
    max_unavailable_seen: int = 0
    migrations: int = 0

    @property
    def ok(self) -> bool:
        return not self.violations


def check(events: Iterable[dict[str, Any]]) -> Report:
    report = Report()
    it = iter(events)
    head = next(it, None)
    if head is None or head.get("type") != "plan":
        report.violations.append("line 1: the trace does not start with its plan line")
        return report
    budget = int(head["max_unavailable"])
    limit = float(head["downtime_limit_ms"])
    state = {h: v["state"] for h, v in head["hosts"].items()}
    where: dict[str, str] = dict(head["vms"])
    on: dict[str, set[str]] = {h: set() for h in state}
    for vm, h in where.items():
        if h not in on:
            report.violations.append(f"line 1: VM {vm} is on unknown host {h}")
            continue
        on[h].add(vm)
    flying: dict[str, tuple[str, str]] = {}  # vm -> (from, to)
    reimaged: dict[str, bool] = {}  # host -> reimaged since cordon
    attested: dict[str, bool] = {}  # host -> attest_ok after its last reimage
    out = sum(s != "in_service" for s in state.values())
    report.max_unavailable_seen = out
    last_t = 0.0
    ended = False
    bad = report.violations.append

    for n, e in enumerate(it, start=2):
        report.events += 1
        raw = e.get("host")
        kind, host, t = e.get("type"), str(raw or ""), float(e.get("t", 0.0))
        at = f"line {n} (t={t:g}, {kind}{' ' + host if host else ''})"
        if t < last_t:
            bad(f"{at}: time goes backwards from {last_t:g}")
        last_t = t
        if (raw is not None or kind in _HOST_STEPS) and host not in state:
            bad(f"{at}: unknown host")
            continue
        if kind == "cordon":
            if state[host] != "in_service":
                bad(f"{at}: host is {state[host]}, not in service")
            state[host] = "cordoned"
            out += 1
            reimaged[host] = attested[host] = False
        elif kind == "migrate_start":
            vm, src, dst = str(e.get("vm")), str(e.get("from")), str(e.get("to"))
            if vm not in where:
                bad(f"{at}: unknown VM {vm}")
                continue
            if vm in flying:
                bad(f"{at}: VM {vm} is already migrating")
            if where[vm] != src:
                bad(f"{at}: VM {vm} is on {where[vm]}, not {src}")
            if dst not in state or dst == src:
                bad(f"{at}: VM {vm} migrates to {dst}, not another known host")
            elif state[dst] != "in_service":
                bad(f"{at}: VM {vm} migrates to {dst}, which is {state[dst]}")
            flying[vm] = (src, dst)
        elif kind in ("migrate_end", "migrate_failed"):
            vm = str(e.get("vm"))
            pair = flying.pop(vm, None)
            if pair is None or pair != (e.get("from"), e.get("to")):
                bad(f"{at}: no migration of VM {vm} from {e.get('from')} to {e.get('to')}"
                    " is in flight")
                continue
            if kind == "migrate_end":
                report.migrations += 1
                on[pair[0]].discard(vm)
                on[pair[1]].add(vm)
                where[vm] = pair[1]
                downtime = float(e.get("downtime_ms") or 0.0)
                if downtime > limit:
                    bad(f"{at}: VM {vm} was down {downtime:g} ms, over the"
                        f" {limit:g} ms limit")
        elif kind in ("reimage_start", "rollback"):
            if state[host] not in ("cordoned", "in_maintenance"):
                bad(f"{at}: host is {state[host]}, not cordoned")
            if on[host]:
                bad(f"{at}: host still has VMs on it: {', '.join(sorted(on[host])[:5])}")
            moving = sorted(v for v, (s, d) in flying.items() if host in (s, d))
            if moving:
                bad(f"{at}: VMs are migrating to or from it: {', '.join(moving[:5])}")
            state[host] = "in_maintenance"
            reimaged[host], attested[host] = True, False
        elif kind == "attest_ok":
            attested[host] = True
        elif kind == "attest_failed":
            attested[host] = False  # rolled back next, or left failed: out of service either way
        elif kind == "uncordon":
            if state[host] == "in_service":
                bad(f"{at}: host is already in service")
            elif reimaged.get(host) and not attested.get(host):
                bad(f"{at}: back in service without attest_ok after its reimage")
            else:
                out -= 1
            state[host] = "in_service"
        elif kind == "end":
            ended = True
        elif kind not in ("pause", "resume", "abort", "reimage_end"):
            bad(f"{at}: unknown event type")
        if out > budget:
            bad(f"{at}: {out} hosts out of service, max-unavailable is {budget}")
        report.max_unavailable_seen = max(report.max_unavailable_seen, out)
    if ended and flying:
        bad(f"end: migrations still in flight: {', '.join(sorted(flying)[:5])}")
    return report


def check_file(path: Path) -> Report:
    return check(trace.read(path))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m engine.rollout.tracecheck TRACE.ndjson", file=sys.stderr)
        return 2
    report = check_file(Path(args[0]))
    for v in report.violations:
        print(v)
    print(f"{report.events} events, {report.migrations} migrations, at most"
          f" {report.max_unavailable_seen} hosts out of service:"
          f" {'all promises hold' if report.ok else f'{len(report.violations)} violations'}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
