"""Bearer-token authentication and roles (tokens: :mod:`engine.api.tokens`).

Every ``/v1`` route, the bundles and OPA's decision-log uploads need a token; ``/healthz``,
``/readyz``, ``/metrics`` and ``/openapi.json`` do not. :func:`requires` makes the
route dependency that reads ``Authorization: Bearer …`` and admits the roles it names:
no token or an invalid one is 401 (with ``WWW-Authenticate: Bearer``), a role the route
does not admit is 403. A tenant's reach (its own requests only, another's answering 404)
is the routes' business, from :attr:`Principal.tenant`. The token is never logged: only
its id and name appear in events (:attr:`Principal.actor`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from engine.api.errors import ApiError
from engine.api.tokens import Principal, TokenStore

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

bearer = HTTPBearer(auto_error=False, scheme_name="token",
                    description="An API token (`vigil tokens create`): `vgl_<id>_<secret>`")

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="vigil"'}


def authenticate(tokens: TokenStore, header: str | None) -> Principal:
    """The principal of an ``Authorization`` header, or :class:`ApiError` 401."""
    if not header:
        raise ApiError(401, "no API token: send Authorization: Bearer vgl_…",
                       headers=CHALLENGE)
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise ApiError(401, "the Authorization header is not a bearer token",
                       headers=CHALLENGE)
    principal = tokens.authenticate(value)
    if principal is None:
        raise ApiError(401, "the API token is not valid (unknown, revoked or expired)",
                       headers=CHALLENGE)
    return principal


def requires(tokens: TokenStore, *roles: str) -> Callable[..., Awaitable[Principal]]:
    """A route dependency admitting the ``roles``. It runs on the event loop: a token
    is checked by one indexed SQLite read and a SHA-256 (tens of microseconds), less than
    handing it to a worker thread and back."""
    allowed = frozenset(roles)

    async def dependency(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)
                         ) -> Principal:
        header = (f"{credentials.scheme} {credentials.credentials}"
                  if credentials is not None else None)
        principal = authenticate(tokens, header)
        if principal.role not in allowed:
            raise ApiError(403, f"a {principal.role} token may not do this (it takes "
                           f"{' or '.join(sorted(allowed))})")
        return principal

    return dependency


class Guard:
    """ASGI middleware for a mounted application (the bundle server): each method's
    request needs a token of one of its roles."""

    def __init__(self, app: ASGIApp, tokens: TokenStore,
                 roles: dict[str, Iterable[str]]) -> None:
        self.app = app
        self.tokens = tokens
        self.roles = {m: frozenset(r) for m, r in roles.items()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from fastapi.responses import JSONResponse

        headers = dict(scope.get("headers") or [])
        raw = headers.get(b"authorization")
        try:
            principal = authenticate(self.tokens, raw.decode("latin-1") if raw else None)
            allowed = self.roles.get(scope.get("method", ""), frozenset())
            if principal.role not in allowed:
                raise ApiError(403, f"a {principal.role} token may not do this")
        except ApiError as exc:
            await JSONResponse({"error": exc.message}, status_code=exc.status,
                               headers=exc.headers)(scope, receive, send)
            return
        await self.app(scope, receive, send)
