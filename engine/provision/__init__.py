"""Provisioning: placing a tenant's VM on a host, with every part's say.

The attestation part has verified what the host runs; the PVDB says what affects it (with
the predictor's estimate of fixes not yet released); the decision part's policy decides::

    from engine.provision import decide_placement

    placement = decide_placement(decider, pvdb, request, result, patched=patched)
    placement.verdict.verdict        # admit | patch | delay | reject
    placement.document               # the input document that was decided (and logged)

Everything else in this package is internal.
"""

from __future__ import annotations

from engine.provision.placement import Placement, decide_placement

__all__ = ["Placement", "decide_placement"]
