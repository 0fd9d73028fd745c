"""The EPSS adapter: FIRST daily files and jgamblin/KEV_EPSS snapshots."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from engine.errors import RecordError
from engine.pvdb import Pvdb
from engine.pvdb.feeds import adapter_for
from engine.pvdb.feeds.epss import EpssAdapter
from engine.pvdb.models import EpssFact, RawRecord, Source, VulnId
from tests.pvdb.feeds.helpers import doc_from, doc_from_file, normalise_all, split_all

ADAPTER = EpssAdapter()
KEV_EPSS_HEADER = "CVE,CVSS3,EPSS,EPSS Percentile,Description,Vendor,Product\n"
FIRST_COMMENT = "#model_version:v2023.03.01,score_date:2025-02-20T00:00:00+0000\n"


@pytest.fixture(scope="module")
def epss_dir(feeds_dir: Path) -> Path:
    return feeds_dir / "epss"


@pytest.fixture(scope="module")
def snapshots(epss_dir: Path) -> list[Path]:
    """The KEV_EPSS snapshots, oldest first (their names sort by date)."""
    return sorted((epss_dir / "kev_epss_snapshots").glob("epss_kev_nvd-*.csv"))


def _facts(path: Path) -> dict[str, EpssFact]:
    return {r.record_id: r.epss[0] for r in normalise_all(doc_from_file(path), ADAPTER)}


def _split(text: str, name: str = "epss_kev_nvd-2025-01-31.csv") -> list[RawRecord | RecordError]:
    return split_all(doc_from(text.encode(), name), ADAPTER)


# --- detection -------------------------------------------------------------------------


def test_claims_the_score_files_and_nothing_else(feeds_dir: Path, epss_dir: Path) -> None:
    claimed = {
        p for p in feeds_dir.rglob("*") if p.is_file() and EpssAdapter.detect(doc_from_file(p))
    }
    expected = {p for p in epss_dir.rglob("*.csv") if p.name != "manifest.csv"}
    assert len(expected) == 8
    assert claimed == expected
    for path in expected:
        assert isinstance(adapter_for(doc_from_file(path)), EpssAdapter)


@pytest.mark.parametrize("body", [
    b"",
    b"file,source_repo,source_path,source_commit,snapshot_date,rows\n",
    b"cve,cvss,epss\nCVE-2024-1086,7.8,0.1\n",
    b'{"cve": "CVE-2024-1086"}',
])
def test_other_text_is_not_claimed(body: bytes) -> None:
    assert not EpssAdapter.detect(doc_from(body, "x.csv"))


# --- the real files --------------------------------------------------------------------


def test_first_sample_takes_its_score_date_from_the_comment(epss_dir: Path) -> None:
    path = epss_dir / "first_format_sample-example-1.csv"
    raws = [r for r in split_all(doc_from_file(path), ADAPTER) if isinstance(r, RawRecord)]
    assert [r.record_id for r in raws] == [f"CVE-1999-000{i}" for i in range(1, 6)]
    assert [r.pointer for r in raws] == [f"line {n}" for n in range(3, 8)]
    assert {r.modified for r in raws} == {dt.datetime(2025, 2, 20, tzinfo=dt.UTC)}
    assert _facts(path)["CVE-1999-0005"] == EpssFact(
        VulnId("CVE-1999-0005"), 0.91963, 0.99214, dt.date(2025, 2, 20)
    )


def test_snapshot_takes_its_score_date_from_the_file_name(epss_dir: Path) -> None:
    path = epss_dir / "kev_epss_snapshots" / "epss_kev_nvd-2024-07-31.csv"
    raws = {r.record_id: r for r in split_all(doc_from_file(path), ADAPTER)
            if isinstance(r, RawRecord)}
    assert len(raws) == 1140
    raw = raws["CVE-2024-1086"]
    assert (raw.source, raw.pointer, raw.modified) == (
        Source.EPSS, "line 1117", dt.datetime(2024, 7, 31, tzinfo=dt.UTC)
    )
    record = ADAPTER.normalise(raw)
    assert record.epss == (
        EpssFact(VulnId("CVE-2024-1086"), 0.0021, 0.5929, dt.date(2024, 7, 31)),
    )
    assert not record.severities, "the CVSS3 column has no vector: no severity fact"


def test_old_snapshot_without_percentile(epss_dir: Path) -> None:
    facts = _facts(epss_dir / "kev_epss_snapshots" / "epss_kev_nvd-2023-06-30.csv")
    assert len(facts) == 923
    assert facts["CVE-2021-27104"] == EpssFact(
        VulnId("CVE-2021-27104"), 0.00819, None, dt.date(2023, 6, 30)
    )


def test_every_snapshot_loads_without_problems(snapshots: list[Path]) -> None:
    assert len(snapshots) == 7
    for path in snapshots:
        items = split_all(doc_from_file(path), ADAPTER)
        assert not [i for i in items if isinstance(i, RecordError)], path.name


# --- rules -----------------------------------------------------------------------------


def test_hashed_content_includes_the_score_date() -> None:
    text = KEV_EPSS_HEADER + "CVE-2024-1086,7.8,0.5,0.9,Linux kernel …,Linux,Kernel\n"
    (a,) = _split(text, "epss_kev_nvd-2025-01-31.csv")
    (b,) = _split(text, "epss_kev_nvd-2025-02-01.csv")
    (c,) = _split(text.replace("Linux kernel …", "other text"), "epss_kev_nvd-2025-01-31.csv")
    assert isinstance(a, RawRecord) and isinstance(b, RawRecord) and isinstance(c, RawRecord)
    assert a.content_hash != b.content_hash
    assert a.content_hash == c.content_hash, "columns that are not read are not hashed"


def test_no_date_anywhere_gives_an_undated_score() -> None:
    (raw,) = _split(KEV_EPSS_HEADER + "CVE-2024-1086,7.8,0.5,0.9,d,v,p\n", "epss_kev_nvd.csv")
    assert isinstance(raw, RawRecord) and raw.modified is None
    assert ADAPTER.normalise(raw).epss[0].score_date is None


def test_line_numbers_count_lines_inside_quoted_fields() -> None:
    text = (KEV_EPSS_HEADER
            + 'CVE-2024-0001,7.8,0.1,0.2,"two\nlines",v,p\n'
            + "\n"
            + "CVE-2024-0002,7.8,0.1,0.2,d,v,p\n")
    assert [r.pointer for r in _split(text)] == ["line 2", "line 5"]


# --- sad paths -------------------------------------------------------------------------


@pytest.mark.parametrize(("score", "reason"), [("abc", "not a number"),
                                               ("1.7", "outside [0, 1]"),
                                               ("-0.1", "outside [0, 1]"),
                                               ("", "not a number")])
def test_bad_score_names_line_and_column_and_the_rest_loads(score: str, reason: str) -> None:
    text = (FIRST_COMMENT + "cve,epss,percentile\n"
            + "CVE-2024-0001,0.5,0.9\n"
            + f"CVE-2024-0002,{score},0.9\n"
            + "CVE-2024-0003,0.25,0.5\n")
    raws = [r for r in _split(text, "scores.csv") if isinstance(r, RawRecord)]
    assert len(raws) == 3
    good = [ADAPTER.normalise(r).epss[0].score for r in (raws[0], raws[2])]
    assert good == [0.5, 0.25]
    with pytest.raises(RecordError) as caught:
        ADAPTER.normalise(raws[1])
    assert caught.value.pointer == "line 4, column epss"
    assert reason in caught.value.reason


def test_bad_percentile_names_its_column() -> None:
    (raw,) = _split(KEV_EPSS_HEADER + "CVE-2024-1086,7.8,0.5,1.7,d,v,p\n")
    assert isinstance(raw, RawRecord)
    with pytest.raises(RecordError) as caught:
        ADAPTER.normalise(raw)
    assert caught.value.pointer == "line 2, column EPSS Percentile"


def test_unidentifiable_rows_are_reported_by_split() -> None:
    text = (KEV_EPSS_HEADER
            + "CVE-2024-1086,7.8,0.5\n"
            + "GHSA-xxxx,7.8,0.5,0.9,d,v,p\n"
            + "CVE-2024-0002,7.8,0.1,0.2,d,v,p\n")
    items = _split(text)
    errors = [i for i in items if isinstance(i, RecordError)]
    assert [(e.pointer, e.reason) for e in errors] == [
        ("line 2", "expected 7 columns, got 3"),
        ("line 3, column CVE", "not a CVE id: 'GHSA-xxxx'"),
    ]
    assert isinstance(items[2], RawRecord) and items[2].record_id == "CVE-2024-0002"


def test_empty_csv() -> None:
    assert adapter_for(doc_from(b"", "epss_kev_nvd-2025-01-31.csv")) is None
    assert _split(KEV_EPSS_HEADER) == []
    assert _split(FIRST_COMMENT + "cve,epss,percentile\n", "x.csv") == []


def test_ingest_skips_an_empty_csv_and_reports_bad_rows(db_path: Path, tmp_path: Path) -> None:
    empty = tmp_path / "epss_kev_nvd-2025-01-30.csv"
    empty.write_bytes(b"")
    bad = tmp_path / "epss_kev_nvd-2025-01-31.csv"
    bad.write_text(KEV_EPSS_HEADER + "CVE-2024-0001,7.8,abc,0.2,d,v,p\n"
                   + "CVE-2024-0002,7.8,0.1,0.2,d,v,p\n")
    with Pvdb.open(db_path) as db:
        report = db.ingest([str(empty), str(bad)])
    assert [origin for origin, _ in report.skipped] == [str(empty)]
    assert report.counts["epss"].added == 1
    assert [(p.record_id, p.pointer) for p in report.problems] == [
        ("CVE-2024-0001", "line 2, column EPSS")
    ]


# --- through the ingest: newer scores replace older ones -------------------------------


def _stored(db: Pvdb, cve_id: str) -> list[tuple[float, dt.date]]:
    return db._con.execute(
        "select score, score_date from epss where vuln_id = ?", [cve_id]
    ).fetchall()


def test_ingest_oldest_to_newest_keeps_the_newest_score(
    snapshots: list[Path], db_path: Path
) -> None:
    files = [str(p) for p in snapshots]
    with Pvdb.open(db_path) as db:
        first = db.ingest(files)
        assert not first.problems
        assert first.counts["epss"].added == 1558
        assert _stored(db, "CVE-2024-1086") == [(0.28058, dt.date(2026, 8, 22))]
        assert _stored(db, "CVE-2021-27104") == [(0.56411, dt.date(2026, 8, 22))]

        again = db.ingest(files)
        assert again.changed == 0
        assert again.counts["epss"].unchanged == 1558
        assert _stored(db, "CVE-2024-1086") == [(0.28058, dt.date(2026, 8, 22))]


def test_an_older_snapshot_after_a_newer_one_is_stale(
    snapshots: list[Path], db_path: Path
) -> None:
    newest, older, oldest = snapshots[-1], snapshots[-3], snapshots[0]
    assert (newest.name, older.name) == ("epss_kev_nvd-2026-08-22.csv",
                                         "epss_kev_nvd-2025-08-20.csv")
    with Pvdb.open(db_path) as db:
        assert db.ingest([str(newest)]).counts["epss"].added == 1556
        report = db.ingest([str(older)])
        assert (report.counts["epss"].stale, report.changed) == (993, 0)
        report = db.ingest([str(oldest)])
        # Two CVEs of 2023 left the KEV_EPSS list later: they are new to this PVDB.
        assert (report.counts["epss"].stale, report.counts["epss"].added) == (921, 2)
        assert _stored(db, "CVE-2021-27104") == [(0.56411, dt.date(2026, 8, 22))]
