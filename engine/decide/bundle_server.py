"""A bundle server OPA can poll: ``GET /bundles/<name>.tar.gz`` with ETag / 304.

OPA's bundle plugin downloads ``<service url>/<resource>`` and, on the next poll, sends
the ETag it got back in ``If-None-Match``; the server answers ``304 Not Modified`` while
the bundle is unchanged, so polling costs no download. Point OPA at it with::

    services:
      vigil:
        url: http://vigil-host:8182
    bundles:
      vigil:
        service: vigil
        resource: bundles/vigil.tar.gz
        signing:
          keyid: vigil          # OPA verifies the signature with its own key config

The server serves the ``*.tar.gz`` files of one folder (``vigil bundle build`` writes
them to ``bundles/``). The ETag is the SHA-256 of the file's bytes, recomputed when the
file's size or modification time changes, so a rebuilt bundle is served at once. With a
verification key configured it serves only bundles whose signature verifies (a
tampered or unsigned bundle gets ``503`` naming the problem, never its bytes).
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from engine.decide import bundle as _bundle
from engine.decide.errors import DecideError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\.tar\.gz$")
MEDIA_TYPE = "application/gzip"


@dataclass(frozen=True)
class _Entry:
    stamp: tuple[int, int]
    """(size, mtime_ns) of the file the entry was read from."""
    body: bytes
    etag: str
    error: str | None
    """Why the bundle is refused (verification failed), or None."""


class BundleFolder:
    """The bundles of one folder, read and hashed once per change."""

    def __init__(self, folder: Path, *, verification_key: Path | None = None,
                 key_id: str | None = None, scope: str | None = None) -> None:
        self.folder = folder.resolve()
        self.verification_key = verification_key
        self.key_id = key_id
        self.scope = scope
        self._cache: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> _Entry | None:
        """The current bundle ``name``, or None when there is no such file."""
        if not _NAME.match(name):
            return None
        path = self.folder / name
        try:
            stat = path.stat()
        except FileNotFoundError:
            return None
        stamp = (stat.st_size, stat.st_mtime_ns)
        with self._lock:
            entry = self._cache.get(name)
            if entry is not None and entry.stamp == stamp:
                return entry
        body = path.read_bytes()
        error = None
        if self.verification_key is not None:
            try:
                _bundle.read(path, body, verification_key=self.verification_key,
                             key_id=self.key_id, scope=self.scope)
            except DecideError as exc:
                error = exc.summary
        entry = _Entry(stamp=stamp, body=body,
                       etag=f'"{hashlib.sha256(body).hexdigest()}"', error=error)
        with self._lock:
            self._cache[name] = entry
        return entry


def _matches(header: str | None, etag: str) -> bool:
    """Whether an If-None-Match header names ``etag`` (weak or strong, or ``*``)."""
    if not header:
        return False
    for candidate in header.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == etag:
            return True
    return False


def app(folder: BundleFolder) -> Starlette:
    """The ASGI application serving ``folder`` under ``/bundles/``."""

    async def serve(request: Request) -> Response:
        name = request.path_params["name"]
        entry = folder.get(name)
        if entry is None:
            return JSONResponse({"error": f"no bundle {name!r}"}, status_code=404)
        if entry.error is not None:
            return JSONResponse({"error": f"bundle {name} does not verify: {entry.error}"},
                                status_code=503)
        headers = {"ETag": entry.etag, "Cache-Control": "no-cache"}
        if _matches(request.headers.get("if-none-match"), entry.etag):
            return Response(status_code=304, headers=headers)
        return Response(entry.body if request.method == "GET" else b"", media_type=MEDIA_TYPE,
                        headers={**headers, "Content-Length": str(len(entry.body))})

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    return Starlette(routes=[Route("/bundles/{name}", serve, methods=["GET", "HEAD"]),
                             Route("/health", health, methods=["GET"])])
