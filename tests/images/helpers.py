"""Test helpers: PVDB findings built by hand, as ``Pvdb.affecting`` returns them."""

from __future__ import annotations

import datetime as dt

from engine.pvdb import Availability, AvailabilityBasis, Finding, Fix, FixStatus


def finding(vuln_id: str, component: int, *, fixed: list[str] | None = None,
            closing: str | None = None, status: FixStatus = FixStatus.FIXED,
            date: dt.date | None = None, basis: AvailabilityBasis = AvailabilityBasis.VENDOR,
            aliases: list[str] | None = None) -> Finding:
    if status is FixStatus.FIXED and closing is None and fixed:
        closing = fixed[0]
    return Finding(
        vuln_id=vuln_id, component=component, component_label=f"component {component}",
        state="affected", title=None, aliases=aliases or [], severities=[],
        max_base_score=None, kev=None, epss=None, evidence=[],
        fix=Fix(status=status, closing_version=closing, fixed_versions=fixed or [],
                availability=Availability(date=date, basis=basis if date else
                                          AvailabilityBasis.NONE)))
