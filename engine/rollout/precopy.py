"""QEMU's pre-copy live migration, as a formula.

Round 1 sends the whole guest memory; each later round resends what the guest dirtied
during the previous one. Once what is left can be sent within the downtime limit
(``remaining <= bandwidth × downtime limit``) the guest is paused and the rest is copied
(stop-and-copy): that copy is the VM's downtime. A guest dirtying memory as fast as the
link sends it never gets there: the remaining amount stops shrinking and KubeVirt cancels
the migration at its progress timeout, or at its completion timeout (per GiB of guest
memory) if that comes first.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from engine.rollout.policy import MigrationSettings


@dataclass(frozen=True, slots=True)
class PrecopyOutcome:
    converged: bool
    duration_s: float
    """Until the guest runs on the destination, or until the migration is cancelled."""
    downtime_ms: float
    rounds: int
    sent_mib: float
    reason: str | None = None


def precopy(memory_mib: float, dirty_mibps: float, m: MigrationSettings) -> PrecopyOutcome:
    return _precopy(float(memory_mib), float(dirty_mibps), m.bandwidth_mibps,
                    m.downtime_limit_ms / 1000.0, m.completion_timeout_per_gib_s,
                    m.progress_timeout_s)


@lru_cache(maxsize=65536)
def _precopy(memory: float, dirty: float, bw: float, limit_s: float, per_gib: float,
             progress_s: float) -> PrecopyOutcome:
    completion_s = per_gib * memory / 1024.0
    remaining, t, sent, rounds = memory, 0.0, 0.0, 0
    last_progress = 0.0
    while True:
        if remaining <= bw * limit_s:
            copy = remaining / bw
            return PrecopyOutcome(True, t + copy, copy * 1000.0, rounds + 1, sent + remaining)
        round_s = remaining / bw
        if t + round_s > completion_s:
            return PrecopyOutcome(False, completion_s, 0.0, rounds, sent + bw * (completion_s - t),
                                  f"completion timeout: {completion_s:.0f} s"
                                  f" ({per_gib:.0f} s per GiB) passed before pre-copy converged")
        dirtied = min(dirty * round_s, memory)
        t += round_s
        sent += remaining
        rounds += 1
        if rounds == 1:
            last_progress = t  # the first full copy is progress; the timer starts after it
        if dirtied < remaining:
            last_progress = t
            remaining = dirtied
            continue
        # no progress: the guest dirties at least as fast as the link sends
        stop = min(last_progress + progress_s, completion_s)
        return PrecopyOutcome(False, max(stop, t), 0.0, rounds, sent,
                              f"no progress: the guest dirties {dirty:g} MiB/s, the link sends"
                              f" {bw:g} MiB/s; cancelled by the"
                              f" {'progress' if stop < completion_s else 'completion'} timeout")
