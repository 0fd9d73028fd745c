"""``vigil serve``: the HTTP service (provisioning requests, admission webhook, hosts,
health, metrics, bundles); ``vigil tokens``: its API tokens."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated

import typer

from engine.cli import output
from engine.cli.common import JsonOption
from engine.config import load_settings
from engine.errors import NotFoundError, UsageError


def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8443,
    bundles: Annotated[Path | None, typer.Option(
        help="Folder of built bundles (*.tar.gz) to serve to OPA under /bundles/.")] = None,
    accept_decision_logs: Annotated[bool, typer.Option(
        "--accept-decision-logs",
        help="Take OPA's decision logs (POST /logs) into the decision log "
             "(VIGIL_DECISION_LOG); needs --bundles.")] = False,
    tls_cert: Annotated[Path | None, typer.Option(
        help="PEM certificate for HTTPS (the API server calls webhooks over TLS).")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="PEM private key of --tls-cert.")]
    = None,
    tls_client_ca: Annotated[Path | None, typer.Option(
        help="PEM CA certificates: every client must present a certificate they issued "
             "(mutual TLS; needs --tls-cert).")] = None,
) -> None:
    """Serve Vigil over HTTP: /v1/provisioning-requests (the ProvisionVM flow, approval,
    launch), /v1/hosts, /v1/pvdb, POST /v1/admission (KubeVirt admission webhook),
    /healthz, /readyz, /metrics, /openapi.json and, with --bundles, the OPA bundle
    server. Every /v1 route takes a bearer token (`vigil tokens create`)."""
    import ssl

    import uvicorn

    from engine.api import create_app
    from engine.decide import BundleFolder, DecisionLog

    cfg = load_settings()
    folder = None
    if bundles is not None:
        if not bundles.is_dir():
            raise NotFoundError(f"no bundle folder {bundles}",
                                tip="build one with `vigil bundle build` (writes to bundles/)")
        folder = BundleFolder(bundles, verification_key=cfg.bundle_verification_key,
                              key_id=cfg.bundle_verification_key_id,
                              scope=cfg.bundle_verification_scope)
    if (tls_cert is None) != (tls_key is None):
        raise UsageError("--tls-cert and --tls-key go together")
    if tls_client_ca is not None and tls_cert is None:
        raise UsageError("--tls-client-ca needs --tls-cert and --tls-key")
    for path in (tls_cert, tls_key, tls_client_ca):
        if path is not None and not path.is_file():
            raise NotFoundError(f"no file {path}")
    log = DecisionLog.from_settings(cfg) if accept_decision_logs and folder else None
    scheme = "https" if tls_cert else "http"
    output.stderr().print(f"serving Vigil at {scheme}://{host}:{port} (provisioning at "
                          "/v1/provisioning-requests, admission at /v1/admission, readiness "
                          "at /readyz)"
                          + (f"; bundles from {folder.folder}" if folder else "")
                          + ("; client certificates required" if tls_client_ca else ""),
                          markup=False)
    try:
        # no access log: a line per request costs the event loop, and requests are
        # counted in /metrics (tokens are never logged either way)
        uvicorn.run(create_app(cfg, bundles=folder, decision_log=log), host=host, port=port,
                    log_level="warning", access_log=False, ssl_certfile=tls_cert,
                    ssl_keyfile=tls_key,
                    ssl_ca_certs=str(tls_client_ca) if tls_client_ca else None,
                    ssl_cert_reqs=ssl.CERT_REQUIRED if tls_client_ca else ssl.CERT_NONE)
    finally:
        if log is not None:
            log.close()


tokens_app = typer.Typer(no_args_is_help=True, help="The service's API tokens (stored "
                         "hashed in VIGIL_TOKENS_DB; each shown once, when made).")


@tokens_app.command("create")
def tokens_create(
    name: Annotated[str, typer.Argument(help="Who or what the token is for.")],
    role: Annotated[str, typer.Option(help="admin, tenant, auditor or service.")],
    tenant: Annotated[str | None, typer.Option(help="The tenant (role tenant only).")]
    = None,
    days: Annotated[int | None, typer.Option(min=1, help="Expires after this many days.")]
    = None,
    as_json: JsonOption = False,
) -> None:
    """Make a token and print it once (it is not stored in clear and cannot be shown
    again)."""
    from engine.api import TokenStore

    expires = dt.datetime.now(dt.UTC) + dt.timedelta(days=days) if days else None
    with TokenStore(load_settings().tokens_db) as store:
        token, info = store.create(name, role, tenant=tenant, expires_at=expires)
    if as_json:
        output.emit_json({"token": token, "id": info.token_id, "name": info.name,
                          "role": info.role, "tenant": info.tenant,
                          "expires_at": info.expires_at})
        return
    typer.echo(token)
    output.stderr().print(f"token {info.token_id} ({info.role}"
                          + (f", tenant {info.tenant}" if info.tenant else "")
                          + "): shown once; keep it secret", markup=False)


@tokens_app.command("list")
def tokens_list(as_json: JsonOption = False) -> None:
    """The tokens: id, name, role, tenant, when made, expiry, revocation (never the
    token)."""
    from engine.api import TokenStore

    with TokenStore(load_settings().tokens_db) as store:
        found = store.tokens()
    if as_json:
        output.emit_json([t.__dict__ for t in found])
        return
    output.table(f"{len(found)} tokens", ["id", "name", "role", "tenant", "created",
                                          "expires", "revoked"],
                 [(t.token_id, t.name, t.role, t.tenant or "", t.created_at,
                   t.expires_at or "", t.revoked_at or "") for t in found])


@tokens_app.command("revoke")
def tokens_revoke(token_id: Annotated[str, typer.Argument(help="The token's id.")],
                  as_json: JsonOption = False) -> None:
    """Revoke a token: the service refuses it from its next request on."""
    from engine.api import TokenStore

    with TokenStore(load_settings().tokens_db) as store:
        info = store.revoke(token_id)
    if as_json:
        output.emit_json(info.__dict__)
        return
    typer.echo(f"revoked {info.token_id} ({info.name})")
