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

The ProvisionVM flow and durable requests::

    flow = ProvisionFlow(fleet=FleetFile(settings.fleet_db),
                         attestation=CachedAttestation(cache), deciding=Deciding(settings),
                         patched=CatalogFile(settings.images_db))
    outcome = flow.run(ProvisionAsk(tenant="acme", vm=VmShape(...)))   # every step recorded
    provisioner = Provisioner(flow, RequestStore(settings.requests_db),
                              FleetLauncher(fleet_file), report_key=key, approval_ttl=3600)
    record = provisioner.submit(ask, actor="acme")      # awaiting_approval | delayed | ...
    provisioner.approve(record.request_id, tenant="acme", actor="acme")   # launched once

Modules: ``placement`` (one decision), ``report``/``report_model``/``vex``/``html`` (the
tenant's report), ``selection`` (candidate hosts), ``attestation`` (the
``HostAttestation`` port: cached results, agent challenges), ``results`` (the result
cache), ``sources`` (fleet, catalog, preparation queue), ``deciding`` (PVDB and policy
held open), ``flow`` (ProvisionVM), ``requests`` (the requests file), ``launcher`` (the
executor's port), ``provisioner`` (states, approvals, the re-check scheduler).
Everything else in this package is internal.
"""

from __future__ import annotations

from engine.provision.attestation import (
    STEP_AGENT,
    STEP_CACHED,
    AgentAttestation,
    AttestationAnswer,
    Attested,
    CachedAttestation,
    CachedThenAgent,
    ChallengeFn,
    HostAttestation,
    NotAttested,
)
from engine.provision.deciding import Deciding, NotReady
from engine.provision.flow import Outcome, ProvisionAsk, ProvisionFlow, Step
from engine.provision.html import render_html
from engine.provision.launcher import (
    FleetLauncher,
    Launched,
    Launcher,
    LaunchError,
    LaunchOrder,
)
from engine.provision.placement import Placement, decide_placement
from engine.provision.provisioner import Provisioner, Scheduler, ask_from_json
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
from engine.provision.report_model import PATCH_STATUS_TEXT
from engine.provision.requests import (
    STATUSES,
    RequestConflict,
    RequestEvent,
    RequestNotFound,
    RequestRecord,
    RequestsDbError,
    RequestStatus,
    RequestStore,
)
from engine.provision.results import ResultCache
from engine.provision.selection import Constraints, DecisionMemo, candidates
from engine.provision.sources import (
    CatalogFile,
    FleetFile,
    FleetSource,
    PatchedSource,
    Preparation,
    PreparationQueue,
)
from engine.provision.wiring import Parts, build, default_challenge

__all__ = [
    "ADVICE_CLEAN",
    "ADVICE_NOT_PATCHED",
    "ADVICE_PATCHED",
    "PATCH_STATUS_TEXT",
    "REPORT_TYP",
    "STATUSES",
    "STEP_AGENT",
    "STEP_CACHED",
    "AgentAttestation",
    "AttestationAnswer",
    "Attested",
    "CachedAttestation",
    "CachedThenAgent",
    "CatalogFile",
    "ChallengeFn",
    "Constraints",
    "Deciding",
    "DecisionMemo",
    "FleetFile",
    "FleetLauncher",
    "FleetSource",
    "HostAttestation",
    "LaunchError",
    "LaunchOrder",
    "Launched",
    "Launcher",
    "NotAttested",
    "NotReady",
    "Outcome",
    "Parts",
    "PatchedSource",
    "Placement",
    "Preparation",
    "PreparationQueue",
    "ProvisionAsk",
    "ProvisionFlow",
    "Provisioner",
    "ReportError",
    "RequestConflict",
    "RequestEvent",
    "RequestNotFound",
    "RequestRecord",
    "RequestStatus",
    "RequestStore",
    "RequestsDbError",
    "ResultCache",
    "Scheduler",
    "Step",
    "TenantReport",
    "ask_from_json",
    "build",
    "build_report",
    "candidates",
    "canonical_json",
    "decide_placement",
    "default_challenge",
    "read_report",
    "render_html",
    "sign_report",
    "verify_report",
]
