"""``vigil serve``: the HTTP service (admission webhook, health, metrics, bundles)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from engine.cli import output
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
) -> None:
    """Serve Vigil over HTTP: POST /v1/admission (KubeVirt admission webhook),
    /healthz, /readyz, /metrics, /openapi.json and, with --bundles, the OPA bundle
    server. Decisions use the fleet inventory (VIGIL_FLEET_DB), the hosts' attestation
    results (VIGIL_ATTEST_RESULTS), the PVDB (VIGIL_DB) and the policy."""
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
    log = DecisionLog(cfg.decision_log) if accept_decision_logs and folder else None
    scheme = "https" if tls_cert else "http"
    output.stderr().print(f"serving Vigil at {scheme}://{host}:{port} (admission at "
                          "/v1/admission, readiness at /readyz)"
                          + (f"; bundles from {folder.folder}" if folder else ""),
                          markup=False)
    try:
        uvicorn.run(create_app(cfg, bundles=folder, decision_log=log), host=host, port=port,
                    log_level="warning", ssl_certfile=tls_cert, ssl_keyfile=tls_key)
    finally:
        if log is not None:
            log.close()
