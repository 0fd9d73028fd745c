"""Bad input is reported, never fatal: one bad record or file does not stop the rest of an
ingest from loading, and the bad one is named (file, record, reason)."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import orjson
import pytest

from engine.pvdb import Pvdb
from engine.pvdb.feeds.cve5 import Cve5Adapter
from engine.pvdb.models import NormalisedRecord, RawRecord
from tests.clirun import vigil
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
