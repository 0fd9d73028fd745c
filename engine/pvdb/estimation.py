"""The seam through which a predictor estimates when a fix will reach a line.

The PVDB knows what was released; it does not guess. Where a finding's line has no fix of
its own (none at all, or only on other lines), :meth:`engine.pvdb.Pvdb.affecting` asks the
:class:`AvailabilityEstimator` it was given, if any, and otherwise reports what it knows
(the other line's vendor date, or no date). ``engine.predict`` provides one; the layer above
both (the CLI, provisioning) wires them together.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Hashable, Mapping
from typing import Protocol

from engine.pvdb.query_models import Availability


class AvailabilityEstimator(Protocol):
    """Estimates fix availability for one (vulnerability, component) of one query."""

    @property
    def cache_key(self) -> Hashable:
        """What the answers depend on besides the PVDB generation and the query's day (the
        settings the estimator was built with): answers are cached per this key."""
        ...

    def availability(self, product: tuple[str, str], version: str, vuln_id: str,
                     fixed_dates: Mapping[str, dt.date]) -> Availability | None:
        """The estimate for ``vuln_id`` on the line of ``version`` of ``product`` (vendor,
        product), or None where the estimator has nothing to say about it.
        ``fixed_dates`` are the release dates of the versions known to fix it (on any
        line); only those before the query's day may be used."""
        ...
