"""Ingest is idempotent and incremental, and bad records are reported, not fatal."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.errors import FeedError
from engine.pvdb import Component, Pvdb
from tests.pvdb.records import cve5_record, kernel_affected, write_json

KERNEL = Component(kind="kernel", vendor="linux", product="linux_kernel", version="6.6.30")


def _count(db: Pvdb, table: str, where: str = "true") -> int:
    return int(db._con.execute(f"SELECT count(*) FROM {table} WHERE {where}").fetchall()[0][0])


def test_same_input_twice_changes_nothing(tmp_path: Path, db_path: Path) -> None:
    for i in range(5):
        write_json(tmp_path / "feed" / f"CVE-2024-000{i}.json", cve5_record(f"CVE-2024-000{i}"))
    with Pvdb.open(db_path) as db:
        first = db.ingest([str(tmp_path / "feed")])
        generation = db.generation
        second = db.ingest([str(tmp_path / "feed")])
        assert first.counts["cve5"].added == 5
        assert first.changed == 5
        assert second.changed == 0
        assert second.counts["cve5"].unchanged == 5
        assert db.generation == generation, "an unchanged re-ingest must write no facts"
        assert _count(db, "vulnerabilities") == 5


def test_newer_record_replaces_older_and_older_is_stale(tmp_path: Path, db_path: Path) -> None:
    old = cve5_record("CVE-2024-1000", updated="2024-07-01T00:00:00Z",
                      affected=kernel_affected("6.4", ["6.6.39"]))
    new = cve5_record("CVE-2024-1000", updated="2024-08-01T00:00:00Z",
                      affected=kernel_affected("6.4", ["6.6.20"]))
    write_json(tmp_path / "old" / "CVE-2024-1000.json", old)
    write_json(tmp_path / "new" / "CVE-2024-1000.json", new)
    with Pvdb.open(db_path) as db:
        db.ingest([str(tmp_path / "old")])
        assert [f.vuln_id for f in db.affecting([KERNEL]).findings] == ["CVE-2024-1000"]
        report = db.ingest([str(tmp_path / "new")])
        assert report.counts["cve5"].updated == 1
        # 6.6.30 is fixed by 6.6.20 in the newer record: no finding, and no leftover facts.
        assert db.affecting([KERNEL]).findings == []
        assert _count(db, "fixes", "fixed_version = '6.6.39'") == 0
        stale = db.ingest([str(tmp_path / "old")])
        assert stale.counts["cve5"].stale == 1
        assert stale.changed == 0
        assert db.affecting([KERNEL]).findings == []


def test_undated_record_replaces_dated_copy_in_either_order(tmp_path: Path, db_path: Path
                                                           ) -> None:
    """The kernel CNA's own files carry no dateUpdated; they are the newer copies."""
    dated = cve5_record("CVE-2024-2000", updated="2024-07-01T00:00:00Z",
                        affected=kernel_affected("6.4", ["6.6.39"]))
    undated = cve5_record("CVE-2024-2000", updated=None,
                          affected=kernel_affected("6.4", ["6.6.10"]))
    write_json(tmp_path / "a" / "CVE-2024-2000.json", dated)
    write_json(tmp_path / "b" / "CVE-2024-2000.json", undated)
    for order in (["a", "b"], ["b", "a"]):
        path = db_path.with_name(f"{''.join(order)}.duckdb")
        with Pvdb.open(path) as db:
            db.ingest([str(tmp_path / order[0]), str(tmp_path / order[1])])
            assert db.affecting([KERNEL]).findings == [], order
            again = db.ingest([str(tmp_path / "a"), str(tmp_path / "b")])
            assert again.changed == 0


def test_rejected_cve_is_marked_not_kept_live(tmp_path: Path, db_path: Path) -> None:
    write_json(tmp_path / "v1" / "CVE-2024-3000.json", cve5_record("CVE-2024-3000"))
    write_json(tmp_path / "v2" / "CVE-2024-3000.json",
               cve5_record("CVE-2024-3000", state="REJECTED", updated="2024-09-01T00:00:00Z"))
    with Pvdb.open(db_path) as db:
        db.ingest([str(tmp_path / "v1")])
        assert len(db.affecting([KERNEL]).findings) == 1
        db.ingest([str(tmp_path / "v2")])
        assert db.affecting([KERNEL]).findings == []
        detail = db.show("CVE-2024-3000")
        assert [v["state"] for v in detail["vulnerabilities"]] == ["rejected"]
        assert detail["affected"] == []


def test_malformed_record_is_reported_and_the_rest_loads(tmp_path: Path, db_path: Path) -> None:
    good = cve5_record("CVE-2024-4000")
    bad = cve5_record("CVE-2024-4001")
    bad["containers"]["cna"]["affected"][0]["versions"][2]["status"] = "maybe"
    write_json(tmp_path / "feed" / "CVE-2024-4000.json", good)
    write_json(tmp_path / "feed" / "CVE-2024-4001.json", bad)
    (tmp_path / "feed" / "CVE-2024-4002.json").write_text('{"dataType": "CVE_RECORD", "cveM')
    (tmp_path / "feed" / "empty.json").write_text("")
    (tmp_path / "feed" / "README.md").write_text("not a feed")
    with Pvdb.open(db_path) as db:
        report = db.ingest([str(tmp_path / "feed")])
        assert report.counts["cve5"].added == 1
        problems = {Path(p.origin).name: p for p in report.problems}
        assert set(problems) == {"CVE-2024-4001.json", "CVE-2024-4002.json", "empty.json"}
        assert problems["CVE-2024-4001.json"].record_id == "CVE-2024-4001"
        assert problems["CVE-2024-4001.json"].pointer == \
            "$.containers.cna.affected[0].versions[2].status"
        assert "maybe" in problems["CVE-2024-4001.json"].reason
        assert "not valid JSON" in problems["CVE-2024-4002.json"].reason
        assert problems["empty.json"].reason == "empty file"
        assert [Path(o).name for o, _ in report.skipped] == ["README.md"]
        # The bad record is not half-written: nothing about it is stored.
        assert _count(db, "records", "record_id = 'CVE-2024-4001'") == 0
        stored = db._con.execute(
            "SELECT run_id, pointer FROM ingest_problems ORDER BY pointer").fetchall()
        assert {r[0] for r in stored} == {report.run_id}


def test_bad_record_does_not_destroy_the_good_stored_version(tmp_path: Path, db_path: Path
                                                             ) -> None:
    write_json(tmp_path / "v1" / "CVE-2024-5000.json", cve5_record("CVE-2024-5000"))
    broken = cve5_record("CVE-2024-5000", updated="2024-12-01T00:00:00Z")
    broken["containers"]["cna"]["affected"] = "oops"
    write_json(tmp_path / "v2" / "CVE-2024-5000.json", broken)
    with Pvdb.open(db_path) as db:
        db.ingest([str(tmp_path / "v1")])
        report = db.ingest([str(tmp_path / "v2")])
        assert report.problems[0].pointer == "$.containers.cna.affected"
        assert len(db.affecting([KERNEL]).findings) == 1


def test_missing_path_names_it(tmp_path: Path, db_path: Path) -> None:
    with Pvdb.open(db_path) as db, pytest.raises(FeedError, match="nope: no such file"):
        db.ingest([str(tmp_path / "nope")])


def test_offline_refuses_urls(db_path: Path) -> None:
    from engine.config import load_settings

    with Pvdb.open(db_path, settings=load_settings(db=db_path, offline=True)) as db, \
            pytest.raises(FeedError, match="offline"):
        db.ingest(["http://127.0.0.1:9/feed.json"])


def test_gzip_file_is_read(tmp_path: Path, db_path: Path) -> None:
    import gzip

    import orjson

    path = tmp_path / "CVE-2024-6000.json.gz"
    path.write_bytes(gzip.compress(orjson.dumps(cve5_record("CVE-2024-6000"))))
    with Pvdb.open(db_path) as db:
        report = db.ingest([str(path)])
        assert report.counts["cve5"].added == 1


def test_repeated_question_is_answered_again_after_an_ingest(tmp_path: Path,
                                                             db_path: Path) -> None:
    write_json(tmp_path / "a" / "CVE-2024-7000.json", cve5_record("CVE-2024-7000"))
    write_json(tmp_path / "b" / "CVE-2024-7001.json", cve5_record("CVE-2024-7001"))
    with Pvdb.open(db_path) as db:
        db.ingest([str(tmp_path / "a")])
        first = db.affecting([KERNEL])
        again = db.affecting([KERNEL])
        assert again.findings == first.findings
        again.findings.clear()  # a caller's list is its own
        assert [f.vuln_id for f in db.affecting([KERNEL]).findings] == ["CVE-2024-7000"]
        db.ingest([str(tmp_path / "b")])
        assert [f.vuln_id for f in db.affecting([KERNEL]).findings] == [
            "CVE-2024-7000", "CVE-2024-7001"]
