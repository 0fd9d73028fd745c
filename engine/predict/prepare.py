"""Acting on predictions: queue patched configurations ahead of their patch, and recheck
predictions whose date passed (see :mod:`engine.predict.queue`)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from engine.predict.availability import estimator_for
from engine.predict.queue import Miss, Queue, Request
from engine.pvdb import AvailabilityBasis, Component, Finding, FixStatus, Pvdb


@dataclass(frozen=True, slots=True)
class Prepared:
    request_id: str
    created: bool
    vuln_id: str
    component: str
    expected_patch: str
    expected_date: dt.date | None
    needed_by: dt.date | None
    basis: str


def _expected_patch(f: Finding) -> str:
    if f.fix.status is FixStatus.FIXED and f.fix.closing_version:
        if f.fix.availability.basis is AvailabilityBasis.ESTIMATED:
            return f"backport to the line of {f.component_label} (now fixed in" \
                   f" {f.fix.closing_version} on another line)"
        return f.fix.closing_version
    return f"first fix for {f.component_label}"


def prepare(db: Pvdb, queue: Queue, image: str, components: Sequence[Component], *,
            as_of: dt.datetime, window_days: int) -> list[Prepared]:
    """Queue every affecting vulnerability of ``image`` whose fix is expected (estimated or
    vendor-dated in the future) within ``window_days`` of ``as_of``."""
    report = db.affecting(components, within_days=window_days, as_of=as_of,
                         estimator=estimator_for(db, as_of))
    today = as_of.astimezone(dt.UTC).date()
    payload = [c.model_dump(exclude_none=True) for c in components]
    out: list[Prepared] = []
    for f in report.findings:
        a = f.fix.availability
        if a.date is None or a.date < today:
            continue  # already available: that is a patch now, not a preparation
        needed_by = a.interval[0] if a.interval else a.date
        request_id, created = queue.upsert(
            image=image, vuln_id=f.vuln_id, component=f.component_label, components=payload,
            expected_patch=_expected_patch(f), expected_date=a.date, interval=a.interval,
            confidence=a.confidence, basis=a.basis.value, source=a.source,
            needed_by=needed_by, now=as_of)
        out.append(Prepared(request_id, created, f.vuln_id, f.component_label,
                            _expected_patch(f), a.date, needed_by, a.basis.value))
    return out


@dataclass(frozen=True, slots=True)
class Recheck:
    request: Request
    outcome: str
    """``ready`` (the fix now exists), ``missed`` (re-estimated, miss logged), ``waiting``
    (its date has not come), ``gone`` (the vulnerability no longer affects the image)."""
    miss: Miss | None = None


def recheck(db: Pvdb, queue: Queue, *, as_of: dt.datetime) -> list[Recheck]:
    """Look again at pending requests whose expected date has passed."""
    today = as_of.astimezone(dt.UTC).date()
    out: list[Recheck] = []
    for req in queue.requests("pending"):
        if req.expected_date is None or req.expected_date >= today:
            out.append(Recheck(req, "waiting"))
            continue
        components = [Component.model_validate(c) for c in req.components]
        findings = [f for f in db.affecting(components, as_of=as_of,
                                             estimator=estimator_for(db, as_of)).findings
                    if f.vuln_id == req.vuln_id and f.component_label == req.component]
        if not findings:
            queue.set_status(req.request_id, "withdrawn", as_of)
            out.append(Recheck(req, "gone"))
            continue
        a = findings[0].fix.availability
        if a.basis is AvailabilityBasis.VENDOR and a.date is not None and a.date <= today:
            queue.set_status(req.request_id, "ready", as_of)
            out.append(Recheck(req, "ready"))
            continue
        miss = queue.log_miss(req, checked_at=as_of, new_date=a.date, new_basis=a.basis.value,
                              new_source=a.source, new_interval=a.interval,
                              new_confidence=a.confidence)
        out.append(Recheck(req, "missed", miss))
    return out
