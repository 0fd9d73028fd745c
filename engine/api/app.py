"""The HTTP service: health, readiness, metrics, the admission webhook, the bundle server.

``create_app(settings)`` builds it around the default :class:`~engine.api.fleet_gate.FleetGate`
(opened when the server starts, closed when it stops); ``create_app(settings, gate=...)``
around any other :class:`~engine.api.gate.PlacementGate`. ``vigil serve`` runs it with
uvicorn. Routes (OpenAPI at ``/openapi.json``):

* ``GET /healthz``: the process answers.
* ``GET /readyz``: 200 when the gate can decide (the PVDB opens read-only and the policy
  loads), else 503 naming why.
* ``GET /metrics``: Prometheus text: requests and latency per route, decisions per verdict.
* ``POST /v1/admission``: a Kubernetes AdmissionReview (:mod:`engine.api.admission`);
  ``/v1/admission/validate`` (or ``?mode=validate``) for the validating webhook (never
  patches).
* ``/ui``: the dashboard (:mod:`engine.api.ui`), behind the same tokens and roles.
* ``GET|HEAD /bundles/{name}.tar.gz``, ``POST /logs``: the bundle server OPA polls and
  its decision-log uploads (:func:`engine.decide.bundle_server_app`), when a bundle folder
  is given.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import datetime as dt
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any, Literal

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from pydantic import BaseModel

from engine import __version__
from engine.api import admission as adm
from engine.api.audit_status import AuditStatus
from engine.api.auth import Guard, requires
from engine.api.errors import ApiError, responses
from engine.api.fleet_cache import FleetRows
from engine.api.gate import GateAnswer, PlacementGate
from engine.api.provisioning import Context, router
from engine.api.tokens import Principal, TokenStore
from engine.api.ui import ui_router
from engine.config import Settings
from engine.decide import BundleFolder, DecisionLog, bundle_server_app
from engine.errors import VigilError
from engine.keys import load_signing_key
from engine.provision import (
    FleetLauncher,
    Launcher,
    Parts,
    Provisioner,
    RequestStore,
    Scheduler,
    build,
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class Health(BaseModel):
    status: Literal["ok", "ready", "not ready"]
    version: str = __version__
    problems: list[str] = []


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return responses(*codes)


def _field_message(errors: list[Any]) -> str:
    parts = []
    for err in errors[:5]:
        if err.get("type") == "json_invalid":
            parts.append(f"the body is not JSON ({(err.get('ctx') or {}).get('error', '')})")
            continue
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        parts.append(f"{loc}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


class _Limits:
    """ASGI middleware: the body-size limit (413) and the request metrics."""

    def __init__(self, app: ASGIApp, max_body: int, metrics: _Metrics) -> None:
        self.app = app
        self.max_body = max_body
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]
        sent = [False]

        async def send_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
                sent[0] = True
            await send(message)

        route = self.metrics.route(scope.get("path", ""))
        refused = [False]

        async def refuse() -> None:
            refused[0] = True
            if not sent[0]:
                await JSONResponse({"error": f"the request body is over {self.max_body} "
                                    "bytes"}, status_code=413)(scope, receive, send_status)

        async def guarded_send(message: Message) -> None:
            if not refused[0]:
                await send_status(message)

        try:
            declared = dict(scope.get("headers") or []).get(b"content-length")
            if declared is not None and declared.isdigit() and int(declared) > self.max_body:
                await refuse()
                return
            seen = [0]

            async def counted() -> Message:
                if refused[0]:
                    return {"type": "http.disconnect"}
                message = await receive()
                if message["type"] == "http.request":
                    seen[0] += len(message.get("body", b""))
                    if seen[0] > self.max_body:
                        await refuse()  # answered now; the app sees the client leave
                        return {"type": "http.disconnect"}
                return message

            await self.app(scope, counted, guarded_send)
        finally:
            self.metrics.requests.labels(scope.get("method", ""), route,
                                         str(status[0])).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)


class _Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("vigil_http_requests", "HTTP requests answered",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("vigil_http_request_seconds", "Time to answer a request",
                                 ["route"], registry=self.registry,
                                 buckets=(.001, .0025, .005, .01, .02, .05, .1, .25, .5, 1,
                                          2.5, 5, 10))
        self.decisions = Counter("vigil_admission_decisions",
                                 "Admission reviews answered, per kind and verdict",
                                 ["kind", "verdict"], registry=self.registry)
        self.routes: set[str] = set()

    def route(self, path: str) -> str:
        if path in self.routes:
            return path
        if path.startswith("/bundles/"):
            return "/bundles/{name}"
        return "other"


def create_app(settings: Settings, *, gate: PlacementGate | None = None,
               bundles: BundleFolder | None = None, decision_log: DecisionLog | None = None,
               max_body: int | None = None, decision_timeout: float | None = None,
               tokens: TokenStore | None = None, parts: Parts | None = None,
               launcher: Launcher | None = None, provisioning: bool | None = None,
               clock: Callable[[], dt.datetime] | None = None,
               scheduler_poll: float = 1.0) -> Any:
    """The service's ASGI application.

    ``gate`` decides admissions (default: a :class:`~engine.api.fleet_gate.FleetGate`
    over the provisioning flow's ``parts``, built from ``settings`` unless given);
    ``bundles`` is the folder served to OPA under ``/bundles/`` and ``decision_log`` takes
    OPA's decision-log uploads at ``/logs``; ``max_body`` (default ``service_max_body``)
    bounds every request body and ``decision_timeout`` (default ``admission_timeout``)
    every admission decision. ``tokens`` (default: ``tokens_db``) authenticates callers.
    ``provisioning`` (default: on when there are ``parts``) serves the provisioning
    requests, stored in ``requests_db`` and launched by ``launcher`` (default: into the
    fleet inventory), with the re-check scheduler polling every ``scheduler_poll``
    seconds on ``clock``.
    """
    owned = None
    if gate is None:
        from engine.api.fleet_gate import FleetGate

        parts = parts or build(settings, decision_log=decision_log, clock=clock)
        owned = FleetGate(settings, parts=parts)
        gate = owned
    the_gate: PlacementGate = gate
    token_store = tokens or TokenStore(settings.tokens_db)
    timeout = decision_timeout if decision_timeout is not None else settings.admission_timeout
    metrics = _Metrics()
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=16,
                                                 thread_name_prefix="vigil-decide")
    ctx = Context(tokens=token_store, parts=parts,
                  pool=concurrent.futures.ThreadPoolExecutor(
                      max_workers=4, thread_name_prefix="vigil-provision"))
    serve_requests = parts is not None if provisioning is None else provisioning
    scheduler: list[Scheduler] = []

    def start_provisioning() -> None:
        assert parts is not None
        key = None
        if settings.report_signing_key is not None:
            try:
                key = load_signing_key(settings.report_signing_key)
            except VigilError as exc:
                ctx.problems.append(f"the report signing key does not load: {exc.summary}")
                return
        ctx.report_key = key
        try:
            store = RequestStore(settings.requests_db)
        except VigilError as exc:
            ctx.problems.append(exc.summary)
            return
        provisioner = Provisioner(parts.flow, store, launcher or FleetLauncher(parts.fleet),
                                  report_key=key, approval_ttl=settings.request_approval_ttl,
                                  clock=parts.flow.clock)
        provisioner.resume()  # approved before a restart, not launched yet
        ctx.provisioner = provisioner
        sched = Scheduler(provisioner, poll=scheduler_poll)
        sched.start()
        scheduler.append(sched)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        if owned is not None:
            await loop.run_in_executor(pool, owned.open)
        if serve_requests and parts is not None:
            await loop.run_in_executor(pool, start_provisioning)
        try:
            yield
        finally:
            for sched in scheduler:
                sched.stop()
            pool.shutdown(wait=False, cancel_futures=True)
            ctx.pool.shutdown(wait=True, cancel_futures=True)
            if ctx.provisioner is not None:
                ctx.provisioner.store.close()
            if owned is not None:
                owned.close()
            if tokens is None:
                token_store.close()

    app = FastAPI(title="Vigil", version=__version__, lifespan=lifespan,
                  description="Attested VM placement: provisioning requests with the "
                              "tenant's signed report and approval, the Kubernetes "
                              "admission webhook for KubeVirt, hosts, PVDB queries, health "
                              "and metrics, and the OPA bundle server. Every /v1 route "
                              "takes a bearer API token (`vigil tokens create`).",
                  docs_url=None, redoc_url=None)
    app.state.context = ctx
    admission_caller = requires(token_store, "admin", "service")

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status,
                            headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        code = 400 if request.url.path.startswith("/v1/admission") else 422
        prefix = "malformed AdmissionReview: " if code == 400 else ""
        return JSONResponse({"error": prefix + _field_message(errors),
                             "detail": [{"loc": [str(p) for p in e.get("loc", ())],
                                         "msg": str(e.get("msg", ""))} for e in errors[:20]]},
                            status_code=code)

    @app.exception_handler(Exception)
    async def failed(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": f"internal error: {type(exc).__name__}"},
                            status_code=500)

    @app.get("/healthz", response_model=Health, responses=_errors(500))
    async def healthz() -> Health:
        """The process is up and answering."""
        return Health(status="ok")

    @app.get("/readyz", response_model=Health, responses=_errors(500, 503))
    async def readyz() -> Response:
        """Ready when the gate can decide: the PVDB opens read-only and the policy
        loads; otherwise 503 with the reasons."""
        problems = await asyncio.get_running_loop().run_in_executor(pool, the_gate.readiness)
        if problems:
            return JSONResponse(Health(status="not ready", problems=problems).model_dump(),
                                status_code=503)
        return JSONResponse(Health(status="ready").model_dump())

    @app.get("/metrics", response_class=Response, responses={
        200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"},
        **_errors(500)})
    async def prometheus() -> Response:
        """Prometheus metrics: ``vigil_http_requests_total`` and
        ``vigil_http_request_seconds`` per route, ``vigil_admission_decisions_total`` per
        kind and verdict."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/admission", response_model=adm.AdmissionReviewAnswer,
              response_model_exclude_none=True,
              responses=_errors(400, 401, 403, 413, 500))
    async def admission(review: adm.AdmissionReview,
                        who: Principal = Depends(admission_caller),
                        mode: Literal["mutate", "validate"] = Query(
                            "mutate", description="validate: for the validating webhook "
                            "(a patch verdict is allowed only when the object already "
                            "requires the patched image; never returns a patch)")
                        ) -> Response:
        """A Kubernetes AdmissionReview (admission.k8s.io/v1) for KubeVirt
        VirtualMachineInstance and VirtualMachineInstanceMigration CREATE. A malformed
        review is 400 with the reason; objects of other kinds are allowed untouched with
        a warning; a dry run leaves no decision-log record."""
        return await _admit(review, mutate=mode == "mutate")

    @app.post("/v1/admission/validate", response_model=adm.AdmissionReviewAnswer,
              response_model_exclude_none=True,
              responses=_errors(400, 401, 403, 413, 500))
    async def admission_validate(review: adm.AdmissionReview,
                                 who: Principal = Depends(admission_caller)
                                 ) -> Response:
        """``/v1/admission?mode=validate`` as a path, for the validating webhook."""
        return await _admit(review, mutate=False)

    def _json(answer: adm.AdmissionReviewAnswer) -> Response:
        # serialized once, here (the route's response model documents it; FastAPI would
        # validate the answer against it again before serializing)
        return Response(answer.model_dump_json(exclude_none=True),
                        media_type="application/json")

    async def _admit(review: adm.AdmissionReview, *, mutate: bool) -> Response:
        return _json(await _admit_answer(review, mutate=mutate))

    async def _admit_answer(review: adm.AdmissionReview, *, mutate: bool
                            ) -> adm.AdmissionReviewAnswer:
        req = review.request
        try:
            asked = adm.question(req)
        except adm.ObjectError as exc:
            metrics.decisions.labels(req.kind.kind, "malformed").inc()
            return adm.AdmissionReviewAnswer(response=adm.object_error(req.uid, str(exc)))
        if asked is None:
            metrics.decisions.labels("other", "untouched").inc()
            return adm.AdmissionReviewAnswer(response=adm.allow_untouched(
                req.uid, f"Vigil does not gate {req.operation} of {req.kind.kind} "
                         f"({req.kind.group or 'core'}); allowed untouched"))

        def ask() -> GateAnswer:
            return the_gate.decide(asked.tenant, asked.vm, asked.requested_image,
                                   requested_patch_level=asked.requested_patch_level,
                                   record=not req.dryRun)

        loop = asyncio.get_running_loop()
        try:
            got = await asyncio.wait_for(loop.run_in_executor(pool, ask), timeout)
        except TimeoutError:
            got = GateAnswer("reject", (f"the placement decision took longer than {timeout:g} "
                                        "s; try again (fail closed)",))
        except Exception as exc:  # a gate that fails rejects, never allows
            got = GateAnswer("reject", (f"the placement decision failed "
                                        f"({type(exc).__name__}); try again (fail closed)",))
        metrics.decisions.labels(asked.kind, got.verdict).inc()
        return adm.AdmissionReviewAnswer(response=adm.answer(
            req.uid, asked, req.object or {}, got, mutate=mutate))

    app.include_router(router(ctx))
    app.state.ui_fleet, app.state.ui_audit = FleetRows(), AuditStatus()
    app.include_router(ui_router(ctx, assessments=app.state.ui_fleet, audit=app.state.ui_audit))
    metrics.routes = {r.path for r in app.routes if hasattr(r, "path")}
    if bundles is not None:
        app.mount("/", Guard(bundle_server_app(bundles, decision_log), token_store, {
            "GET": ("admin", "auditor", "service"), "HEAD": ("admin", "auditor", "service"),
            "POST": ("admin", "service")}))
    return _Limits(app, max_body or settings.service_max_body, metrics)

