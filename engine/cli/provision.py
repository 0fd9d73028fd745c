"""``vigil provision request|status|approve|reject|report``: drive the running service.

The service is at ``--url`` (default ``VIGIL_SERVICE_URL``, ``http://127.0.0.1:8443``);
the token is ``VIGIL_SERVICE_TOKEN`` or the first line of ``--token-file`` (never an
option's value, which would land in the shell's history and the process list).

Exit codes: 0 the request awaits approval, is approved or launched (``status``: any
state); 1 it was delayed, rejected, expired or failed; 2 a bad option or a state that
does not allow the move (approving an expired request); 3 no token or one the service
refuses; 4 the service cannot be reached or is not ready; 6 no such request.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from engine.cli import output
from engine.cli.common import JsonOption, read_file
from engine.config import load_settings
from engine.errors import ConfigError, FeedError, NotFoundError, UsageError

app = typer.Typer(no_args_is_help=True, help="Provisioning requests on the running service "
                  "(`vigil serve`): request a VM, see its report, approve or reject it.")

UrlOption = Annotated[str | None, typer.Option(
    "--url", help="The service (default: VIGIL_SERVICE_URL).")]
TokenFile = Annotated[Path | None, typer.Option(
    "--token-file", help="File whose first line is the API token (default: "
                         "VIGIL_SERVICE_TOKEN).")]
GOOD = {"awaiting_approval", "approved", "launched"}


class ServiceError(FeedError):
    """The service cannot be reached, or answered with an error."""


class _Client:
    def __init__(self, url: str | None, token_file: Path | None) -> None:
        import httpx

        cfg = load_settings()
        self.url = (url or cfg.service_url).rstrip("/")
        if token_file is not None:
            lines = read_file(token_file, "token file").decode("utf-8", "replace").split()
            token = lines[0] if lines else ""
        else:
            token = cfg.service_token.get_secret_value() if cfg.service_token else ""
        if not token:
            raise ConfigError("no API token for the service",
                              tip="set VIGIL_SERVICE_TOKEN or pass --token-file (make one "
                                  "with `vigil tokens create`)")
        self._http = httpx.Client(base_url=self.url, timeout=60.0,
                                  headers={"Authorization": f"Bearer {token}"})

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        try:
            r = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ServiceError(f"the service at {self.url} cannot be reached: "
                               f"{type(exc).__name__}",
                               tip="start it with `vigil serve`, or check --url") from None
        if r.status_code < 400:
            return r
        try:
            message = str(r.json().get("error", r.text))
        except ValueError:
            message = r.text[:300]
        if r.status_code == 404:
            raise NotFoundError(message)
        if r.status_code in (401, 403):
            raise ConfigError(f"the service refuses the token: {message}",
                              tip="check VIGIL_SERVICE_TOKEN or --token-file")
        if r.status_code in (409, 422):
            raise UsageError(message)
        raise ServiceError(f"the service answered {r.status_code}: {message}")


def _print(body: dict[str, Any], *, as_json: bool) -> None:
    if as_json:
        output.emit_json(body)
        return
    out = output.stdout()

    def line(text: str) -> None:
        out.print(text, markup=False, highlight=False, soft_wrap=True)

    line(f"{body['request_id']}  {body['status']}"
         + (f"  ({str(body['verdict']).upper()})" if body.get("verdict") else ""))
    line(f"  tenant {body['tenant']}, host {body.get('host') or '-'}, target "
         f"{body.get('target_host') or '-'}"
         + (f" on {body['target_image_version']}" if body.get("target_image_version") else ""))
    if body.get("advice"):
        line(f"  advice: {body['advice']}")
    for reason in body.get("reasons") or []:
        line(f"  reason: {reason}")
    for warning in body.get("warnings") or []:
        line(f"  warning: {warning}")
    if body.get("recheck_at"):
        line(f"  re-checked at {body['recheck_at']}")
    if body.get("expires_at") and body["status"] == "awaiting_approval":
        line(f"  awaits approval until {body['expires_at']}")
    if body.get("failure"):
        line(f"  failed: {body['failure']}")


def _finish(body: dict[str, Any], *, as_json: bool) -> None:
    _print(body, as_json=as_json)
    if body["status"] not in GOOD:
        raise typer.Exit(1)


def _labels(items: list[str] | None, option: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"{option} {item!r}: expected KEY=VALUE")
        out[key] = value
    return out


@app.command()
def request(
    vm: Annotated[str, typer.Option(help="VM name.")],
    vcpus: Annotated[int, typer.Option(min=1, help="Virtual CPUs.")] = 1,
    memory_mib: Annotated[int, typer.Option(min=1, help="Memory in MiB.")] = 1024,
    tenant: Annotated[str | None, typer.Option(
        help="Tenant (an admin token must name it; a tenant token is its own).")] = None,
    image: Annotated[str | None, typer.Option(
        help="Only hosts on this image, NAME@VERSION.")] = None,
    patch_level: Annotated[str | None, typer.Option(
        help="The least host image version accepted.")] = None,
    host_label: Annotated[list[str] | None, typer.Option(
        help="KEY=VALUE a host must carry (repeatable).")] = None,
    host: Annotated[list[str] | None, typer.Option(
        help="Only this host (repeatable).")] = None,
    vm_label: Annotated[list[str] | None, typer.Option(
        help="KEY=VALUE label of the VM (repeatable).")] = None,
    auto_approve: Annotated[bool, typer.Option(
        "--auto-approve", help="Launch at once when the verdict is admit.")] = False,
    url: UrlOption = None, token_file: TokenFile = None, as_json: JsonOption = False,
) -> None:
    """Ask the service for a VM: it picks a host, attests it, decides and answers with
    the tenant's signed report. Exit 0 when the request awaits approval."""
    body: dict[str, Any] = {"vm": {"name": vm, "vcpus": vcpus, "memory_mib": memory_mib,
                                   "labels": _labels(vm_label, "--vm-label")},
                            "host_labels": _labels(host_label, "--host-label"),
                            "auto_approve": auto_approve}
    if tenant is not None:
        body["tenant"] = tenant
    if image is not None:
        name, sep, version = image.partition("@")
        if not sep or not name or not version:
            raise UsageError(f"--image {image!r}: expected NAME@VERSION")
        body["requested_image"] = {"name": name, "version": version}
    if patch_level is not None:
        body["requested_patch_level"] = patch_level
    if host:
        body["hosts"] = list(host)
    r = _Client(url, token_file).call("POST", "/v1/provisioning-requests", json=body)
    _finish(r.json(), as_json=as_json)


@app.command()
def status(request_id: Annotated[str, typer.Argument(help="The request's id.")],
           url: UrlOption = None, token_file: TokenFile = None,
           as_json: JsonOption = False) -> None:
    """A request's state, verdict, reasons and advice."""
    r = _Client(url, token_file).call("GET", f"/v1/provisioning-requests/{request_id}")
    _print(r.json(), as_json=as_json)


@app.command()
def approve(request_id: Annotated[str, typer.Argument(help="The request's id.")],
            url: UrlOption = None, token_file: TokenFile = None,
            as_json: JsonOption = False) -> None:
    """Approve: the VM is launched on the chosen host, once. Exit 0 when launched (or
    approved, its launch to follow)."""
    r = _Client(url, token_file).call("POST",
                                      f"/v1/provisioning-requests/{request_id}/approve")
    _finish(r.json(), as_json=as_json)


@app.command()
def reject(request_id: Annotated[str, typer.Argument(help="The request's id.")],
           reason: Annotated[str | None, typer.Option(help="Why, for the record.")] = None,
           url: UrlOption = None, token_file: TokenFile = None,
           as_json: JsonOption = False) -> None:
    """Reject: nothing is launched."""
    r = _Client(url, token_file).call("POST",
                                      f"/v1/provisioning-requests/{request_id}/reject",
                                      json={"reason": reason} if reason else None)
    _print(r.json(), as_json=as_json)


@app.command()
def report(request_id: Annotated[str, typer.Argument(help="The request's id.")],
           out: Annotated[Path | None, typer.Option(
               "--out", "-o", help="Write the signed report (JWS) to this file.")] = None,
           html: Annotated[Path | None, typer.Option(
               help="Write the readable HTML page to this file.")] = None,
           url: UrlOption = None, token_file: TokenFile = None,
           as_json: JsonOption = False) -> None:
    """The tenant's signed report of the request (verify it offline with `vigil report
    verify`)."""
    client = _Client(url, token_file)
    body = client.call("GET", f"/v1/provisioning-requests/{request_id}/report").json()
    if out is not None:
        if not body.get("signed_report"):
            raise ServiceError("the service signs no reports (set VIGIL_REPORT_SIGNING_KEY "
                               "where it runs)")
        out.write_text(str(body["signed_report"]) + "\n")
    if html is not None:
        page = client.call("GET", f"/v1/provisioning-requests/{request_id}/report",
                           params={"format": "html"})
        html.write_text(page.text, encoding="utf-8")
    if as_json:
        output.emit_json(body)
        return
    rep = body["report"]
    console = output.stdout()
    console.print(f"{rep['verdict']['verdict'].upper()}  {rep['advice']}", markup=False,
                  highlight=False, soft_wrap=True)
    console.print(f"  host {rep['host']} ({(rep.get('image') or {}).get('name', '-')} "
                  f"{(rep.get('image') or {}).get('version', '')}), attestation "
                  f"{rep['attestation']['status']}, {len(rep['vulnerabilities'])} "
                  "vulnerabilities", markup=False, highlight=False, soft_wrap=True)
    for where in (out, html):
        if where is not None:
            console.print(f"  written to {where}", markup=False, highlight=False)

