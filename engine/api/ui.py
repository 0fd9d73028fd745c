"""The dashboard at ``/ui``: server-rendered pages (Jinja2) behind the API's tokens and roles.

A user pastes an API token on the login page; the service keeps it in memory under a
random session id, and the browser holds only that id, in an ``HttpOnly``,
``SameSite=Strict`` cookie scoped to ``/ui``. Every page authenticates the token again
(a revoked or expired token ends the session). Form posts carry the session's CSRF token;
the login form a double-submitted one. Pages:

* ``/ui/fleet`` (admin, auditor): hosts by image version and attestation status, their
  open vulnerabilities (KEV first) and verdicts, hosts awaiting a patched configuration,
  with filters;
* ``/ui/timeline`` (admin, auditor): the known and predicted fix dates of the fleet's
  open vulnerabilities with their intervals, as an SVG drawn here, and the predictor's
  preparation queue;
* ``/ui/requests`` (admin, tenant, auditor): provisioning requests (a tenant's own only;
  another tenant's id answers 404), each with its signed report's HTML view and, for
  admins and the tenant, approve and reject;
* ``/ui/rollouts`` (admin, auditor): rollouts (group, target, status, steps, hosts by
  outcome, migrations and failed ones), paused and resumed by admins through
  :mod:`engine.rollout`;
* ``/ui/decisions`` (admin, auditor): the decision log, searched by host, tenant,
  verdict, reason and date (queried in the log by DuckDB), with the log's audit
  verification (:mod:`engine.audit`: the chain and its signed checkpoints against the
  configured verification keys).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from engine.api.audit_status import AuditStatus
from engine.api.errors import ApiError
from engine.api.fleet_cache import FleetRows
from engine.api.provisioning import Context
from engine.api.tokens import Principal
from engine.audit import Verification
from engine.errors import VigilError
from engine.provision import PATCH_STATUS_TEXT, STATUSES, TenantReport, render_html

COOKIE = "vigil_session"
LOGIN_COOKIE = "vigil_login"
SESSION_TTL = 8 * 3600.0
FLEET_ROLES = ("admin", "auditor")
ALL_ROLES = ("admin", "tenant", "auditor")
CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; "
       "form-action 'self'; frame-ancestors 'none'")

templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates" / "ui"))


@dataclass
class Session:
    token: str
    csrf: str
    expires: float


class Sessions:
    """Session id -> the token it stands for, in memory (a restart logs everyone out)."""

    def __init__(self, ttl: float = SESSION_TTL) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._by_id: dict[str, Session] = {}

    def open(self, token: str) -> tuple[str, Session]:
        sid = secrets.token_urlsafe(32)
        session = Session(token, secrets.token_urlsafe(32), time.monotonic() + self.ttl)
        with self._lock:
            now = time.monotonic()
            for old in [k for k, s in self._by_id.items() if s.expires < now]:
                del self._by_id[old]
            self._by_id[sid] = session
        return sid, session

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        with self._lock:
            session = self._by_id.get(sid)
            if session is not None and session.expires < time.monotonic():
                del self._by_id[sid]
                return None
            return session

    def close(self, sid: str | None) -> None:
        with self._lock:
            self._by_id.pop(sid or "", None)


class _Login(Exception):
    """No session: the browser goes to the login page."""


@dataclass
class Caller:
    who: Principal
    session: Session


def _headers() -> dict[str, str]:
    return {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}


def _page(request: Request, name: str, code: int = 200, **values: Any) -> HTMLResponse:
    return templates.TemplateResponse(request, name, values, status_code=code,
                                      headers=_headers())


def _tenant_of(who: Principal) -> str | None:
    return who.tenant if who.role == "tenant" else None


def _day(value: str | None) -> dt.date | None:
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value[:10])
    except ValueError:
        return None


def fleet_rows(ctx: Context, cache: FleetRows) -> list[dict[str, Any]]:
    """Per host: its image, attestation, verdict, open vulnerabilities (KEV first) and
    whether it waits for a patched configuration (kept in ``cache`` until what the
    host's assessment rests on changes)."""
    parts = ctx.need_parts()
    snapshot = parts.fleet.snapshot()
    if isinstance(snapshot, str):
        raise ApiError(503, snapshot)
    return cache.rows(parts, snapshot)


def timeline(rows: list[dict[str, Any]], today: dt.date) -> dict[str, Any]:
    """The fleet's open vulnerabilities with a fix date, laid out for the SVG."""
    seen: dict[str, dict[str, Any]] = {}
    for row in rows:
        for v in row["vulnerabilities"]:
            if v.resolved_by_patched_configuration:
                continue
            entry = seen.setdefault(v.id, {"id": v.id, "kev": v.kev is not None,
                                           "basis": v.fix_date.basis, "hosts": [],
                                           "date": _day(v.fix_date.date),
                                           "low": _day(v.fix_date.interval[0])
                                           if v.fix_date.interval else None,
                                           "high": _day(v.fix_date.interval[1])
                                           if v.fix_date.interval else None,
                                           "confidence": v.fix_date.confidence})
            entry["hosts"].append(row["id"])
    items = sorted(seen.values(), key=lambda e: (not e["kev"], e["date"] or dt.date.max))
    days = [d for e in items for d in (e["date"], e["low"], e["high"]) if d] + [today]
    start: dt.date = min(days) - dt.timedelta(days=7)
    end: dt.date = max(days) + dt.timedelta(days=7)
    span = max((end - start).days, 1)
    left, width = 160, 640

    def x(day: dt.date) -> float:
        return round(left + width * (day - start).days / span, 1)

    for i, e in enumerate(items):
        e["y"] = 40 + 28 * i
        e["x"] = x(e["date"]) if e["date"] else None
        e["x1"] = x(e["low"]) if e["low"] else None
        e["x2"] = x(e["high"]) if e["high"] else None
    ticks = []
    month = dt.date(start.year, start.month, 1)
    while month <= end:
        if month >= start:
            ticks.append({"x": x(month), "label": month.strftime("%Y-%m")})
        month = dt.date(month.year + month.month // 12, month.month % 12 + 1, 1)
    return {"entries": items, "today": x(today), "ticks": ticks,
            "height": 60 + 28 * max(len(items), 1), "left": left, "right": left + width}


def preparation_queue(ctx: Context) -> tuple[list[Any], str | None]:
    """The predictor's preparation queue (patched configurations to build before their
    fix ships), earliest needed first; or why it cannot be read."""
    from engine.predict import Queue, QueueError

    path = ctx.need_parts().settings.predict_db
    if not path.exists():
        return [], None
    try:
        with Queue(path) as queue:
            found = queue.requests()
    except QueueError as exc:
        return [], exc.summary
    return sorted(found, key=lambda r: (r.needed_by or dt.date.max, r.vuln_id)), None


def decision_rows(ctx: Context, status: AuditStatus, *, host: str, tenant: str,
                  verdict: str, reason: str, since: dt.date | None, until: dt.date | None
                  ) -> tuple[list[dict[str, Any]], Verification | str]:
    """The newest 500 decisions matching the search (found by DuckDB in the log) and the
    log's audit verification (chain and signed checkpoints), or why there is none."""
    parts = ctx.need_parts()
    log = parts.deciding.log
    if log is None:
        raise ApiError(503, "the decision log is not open")
    start = dt.datetime.combine(since, dt.time(), tzinfo=dt.UTC) if since else None
    end = (dt.datetime.combine(until + dt.timedelta(days=1), dt.time(), tzinfo=dt.UTC)
           if until else None)
    rows = log.search(host=host, tenant=tenant, verdict=verdict, reason=reason, since=start,
                      until=end, limit=500)
    for row in rows:
        row["timestamp"] = row["timestamp"].astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    return rows, status.of(log, parts.settings)


async def form(request: Request) -> dict[str, str]:
    """An URL-encoded form's fields (the first value of each); anything else is empty."""
    if not request.headers.get("content-type", "").startswith(
            "application/x-www-form-urlencoded"):
        return {}
    body = (await request.body()).decode("utf-8", "replace")
    return {k: v[0] for k, v in parse_qs(body, max_num_fields=20).items()}


def ui_router(ctx: Context, sessions: Sessions | None = None, *,
              assessments: FleetRows | None = None, audit: AuditStatus | None = None
              ) -> APIRouter:
    """The dashboard's routes over the API's ``ctx`` (``assessments``: the hosts'
    assessments kept between page loads; ``audit``: the log's last verification)."""
    store = sessions or Sessions()
    assessed = assessments or FleetRows()
    status = audit or AuditStatus()
    ui = APIRouter(prefix="/ui", include_in_schema=False)

    def caller(request: Request, *roles: str) -> Caller:
        session = store.get(request.cookies.get(COOKIE))
        if session is None:
            raise _Login()
        who = ctx.tokens.authenticate(session.token)
        if who is None:
            store.close(request.cookies.get(COOKIE))
            raise _Login()
        if who.role not in roles:
            raise ApiError(403, f"a {who.role} token may not see this page")
        return Caller(who, session)

    def check_csrf(found: Caller, given: str) -> None:
        if not hmac.compare_digest(found.session.csrf.encode(), given.encode()):
            raise ApiError(403, "the form's CSRF token does not match the session")

    async def guarded(request: Request, body: Any) -> Response:
        try:
            return await body()  # type: ignore[no-any-return]
        except _Login:
            return RedirectResponse("/ui/login", status_code=303, headers=_headers())
        except ApiError as exc:
            session = store.get(request.cookies.get(COOKIE))
            who = ctx.tokens.authenticate(session.token) if session else None
            return _page(request, "error.html", exc.status, who=who, status=exc.status,
                         message=exc.message, csrf=session.csrf if session else "")

    def login_page(request: Request, error: str | None, status: int = 200) -> Response:
        nonce = secrets.token_urlsafe(32)
        page = _page(request, "login.html", status, who=None, csrf=nonce, error=error)
        page.set_cookie(LOGIN_COOKIE, nonce, httponly=True, samesite="strict", path="/ui",
                        max_age=600)
        return page

    @ui.get("")
    @ui.get("/")
    async def home(request: Request) -> Response:
        async def body() -> Response:
            found = caller(request, *ALL_ROLES)
            where = "/ui/requests" if found.who.role == "tenant" else "/ui/fleet"
            return RedirectResponse(where, status_code=303)
        return await guarded(request, body)

    @ui.get("/login")
    async def login_form(request: Request) -> Response:
        return login_page(request, None)

    @ui.post("/login")
    async def login(request: Request) -> Response:
        given = await form(request)
        token, csrf = given.get("token", ""), given.get("csrf", "")
        expected = request.cookies.get(LOGIN_COOKIE, "")
        if not expected or not hmac.compare_digest(expected.encode(), csrf.encode()):
            return login_page(request, "the form expired; sign in again", 403)
        who = await asyncio.get_running_loop().run_in_executor(
            ctx.pool, ctx.tokens.authenticate, token.strip())
        if who is None:
            return login_page(request, "that API token is not valid (unknown, revoked or "
                              "expired)", 401)
        sid, _ = store.open(token.strip())
        answer = RedirectResponse("/ui/", status_code=303, headers=_headers())
        answer.set_cookie(COOKIE, sid, httponly=True, samesite="strict", path="/ui",
                          secure=request.url.scheme == "https", max_age=int(store.ttl))
        answer.delete_cookie(LOGIN_COOKIE, path="/ui")
        return answer

    @ui.post("/logout")
    async def logout(request: Request) -> Response:
        csrf = (await form(request)).get("csrf", "")

        async def body() -> Response:
            check_csrf(caller(request, *ALL_ROLES), csrf)
            store.close(request.cookies.get(COOKIE))
            answer = RedirectResponse("/ui/login", status_code=303)
            answer.delete_cookie(COOKIE, path="/ui")
            return answer
        return await guarded(request, body)

    @ui.get("/fleet")
    async def fleet(request: Request, image: str = "", attestation: str = "",
                    verdict: str = "", kev: str = "", awaiting: str = "") -> Response:
        async def body() -> Response:
            found = caller(request, *FLEET_ROLES)
            rows = await ctx.run(lambda: fleet_rows(ctx, assessed))
            images = sorted({r["image"] for r in rows})
            statuses = sorted({r["attestation"] for r in rows})
            verdicts = sorted({r["verdict"] for r in rows})
            shown = [r for r in rows
                     if (not image or r["image"] == image)
                     and (not attestation or r["attestation"] == attestation)
                     and (not verdict or r["verdict"] == verdict)
                     and (not kev or any(v.kev for v in r["vulnerabilities"]))
                     and (not awaiting or r["awaiting_patch"])]
            by_image: dict[str, dict[str, int]] = {}
            for r in rows:
                counts = by_image.setdefault(r["image"], {})
                counts[r["attestation"]] = counts.get(r["attestation"], 0) + 1
            # one row per vulnerability and what fixes it: hosts on different lines of
            # a component can be patched on their own line, by an upgrade, or by a
            # predicted patch, with different dates
            vulns: dict[tuple[Any, ...], dict[str, Any]] = {}
            for r in shown:
                for v in r["vulnerabilities"]:
                    key = (v.id, v.patch_status, v.closing_version, v.fix_date.date)
                    vulns.setdefault(key, {"v": v, "hosts": []})["hosts"].append(r["id"])
            open_vulns = sorted(vulns.values(), key=lambda e: (
                e["v"].kev is None, -(e["v"].max_cvss or 0), e["v"].id))
            return _page(request, "fleet.html", who=found.who, csrf=found.session.csrf,
                         rows=shown, total=len(rows), images=images, statuses=statuses,
                         verdicts=verdicts, by_image=by_image, vulns=open_vulns,
                         patch_text=PATCH_STATUS_TEXT,
                         awaiting_rows=[r for r in rows if r["awaiting_patch"]],
                         f={"image": image, "attestation": attestation,
                            "verdict": verdict, "kev": kev, "awaiting": awaiting})
        return await guarded(request, body)

    @ui.get("/timeline")
    async def timeline_page(request: Request) -> Response:
        async def body() -> Response:
            found = caller(request, *FLEET_ROLES)
            parts = ctx.need_parts()
            rows = await ctx.run(lambda: fleet_rows(ctx, assessed))
            today = parts.flow.clock().date()
            queue, problem = await ctx.run(lambda: preparation_queue(ctx))
            return _page(request, "timeline.html", who=found.who, csrf=found.session.csrf,
                         t=timeline(rows, today), today=today.isoformat(), queue=queue,
                         queue_problem=problem)
        return await guarded(request, body)

    @ui.get("/requests")
    async def requests(request: Request, status: str = "") -> Response:
        async def body() -> Response:
            found = caller(request, *ALL_ROLES)
            if status and status not in STATUSES:
                raise ApiError(422, f"status is one of {', '.join(STATUSES)}")
            provisioner = ctx.need()
            got = await ctx.run(lambda: provisioner.find(
                tenant=_tenant_of(found.who), status=status or None, limit=200))
            return _page(request, "requests.html", who=found.who, csrf=found.session.csrf,
                         records=got, status=status, statuses=STATUSES)
        return await guarded(request, body)

    def _request_id(value: str) -> str:
        import re

        from engine.api.provisioning import REQUEST_ID

        if not re.match(REQUEST_ID, value):
            raise ApiError(404, f"provisioning request {value[:60]} does not exist")
        return value

    @ui.get("/requests/{request_id}")
    async def one_request(request: Request, request_id: str) -> Response:
        async def body() -> Response:
            found = caller(request, *ALL_ROLES)
            provisioner = ctx.need()
            rid = _request_id(request_id)
            record = await ctx.run(lambda: provisioner.get(rid, tenant=_tenant_of(found.who)))
            events = await ctx.run(lambda: provisioner.store.events(rid))
            return _page(request, "request.html", who=found.who, csrf=found.session.csrf,
                         r=record, events=events,
                         can_act=found.who.role in ("admin", "tenant"))
        return await guarded(request, body)

    @ui.get("/requests/{request_id}/report")
    async def report(request: Request, request_id: str) -> Response:
        async def body() -> Response:
            found = caller(request, *ALL_ROLES)
            provisioner = ctx.need()
            rid = _request_id(request_id)
            record = await ctx.run(lambda: provisioner.get(rid, tenant=_tenant_of(found.who)))
            if record.report is None:
                raise ApiError(404, f"provisioning request {rid} has no report")
            return HTMLResponse(render_html(TenantReport.model_validate(record.report)),
                                headers={"Content-Security-Policy": "default-src 'none'; "
                                         "style-src 'unsafe-inline'"})
        return await guarded(request, body)

    async def act(request: Request, request_id: str, csrf: str, what: str,
                  reason: str = "") -> Response:
        async def body() -> Response:
            found = caller(request, "admin", "tenant")
            check_csrf(found, csrf)
            provisioner = ctx.need()
            rid = _request_id(request_id)
            tenant = _tenant_of(found.who)
            if what == "approve":
                await ctx.run(lambda: provisioner.approve(rid, tenant=tenant,
                                                          actor=found.who.actor))
            else:
                await ctx.run(lambda: provisioner.reject(rid, tenant=tenant,
                                                         actor=found.who.actor,
                                                         reason=reason[:200] or None))
            return RedirectResponse(f"/ui/requests/{rid}", status_code=303)
        return await guarded(request, body)

    @ui.post("/requests/{request_id}/approve")
    async def approve(request: Request, request_id: str) -> Response:
        given = await form(request)
        return await act(request, request_id, given.get("csrf", ""), "approve")

    @ui.post("/requests/{request_id}/reject")
    async def reject(request: Request, request_id: str) -> Response:
        given = await form(request)
        return await act(request, request_id, given.get("csrf", ""), "reject",
                         given.get("reason", ""))

    def rollout_options() -> Any:
        from engine.rollout import RolloutOptions

        parts = ctx.need_parts()
        return RolloutOptions(parts.settings.rollout_db, fleet_db=parts.settings.fleet_db)

    @ui.get("/rollouts")
    async def rollouts(request: Request) -> Response:
        async def body() -> Response:
            from engine.rollout import RolloutError, rollout_status

            found = caller(request, *FLEET_ROLES)
            opts = rollout_options()
            if not opts.db.exists():
                rows: list[dict[str, Any]] = []
            else:
                try:
                    rows = await ctx.run(lambda: rollout_status(opts, None))
                except RolloutError as exc:
                    raise ApiError(503, exc.summary) from None
            return _page(request, "rollouts.html", who=found.who, csrf=found.session.csrf,
                         rows=rows, can_act=found.who.role == "admin",
                         running=sorted(resuming))
        return await guarded(request, body)

    resuming: set[str] = set()

    @ui.post("/rollouts/{rollout_id}/{what}")
    async def rollout_control(request: Request, rollout_id: str, what: str) -> Response:
        given = await form(request)

        async def body() -> Response:
            from engine.rollout import (
                RolloutError,
                RolloutNotFound,
                RolloutStateError,
                pause_rollout,
                resume_rollout,
                rollout_status,
            )

            found = caller(request, "admin")
            check_csrf(found, given.get("csrf", ""))
            if what not in ("pause", "resume"):
                raise ApiError(404, f"no rollout action {what[:40]}")
            opts = rollout_options()

            def pause() -> None:
                pause_rollout(opts, rollout_id)

            def resume_in_background() -> None:
                def drive() -> None:
                    try:
                        resume_rollout(opts, rollout_id)
                    except RolloutError:
                        pass  # its state says why (the rollouts page shows it)
                    finally:
                        resuming.discard(rollout_id)

                if rollout_id in resuming:
                    return
                status = rollout_status(opts, rollout_id)[0]["status"]
                if status not in ("paused", "running", "planned"):
                    raise RolloutStateError(f"rollout {rollout_id} is {status}: there is "
                                            "nothing to resume")
                resuming.add(rollout_id)
                threading.Thread(target=drive, daemon=True,
                                 name=f"vigil-rollout-{rollout_id[:8]}").start()

            def run() -> None:
                try:
                    (pause if what == "pause" else resume_in_background)()
                except RolloutNotFound as exc:
                    raise ApiError(404, exc.summary) from None
                except RolloutStateError as exc:
                    raise ApiError(409, exc.summary) from None
                except RolloutError as exc:
                    raise ApiError(503, exc.summary) from None

            await ctx.run(run)
            return RedirectResponse("/ui/rollouts", status_code=303)
        return await guarded(request, body)

    @ui.get("/decisions")
    async def decisions(request: Request, host: str = "", tenant: str = "",
                        verdict: str = "", reason: str = "", since: str = "",
                        until: str = "") -> Response:
        async def body() -> Response:
            found = caller(request, *FLEET_ROLES)
            try:
                start = dt.date.fromisoformat(since) if since else None
                end = dt.date.fromisoformat(until) if until else None
            except ValueError:
                raise ApiError(422, "dates are YYYY-MM-DD") from None
            try:
                rows, verification = await ctx.run(lambda: decision_rows(
                    ctx, status, host=host, tenant=tenant, verdict=verdict, reason=reason,
                    since=start, until=end))
            except VigilError as exc:
                raise ApiError(503, exc.summary) from None
            return _page(request, "decisions.html", who=found.who, csrf=found.session.csrf,
                         rows=rows, audit=verification,
                         f={"host": host, "tenant": tenant, "verdict": verdict,
                            "reason": reason, "since": since, "until": until})
        return await guarded(request, body)

    return ui
