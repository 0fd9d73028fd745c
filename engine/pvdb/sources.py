"""Where feed documents come from: a file, a folder (recursively), or an HTTP(S) URL.

HTTP downloads are conditional (ETag / If-Modified-Since) and accept gzip; a ``304 Not
Modified`` means the document is not read at all. Compressed files (``.gz``, ``.xz``,
``.zip``) are opened transparently, none decompressed beyond :data:`_MAX_DOCUMENT`.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import io
import lzma
import os
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import httpx

from engine.errors import FeedError
from engine.pvdb.feeds.base import Document

_MAX_DOCUMENT = 2 * 1024**3  # refuse to decompress anything larger (zip bombs)
_XZ_MAGIC = b"\xfd7zXZ\x00"


@dataclass(frozen=True, slots=True)
class HttpValidators:
    """What a later conditional request needs, saved once the body has been ingested."""

    url: str
    etag: str | None
    last_modified: str | None
    body_path: Path
    body_sha256: str


@dataclass(frozen=True, slots=True)
class Fetched:
    """An HTTP source after a request: its documents, none when the server said 304."""

    url: str
    documents: tuple[Document, ...]
    status: int
    validators: HttpValidators | None


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def list_files(source: Path) -> list[Path]:
    """The files a path source stands for: itself, or every file below a folder
    (sorted, hidden files and folders skipped)."""
    if not source.exists():
        raise FeedError(f"{source}: no such file or folder")
    if source.is_dir():
        found: list[Path] = []
        for folder, dirs, files in os.walk(source):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            base = Path(folder)
            found.extend(base / name for name in files if not name.startswith("."))
        return sorted(found)
    return [source]


def open_file(path: Path) -> Iterator[Document]:
    """The documents in one file (several for a zip archive)."""
    try:
        body = path.read_bytes()
    except OSError as exc:
        raise FeedError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    yield from unpack(str(path), body)


def unpack(origin: str, body: bytes) -> Iterator[Document]:
    """Open gzip, xz and zip bodies; anything else is one document."""
    if body[:6] == _XZ_MAGIC:
        try:
            with lzma.LZMAFile(io.BytesIO(body)) as xz:
                data = xz.read(_MAX_DOCUMENT + 1)
        except (lzma.LZMAError, EOFError, OSError) as exc:
            raise FeedError(f"{origin}: corrupt xz data: {exc}") from exc
        if len(data) > _MAX_DOCUMENT:
            raise FeedError(f"{origin}: decompresses to more than {_MAX_DOCUMENT} bytes")
        yield Document(origin.removesuffix(".xz"), data)
    elif body[:2] == b"\x1f\x8b":
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(body)) as gz:
                data = gz.read(_MAX_DOCUMENT + 1)
        except (OSError, EOFError, zlib.error) as exc:
            raise FeedError(f"{origin}: corrupt gzip data: {exc}") from exc
        if len(data) > _MAX_DOCUMENT:
            raise FeedError(f"{origin}: decompresses to more than {_MAX_DOCUMENT} bytes")
        yield Document(origin.removesuffix(".gz"), data)
    elif body[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(io.BytesIO(body)) as archive:
                for info in sorted(archive.infolist(), key=lambda i: i.filename):
                    if info.is_dir():
                        continue
                    if info.file_size > _MAX_DOCUMENT:
                        raise FeedError(f"{origin}!{info.filename}: member too large")
                    yield Document(f"{origin}!{info.filename}", archive.read(info))
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
            raise FeedError(f"{origin}: corrupt zip archive: {exc}") from exc
    else:
        yield Document(origin, body)


def load_validators(con: duckdb.DuckDBPyConnection, url: str) -> HttpValidators | None:
    row = con.execute(
        "SELECT etag, last_modified, body_path, body_sha256 FROM http_state WHERE url = ?", [url]
    ).fetchall()
    if not row:
        return None
    etag, last_modified, body_path, body_sha256 = row[0]
    return HttpValidators(url, etag, last_modified, Path(body_path), body_sha256)


def save_validators(con: duckdb.DuckDBPyConnection, v: HttpValidators) -> None:
    con.execute(
        "INSERT OR REPLACE INTO http_state VALUES (?, ?, ?, ?, ?, ?)",
        [v.url, v.etag, v.last_modified, dt.datetime.now(dt.UTC), str(v.body_path), v.body_sha256],
    )


def fetch(
    url: str,
    previous: HttpValidators | None,
    *,
    cache_dir: Path,
    timeout: float,
    client: httpx.Client | None = None,
) -> Fetched:
    """GET ``url`` conditionally. A 304 gives no document; any error names the URL."""
    headers = {"Accept-Encoding": "gzip", "User-Agent": "vigil-feeds/0.1"}
    if previous is not None and previous.body_path.exists():
        if previous.etag:
            headers["If-None-Match"] = previous.etag
        if previous.last_modified:
            headers["If-Modified-Since"] = previous.last_modified
    own = client is None
    http = client or httpx.Client(timeout=timeout, follow_redirects=True)
    try:
        response = http.get(url, headers=headers)
    except httpx.HTTPError as exc:
        raise FeedError(
            f"{url}: request failed: {exc}", tip="check the URL and the network, or use a file"
        ) from exc
    finally:
        if own:
            http.close()
    if response.status_code == 304:
        return Fetched(url, (), 304, previous)
    if response.status_code != 200:
        raise FeedError(
            f"{url}: server answered HTTP {response.status_code} {response.reason_phrase}"
        )
    body = response.content
    digest = hashlib.sha256(body).hexdigest()
    cache_dir.mkdir(parents=True, exist_ok=True)
    body_path = cache_dir / (hashlib.sha256(url.encode()).hexdigest()[:32] + ".body")
    tmp = body_path.with_suffix(".tmp")
    tmp.write_bytes(body)
    tmp.replace(body_path)
    validators = HttpValidators(
        url,
        response.headers.get("ETag"),
        response.headers.get("Last-Modified"),
        body_path,
        digest,
    )
    name = url.split("?", 1)[0]
    return Fetched(url, tuple(unpack(name, body)), 200, validators)
