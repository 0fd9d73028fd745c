"""Where feed documents come from: a file, a folder (recursively), or an HTTP(S) URL.

HTTP downloads are conditional (ETag / If-Modified-Since) and accept gzip; a ``304 Not
Modified`` means the document is not read at all. Compressed files (``.gz``, ``.xz``,
``.zip``) are opened transparently.

Reading is bounded and never blocks (:class:`Limits`):

* only regular files are read: a FIFO, a device, a socket (directly or through a symbolic
  link) is refused without being opened for a blocking read, and a symbolic link to a
  folder is not followed; each is reported;
* one document (a file, an archive member, an HTTP body, after decompression) is at most
  ``Limits.document`` bytes: a larger one is refused, and nothing is decompressed beyond
  the limit (a zip member whose header states a larger size is not decompressed at all);
* one source (a file with every member of an archive, the downloaded body of a URL) gives
  at most ``Limits.source`` bytes in all; what is beyond is refused;
* documents are decompressed one at a time as the ingest asks for them, streamed from the
  file (an archive is never held in memory as a whole), so memory holds one document.

A refused part of a source is yielded as :class:`Refused` (the ingest reports it as a
problem) and the rest of the source is still read; a source refused as a whole raises
:class:`~engine.errors.FeedError`.
"""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import lzma
import os
import stat
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Protocol

import duckdb
import httpx

from engine.errors import FeedError
from engine.pvdb.feeds.base import Document

if TYPE_CHECKING:
    from engine.config import Settings

_XZ_MAGIC = b"\xfd7zXZ\x00"
_GZIP_MAGIC = b"\x1f\x8b"
_ZIP_MAGIC = b"PK\x03\x04"
_CHUNK = 1024**2
"""Bytes decompressed or downloaded per read."""


@dataclass(frozen=True, slots=True)
class Limits:
    """How much is read (settings ``ingest_max_document`` and ``ingest_max_source``)."""

    document: int = 512 * 1024**2
    """Bytes of one document after decompression."""
    source: int = 8 * 1024**3
    """Bytes from one file or URL in all, after decompression."""

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(settings.ingest_max_document, settings.ingest_max_source)


@dataclass(frozen=True, slots=True)
class Refused:
    """A file, folder or archive member that was not read, and why."""

    origin: str
    reason: str


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
    """An HTTP source after a request: its body (in the cache), none when the server
    said 304."""

    url: str
    status: int
    validators: HttpValidators | None

    def documents(self, limits: Limits) -> Iterator[Document | Refused]:
        """The documents of the body, read from the cache file as asked for."""
        if self.status == 304 or self.validators is None:
            return iter(())
        return open_file(self.validators.body_path, limits, origin=self.url.split("?", 1)[0])


def is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def list_files(source: Path) -> list[Path | Refused]:
    """The files a path source stands for: itself, or every file below a folder
    (sorted, hidden files and folders skipped). Symbolic links to folders are not
    followed (a :class:`Refused` each), nor are folders that cannot be listed."""
    if not source.exists():
        raise FeedError(f"{source}: no such file or folder")
    if not source.is_dir():
        return [source]
    found: list[Path | Refused] = []

    def unlistable(exc: OSError) -> None:
        found.append(Refused(str(exc.filename or source),
                             f"cannot list the folder: {exc.strerror or exc}"))

    for folder, dirs, files in os.walk(source, onerror=unlistable):
        base = Path(folder)
        kept = []
        for name in dirs:
            if name.startswith("."):
                continue
            if (base / name).is_symlink():
                found.append(Refused(str(base / name),
                                     "a symbolic link to a folder: not followed"))
            else:
                kept.append(name)
        dirs[:] = kept
        found.extend(base / name for name in files if not name.startswith("."))
    return sorted(found, key=lambda item: str(item.origin if isinstance(item, Refused)
                                              else item))


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def open_file(path: Path, limits: Limits | None = None, *, origin: str | None = None
              ) -> Iterator[Document | Refused]:
    """The documents in one regular file (several for a zip archive), read one at a time
    within ``limits``; ``origin`` names them (default: the path)."""
    limits = limits or Limits()
    name = origin or str(path)
    try:
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):
            raise _not_regular(path, name, mode)
        # O_NONBLOCK: should the path have become a FIFO since, opening it cannot hang.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise FeedError(f"{name}: cannot read: {exc.strerror or exc}") from exc
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise _not_regular(path, name, info.st_mode)
        yield from _unpack(name, fh, info.st_size, limits)


def _not_regular(path: Path, name: str, mode: int) -> FeedError:
    link = " (through a symbolic link)" if path.is_symlink() else ""
    return FeedError(f"{name}: {_kind(mode)}{link}, not a regular file: not read")


class _TooLarge(Exception):
    pass


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def _read_bounded(stream: _Readable, limit: int, first: int = _CHUNK) -> bytes:
    """Everything ``stream`` gives, or :class:`_TooLarge` as soon as it is more than
    ``limit`` bytes (nothing more is read or decompressed)."""
    chunks: list[bytes] = []
    total = 0
    size = max(1, min(first, limit + 1))
    while chunk := stream.read(size):
        total += len(chunk)
        if total > limit:
            raise _TooLarge
        chunks.append(chunk)
        size = min(_CHUNK, limit + 1 - total)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _too_large(limit: int, source_limit: bool) -> str:
    if source_limit:
        return (f"more than {limit} bytes in all from one source (ingest_max_source): "
                "not read")
    return f"larger than {limit} bytes (ingest_max_document): not read"


_CORRUPT = (OSError, EOFError, zlib.error, lzma.LZMAError, zipfile.BadZipFile)


def _unpack(origin: str, fh: IO[bytes], size: int, limits: Limits
            ) -> Iterator[Document | Refused]:
    """Open gzip, xz and zip files; anything else is one document."""
    magic = fh.read(6)
    fh.seek(0)
    limit = min(limits.document, limits.source)
    if magic[:2] == _GZIP_MAGIC or magic == _XZ_MAGIC:
        gz = magic[:2] == _GZIP_MAGIC
        kind, suffix = ("gzip", ".gz") if gz else ("xz", ".xz")
        try:
            with gzip.GzipFile(fileobj=fh) if gz else lzma.LZMAFile(fh) as stream:
                body = _read_bounded(stream, limit)
        except _TooLarge:
            raise FeedError(f"{origin}: decompresses to "
                            + _too_large(limit, limit < limits.document)) from None
        except _CORRUPT as exc:
            raise FeedError(f"{origin}: corrupt {kind} data: {exc}") from exc
        yield Document(origin.removesuffix(suffix), body)
    elif magic[:4] == _ZIP_MAGIC:
        yield from _unzip(origin, fh, limits)
    else:
        if size > limit:
            raise FeedError(f"{origin}: {size} bytes, "
                            + _too_large(limit, limit < limits.document))
        try:
            body = _read_bounded(fh, limit, first=size + 1)
        except _TooLarge:  # it grew while being read
            raise FeedError(f"{origin}: " + _too_large(limit, limit < limits.document)
                            ) from None
        yield Document(origin, body)


def _unzip(origin: str, fh: IO[bytes], limits: Limits) -> Iterator[Document | Refused]:
    """The members of a zip archive, one at a time, within the limits."""
    try:
        archive = zipfile.ZipFile(fh)
    except (*_CORRUPT, ValueError) as exc:
        raise FeedError(f"{origin}: corrupt zip archive: {exc}") from exc
    left = limits.source
    with archive:
        members = sorted((i for i in archive.infolist() if not i.is_dir()),
                         key=lambda i: i.filename)
        for n, info in enumerate(members):
            where = f"{origin}!{info.filename}"
            limit = min(limits.document, left)
            by_source = limit < limits.document
            if info.file_size > limit:  # refused on the header's word: nothing decompressed
                yield Refused(where, f"states {info.file_size} bytes, "
                              + _too_large(limit, by_source))
                if by_source:
                    yield from _unread(origin, len(members) - n - 1, limits)
                    return
                continue
            try:
                with archive.open(info) as member:
                    body = _read_bounded(member, limit)
            except _TooLarge:
                yield Refused(where, _too_large(limit, by_source))
                if by_source:
                    yield from _unread(origin, len(members) - n - 1, limits)
                    return
                left -= limit
                continue
            except (*_CORRUPT, RuntimeError) as exc:  # RuntimeError: encrypted, unsupported
                yield Refused(where, f"corrupt or unreadable archive member: {exc}")
                continue
            left -= len(body)
            yield Document(where, body)
            del body


def _unread(origin: str, count: int, limits: Limits) -> Iterator[Refused]:
    if count:
        yield Refused(origin, f"{count} more members not read: "
                      + _too_large(limits.source, True))


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
    limits: Limits | None = None,
) -> Fetched:
    """GET ``url`` conditionally, streaming the body into the cache (at most
    ``limits.source`` bytes after transfer decoding). A 304 gives no body; any error
    names the URL."""
    limits = limits or Limits()
    headers = {"Accept-Encoding": "gzip", "User-Agent": "vigil-feeds/0.1"}
    if previous is not None and previous.body_path.exists():
        if previous.etag:
            headers["If-None-Match"] = previous.etag
        if previous.last_modified:
            headers["If-Modified-Since"] = previous.last_modified
    cache_dir.mkdir(parents=True, exist_ok=True)
    body_path = cache_dir / (hashlib.sha256(url.encode()).hexdigest()[:32] + ".body")
    tmp = body_path.with_suffix(".tmp")
    own = client is None
    http = client or httpx.Client(timeout=timeout, follow_redirects=True)
    try:
        with http.stream("GET", url, headers=headers) as response:
            if response.status_code == 304:
                return Fetched(url, 304, previous)
            if response.status_code != 200:
                raise FeedError(
                    f"{url}: server answered HTTP {response.status_code} "
                    f"{response.reason_phrase}"
                )
            digest = _download(url, response, tmp, limits.source)
            validators = HttpValidators(
                url,
                response.headers.get("ETag"),
                response.headers.get("Last-Modified"),
                body_path,
                digest,
            )
    except httpx.HTTPError as exc:
        tmp.unlink(missing_ok=True)
        raise FeedError(
            f"{url}: request failed: {exc}", tip="check the URL and the network, or use a file"
        ) from exc
    finally:
        if own:
            http.close()
    tmp.replace(body_path)
    return Fetched(url, 200, validators)


def _download(url: str, response: httpx.Response, tmp: Path, limit: int) -> str:
    """Stream the body into ``tmp``; its SHA-256. Refused beyond ``limit`` bytes."""
    sha = hashlib.sha256()
    total = 0
    try:
        with tmp.open("wb") as out:
            for chunk in response.iter_bytes(_CHUNK):
                total += len(chunk)
                if total > limit:
                    raise FeedError(f"{url}: the body is " + _too_large(limit, True))
                sha.update(chunk)
                out.write(chunk)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return sha.hexdigest()
