"""Provisioning: placing a tenant's VM on a host, with every part's say, and the tenant's
signed report of it.

The attestation part has verified what the host runs; the PVDB says what affects it (with
the predictor's estimate of fixes not yet released); the decision part's policy decides::

    from engine.provision import build_report, decide_placement, sign_report

    placement = decide_placement(decider, pvdb, request, result, patched=patched)
    placement.verdict.verdict        # admit | patch | delay | reject
    placement.document               # the input document that was decided (and logged)

    report = build_report(placement, ear=token)      # the tenant's attestation report
    signed = sign_report(report, signing_key)        # compact JWS; verify_report() offline
    html = render_html(report)                       # readable, self-contained HTML

Everything else in this package is internal.
"""

from __future__ import annotations

from engine.provision.html import render_html
from engine.provision.placement import Placement, decide_placement
from engine.provision.report import (
    ADVICE_CLEAN,
    ADVICE_NOT_PATCHED,
    ADVICE_PATCHED,
    REPORT_TYP,
    ReportError,
    TenantReport,
    build_report,
    canonical_json,
    read_report,
    sign_report,
    verify_report,
)

__all__ = [
    "ADVICE_CLEAN",
    "ADVICE_NOT_PATCHED",
    "ADVICE_PATCHED",
    "REPORT_TYP",
    "Placement",
    "ReportError",
    "TenantReport",
    "build_report",
    "canonical_json",
    "decide_placement",
    "read_report",
    "render_html",
    "sign_report",
    "verify_report",
]
