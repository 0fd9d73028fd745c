"""The dashboard's fleet rows, each host's assessment kept until what it rests on changes.

A host's row (verdict, reasons, open vulnerabilities, patched configuration) is what
:meth:`ProvisionFlow.assess` and its report say now. That depends on, and the row is
kept under a key of exactly:

* the host as the inventory states it;
* the attestation result the assessment uses (the cached one: its EAR, or why there is
  none);
* the patched configuration of the attested image;
* the PVDB generation and the policy's bundle revision (:meth:`Deciding.knowledge`);
* the time, through the UTC day (days until a fix, predictions as of that day) and the
  attestation's age against the policy's ``max_age_seconds``: fresh, or stale by so
  many seconds (a stale result's reason names its age). When the policy states no
  maximum age, the age itself is in the key.

A page load re-assesses only the hosts whose key changed.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from typing import Any

from engine.decide import PatchedConfiguration
from engine.provision import Attested

Row = dict[str, Any]


class FleetRows:
    """Per host: its image, attestation, verdict, open vulnerabilities (KEV first) and
    whether it waits for a patched configuration; re-assessed when its key changes."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: dict[str, tuple[tuple[Any, ...], Row]] = {}
        self.assessed = 0
        """Assessments made (the rest were kept)."""

    def rows(self, parts: Any, snapshot: Any) -> list[Row]:
        revision, generation, max_age = parts.deciding.knowledge()
        now = parts.flow.clock()
        out = []
        seen = set()
        for host in snapshot.hosts:
            got = parts.cached.attest(host)
            patched = (parts.flow.patched.patched(got.result.image)
                       if isinstance(got, Attested) and got.result.image is not None
                       else PatchedConfiguration(state="none"))
            key = (repr(host), _attestation_key(got), repr(patched), revision, generation,
                   now.astimezone(dt.UTC).date(), _age_key(got, now, max_age))
            seen.add(host.id)
            with self._lock:
                kept = self._rows.get(host.id)
            if kept is not None and kept[0] == key:
                out.append(kept[1])
                continue
            row = _assess(parts, host, got)
            with self._lock:
                self._rows[host.id] = (key, row)
                self.assessed += 1
            out.append(row)
        with self._lock:
            for gone in [h for h in self._rows if h not in seen]:
                del self._rows[gone]
        return out


def _attestation_key(got: Any) -> tuple[Any, ...]:
    if isinstance(got, Attested):
        return ("attested", got.ear or repr(got.result))
    return ("none", getattr(got, "step", None), getattr(got, "reason", None))


def _age_key(got: Any, now: dt.datetime, max_age: float | None) -> Any:
    if not isinstance(got, Attested):
        return None
    issued = got.result.issued_at
    if issued is None:
        return "no issue time"
    age = max(0, int((now - issued).total_seconds()))
    if max_age is not None and age <= max_age:
        return "fresh"
    return age


def _assess(parts: Any, host: Any, got: Any) -> Row:
    status = got.result.status if isinstance(got, Attested) else "none"
    image = (f"{got.result.image.name} {got.result.image.version}"
             if isinstance(got, Attested) and got.result.image else f"? {host.image_version}")
    verdict, reasons, vulns, patched = "unknown", [], [], "none"
    outcome = parts.flow.assess(host.id)
    if outcome is not None:
        verdict, reasons = outcome.verdict, list(outcome.reasons)
        if outcome.placement is not None:
            built = parts.flow.report(outcome, None)
            if built is not None:
                report = built[0]
                vulns = sorted(report.vulnerabilities,
                               key=lambda v: (v.kev is None, -(v.max_cvss or 0), v.id))
                patched = report.patched_configuration.state
    return {"id": host.id, "group": host.group, "state": host.state.value, "image": image,
            "image_version": host.image_version, "attestation": status, "verdict": verdict,
            "reasons": reasons, "vulnerabilities": vulns, "patched": patched,
            "awaiting_patch": verdict == "patch" or patched == "preparing"}


Clock = Callable[[], dt.datetime]

__all__ = ["FleetRows"]
