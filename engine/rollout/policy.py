"""A rollout's rules: how many hosts may be out at once, when, how fast VMs may move,
when to stop, and what to do with VMs that cannot be live-migrated.

Defaults follow KubeVirt (5 parallel migrations per cluster, 2 outbound per node,
completion timeout 150 s per GiB, progress timeout 150 s) and QEMU (300 ms downtime
limit, 128 MiB/s max bandwidth).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator

from engine.rollout.errors import PolicyError

_AMOUNT = re.compile(r"^(\d+)(%?)$")
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class NonMigratableAction(StrEnum):
    WAIT = "wait"
    """Keep the host on its version until the VM has stopped or moved; try again then."""
    ASK_TENANT = "ask-tenant"
    """As ``wait``, and the plan lists the tenant to ask to stop or move the VM."""
    SKIP_HOST = "skip-host"
    """Leave the host out of this rollout."""


def amount(value: int | str, of: int, *, what: str) -> int:
    """``5`` or ``"10%"`` of ``of`` hosts, rounded down, at least 1."""
    match = _AMOUNT.match(str(value).strip())
    if not match:
        raise PolicyError(f"{what} {value!r}: give a count (5) or a percentage (10%)")
    n = int(match.group(1))
    if match.group(2):
        if n > 100:
            raise PolicyError(f"{what} {value!r}: a percentage is at most 100%")
        n = math.floor(of * n / 100)
    return max(1, n)


class Window(BaseModel):
    """A daily maintenance window in UTC (``22:00``–``04:00`` wraps past midnight),
    optionally only on some days (the day it opens)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    start: str
    end: str
    days: tuple[str, ...] = _DAYS

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        if not re.match(r"^([01]\d|2[0-3]):[0-5]\d$", v):
            raise ValueError(f"{v!r} is not HH:MM")
        return v

    @field_validator("days")
    @classmethod
    def _days(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        bad = [d for d in v if d not in _DAYS]
        if bad:
            raise ValueError(f"unknown days {bad}; use {', '.join(_DAYS)}")
        return v

    @classmethod
    def parse(cls, text: str) -> Window:
        """``22:00-04:00`` or ``sat,sun 22:00-04:00``."""
        days, _, span = text.strip().rpartition(" ")
        start, sep, end = span.partition("-")
        try:
            return cls(start=start, end=end if sep else "",
                       **({"days": tuple(d.strip() for d in days.split(","))} if days else {}))
        except ValueError as exc:
            raise PolicyError(f"maintenance window {text!r}: use HH:MM-HH:MM, optionally"
                              f" after days (sat,sun 22:00-04:00): {exc}") from None

    def _minutes(self) -> tuple[int, int]:
        s = int(self.start[:2]) * 60 + int(self.start[3:])
        e = int(self.end[:2]) * 60 + int(self.end[3:])
        return s, (e - s) % 1440 or 1440

    def opening(self, at: dt.datetime) -> dt.datetime | None:
        """When the window next contains ``at`` or later: ``at`` itself when open now."""
        start, length = self._minutes()
        day0 = at.replace(hour=0, minute=0, second=0, microsecond=0)
        for back in range(-1, 8):
            opens = day0 + dt.timedelta(days=back, minutes=start)
            if _DAYS[opens.weekday()] not in self.days:
                continue
            closes = opens + dt.timedelta(minutes=length)
            if closes <= at:
                continue
            return max(opens, at)
        return None


class MigrationSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    bandwidth_mibps: float = Field(default=128.0, gt=0)
    downtime_limit_ms: float = Field(default=300.0, gt=0)
    completion_timeout_per_gib_s: float = Field(default=150.0, gt=0)
    progress_timeout_s: float = Field(default=150.0, gt=0)
    parallel_per_cluster: int = Field(default=5, ge=1)
    parallel_outbound_per_host: int = Field(default=2, ge=1)
    retries: int = Field(default=2, ge=0)
    """Attempts after a failed one (a migration that cannot converge is not retried)."""
    retry_backoff_s: float = Field(default=30.0, ge=0)
    assumed_dirty_rate_mibps: float = Field(default=10.0, ge=0)
    """Dirty rate used for VMs whose rate is not known."""


class RolloutPolicy(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    max_unavailable: int | str = "10%"
    """Hosts of the group out of service at once (cordoned, in maintenance, failed),
    those already out included: a count or a percentage of the group, rounded down,
    at least 1."""
    canary: int = Field(default=1, ge=0)
    """Hosts in the first wave, alone, before the others."""
    failure_threshold: int | str = 1
    """Failed hosts a wave tolerates (attestation rolled back, host lost, drain failed);
    one more halts the rollout after the hosts in flight finish."""
    max_draining: int | None = Field(default=None, ge=1)
    """Hosts draining at once (default: enough to keep every cluster migration slot
    busy: ceil(per cluster / outbound per host) + 1)."""
    windows: tuple[Window, ...] = ()
    """Hosts start their update only inside one of these (none: any time)."""
    prefer_target: bool = True
    """Send VMs first to hosts already on the target version (they never move again);
    off, every eligible host is ranked by free memory alone, as a scheduler that does not
    know about the rollout would."""
    non_migratable: NonMigratableAction = NonMigratableAction.WAIT
    """For VMs that cannot be live-migrated, unless the VM's label
    ``vigil.disruption`` names another action."""
    migration: MigrationSettings = MigrationSettings()

    def draining_limit(self) -> int:
        if self.max_draining is not None:
            return self.max_draining
        m = self.migration
        return math.ceil(m.parallel_per_cluster / m.parallel_outbound_per_host) + 1

    def window_opening(self, at: dt.datetime) -> dt.datetime | None:
        if not self.windows:
            return at
        found = [o for w in self.windows if (o := w.opening(at)) is not None]
        return min(found) if found else None
