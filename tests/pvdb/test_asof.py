"""As of means as of: an answer for a past day uses only what was known that day
(engine.pvdb.asof), and says what it cannot know. Records written by the tests, and a
past answer rebuilt from the real feeds ingested later (skipped without them)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest

from engine.pvdb import Component, Pvdb, schema
from tests.pvdb.records import cve5_record, kernel_affected, write_json

KERNEL = Component(kind="kernel", vendor="linux", product="linux_kernel", version="6.6.30")


def _at(day: str) -> dt.datetime:
    return dt.datetime.combine(dt.date.fromisoformat(day), dt.time(12), tzinfo=dt.UTC)


def _releases(folder: Path, versions: dict[str, str]) -> None:
    write_json(folder / "linux-kernel.json",
               {"versions": {v: {"name": v, "date": d} for v, d in versions.items()}})


def _kev(folder: Path, entries: dict[str, str]) -> None:
    write_json(folder / "kev.json", {
        "title": "CISA Catalog of Known Exploited Vulnerabilities", "catalogVersion": "x",
        "dateReleased": "2025-01-01T00:00:00.000Z", "count": len(entries),
        "vulnerabilities": [{
            "cveID": cve, "vendorProject": "Linux", "product": "Kernel",
            "vulnerabilityName": "test", "dateAdded": added, "dueDate": added,
            "knownRansomwareCampaignUse": "Unknown", "requiredAction": "patch"}
            for cve, added in entries.items()]})


def _epss(folder: Path, day: str, scores: dict[str, float]) -> Path:
    path = folder / f"epss_scores-{day}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#model_version:v2025.03.14,score_date:{day}T00:00:00+0000\n"
                    "cve,epss,percentile\n"
                    + "".join(f"{cve},{score},0.5\n" for cve, score in scores.items()))
    return path


@pytest.fixture
def feeds(tmp_path: Path) -> Path:
    """Three kernel vulnerabilities of 6.6.30 and what was said about them, and when."""
    root = tmp_path / "feeds"
    _releases(root, {"6.6.35": "2024-06-21", "6.6.40": "2024-07-15", "6.6.50": "2024-09-08",
                     "6.12": "2024-11-17", "6.13": "2025-01-19", "6.14": "2025-03-24"})
    # published 2024-06-01; fixed on 6.6 in 6.6.35 (2024-06-21) and again listed 6.6.50
    write_json(root / "cve5" / "CVE-2024-90001.json", cve5_record(
        "CVE-2024-90001", published="2024-06-01T00:00:00.000Z",
        updated="2024-10-01T00:00:00.000Z", affected=kernel_affected("6.1", ["6.6.40"])))
    # published 2024-09-01: not known before
    write_json(root / "cve5" / "CVE-2024-90002.json", cve5_record(
        "CVE-2024-90002", published="2024-09-01T00:00:00.000Z",
        updated="2024-09-01T00:00:00.000Z", affected=kernel_affected("6.1", ["6.6.50"])))
    # a Linux CNA record without any date, whose original fix is in mainline 6.14: that
    # cycle opened with 6.13 (2025-01-19), so it was not public before
    write_json(root / "cve5" / "CVE-2024-90003.json", cve5_record(
        "CVE-2024-90003", updated=None,
        affected=kernel_affected("6.1", ["6.6.50"], mainline="6.14")))
    _kev(root / "kev", {"CVE-2024-90001": "2024-08-01"})
    for day, score in (("2024-06-15", 0.1), ("2024-07-15", 0.4), ("2024-10-15", 0.9)):
        _epss(root / "epss", day, {"CVE-2024-90001": score})
    return root


def _found(db: Pvdb, day: str) -> dict[str, Any]:
    report = db.affecting([KERNEL], as_of=_at(day))
    return {f.vuln_id: f for f in report.findings} | {"_report": report}


def test_each_fact_is_taken_as_known_on_the_day(feeds: Path, db_path: Path) -> None:
    with Pvdb.open(db_path) as db:
        assert not db.ingest([str(feeds)]).problems
        now = _found(db, "2026-01-01")
        assert set(now) - {"_report"} == {"CVE-2024-90001", "CVE-2024-90002",
                                          "CVE-2024-90003"}
        assert now["_report"].past is None  # after every dated fact: the current answer
        assert now["CVE-2024-90001"].epss.score == 0.9
        assert now["CVE-2024-90001"].kev is not None

        july = _found(db, "2024-07-20")
        assert set(july) - {"_report"} == {"CVE-2024-90001"}
        first = july["CVE-2024-90001"]
        assert first.kev is None  # added to the catalog on 2024-08-01
        assert (first.epss.score, first.epss.score_date) == (0.4, dt.date(2024, 7, 15))
        assert first.fix.closing_version == "6.6.40"
        assert first.fix.availability.date == dt.date(2024, 7, 15)
        past = july["_report"].past
        assert past is not None and past.day == dt.date(2024, 7, 20)
        assert past.records_left_out == 2  # 90002 not published, 90003 before its cycle
        assert past.records_revised == 1  # 90001 was modified on 2024-10-01
        assert any("latest version" in line for line in past.limits)

        june = _found(db, "2024-06-20")["CVE-2024-90001"]
        # 6.6.40 was released on 2024-07-15: no fix on 2024-06-20, nor a score yet...
        assert (june.fix.status.value, june.fix.closing_version) == ("no_fix", None)
        assert "6.6.40" not in june.fix.fixed_versions
        assert june.epss.score == 0.1
        assert _found(db, "2024-06-20")["_report"].past.fixes_left_out == 1
        before = _found(db, "2024-06-10")["CVE-2024-90001"]
        assert before.epss is None  # the first score is of 2024-06-15

        # the undated Linux CNA record: known from the 6.14 cycle on (6.13's release)
        assert "CVE-2024-90003" not in _found(db, "2025-01-18")
        kept = _found(db, "2025-01-20")
        assert "CVE-2024-90003" in kept
        assert kept["_report"].past.records_undated == 1


def test_a_cve_id_is_not_public_before_its_year(tmp_path: Path, db_path: Path) -> None:
    record = cve5_record("CVE-2025-90004", updated=None,
                         affected=kernel_affected("6.1", ["6.6.50"]))
    write_json(tmp_path / "feed" / "CVE-2025-90004.json", record)
    with Pvdb.open(db_path) as db:
        db.ingest([str(tmp_path / "feed")])
        assert "CVE-2025-90004" not in _found(db, "2024-12-31")
        assert "CVE-2025-90004" in _found(db, "2025-01-01")


def test_every_dated_epss_score_is_kept_whatever_the_order(tmp_path: Path,
                                                          db_path: Path) -> None:
    """Newest first: the older files' records are stale, their scores still logged."""
    files = [_epss(tmp_path, day, {"CVE-2024-1086": score})
             for day, score in (("2025-08-20", 0.87143), ("2024-07-31", 0.0021),
                                ("2026-08-22", 0.28058))]
    with Pvdb.open(db_path) as db:
        assert db.ingest([str(files[2])]).counts["epss"].added == 1
        report = db.ingest([str(files[0]), str(files[1])])
        assert (report.counts["epss"].stale, report.changed) == (2, 0)
        logged = db._con.execute(
            "SELECT score_date, score FROM epss_history ORDER BY score_date").fetchall()
        assert logged == [(dt.date(2024, 7, 31), 0.0021), (dt.date(2025, 8, 20), 0.87143),
                          (dt.date(2026, 8, 22), 0.28058)]
        assert db.ingest([str(f) for f in files]).changed == 0  # nothing logged twice
        assert db._con.execute("SELECT count(*) FROM epss_history").fetchall() == [(3,)]
        current = db._con.execute("SELECT score FROM epss").fetchall()
        assert current == [(0.28058,)]  # the newest score is the record's


def test_a_version_2_file_is_migrated_with_its_scores_logged(tmp_path: Path) -> None:
    path = tmp_path / "v2.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY,"
                " applied_at TIMESTAMPTZ NOT NULL)")
    for version in (1, 2):
        con.execute(schema._MIGRATIONS[version])
        con.execute("INSERT INTO schema_migrations VALUES (?, now())", [version])
    con.execute("INSERT INTO meta VALUES ('generation', '1')")
    con.execute("INSERT INTO records VALUES ('epss', 'CVE-2024-1086', 'h',"
                " '2025-08-20 00:00:00+00', now(), 'epss_kev_nvd-2025-08-20.csv')")
    con.execute("INSERT INTO epss VALUES ('epss', 'CVE-2024-1086', 'CVE-2024-1086',"
                " 0.87143, 0.99406, '2025-08-20')")
    con.close()
    with Pvdb.open(path) as db:
        assert schema.current_version(db._con) == schema.SCHEMA_VERSION >= 3
        assert db._con.execute(
            "SELECT vuln_id, score_date, score, origin FROM epss_history").fetchall() == [
            ("CVE-2024-1086", dt.date(2025, 8, 20), 0.87143, "epss_kev_nvd-2025-08-20.csv")]


# --- a past answer rebuilt from the real feeds ingested later --------------------------

DAY = "2025-09-01"
ALMA = Component(kind="kernel", version="5.14.0-427.13.1.el9_4",
                 purl="pkg:rpm/almalinux/kernel@5.14.0-427.13.1.el9_4?distro=almalinux-9")
HOST = [ALMA, Component(kind="kernel", vendor="linux", product="linux_kernel",
                        version="6.6.30")]


def _answer(db: Pvdb) -> list[tuple[Any, ...]]:
    report = db.affecting(HOST, as_of=_at(DAY))
    return [(f.vuln_id, f.component, f.fix.status, f.fix.closing_version, f.fix.line,
             f.fix.availability, f.fix.advisories, f.kev, f.epss, f.max_base_score)
            for f in report.findings]


@pytest.mark.shared_data
def test_a_past_answer_from_data_ingested_later_is_the_answer_of_then(
        feeds_dir: Path, tmp_path: Path) -> None:
    """Everything ingested (AlmaLinux advisories up to 2025-11, EPSS scores up to
    2026-08) and asked as of 2025-09-01 answers as a PVDB that held only the advisories
    published and the scores computed by then: no fix of ALSA-2025:19930 (2025-11-10),
    CVE-2024-1086's score of 2025-08-20 (0.871), not of 2026 (0.281)."""
    osv = sorted((feeds_dir / "osv").rglob("*.json"))
    then_osv = [p for p in osv
                if json.loads(p.read_bytes()).get("published", "9999") < DAY]
    assert len(then_osv) < len(osv)
    epss = sorted((feeds_dir / "epss" / "kev_epss_snapshots").glob("*.csv"))
    then_epss = [p for p in epss if p.stem.split("-", 1)[1] < DAY]
    assert len(then_epss) < len(epss)
    common = [feeds_dir / "kev", feeds_dir / "cve5" / "2024" / "CVE-2024-1086.json"]
    with Pvdb.open(tmp_path / "later.duckdb") as later, \
            Pvdb.open(tmp_path / "then.duckdb") as then:
        assert not later.ingest([str(p) for p in (*osv, *epss, *common)]).problems
        assert not then.ingest([str(p) for p in (*then_osv, *then_epss, *common)]).problems
        rebuilt, known = _answer(later), _answer(then)
        report = later.affecting(HOST, as_of=_at(DAY))
        today = later.affecting(HOST)
    # what was learnt later is in the PVDB, and in today's answer
    assert any("ALSA-2025:19930" in f.fix.advisories for f in today.findings)
    assert {f.vuln_id: f for f in today.findings}["CVE-2024-1086"].epss.score == 0.28058
    assert rebuilt == known
    assert report.past is not None and report.past.records_left_out >= 1
    findings = {f.vuln_id: f for f in report.findings}
    assert all(f.fix.availability.date is None
               or f.fix.availability.date <= dt.date.fromisoformat(DAY)
               for f in report.findings)
    assert not any("ALSA-2025:19930" in f.fix.advisories for f in report.findings)
    score = findings["CVE-2024-1086"].epss
    assert score is not None and (score.score, score.score_date) == (
        0.87143, dt.date(2025, 8, 20))
    assert orjson.dumps(report.model_dump(mode="json"))  # the answer is JSON whole
