"""The service's API tokens, stored hashed (setting ``tokens_db``, a SQLite file so that
``vigil tokens create`` and ``revoke`` work while the service runs).

A token reads ``vgl_<id>_<secret>``: ``id`` (12 hex digits) names its row, ``secret``
(32 random bytes, base64url) is stored only as its SHA-256 digest and compared in
constant time. A token is shown once, when it is made; it is never logged or stored in
clear. Roles:

* ``admin``: everything: every tenant's requests, the fleet, images, policies, bundles;
* ``tenant``: its own tenant's provisioning requests and reports only (another tenant's
  request answers 404);
* ``auditor``: reads everything an admin reads, changes nothing;
* ``service``: a system calling on its own behalf: the Kubernetes API server (the
  admission webhook) and OPA (bundles, decision-log uploads).

A revoked or expired token stops working at once (each request reads the file).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import hmac
import re
import secrets
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from engine.errors import DatabaseError, NotFoundError, UsageError

Role = Literal["admin", "tenant", "auditor", "service"]
ROLES: tuple[str, ...] = get_args(Role)
_TOKEN = re.compile(r"^vgl_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
_TENANT = re.compile(r"^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (
    token_id TEXT PRIMARY KEY,
    digest TEXT NOT NULL,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    tenant TEXT,
    created_at TEXT NOT NULL,
    expires_at TEXT,
    revoked_at TEXT
);
"""


class TokenError(DatabaseError):
    """The token file cannot be opened or written."""


@dataclass(frozen=True)
class Principal:
    """Who a request comes from."""

    token_id: str
    name: str
    role: Role
    tenant: str | None = None

    @property
    def actor(self) -> str:
        """How the request's events name the caller (never the token)."""
        return f"{self.role}:{self.name}" + (f"@{self.tenant}" if self.tenant else "")


@dataclass(frozen=True)
class TokenInfo:
    token_id: str
    name: str
    role: Role
    tenant: str | None
    created_at: str
    expires_at: str | None
    revoked_at: str | None


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def valid_tenant(name: str) -> bool:
    """A tenant name: a DNS label (as a Kubernetes namespace), so that one namespace is
    one tenant."""
    return bool(_TENANT.match(name))


class TokenStore:
    """The token file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._con = sqlite3.connect(str(path), timeout=10, isolation_level=None,
                                        check_same_thread=False)
            self._con.execute("PRAGMA journal_mode=WAL")
            self._con.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise TokenError(f"cannot open the token file {path}: {exc}",
                             tip="check VIGIL_TOKENS_DB") from exc
        with contextlib.suppress(OSError):
            path.chmod(0o600)  # the digests are no secret, but nobody else needs them

    def close(self) -> None:
        with self._lock:
            self._con.close()

    def __enter__(self) -> TokenStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def create(self, name: str, role: str, *, tenant: str | None = None,
               expires_at: dt.datetime | None = None) -> tuple[str, TokenInfo]:
        """A new token: its text (shown once) and what is stored of it."""
        if role not in ROLES:
            raise UsageError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
        if role == "tenant":
            if not tenant or not valid_tenant(tenant):
                raise UsageError("a tenant token needs --tenant NAME (a DNS label: lower "
                                 "case letters, digits, '-' and '.')")
        elif tenant is not None:
            raise UsageError(f"a {role} token is for no tenant; drop --tenant")
        if not name or len(name) > 200:
            raise UsageError("a token needs a name of at most 200 characters")
        token_id = secrets.token_hex(6)
        secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")
        created = _now().isoformat()
        expires = expires_at.astimezone(dt.UTC).isoformat() if expires_at else None
        with self._lock:
            try:
                self._con.execute("INSERT INTO tokens VALUES (?, ?, ?, ?, ?, ?, ?, NULL)",
                                  [token_id, _digest(secret), name, role, tenant, created,
                                   expires])
            except sqlite3.Error as exc:
                raise TokenError(f"cannot write the token file {self.path}: {exc}") from exc
        info = TokenInfo(token_id, name, role, tenant, created, expires, None)  # type: ignore[arg-type]
        return f"vgl_{token_id}_{secret}", info

    def tokens(self) -> list[TokenInfo]:
        with self._lock:
            rows = self._con.execute("SELECT token_id, name, role, tenant, created_at, "
                                     "expires_at, revoked_at FROM tokens ORDER BY created_at"
                                     ).fetchall()
        return [TokenInfo(*r) for r in rows]

    def revoke(self, token_id: str) -> TokenInfo:
        with self._lock:
            cur = self._con.execute("UPDATE tokens SET revoked_at = coalesce(revoked_at, ?) "
                                    "WHERE token_id = ?", [_now().isoformat(), token_id])
            if cur.rowcount == 0:
                raise NotFoundError(f"no token {token_id}",
                                    tip="list them with `vigil tokens list`")
        return next(t for t in self.tokens() if t.token_id == token_id)

    def authenticate(self, text: str) -> Principal | None:
        """Who ``text`` is the token of, or None (unknown, wrong, revoked, expired)."""
        m = _TOKEN.match(text.strip())
        if not m:
            return None
        token_id, secret = m.groups()
        with self._lock:
            row = self._con.execute("SELECT digest, name, role, tenant, expires_at, "
                                    "revoked_at FROM tokens WHERE token_id = ?",
                                    [token_id]).fetchone()
        if row is None:
            return None
        digest, name, role, tenant, expires, revoked = row
        if not hmac.compare_digest(str(digest), _digest(secret)):
            return None
        if revoked is not None:
            return None
        if expires is not None and dt.datetime.fromisoformat(expires) <= _now():
            return None
        if role not in ROLES:
            return None
        return Principal(token_id, str(name), role, tenant)
