"""Plan and simulate rollouts of large fleets, next to a serial one-host-at-a-time drain.

    .venv/bin/python benchmarks/rollout_bench.py [--hosts 1000 10000 50000] [--peer-max N]

Each fleet: N hosts (192 vCPUs, 512 GiB) in one host group, 20 VMs per host of four
shapes (2–16 vCPUs, 4–32 GiB; dirty rates log-normal around 7 MiB/s, 10 % unknown), 5 %
of VMs in anti-affinity triples. Injected: one migration failure per 1,000 VMs (retried)
and one attestation failure per 1,000 hosts (rolled back). KubeVirt's limits (5
migrations per cluster, 2 outbound per host) and QEMU's pre-copy defaults in both runs.

* **vigil**: waves after a canary, max-unavailable 10 %, up to 4 hosts draining, VMs sent
  first to hosts already on the target version;
* **serial drain** (kured-style): one host at a time (max-unavailable 1, one draining),
  VMs placed by free memory alone, as a scheduler unaware of the rollout would.

Reported: wall-clock seconds to plan and to simulate, the simulated rollout duration,
migrations (failed, retried), the most hosts out of service against the budget, the
longest downtime, whether the trace checker accepts the run's trace, and the
**exposure-days removed**: host-days on the vulnerable version avoided against patching
only when the fix ships.

Exposure is counted from the day the fix ships, which is the date the predictor's
preparation queue expected (``vigil predict prepare``: the request's expected date; its
*needed by* date, the interval's low end, is when the patched configuration must be
attested). With Vigil the configuration was named by the queue ahead of time and is
built, attested and approved as the fix ships (``vigil predict recheck`` marks the
request ready, ``vigil images prepare`` consumes it), so the rollout starts on that day;
a host stops being exposed when it returns to service re-attested on the new version
(its ``uncordon``), a host rolled back or never updated only when the rollout finishes
(a lower bound: it is still exposed). Patching only when the fix ships starts preparing
the configuration that day, ``--prepare-days`` of building and validating (0 by
default: only what is measured here is counted; each day adds one host-day per host),
then rolls out host by host (the serial drain). Removed = the serial drain's host-days
minus Vigil's.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.fleet import synthetic
from engine.gcpause import paused_gc
from engine.rollout import (
    Failures,
    MemoryJournal,
    RolloutPolicy,
    Runner,
    Simulator,
    StaticTargets,
    attestor_for,
    plan,
)
from engine.rollout import trace as trace_mod
from engine.rollout.tracecheck import check

START = dt.datetime(2024, 6, 3, 22, 0, tzinfo=dt.UTC)
POLICIES = {
    "vigil": RolloutPolicy(max_unavailable="10%", failure_threshold="5%"),
    "serial drain": RolloutPolicy(max_unavailable=1, canary=0, max_draining=1,
                                  prefer_target=False, failure_threshold=1_000_000),
}


def exposure_days(events: list[dict[str, Any]], hosts: list[str], target: str, end_t: float,
                  delay_s: float = 0.0) -> float:
    """Host-days on a vulnerable version from the day the fix ships: each host until it
    is back in service on ``target`` (after ``delay_s`` of preparation), or until the
    rollout's end (``end_t``) when it never is."""
    patched = {e["host"]: float(e["t"]) for e in events
               if e["type"] == "uncordon" and e.get("version") == target}
    return sum(delay_s + patched.get(h, end_t) for h in hosts) / 86400


def one(hosts: int, name: str, snap: Any, failures: Failures, check_trace: bool,
        prepare_days: float = 0.0) -> dict[str, Any]:
    attestor = attestor_for(failures, "v2")
    t0 = time.perf_counter()
    with paused_gc():
        p = plan(snap, "group-1", StaticTargets({"group-1": "v2"}), attestor, POLICIES[name],
                 start_at=START)
    t1 = time.perf_counter()
    sim = Simulator({v.id: v for v in snap.vms}, p.policy.migration, attestor,
                    failures=failures)
    journal = MemoryJournal()
    with paused_gc():
        s = Runner(p, snap, sim, journal).run()
    t2 = time.perf_counter()
    ok = None
    if check_trace:
        ok = check([trace_mod.header("bench", p, snap), *journal.events]).ok
    # Vigil's configuration is ready the day the fix ships; the serial peer prepares first
    delay = 0.0 if name == "vigil" else prepare_days * 86400
    exposure = exposure_days(journal.events, [h.id for h in snap.hosts], "v2", s.t, delay)
    return {"hosts": hosts, "vms": len(snap.vms), "peer": name, "plan_s": t1 - t0,
            "simulate_s": t2 - t1, "events": len(journal.events), "status": s.status,
            "days": s.t / 86400, "migrations": s.migrations, "failed": s.failed_migrations,
            "retried": s.retried_migrations, "max_out": s.max_unavailable_seen,
            "budget": s.max_unavailable, "max_downtime_ms": s.max_downtime_ms,
            "done": len(s.hosts["done"]), "rolled_back": len(s.hosts["rolled_back"]),
            "trace_ok": ok, "exposure_days": exposure,
            "finish_days": (delay + s.t) / 86400}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, nargs="+", default=[1000, 10000, 50000])
    ap.add_argument("--peer-max", type=int, default=10000,
                    help="run the serial peer only up to this many hosts")
    ap.add_argument("--check-max", type=int, default=10000,
                    help="run the trace checker only up to this many hosts")
    ap.add_argument("--prepare-days", type=float, default=0.0,
                    help="days of preparing the patched configuration after the fix ships,"
                         " when patching only then (default 0: only what is measured)")
    args = ap.parse_args()
    rows = []
    for n in args.hosts:
        t0 = time.perf_counter()
        snap = synthetic(n, 20, seed=1)
        gen = time.perf_counter() - t0
        vms = [v.id for v in snap.vms]
        failures = Failures(migrations={vms[i]: 1 for i in range(500, len(vms), 1000)},
                            attestation=[h.id for h in snap.hosts[700::1000]])
        for name in POLICIES:
            if name != "vigil" and n > args.peer_max:
                continue
            r = one(n, name, snap, failures, n <= args.check_max, args.prepare_days)
            r["generate_s"] = gen
            rows.append(r)
            print(f"{n:>6} hosts {r['vms']:>8} VMs  {name:<13} plan {r['plan_s']:6.1f} s"
                  f"  simulate {r['simulate_s']:6.1f} s  total {r['plan_s'] + r['simulate_s']:6.1f}"
                  f" s  {r['status']}: {r['days']:7.1f} days simulated, {r['migrations']:>8}"
                  f" migrations ({r['failed']} failed, {r['retried']} retried), at most"
                  f" {r['max_out']}/{r['budget']} out, downtime <= {r['max_downtime_ms']:g} ms,"
                  f" rolled back {r['rolled_back']}, trace check {r['trace_ok']},"
                  f" {r['exposure_days']:,.0f} host-days exposed after the fix ships",
                  flush=True)
    print()
    print("| hosts | VMs | planner | plan | simulate | simulated duration | migrations |"
          " failed / retried | most out / allowed | longest downtime | trace check |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        check_txt = {True: "holds", False: "**fails**", None: "not run"}[r["trace_ok"]]
        print(f"| {r['hosts']:,} | {r['vms']:,} | {r['peer']} | {r['plan_s']:.1f} s |"
              f" {r['simulate_s']:.1f} s | {r['days']:.1f} days | {r['migrations']:,} |"
              f" {r['failed']} / {r['retried']} | {r['max_out']} / {r['budget']} |"
              f" {r['max_downtime_ms']:g} ms | {check_txt} |")
    print()
    print(f"Exposure from the day the fix ships (preparation after it ships when patching"
          f" only then: {args.prepare_days:g} days)")
    print()
    print("| hosts | Vigil: all patched after | Vigil: host-days exposed | serial drain: all"
          " patched after | serial drain: host-days exposed | exposure-days removed |")
    print("| --- | --- | --- | --- | --- | --- |")
    for n in args.hosts:
        mine = next(r for r in rows if r["hosts"] == n and r["peer"] == "vigil")
        peer = next((r for r in rows if r["hosts"] == n and r["peer"] != "vigil"), None)
        them = ("not run", "not run", "not run") if peer is None else (
            f"{peer['finish_days']:.1f} days", f"{peer['exposure_days']:,.0f}",
            f"{peer['exposure_days'] - mine['exposure_days']:,.0f}")
        print(f"| {n:,} | {mine['finish_days']:.1f} days | {mine['exposure_days']:,.0f} |"
              f" {them[0]} | {them[1]} | {them[2]} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
