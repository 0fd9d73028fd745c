"""The host agent's HTTP endpoint (``vigil agent serve``): it answers a verifier's
challenge with fresh evidence from the host's TPM.

The protocol is :mod:`engine.attest.agent_protocol`. :func:`agent_app` is the ASGI
application (Starlette); :func:`serve_agent` runs it in the foreground under uvicorn
until SIGINT or SIGTERM; :func:`start_agent` runs it on a thread of this process (the
lab, the demo and the tests) and returns a :class:`RunningAgent` to stop it.

* **One quote at a time.** Challenges wait for the TPM in turn (a lock); one that
  waits longer than :attr:`AgentConfig.busy_timeout` is answered 503. A quote under
  way always finishes before the next starts, even when its caller has gone.
* **Bounded input.** The body is read up to :data:`~engine.attest.agent_protocol.
  MAX_CHALLENGE_BYTES` (413 beyond) within :attr:`AgentConfig.body_timeout` (408).
* **A shared bearer token** (:attr:`AgentConfig.token`), when configured, is compared
  in constant time and never logged; uvicorn's access log is off, so no header or
  path reaches a log.
* **TLS** when a certificate and key are given.

Starlette and uvicorn are imported when an agent is built, not with this module.
"""

from __future__ import annotations

import hmac
import logging
import signal
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from engine.attest.agent import DEFAULT_BANKS, DEFAULT_EVENTLOG, DEFAULT_PCRS, collect_evidence
from engine.attest.agent_protocol import (
    CHALLENGE_PATH,
    HEALTH_PATH,
    MAX_CHALLENGE_BYTES,
    Challenge,
)
from engine.attest.evidence import Evidence, Inventory
from engine.errors import UsageError, VigilError

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

__all__ = [
    "AgentConfig",
    "RunningAgent",
    "agent_app",
    "cached_inventory",
    "serve_agent",
    "start_agent",
]

_log = logging.getLogger("vigil.agent")
_MAX_CONNECTIONS = 64
"""Connections and requests served at once; uvicorn answers 503 beyond."""


@dataclass(frozen=True)
class AgentConfig:
    """What the agent quotes and sends."""

    host_id: str
    """This host's id at the verifier, put into every evidence document."""
    tcti: str
    """The TPM interface (``device:/dev/tpmrm0``, ``swtpm:host=…,port=…``)."""
    ak_handle: int
    """The persistent handle of the enrolled AK."""
    banks: Sequence[str] = DEFAULT_BANKS
    pcrs: Sequence[int] = DEFAULT_PCRS
    eventlog: Path | None = DEFAULT_EVENTLOG
    """Read again for every challenge (``None``: send none)."""
    inventory: Callable[[], Inventory] = Inventory
    """What the host reports about itself; :func:`cached_inventory` reads sysfs and
    procfs at most once a minute."""
    token: str | None = field(default=None, repr=False)
    """The bearer token a challenge must carry; ``None``: none is asked."""
    busy_timeout: float = 30.0
    """Seconds a challenge waits for the TPM before it is answered 503."""
    body_timeout: float = 10.0
    """Seconds the challenge body has to arrive before it is answered 408."""


def cached_inventory(read: Callable[[], Inventory], ttl: float = 60.0
                     ) -> Callable[[], Inventory]:
    """``read`` called at most once every ``ttl`` seconds (reading the inventory runs
    ``qemu-system-… --version``, which costs more than the quote)."""
    lock = threading.Lock()
    cached: list[tuple[float, Inventory]] = []

    def inventory() -> Inventory:
        with lock:
            now = time.monotonic()
            if not cached or now - cached[0][0] >= ttl:
                cached[:] = [(now, read())]
            return cached[0][1]

    return inventory


class _Refusal(Exception):
    def __init__(self, status: int, reason: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or {}


def agent_app(config: AgentConfig) -> Starlette:
    """The agent as an ASGI application."""
    import anyio
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    if config.token is not None and not config.token:
        raise UsageError("the agent's bearer token is empty")
    tpm = anyio.Lock()
    expected = None if config.token is None else f"Bearer {config.token}".encode()

    def refuse(status: int, reason: str, headers: dict[str, str] | None = None) -> Response:
        return JSONResponse({"error": reason}, status_code=status, headers=headers)

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                raise _Refusal(400, "the Content-Length header is not a number")
            if int(declared) > MAX_CHALLENGE_BYTES:
                raise _Refusal(413, f"a challenge holds at most {MAX_CHALLENGE_BYTES} bytes")
        body = b""
        try:
            with anyio.fail_after(config.body_timeout):
                async for chunk in request.stream():
                    body += chunk
                    if len(body) > MAX_CHALLENGE_BYTES:
                        raise _Refusal(413, f"a challenge holds at most "
                                       f"{MAX_CHALLENGE_BYTES} bytes")
        except TimeoutError:
            raise _Refusal(408, f"the challenge did not arrive within "
                           f"{config.body_timeout:g} s") from None
        return body

    def collect(nonce: bytes) -> Evidence:
        return collect_evidence(config.host_id, nonce, tcti=config.tcti,
                                ak_handle=config.ak_handle, banks=config.banks,
                                pcrs=config.pcrs, eventlog=config.eventlog,
                                inventory=config.inventory())

    async def challenge(request: Request) -> Response:
        try:
            if expected is not None:
                given = request.headers.get("authorization", "").encode()
                if not hmac.compare_digest(given, expected):
                    raise _Refusal(401, "a valid bearer token is required",
                                   {"WWW-Authenticate": 'Bearer realm="vigil-agent"'})
            media = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if media != "application/json":
                raise _Refusal(415, "send the challenge as application/json")
            body = await read_body(request)
            try:
                nonce = Challenge.model_validate_json(body).nonce
            except ValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in err['loc']) or '$'}: {err['msg']}"
                    for err in exc.errors()[:3])
                raise _Refusal(400, f"not a challenge: {problems}") from None
            try:
                with anyio.fail_after(config.busy_timeout):
                    await tpm.acquire()
            except TimeoutError:
                raise _Refusal(503, f"the TPM stayed busy with other challenges for "
                               f"{config.busy_timeout:g} s") from None
            try:
                # The quote runs to its end even if the caller goes away: the lock is
                # released only once the TPM is free again.
                evidence = await anyio.to_thread.run_sync(collect, nonce)
            except VigilError as exc:
                _log.warning("challenge failed: %s", exc.summary)
                raise _Refusal(503, exc.summary) from None
            finally:
                tpm.release()
        except _Refusal as refusal:
            return refuse(refusal.status, refusal.reason, refusal.headers)
        return Response(evidence.to_json(), media_type="application/json")

    async def health(_request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def http_error(_request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return refuse(exc.status_code, str(exc.detail), dict(exc.headers or {}))

    async def internal_error(_request: Request, _exc: Exception) -> Response:
        return refuse(500, "the agent failed; its log says why")

    return Starlette(routes=[Route(CHALLENGE_PATH, challenge, methods=["POST"]),
                             Route(HEALTH_PATH, health, methods=["GET"])],
                     exception_handlers={HTTPException: http_error,
                                         Exception: internal_error})


def _bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (0: a free port)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                         tip="choose another --port, or --port 0 for a free one") from None
    return sock


def _endpoint(sock: socket.socket, tls: bool) -> str:
    host, port = sock.getsockname()[:2]
    host = f"[{host}]" if ":" in host else host
    return f"{'https' if tls else 'http'}://{host}:{port}"


def _server(config: AgentConfig, tls_cert: Path | None, tls_key: Path | None) -> Any:
    import uvicorn

    if (tls_cert is None) != (tls_key is None):
        raise UsageError("a TLS certificate and its key go together")
    if tls_cert is not None and tls_key is not None:
        try:  # refused here with its reason, not later inside the server
            ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(tls_cert,
                                                                                tls_key)
        except (OSError, ssl.SSLError) as exc:
            raise UsageError(f"cannot use the TLS certificate {tls_cert} with key "
                              f"{tls_key}: {getattr(exc, 'strerror', None) or exc}") from None
    return uvicorn.Server(uvicorn.Config(
        agent_app(config), log_level="warning", access_log=False, lifespan="off",
        ssl_certfile=tls_cert, ssl_keyfile=tls_key, timeout_graceful_shutdown=5,
        server_header=False, limit_concurrency=_MAX_CONNECTIONS))


def serve_agent(config: AgentConfig, *, host: str = "127.0.0.1", port: int = 0,
                tls_cert: Path | None = None, tls_key: Path | None = None,
                ready: Callable[[str], None] | None = None) -> None:
    """Serve the agent until SIGINT or SIGTERM; ``ready`` gets the endpoint (the base
    URL) once the agent listens."""
    server = _server(config, tls_cert, tls_key)
    sock = _bind(host, port)
    # uvicorn stops on the signal, then raises it again for the handler it found: let
    # that be a no-op, so that a stop by signal ends the process normally.
    previous = {sig: signal.signal(sig, _ignore) for sig in (signal.SIGINT, signal.SIGTERM)
                } if threading.current_thread() is threading.main_thread() else {}
    try:
        if ready is not None:
            ready(_endpoint(sock, tls_cert is not None))
        server.run(sockets=[sock])
    finally:
        sock.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _ignore(_signum: int, _frame: object) -> None:
    return None


class RunningAgent:
    """An agent served on a thread of this process."""

    def __init__(self, server: Any, sock: socket.socket, thread: threading.Thread,
                 endpoint: str) -> None:
        self._server = server
        self._sock = sock
        self._thread = thread
        self.endpoint = endpoint
        """The agent's base URL, e.g. ``http://127.0.0.1:41234``."""

    def stop(self) -> None:
        """Stop serving: answers under way finish (for at most 5 s), then the thread ends."""
        self._server.should_exit = True
        self._thread.join()
        self._sock.close()

    def __enter__(self) -> RunningAgent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_agent(config: AgentConfig, *, host: str = "127.0.0.1", port: int = 0,
                tls_cert: Path | None = None, tls_key: Path | None = None,
                startup_timeout: float = 10.0) -> RunningAgent:
    """Serve the agent on a new thread; return once it accepts challenges."""
    server = _server(config, tls_cert, tls_key)
    sock = _bind(host, port)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                              name=f"vigil-agent-{config.host_id}", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            thread.join(startup_timeout)
            sock.close()
            raise RuntimeError(f"the agent for {config.host_id} did not start")
        time.sleep(0.005)
    return RunningAgent(server, sock, thread, _endpoint(sock, tls_cert is not None))
