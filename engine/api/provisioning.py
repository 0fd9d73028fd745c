"""The provisioning routes: requests with approval, hosts and their reports, PVDB queries.

HTTP only: the flow, the states and the launches are :mod:`engine.provision`'s. Roles
(:mod:`engine.api.tokens`): a tenant submits, reads, approves and rejects its own
requests (another tenant's answers 404, as an id that does not exist); an admin does
all of it for every tenant (naming the tenant when it submits); an auditor reads
everything and changes nothing; hosts are for admins and auditors.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from engine.api.auth import requires
from engine.api.errors import ApiError, responses
from engine.api.tokens import Principal, TokenStore
from engine.decide import Image, VmShape
from engine.errors import EXIT_INPUT, EXIT_USAGE, NotFoundError, VigilError
from engine.model import Component
from engine.provision import (
    STATUSES,
    NotReady,
    Parts,
    ProvisionAsk,
    Provisioner,
    RequestConflict,
    RequestEvent,
    RequestNotFound,
    RequestRecord,
    TenantReport,
    render_html,
    sign_report,
)
from engine.pvdb import AffectingReport

T = TypeVar("T")

NAME = r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$"
TENANT = r"^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$"
HOST_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$"
REQUEST_ID = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
LABEL_KEY = r"^[A-Za-z0-9][A-Za-z0-9._/-]*$"


def _label_keys(value: dict[str, str]) -> dict[str, str]:
    for key in value:
        if not re.match(LABEL_KEY, key):
            raise ValueError(f"label key {key!r} does not match {LABEL_KEY}")
    return value


def _key_pattern(schema: dict[str, Any]) -> None:
    schema.setdefault("propertyNames", {})["pattern"] = LABEL_KEY


LabelKey = Annotated[str, StringConstraints(min_length=1, max_length=253)]
LabelValue = Annotated[str, StringConstraints(max_length=253)]
Labels = Annotated[dict[LabelKey, LabelValue], AfterValidator(_label_keys)]
Text = Annotated[str, StringConstraints(min_length=1, max_length=200)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VmSpec(_In):
    name: str = Field(pattern=NAME, description="VM name (unique within the tenant)")
    vcpus: int = Field(ge=1, le=1024)
    memory_mib: int = Field(ge=1, le=16 * 1024 * 1024)
    labels: Labels = Field(default_factory=dict, max_length=64,
                           json_schema_extra=_key_pattern)


class ImageSpec(_In):
    name: Text
    version: Annotated[str, StringConstraints(min_length=1, max_length=100)]


class ProvisioningRequestIn(_In):
    """A VM to provision."""

    tenant: str | None = Field(default=None, pattern=TENANT, description=(
        "The tenant: a tenant token's own (may be omitted); an admin token must name it"))
    vm: VmSpec
    requested_image: ImageSpec | None = Field(
        default=None, description="Only hosts on this image version")
    requested_patch_level: Annotated[str, StringConstraints(min_length=1, max_length=100)] \
        | None = Field(default=None, description="The least host image version accepted")
    host_labels: Labels = Field(
        default_factory=dict, max_length=32, description="Labels the host must carry",
        json_schema_extra=_key_pattern)
    hosts: list[Annotated[str, StringConstraints(pattern=HOST_ID)]] | None = Field(
        default=None, max_length=256, description="Only these hosts")
    auto_approve: bool = Field(default=False, description=(
        "Approve an admit verdict at once (the policy approves; patch still waits)"))


class RejectIn(_In):
    reason: Annotated[str, StringConstraints(max_length=1000)] | None = None


class StepView(BaseModel):
    name: str
    ok: bool
    detail: str
    seconds: float


Status = Literal["awaiting_approval", "approved", "launched", "rejected", "expired",
                 "delayed", "failed"]
assert set(STATUSES) == set(Status.__args__)  # type: ignore[attr-defined]
VerdictName = Literal["admit", "patch", "delay", "reject"]


class RequestSummary(BaseModel):
    request_id: str
    tenant: str
    status: Status
    verdict: VerdictName | None
    host: str | None = Field(description="The host that was decided")
    target_host: str | None = Field(description="Where the VM is (to be) launched")
    target_image_version: str | None
    advice: str | None
    recheck_at: dt.datetime | None
    expires_at: dt.datetime | None
    created_at: dt.datetime
    updated_at: dt.datetime


class RequestView(RequestSummary):
    """A provisioning request, its outcome and the tenant's signed report."""

    patch_host_first: bool
    decision_id: str | None
    reasons: list[str]
    warnings: list[str]
    steps: list[StepView]
    failed_step: str | None
    checks: int = Field(description="How many times the flow decided it (re-checks count)")
    approved_at: dt.datetime | None
    approved_by: str | None
    launched_at: dt.datetime | None
    launch_ref: str | None
    failure: str | None
    preparation: list[str] = Field(description="Preparation requests queued for a delay")
    report: dict[str, Any] | None = Field(description="The tenant's report (JSON)")
    signed_report: str | None = Field(description="The report as a compact JWS "
                                      "(`vigil report verify`)")


class RequestList(BaseModel):
    requests: list[RequestSummary]


class EventView(BaseModel):
    seq: int
    at: dt.datetime
    actor: str
    event: str
    before: str | None
    after: str | None
    detail: dict[str, Any] | None


class EventList(BaseModel):
    events: list[EventView]


class ReportView(BaseModel):
    report: dict[str, Any]
    signed_report: str | None


class HostAttestationView(BaseModel):
    status: Literal["affirming", "warning", "contraindicated", "none"]
    issued_at: dt.datetime | None = None
    image: ImageSpec | None = None
    reason: str | None = Field(default=None, description="Why there is no result")


class HostView(BaseModel):
    id: str
    group: str
    state: str
    image_version: str
    vcpus: int
    memory_mib: int
    free_vcpus: int
    free_memory_mib: int
    vms: int
    labels: dict[str, str]
    agent_endpoint: str | None
    attestation: HostAttestationView


class HostList(BaseModel):
    hosts: list[HostView]


class HostReportView(BaseModel):
    """What a placement on the host would be told now (decided, not logged)."""

    host: str
    verdict: VerdictName
    reasons: list[str]
    warnings: list[str]
    report: dict[str, Any] | None
    signed_report: str | None


class AffectingIn(_In):
    components: list[Component] = Field(min_length=1, max_length=1000)


def _advice(record: RequestRecord) -> str | None:
    if record.report is None:
        return None
    advice = record.report.get("advice")
    return str(advice) if advice is not None else None


def summary(record: RequestRecord) -> RequestSummary:
    return RequestSummary(
        request_id=record.request_id, tenant=record.tenant, status=record.status,
        verdict=record.verdict,  # type: ignore[arg-type]
        host=record.host_id, target_host=record.target_host,
        target_image_version=record.target_image_version, advice=_advice(record),
        recheck_at=record.recheck_at, expires_at=record.expires_at,
        created_at=record.created_at, updated_at=record.updated_at)


def view(record: RequestRecord) -> RequestView:
    return RequestView(
        **summary(record).model_dump(), patch_host_first=record.patch_host_first,
        decision_id=record.decision_id, reasons=record.reasons, warnings=record.warnings,
        steps=[StepView(**s) for s in record.steps], failed_step=record.failed_step,
        checks=record.checks, approved_at=record.approved_at,
        approved_by=record.approved_by, launched_at=record.launched_at,
        launch_ref=record.launch_ref, failure=record.failure,
        preparation=record.preparation, report=record.report,
        signed_report=record.report_jws)


def _event(e: RequestEvent) -> EventView:
    return EventView(seq=e.seq, at=e.at, actor=e.actor, event=e.event, before=e.before,
                     after=e.after, detail=e.detail)


@dataclass
class Context:
    """What the routes reach; the provisioner is set when the service starts."""

    tokens: TokenStore
    parts: Parts | None
    pool: concurrent.futures.ThreadPoolExecutor
    provisioner: Provisioner | None = None
    report_key: Any = None
    problems: list[str] = field(default_factory=list)

    async def run(self, body: Callable[[], T]) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self.pool, body)
        except (RequestNotFound, NotFoundError) as exc:
            raise ApiError(404, exc.summary) from None
        except RequestConflict as exc:
            raise ApiError(409, exc.summary) from None
        except NotReady as exc:
            raise ApiError(503, exc.summary) from None
        except VigilError as exc:
            # what the caller sent cannot be read (a CPE that is no CPE): 422; the
            # service's own state (a database in use, a key): 503
            code = 422 if exc.exit_code in (EXIT_USAGE, EXIT_INPUT) else 503
            raise ApiError(code, exc.summary) from None

    def need(self) -> Provisioner:
        if self.provisioner is None:
            why = self.problems[0] if self.problems else "provisioning is not configured"
            raise ApiError(503, f"provisioning is not available: {why}")
        return self.provisioner

    def need_parts(self) -> Parts:
        if self.parts is None:
            raise ApiError(503, "the fleet is not configured in this service")
        return self.parts


def _tenant_of(principal: Principal) -> str | None:
    """The tenant a principal is confined to (None: every tenant)."""
    return principal.tenant if principal.role == "tenant" else None


RequestId = Annotated[str, Path(pattern=REQUEST_ID, description="The request's id")]
HostId = Annotated[str, Path(pattern=HOST_ID, description="The host's id")]


def router(ctx: Context) -> APIRouter:
    """The provisioning, hosts and PVDB routes over ``ctx``."""
    api = APIRouter(prefix="/v1")
    writer = requires(ctx.tokens, "admin", "tenant")
    reader = requires(ctx.tokens, "admin", "tenant", "auditor")
    fleet_reader = requires(ctx.tokens, "admin", "auditor")
    common = (401, 403, 413, 422, 500, 503)

    @api.post("/provisioning-requests", status_code=201, response_model=RequestView,
              responses=responses(*common))
    async def submit(body: ProvisioningRequestIn,
                     who: Principal = Depends(writer)) -> RequestView:
        """Run the ProvisionVM flow for a VM: candidate hosts, a fresh attestation, the
        PVDB's findings in the window, the patched configuration, the policy's verdict
        and the tenant's signed report. Status ``awaiting_approval`` (admit, patch),
        ``delayed`` (re-checked at ``recheck_at``) or ``rejected``."""
        if who.role == "tenant":
            if body.tenant is not None and body.tenant != who.tenant:
                raise ApiError(403, "a tenant token submits for its own tenant only")
            tenant = who.tenant
        else:
            if body.tenant is None:
                raise ApiError(403, "an admin token submits for a tenant it names: give "
                               "tenant")
            tenant = body.tenant
        assert tenant is not None
        provisioner = ctx.need()
        vm = body.vm
        ask = ProvisionAsk(
            tenant=tenant, vm=VmShape(name=vm.name, vcpus=vm.vcpus,
                                      memory_mib=vm.memory_mib, labels=dict(vm.labels)),
            requested_image=Image(name=body.requested_image.name,
                                  version=body.requested_image.version)
            if body.requested_image else None,
            requested_patch_level=body.requested_patch_level,
            host_labels=dict(body.host_labels),
            hosts=tuple(body.hosts) if body.hosts is not None else None)
        record = await ctx.run(lambda: provisioner.submit(ask, actor=who.actor,
                                                          auto_approve=body.auto_approve))
        return view(record)

    @api.get("/provisioning-requests", response_model=RequestList,
             responses=responses(*common))
    async def find(who: Principal = Depends(reader),
                   status: Annotated[Status | None,
                                     Query(description="Only in this state")] = None,
                   limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> RequestList:
        """The caller's requests (a tenant's own; every tenant's for admins and
        auditors), newest first."""
        provisioner = ctx.need()
        found = await ctx.run(lambda: provisioner.find(tenant=_tenant_of(who),
                                                       status=status, limit=limit))
        return RequestList(requests=[summary(r) for r in found])

    @api.get("/provisioning-requests/{request_id}", response_model=RequestView,
             responses=responses(*common, 404))
    async def get(request_id: RequestId, who: Principal = Depends(reader)) -> RequestView:
        """One request, with its report."""
        provisioner = ctx.need()
        return view(await ctx.run(lambda: provisioner.get(request_id,
                                                          tenant=_tenant_of(who))))

    @api.get("/provisioning-requests/{request_id}/events", response_model=EventList,
             responses=responses(*common, 404))
    async def events(request_id: RequestId, who: Principal = Depends(reader)
                     ) -> EventList:
        """Every state change of the request, in order, with who made it."""
        provisioner = ctx.need()

        def body() -> list[RequestEvent]:
            provisioner.get(request_id, tenant=_tenant_of(who))
            return provisioner.store.events(request_id)

        return EventList(events=[_event(e) for e in await ctx.run(body)])

    @api.get("/provisioning-requests/{request_id}/report", response_model=ReportView,
             responses={200: {"content": {"text/html": {}},
                              "description": "The report (JSON, or HTML with format=html)"},
                        **responses(*common, 404)})
    async def report(request_id: RequestId, who: Principal = Depends(reader),
                     format: Annotated[Literal["json", "html"], Query(
                         description="html: the readable page")] = "json") -> Response:
        """The tenant's signed report of the request's latest decision."""
        provisioner = ctx.need()
        record = await ctx.run(lambda: provisioner.get(request_id, tenant=_tenant_of(who)))
        if record.report is None:
            raise ApiError(404, f"provisioning request {request_id} has no report (it "
                           f"ended at the {record.failed_step or 'first'} step, before a "
                           "decision)")
        if format == "html":
            return HTMLResponse(render_html(TenantReport.model_validate(record.report)),
                                headers={"Content-Security-Policy": "default-src 'none'"})
        return JSONResponse(ReportView(report=record.report,
                                       signed_report=record.report_jws).model_dump())

    @api.post("/provisioning-requests/{request_id}/approve", response_model=RequestView,
              responses=responses(*common, 404, 409))
    async def approve(request_id: RequestId, who: Principal = Depends(writer)
                      ) -> RequestView:
        """Approve: the VM is launched on the chosen host, once (approving again changes
        nothing). An expired, rejected, failed or delayed request is 409."""
        provisioner = ctx.need()
        return view(await ctx.run(lambda: provisioner.approve(
            request_id, tenant=_tenant_of(who), actor=who.actor)))

    @api.post("/provisioning-requests/{request_id}/reject", response_model=RequestView,
              responses=responses(*common, 404, 409))
    async def reject(request_id: RequestId, who: Principal = Depends(writer),
                     body: RejectIn | None = None) -> RequestView:
        """Reject: nothing is launched (rejecting again changes nothing). A launched
        request is 409."""
        provisioner = ctx.need()
        reason = body.reason if body is not None else None
        return view(await ctx.run(lambda: provisioner.reject(
            request_id, tenant=_tenant_of(who), actor=who.actor, reason=reason)))

    # -- hosts ------------------------------------------------------------------------

    def host_view(parts: Parts, host: Any, used: dict[str, tuple[int, int]],
                  count: dict[str, int]) -> HostView:
        from engine.provision import Attested

        got = parts.cached.attest(host)
        if isinstance(got, Attested):
            r = got.result
            att = HostAttestationView(status=r.status, issued_at=r.issued_at,
                                      image=ImageSpec(name=r.image.name,
                                                      version=r.image.version)
                                      if r.image else None)
        else:
            att = HostAttestationView(status="none", reason=got.reason)
        u = used.get(host.id, (0, 0))
        return HostView(id=host.id, group=host.group, state=host.state.value,
                        image_version=host.image_version, vcpus=host.vcpus,
                        memory_mib=host.memory_mib, free_vcpus=host.vcpus - u[0],
                        free_memory_mib=host.memory_mib - u[1], vms=count.get(host.id, 0),
                        labels=dict(host.labels), agent_endpoint=host.agent_endpoint,
                        attestation=att)

    def hosts_now(parts: Parts, only: str | None) -> list[HostView]:
        snapshot = parts.fleet.snapshot()
        if isinstance(snapshot, str):
            raise NotReady(snapshot)
        used: dict[str, list[int]] = {}
        count: dict[str, int] = {}
        for vm in snapshot.vms:
            u = used.setdefault(vm.host, [0, 0])
            u[0] += vm.vcpus
            u[1] += vm.memory_mib
            count[vm.host] = count.get(vm.host, 0) + 1
        usage = {h: (u[0], u[1]) for h, u in used.items()}
        chosen = [h for h in snapshot.hosts if only is None or h.id == only]
        if only is not None and not chosen:
            raise NotFoundError(f"host {only} is not in the fleet inventory")
        return [host_view(parts, h, usage, count) for h in chosen]

    @api.get("/hosts", response_model=HostList, responses=responses(*common))
    async def hosts(who: Principal = Depends(fleet_reader)) -> HostList:
        """The fleet's hosts: capacity, free room, image version, attestation."""
        parts = ctx.need_parts()
        return HostList(hosts=await ctx.run(lambda: hosts_now(parts, None)))

    @api.get("/hosts/{host_id}", response_model=HostView, responses=responses(*common, 404))
    async def host(host_id: HostId, who: Principal = Depends(fleet_reader)) -> HostView:
        """One host (404 when the inventory has none of that id)."""
        parts = ctx.need_parts()
        return (await ctx.run(lambda: hosts_now(parts, host_id)))[0]

    @api.get("/hosts/{host_id}/report", response_model=HostReportView,
             responses=responses(*common, 404))
    async def host_report(host_id: HostId, who: Principal = Depends(fleet_reader)
                          ) -> HostReportView:
        """What a placement on the host would be told now: its cached attestation, the
        PVDB's findings, the patched configuration and the policy's verdict for a
        smallest VM (decided, not logged), as a signed report."""
        parts = ctx.need_parts()

        def body() -> HostReportView:
            outcome = parts.flow.assess(host_id)
            if outcome is None:
                raise NotFoundError(f"host {host_id} is not in the fleet inventory")
            report = None
            signed = None
            if outcome.placement is not None:
                built = parts.flow.report(outcome, None)
                if built is not None:
                    report = built[0].to_json()
                    if ctx.report_key is not None:
                        signed = sign_report(built[0], ctx.report_key)
            return HostReportView(host=host_id, verdict=outcome.verdict,
                                  reasons=list(outcome.reasons),
                                  warnings=list(outcome.warnings), report=report,
                                  signed_report=signed)

        return await ctx.run(body)

    # -- PVDB -------------------------------------------------------------------------

    @api.get("/pvdb/vulnerabilities/{vuln_id}", response_model=dict[str, Any],
             responses=responses(*common, 404))
    async def vulnerability(vuln_id: Annotated[str, Path(
            pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{1,99}$")],
            who: Principal = Depends(reader)) -> dict[str, Any]:
        """Every fact the PVDB holds about a vulnerability, per source, with provenance
        (``vigil pvdb show``)."""
        parts = ctx.need_parts()
        return await ctx.run(lambda: parts.deciding.using(lambda db: db.show(vuln_id)))

    @api.post("/pvdb/affecting", response_model=AffectingReport,
              responses=responses(*common))
    async def affecting(body: AffectingIn, who: Principal = Depends(reader)
                        ) -> AffectingReport:
        """The vulnerabilities affecting the components, with severity, KEV/EPSS and the
        known or estimated fix dates (``vigil pvdb affecting``)."""
        from engine.predict import estimator_for

        parts = ctx.need_parts()
        now = dt.datetime.now(dt.UTC)
        return await ctx.run(lambda: parts.deciding.using(
            lambda db: db.affecting(body.components, as_of=now,
                                    estimator=estimator_for(db, now))))

    return api
