"""Bad input is reported, never fatal: one bad record or file does not stop the rest of an
ingest from loading, and the bad one is named (file, record, reason)."""

from __future__ import annotations

import gzip
import json
import os
import struct
import subprocess
import sys
import threading
import zipfile
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest

from engine.config import load_settings
from engine.pvdb import Pvdb
from engine.pvdb.feeds.cve5 import Cve5Adapter
from engine.pvdb.models import NormalisedRecord, RawRecord
from tests.clirun import vigil
from tests.conftest import ROOT
from tests.pvdb.records import cve5_record, write_json

GOOD = 30


def _good(folder: Path) -> Path:
    """``GOOD`` valid CVE records under ``folder/good`` (read after ``folder/a-bad``)."""
    for i in range(GOOD):
        cve_id = f"CVE-2024-{1000 + i}"
        write_json(folder / "good" / f"{cve_id}.json", cve5_record(cve_id))
    return folder


def _bad(folder: Path) -> Path:
    path = folder / "a-bad"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _loaded(db: Pvdb) -> int:
    return int(db._con.execute("SELECT count(*) FROM records").fetchall()[0][0])


def _wrong_typed_cpe_bound(folder: Path) -> None:
    record = cve5_record("CVE-2024-0001")
    record["containers"]["cna"]["cpeApplicability"] = [{"nodes": [{
        "operator": "OR", "negate": False, "cpeMatch": [{
            "vulnerable": True, "criteria": "cpe:2.3:o:linux:linux_kernel:*:*:*:*:*:*:*:*",
            "versionStartIncluding": 5, "versionEndExcluding": "6.1"}]}]}]
    write_json(_bad(folder) / "CVE-2024-0001.json", record)


def _nested_300_levels(folder: Path) -> None:
    text = orjson.dumps(cve5_record("CVE-2024-0001")).decode()
    deep = '{"x":' * 300 + "{}" + "}" * 300  # orjson reads 1,024 levels, writes 255
    (_bad(folder) / "CVE-2024-0001.json").write_text(text[:-1] + f',"x_deep":{deep}}}')


def _corrupt_gzip(folder: Path) -> None:
    body = gzip.compress(orjson.dumps(cve5_record("CVE-2024-0001")))
    (_bad(folder) / "CVE-2024-0001.json.gz").write_bytes(body[:20] + b"\0" * 10 + body[30:])


def _epss_field_over_128_kib(folder: Path) -> None:
    (_bad(folder) / "epss_scores-2025-01-01.csv").write_text(
        "cve,epss,percentile\nCVE-2024-0001,0.1,0.2\n"
        f"CVE-2024-0002,{'1' * 140_000},0.3\nCVE-2024-0003,0.1,0.2\n")


@pytest.mark.parametrize(("make", "name", "record_id", "pointer", "reason", "extra"), [
    (_wrong_typed_cpe_bound, "CVE-2024-0001.json", "CVE-2024-0001",
     "$.containers.cna.cpeApplicability[0].nodes[0].cpeMatch[0].versionStartIncluding",
     "expected str, got int", 0),
    (_nested_300_levels, "CVE-2024-0001.json", "CVE-2024-0001", "$",
     "nested deeper than 255 levels", 0),
    (_corrupt_gzip, "CVE-2024-0001.json.gz", None, "$", "corrupt gzip data", 0),
    (_epss_field_over_128_kib, "epss_scores-2025-01-01.csv", None, "line 3",
     "field larger than field limit", 2),
], ids=["cpe-bound-type", "deep-json", "corrupt-gzip", "epss-huge-field"])
def test_bad_file_first_does_not_stop_the_rest(
    tmp_path: Path, db_path: Path, make: object, name: str, record_id: str | None,
    pointer: str, reason: str, extra: int,
) -> None:
    feed = _good(tmp_path / "feed")
    make(feed)  # type: ignore[operator]
    with Pvdb.open(db_path) as db:
        report = db.ingest([str(feed)])
        assert _loaded(db) == GOOD + extra
    assert len(report.problems) == 1, report.problems
    problem = report.problems[0]
    assert Path(problem.origin).name == name
    assert (problem.record_id, problem.pointer) == (record_id, pointer)
    assert reason in problem.reason


@pytest.mark.shared_data
@pytest.mark.slow
def test_every_real_record_loads_behind_the_four_bad_files(
    tmp_path: Path, db_path: Path, feeds_dir: Path
) -> None:
    bad = tmp_path / "bad"
    for make in (_wrong_typed_cpe_bound, _nested_300_levels, _corrupt_gzip,
                 _epss_field_over_128_kib):
        make(bad / make.__name__)
    real = sorted(str(p) for p in feeds_dir.iterdir()
                  if p.is_dir() and p.name != "kernel_cna_full")
    with Pvdb.open(db_path) as db:
        clean = db.ingest(real).total().added
    with Pvdb.open(tmp_path / "behind.duckdb") as db:
        report = db.ingest([str(bad), *real])
    assert len(report.problems) == 4, report.problems
    assert report.total().added == clean + 2  # the EPSS file's two good rows
    assert clean > 3800


def test_cli_exit_code_4_when_a_record_is_rejected(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in [k for k in os.environ if k.startswith("VIGIL_")]:
        monkeypatch.delenv(key)
    feed = _good(tmp_path / "feed")
    _nested_300_levels(feed)
    code, out, err = vigil(capsys, monkeypatch, "feeds", "ingest", str(feed), "--db",
                           str(tmp_path / "db.duckdb"), "--json")
    assert code == 4, err
    report = orjson.loads(out)
    assert report["counts"]["cve5"]["added"] == GOOD
    assert [p["record_id"] for p in report["problems"]] == ["CVE-2024-0001"]
    assert "Traceback" not in err


def test_a_batch_with_an_unstorable_record_writes_every_other_record(
    tmp_path: Path, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fact value the database cannot take (here forced past the adapter's checks) fails
    its batch; the batch is split until that record is found, and the rest is written."""
    normalise = Cve5Adapter.normalise

    def corrupting(self: Cve5Adapter, raw: RawRecord) -> NormalisedRecord:
        record = normalise(self, raw)
        if raw.record_id == "CVE-2024-1017":  # a value of the wrong type
            first = record.affected[0]
            bad = type(first)(**{**{f: getattr(first, f) for f in first.__slots__},
                                 "start": 6})
            return NormalisedRecord(record.source, record.record_id, vulns=record.vulns,
                                    affected=(bad, *record.affected[1:]))
        if raw.record_id == "CVE-2024-1003":  # a missing required value
            vuln = record.vulns[0]
            bad_vuln = type(vuln)(**{**{f: getattr(vuln, f) for f in vuln.__slots__},
                                     "state": None})
            return NormalisedRecord(record.source, record.record_id, vulns=(bad_vuln,))
        return record

    monkeypatch.setattr(Cve5Adapter, "normalise", corrupting)
    feed = _good(tmp_path / "feed")
    with Pvdb.open(db_path) as db:
        report = db.ingest([str(feed)])
        assert _loaded(db) == GOOD - 2
        stored = {r[0] for r in db._con.execute("SELECT record_id FROM records").fetchall()}
        assert not stored & {"CVE-2024-1017", "CVE-2024-1003"}
        facts = db._con.execute(
            "SELECT count(*) FROM vulnerabilities WHERE record_id IN "
            "('CVE-2024-1017', 'CVE-2024-1003')").fetchall()[0][0]
        assert facts == 0
    assert report.counts["cve5"].added == GOOD - 2
    assert report.counts["cve5"].problems == 2
    problems = {p.record_id: p for p in report.problems}
    assert set(problems) == {"CVE-2024-1017", "CVE-2024-1003"}
    assert "affected.start" in problems["CVE-2024-1017"].reason
    assert "cannot be stored" in problems["CVE-2024-1003"].reason
    assert Path(problems["CVE-2024-1003"].origin).name == "CVE-2024-1003.json"


# --- bounded reading: bombs, FIFOs, devices, links ------------------------------------

MiB = 1024**2

_MEASURE = """
import json, resource, sys
from pathlib import Path
from engine.config import load_settings
from engine.pvdb import Pvdb

db, document, source, warm_up, *paths = sys.argv[1:]
settings = load_settings(db=Path(db), ingest_max_document=int(document),
                         ingest_max_source=int(source))
with Pvdb.open(Path(db), settings=settings) as pvdb:
    pvdb.ingest([warm_up])  # every module imported, the database warm
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    report = pvdb.ingest(paths)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"grew_kib": after - before, "added": report.total().added,
                  "problems": [[p.origin, p.reason] for p in report.problems]}))
"""


def _measured(tmp_path: Path, *paths: Path, document: int = MiB, source: int = 64 * MiB
              ) -> dict[str, Any]:
    """Ingest ``paths`` in a fresh process with lowered limits, after a warm-up ingest of
    other records: how much its peak memory grew during the ingest of ``paths`` (KiB),
    records added and problems."""
    warm_up = tmp_path / "warm-up"
    for i in range(3):
        write_json(warm_up / f"CVE-2023-{i:04}.json", cve5_record(f"CVE-2023-{i:04}"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, str(tmp_path / "measured.duckdb"), str(document),
         str(source), str(warm_up), *map(str, paths)],
        env=env, capture_output=True, timeout=120, check=True, text=True)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _gzip_bomb(size: int) -> bytes:
    """A gzip stream of ``size`` bytes of one letter, built without holding them."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [packer.compress(b"a" * MiB) for _ in range(size // MiB)]
    return b"".join([*parts, packer.flush()])


def test_gzip_bomb_is_refused_at_the_limit_in_bounded_memory(tmp_path: Path) -> None:
    feed = _good(tmp_path / "feed")
    (_bad(feed) / "bomb.json.gz").write_bytes(_gzip_bomb(128 * MiB))  # ~130 KB on disk
    result = _measured(tmp_path, feed, document=MiB)
    assert result["added"] == GOOD
    [(origin, reason)] = result["problems"]
    assert origin.endswith("bomb.json.gz")
    assert f"larger than {MiB} bytes (ingest_max_document)" in reason
    assert result["grew_kib"] < 32 * 1024, "the bomb was decompressed past the limit"


def test_zip_bomb_members_are_refused_and_the_other_members_load(tmp_path: Path) -> None:
    archive = tmp_path / "feed" / "records.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a/CVE-2024-0001.json", orjson.dumps(cve5_record("CVE-2024-0001")))
        with zf.open("b/stated.json", "w") as member:  # its header states 96 MiB
            for _ in range(96):
                member.write(bytes(MiB))
        zf.writestr("c/CVE-2024-0002.json", orjson.dumps(cve5_record("CVE-2024-0002")))
    lying = tmp_path / "feed" / "lying.zip"  # its headers say 100 bytes, it holds 96 MiB
    body = bytearray(archive.read_bytes())
    for signature, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = -1
        while (at := body.find(signature, at + 1)) != -1:
            name_at = at + (30 if signature == b"PK\x03\x04" else 46)
            if body[name_at:name_at + 13] == b"b/stated.json":
                struct.pack_into("<I", body, at + offset, 100)
    lying.write_bytes(bytes(body))
    result = _measured(tmp_path, archive.parent, document=MiB)
    assert result["added"] == 2, result
    reasons = {origin.split("/feed/")[-1]: reason for origin, reason in result["problems"]}
    assert set(reasons) == {"records.zip!b/stated.json", "lying.zip!b/stated.json"}
    assert "states 100663296 bytes, larger than" in reasons["records.zip!b/stated.json"]
    assert "corrupt or unreadable archive member" in reasons["lying.zip!b/stated.json"]
    assert result["grew_kib"] < 32 * 1024


def test_a_source_stops_at_its_total_limit(tmp_path: Path) -> None:
    archive = tmp_path / "many.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for i in range(8):
            record = cve5_record(f"CVE-2024-{i:04}", title="x" * 150_000)
            zf.writestr(f"CVE-2024-{i:04}.json", orjson.dumps(record))
    result = _measured(tmp_path, archive, document=MiB, source=1 * MiB)
    assert result["added"] == 3, result  # ~300 KB each: the 4th crosses 1 MiB
    reasons = [reason for _, reason in result["problems"]]
    assert len(reasons) == 2
    assert "(ingest_max_source)" in reasons[0]
    assert reasons[1].startswith("4 more members not read")


def test_fifo_device_and_links_are_refused_without_blocking(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    feed = _good(tmp_path / "feed")
    bad = _bad(feed)
    os.mkfifo(bad / "pipe.json")
    (bad / "zero.json").symlink_to("/dev/zero")
    (bad / "folder").symlink_to(feed / "good", target_is_directory=True)
    write_json(tmp_path / "elsewhere" / "CVE-2024-0009.json", cve5_record("CVE-2024-0009"))
    (bad / "linked.json").symlink_to(tmp_path / "elsewhere" / "CVE-2024-0009.json")
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-m", "engine.cli.main", "feeds", "ingest", str(feed), "--db",
         str(tmp_path / "db.duckdb"), "--json"],
        env=env, capture_output=True, timeout=120, text=True)
    assert done.returncode == 4, done.stderr
    report = orjson.loads(done.stdout)
    assert report["counts"]["cve5"]["added"] == GOOD + 1, "a link to a regular file is read"
    reasons = {Path(p["origin"]).name: p["reason"] for p in report["problems"]}
    assert reasons == {
        "pipe.json": "a FIFO, not a regular file: not read",
        "zero.json": "a character device (through a symbolic link), not a regular file: "
                     "not read",
        "folder": "a symbolic link to a folder: not followed",
    }


def test_device_given_directly_is_refused(tmp_path: Path, db_path: Path) -> None:
    with Pvdb.open(db_path) as db:
        report = db.ingest(["/dev/zero"])
    assert [(p.origin, p.reason) for p in report.problems] == [
        ("/dev/zero", "a character device, not a regular file: not read")]


class _BombServer:
    """Serves a body that inflates (Content-Encoding: gzip) to 64 MiB."""

    def __init__(self) -> None:
        payload = _gzip_bomb(64 * MiB)

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Encoding", "gzip")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/feed.json"


def test_http_body_is_refused_beyond_the_source_limit(tmp_path: Path, db_path: Path) -> None:
    server = _BombServer()
    try:
        settings = load_settings(db=db_path, http_cache=tmp_path / "http",
                                 ingest_max_source=4 * MiB)
        with Pvdb.open(db_path, settings=settings) as db:
            report = db.ingest([server.url])
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
    [problem] = report.problems
    assert problem.origin == server.url
    assert f"the body is more than {4 * MiB} bytes in all" in problem.reason
    assert list((tmp_path / "http").iterdir()) == [], "nothing partial is kept in the cache"


# --- a damaged feed is a problem, not "not a feed" -------------------------------------

EPSS_HAPPY = ROOT / "tests" / "pvdb" / "feeds" / "testdata" / "epss" / "happy"


def _corrupt_header(text: str, how: str) -> str:
    lines = text.splitlines(keepends=True)
    at = 1 if lines[0].startswith("#") else 0
    header = lines[at]
    lines[at] = {
        "typo": header.replace("pss", "ps", 1).replace("PSS", "PS", 1),
        "semicolons": header.replace(",", ";"),
        "garbled": "\ufffd\ufffd\x07" + header[5:],
        "missing": "",
    }[how]
    return "".join(lines)


def test_epss_files_with_a_corrupted_header_are_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in [k for k in os.environ if k.startswith("VIGIL_")]:
        monkeypatch.delenv(key)
    feed = tmp_path / "feed"
    feed.mkdir()
    names = []
    for source in sorted(EPSS_HAPPY.glob("*.csv")):
        for how in ("typo", "semicolons", "garbled", "missing"):
            name = f"{how}-{source.name}"
            (feed / name).write_text(_corrupt_header(source.read_text(), how))
            names.append(name)
    # Not named like EPSS: recognised by its rows (a CVE id, then a number).
    first = next(EPSS_HAPPY.glob("first_format*.csv"))
    (feed / "scores.csv").write_text(_corrupt_header(first.read_text(), "missing"))
    names.append("scores.csv")
    code, out, _ = vigil(capsys, monkeypatch, "feeds", "ingest", str(feed), "--db",
                         str(tmp_path / "db.duckdb"), "--json")
    assert code == 4
    report = orjson.loads(out)
    assert report["skipped"] == []
    problems = {Path(p["origin"]).name: p["reason"] for p in report["problems"]}
    assert sorted(problems) == sorted(names)
    assert all("not an EPSS CSV header" in reason for reason in problems.values()), problems


@pytest.mark.parametrize("value", [None, 42, ["GHSA-1"]])
def test_osv_advisory_whose_id_is_not_a_string_is_a_problem(
    tmp_path: Path, db_path: Path, value: object
) -> None:
    advisory = {"id": value, "modified": "2024-07-01T00:00:00Z", "affected": [
        {"package": {"ecosystem": "AlmaLinux:9", "name": "kernel"},
         "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"},
                                                     {"fixed": "5.14.0-427.13.1.el9_4"}]}]}]}
    write_json(tmp_path / "ALSA-2024-0001.json", advisory)
    with Pvdb.open(db_path) as db:
        report = db.ingest([str(tmp_path / "ALSA-2024-0001.json")])
    assert report.skipped == []
    [problem] = report.problems
    assert (problem.pointer, problem.reason) == (
        "$.id", f"expected str, got {type(value).__name__}")


@pytest.mark.parametrize(("name", "data", "pointer"), [
    ("CVE-2024-0001.json", {"cveMetadata": {"cveId": 7}}, "$.cveMetadata.cveId"),
    ("kev.json", {"catalogVersion": "2024.07.01", "vulnerabilities": {"cveID": "x"}},
     "$.vulnerabilities"),
    ("rhsa.json", {"document": {"csaf_version": "1.2"}}, "$.document.csaf_version"),
])
def test_other_damaged_feeds_are_problems(tmp_path: Path, db_path: Path, name: str,
                                          data: object, pointer: str) -> None:
    write_json(tmp_path / name, data)
    with Pvdb.open(db_path) as db:
        report = db.ingest([str(tmp_path / name)])
    assert report.skipped == []
    assert [p.pointer for p in report.problems] == [pointer]


def test_files_that_are_not_feeds_are_still_skipped(tmp_path: Path, db_path: Path) -> None:
    tmp_path = tmp_path / "feed"
    tmp_path.mkdir()
    (tmp_path / "manifest.csv").write_text(
        "file,source_repo,rows\nkev_epss_snapshots/epss_kev_nvd-2023-06-30.csv,x,923\n")
    (tmp_path / "history.csv").write_text(
        "cve_id,commit,change\nCVE-2019-25160,6816874f76b4965c4f570a06cf41d7fd73c3d991,A\n")
    (tmp_path / "README.md").write_text("# notes\n")
    write_json(tmp_path / "package.json", {"id": "x", "name": "y", "version": "1"})
    with Pvdb.open(db_path) as db:
        report = db.ingest([str(tmp_path)])
    assert report.problems == []
    assert sorted(Path(o).name for o, _ in report.skipped) == [
        "README.md", "history.csv", "manifest.csv", "package.json"]
