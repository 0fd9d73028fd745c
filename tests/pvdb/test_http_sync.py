"""Feeds over HTTP: a loopback server serves the real feed files with ETag,
Last-Modified and gzip; a second sync gets 304 Not Modified and reads nothing."""

from __future__ import annotations

import gzip
import hashlib
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from engine.config import Settings, load_settings
from engine.errors import FeedError
from engine.pvdb import Pvdb

pytestmark = pytest.mark.shared_data


class FeedServer:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests: list[tuple[str, str, int]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                status = server.respond(self)
                server.requests.append((self.path, self.headers.get("If-None-Match", ""), status))

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def respond(self, h: BaseHTTPRequestHandler) -> int:
        if h.path == "/broken":
            h.send_error(500, "feed generator crashed")
            return 500
        path = self.root / h.path.lstrip("/")
        if not path.is_file():
            h.send_error(404)
            return 404
        body = path.read_bytes()
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        if h.headers.get("If-None-Match") == etag:
            h.send_response(304)
            h.send_header("ETag", etag)
            h.end_headers()
            return 304
        compress = "gzip" in h.headers.get("Accept-Encoding", "")
        payload = gzip.compress(body) if compress else body
        h.send_response(200)
        h.send_header("ETag", etag)
        h.send_header("Last-Modified", "Mon, 25 Aug 2025 00:00:00 GMT")
        h.send_header("Content-Type", "application/json")
        if compress:
            h.send_header("Content-Encoding", "gzip")
        h.send_header("Content-Length", str(len(payload)))
        h.end_headers()
        h.wfile.write(payload)
        return 200


@pytest.fixture
def server(feeds_dir: Path) -> Iterator[FeedServer]:
    srv = FeedServer(feeds_dir)
    srv.thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


@pytest.fixture
def settings(db_path: Path, tmp_path: Path) -> Settings:
    return load_settings(db=db_path, http_cache=tmp_path / "http")


def test_sync_then_304(server: FeedServer, settings: Settings,
        db_path: Path) -> None:
    urls = [f"{server.url}/kev/known_exploited_vulnerabilities.json",
            f"{server.url}/cve5_linux_cna/2024/CVE-2024-42135.json",
            f"{server.url}/nvd/CVE-2024-26976.json"]
    with Pvdb.open(db_path, settings=settings) as db:
        first = db.ingest(urls)
        assert first.problems == []
        assert first.counts["kev"].added == 1404
        assert first.counts["cve5"].added == 1
        assert first.counts["nvd"].added == 1
        assert first.not_modified == []
        generation = db.generation

        second = db.ingest(urls)
        assert second.not_modified == urls
        assert second.changed == 0
        assert second.documents == 0, "a 304 must not be read again"
        assert db.generation == generation
        kev = db.show("CVE-2024-37085")["kev"][0]
        assert (str(kev["date_added"]), str(kev["due_date"])) == ("2024-07-30", "2024-08-20")
    # Every request after the first carried the validator and got 304.
    conditional = [r for r in server.requests if r[1]]
    assert [r[2] for r in conditional] == [304, 304, 304]


def test_validators_survive_a_new_process(server: FeedServer, settings: Settings,
        db_path: Path) -> None:
    url = f"{server.url}/nvd/CVE-2024-26976.json"
    with Pvdb.open(db_path, settings=settings) as db:
        db.ingest([url])
    with Pvdb.open(db_path, settings=settings) as db:
        assert db.ingest([url]).not_modified == [url]


def test_http_errors_name_the_source(server: FeedServer, settings: Settings,
        db_path: Path) -> None:
    with Pvdb.open(db_path, settings=settings) as db:
        report = db.ingest([f"{server.url}/broken", f"{server.url}/nvd/CVE-2024-26976.json",
                            f"{server.url}/missing.json"])
        assert report.counts["nvd"].added == 1, "the good URL still loads"
        reasons = {p.origin.rsplit("/", 1)[-1]: p.reason for p in report.problems}
        assert "HTTP 500" in reasons["broken"]
        assert "HTTP 404" in reasons["missing.json"]
        assert all(server.url in p.origin for p in report.problems)


def test_unreachable_server_is_named(settings: Settings,
        db_path: Path) -> None:
    with Pvdb.open(db_path, settings=settings) as db:
        report = db.ingest(["http://127.0.0.1:9/feed.json"])
    assert "127.0.0.1:9/feed.json" in report.problems[0].origin
    assert "request failed" in report.problems[0].reason


def test_fetch_error_type(settings: Settings) -> None:
    from engine.pvdb import sources

    with pytest.raises(FeedError, match="request failed"):
        sources.fetch("http://127.0.0.1:9/x", None, cache_dir=settings.http_cache, timeout=2)
