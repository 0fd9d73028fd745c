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
tampered or unsigned bundle gets ``503`` naming the problem, never its bytes). Only
regular files directly in the folder are served: a symbolic link, a device or a name
longer than 255 characters is ``404``.

With a decision log it also takes OPA's decision logs (``POST /logs``: the gzip-compressed
JSON arrays of events OPA's decision-log plugin uploads; point the plugin's ``service`` at
this server) into Vigil's hash-chained log, and records every bundle it serves there, so
``vigil decisions replay`` can replay a decision an OPA server made with the very bundle
that made it::

    decision_logs:
      service: vigil
      reporting: {min_delay_seconds: 5, max_delay_seconds: 10}
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import stat as stat_kinds
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from engine.decide import bundle as _bundle
from engine.decide.decision_log import DecisionLog
from engine.decide.errors import DecideError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,247}\.tar\.gz$")
MAX_LOG_UPLOAD = 32 * 2**20
"""Bytes of one decision-log upload as sent (compressed) and, separately, decompressed
(x4): OPA's default upload limit is 32 KiB, so this is generous, and bounded."""
MEDIA_TYPE = "application/gzip"


@dataclass(frozen=True)
class _Entry:
    stamp: tuple[int, int]
    """(size, mtime_ns) of the file the entry was read from."""
    body: bytes
    etag: str
    error: str | None
    """Why the bundle is refused (verification failed), or None."""
    revision: str | None = None
    """The manifest's revision, when the bundle could be read."""


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
            stat = path.lstat()
        except OSError:
            return None
        if not stat_kinds.S_ISREG(stat.st_mode):
            return None  # a link (to /etc/passwd, say), a device or a folder is not served
        stamp = (stat.st_size, stat.st_mtime_ns)
        with self._lock:
            entry = self._cache.get(name)
            if entry is not None and entry.stamp == stamp:
                return entry
        body = path.read_bytes()
        error = None
        revision = None
        try:
            if self.verification_key is not None:
                revision = _bundle.read(path, body, verification_key=self.verification_key,
                                        key_id=self.key_id, scope=self.scope).revision
            else:
                revision = _bundle.read(path, body, require_signature=False).revision
        except DecideError as exc:
            if self.verification_key is not None:
                error = exc.summary
        entry = _Entry(stamp=stamp, body=body,
                       etag=f'"{hashlib.sha256(body).hexdigest()}"', error=error,
                       revision=revision)
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


def app(folder: BundleFolder, log: DecisionLog | None = None) -> Starlette:
    """The ASGI application serving ``folder`` under ``/bundles/`` (and, with ``log``,
    taking OPA's decision logs at ``/logs``)."""
    recorded: set[tuple[str, str]] = set()

    async def serve(request: Request) -> Response:
        name = request.path_params["name"]
        entry = folder.get(name)
        if entry is None:
            return JSONResponse({"error": f"no bundle {name!r}"}, status_code=404)
        if entry.error is not None:
            return JSONResponse({"error": f"bundle {name} does not verify: {entry.error}"},
                                status_code=503)
        headers = {"ETag": entry.etag, "Cache-Control": "no-cache"}
        if log is not None and entry.revision and (entry.revision, entry.etag) not in recorded:
            log.record_bundle(entry.revision, entry.body, str(folder.folder / name))
            recorded.add((entry.revision, entry.etag))
        if _matches(request.headers.get("if-none-match"), entry.etag):
            return Response(status_code=304, headers=headers)
        return Response(entry.body if request.method == "GET" else b"", media_type=MEDIA_TYPE,
                        headers={**headers, "Content-Length": str(len(entry.body))})

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def logs(request: Request) -> Response:
        if log is None:
            return JSONResponse({"error": "this server takes no decision logs (start it "
                                 "with --accept-decision-logs)"}, status_code=404)
        raw = bytearray()
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > MAX_LOG_UPLOAD:
                return JSONResponse({"error": f"upload over {MAX_LOG_UPLOAD} bytes"},
                                    status_code=413)
        try:
            events = _events(bytes(raw), request.headers.get("content-encoding", ""))
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        added = known = 0
        problems: list[str] = []
        for event in events:
            try:
                if log.append_opa_event(event):
                    added += 1
                else:
                    known += 1
            except DecideError as exc:
                problems.append(exc.summary)
        body = {"added": added, "already_logged": known, "problems": problems}
        return JSONResponse(body, status_code=400 if problems and not added else 200)

    return Starlette(routes=[Route("/bundles/{name}", serve, methods=["GET", "HEAD"]),
                             Route("/logs", logs, methods=["POST"]),
                             Route("/health", health, methods=["GET"])])


def _events(raw: bytes, encoding: str) -> list[object]:
    """The events of one upload: a JSON array, gzip-compressed when the header says so
    (OPA always compresses), decompressed within :data:`MAX_LOG_UPLOAD` x 4."""
    if "gzip" in encoding.lower():
        try:
            reader = gzip.GzipFile(fileobj=io.BytesIO(raw))
            raw = reader.read(MAX_LOG_UPLOAD * 4 + 1)
        except (OSError, EOFError, zlib.error) as exc:
            raise ValueError(f"the upload is not valid gzip: {exc}") from exc
        if len(raw) > MAX_LOG_UPLOAD * 4:
            raise ValueError("the upload decompresses beyond its limit")
    try:
        events = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"the upload is not JSON: {exc}") from exc
    if not isinstance(events, list):
        raise ValueError("the upload is not a JSON array of decision-log events")
    return events
