"""The endoflife.date release-data adapter, and the release calendars it leaves alone."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from engine.errors import RecordError
from engine.pvdb import Pvdb
from engine.pvdb.feeds import adapter_for
from engine.pvdb.feeds.releases import ReleasesAdapter, product_for
from engine.pvdb.models import RawRecord, ReleaseFact, Source
from tests.pvdb.feeds.helpers import doc_from, doc_from_file, normalise_all, split_all

ADAPTER = ReleasesAdapter()


@pytest.fixture(scope="module")
def releases_dir(feeds_dir: Path) -> Path:
    return feeds_dir / "releases"


@pytest.fixture(scope="module")
def release_data(releases_dir: Path) -> Path:
    return releases_dir / "endoflife_release_data"


def _dates(path: Path) -> dict[str, dt.date]:
    (record,) = normalise_all(doc_from_file(path), ADAPTER)
    return {fact.version: fact.release_date for fact in record.releases}


def _normalise(data: dict[str, Any], name: str = "xen.json") -> tuple[ReleaseFact, ...]:
    (record,) = normalise_all(doc_from(data, name), ADAPTER)
    return record.releases


# --- detection -------------------------------------------------------------------------


def test_claims_the_release_data_files_only(feeds_dir: Path, release_data: Path) -> None:
    claimed = {
        p for p in feeds_dir.rglob("*")
        if p.is_file() and ReleasesAdapter.detect(doc_from_file(p))
    }
    assert claimed == set(release_data.glob("*.json"))
    assert len(claimed) == 17


# Release histories the patch-date predictor reads through their own adapters
# (engine/pvdb/feeds/xen_xsa.py and vendor_releases.py).
CALENDAR_HISTORIES = {"sec-xsa.yml", "sec-qsb.yml", "patch_tuesday_release_dates_derived.csv",
                      "microcode_releases_derived.csv"}


def test_release_calendars_are_left_unrecognised(releases_dir: Path) -> None:
    """``*.md``, ``*.xml``, the per-platform microcode table and the manifest are not
    feeds; the XSA/QSB lists and the vendor release tables are read by their adapters."""
    others = [p for p in sorted(releases_dir.rglob("*"))
              if p.is_file() and p.parent.name != "endoflife_release_data"]
    assert {p.suffix for p in others} == {".md", ".yml", ".csv", ".xml"}
    claimed = {p.name for p in others if adapter_for(doc_from_file(p)) is not None}
    assert claimed == CALENDAR_HISTORIES


def test_ingest_skips_the_release_calendars(releases_dir: Path, db_path: Path) -> None:
    with Pvdb.open(db_path) as db:
        report = db.ingest([str(releases_dir)])
        stored = db._con.execute(
            "select count(*) from releases where product = 'linux:linux_kernel'"
        ).fetchone()
    assert not report.problems
    assert report.counts["releases"].added == 17 + len(CALENDAR_HISTORIES)
    assert len(report.skipped) == 31 - len(CALENDAR_HISTORIES)
    assert all(reason == "not a vulnerability feed format Vigil reads"
               for _, reason in report.skipped)
    assert stored == (4854,)


@pytest.mark.parametrize("data", [
    {"releases": {}, "versions": {}, "extra": 1},
    {"versions": []},
    {},
    [{"versions": {}}],
])
def test_other_json_is_not_claimed(data: Any) -> None:
    assert not ReleasesAdapter.detect(doc_from(data))


# --- the real files --------------------------------------------------------------------


def test_kernel_versions_and_their_dates(release_data: Path) -> None:
    path = release_data / "linux-kernel.json"
    (raw,) = split_all(doc_from_file(path), ADAPTER)
    assert isinstance(raw, RawRecord)
    assert (raw.source, raw.record_id, raw.modified, raw.pointer) == (
        Source.RELEASES, "linux:linux_kernel", None, "$"
    )
    dates = _dates(path)
    assert len(dates) == 4854
    assert dates["6.6.39"] == dt.date(2024, 7, 11)
    assert dates["6.6"] == dt.date(2023, 10, 30)
    assert dates["6.6.152"] == dt.date(2026, 8, 19)


def test_other_products_are_named_after_the_file(release_data: Path) -> None:
    (record,) = normalise_all(doc_from_file(release_data / "debian.json"), ADAPTER)
    assert record.record_id == "endoflife:debian"
    assert {f.product for f in record.releases} == {"endoflife:debian"}


def test_release_cycles_add_versions_the_file_does_not_list(release_data: Path) -> None:
    assert _dates(release_data / "rhel.json") == {
        "9": dt.date(2022, 5, 18), "8": dt.date(2019, 5, 7), "10": dt.date(2025, 5, 20)
    }
    assert _dates(release_data / "nvidia-driver.json")["610.57.04"] == dt.date(2026, 8, 3)
    debian = _dates(release_data / "debian.json")
    assert debian["12"] == dt.date(2023, 6, 10)  # listed in both, same date
    assert debian["8"] == dt.date(2015, 4, 25)  # cycle only


# --- rules and sad paths ---------------------------------------------------------------


def test_product_names() -> None:
    assert product_for("linux-kernel") == "linux:linux_kernel"
    assert product_for("xcp-ng") == "endoflife:xcp-ng"


def test_a_listed_version_keeps_its_own_date() -> None:
    facts = _normalise({
        "releases": {"4.19": {"name": "4.19", "releaseDate": "2024-07-29",
                              "latest": "4.19.1", "latestReleaseDate": "2024-09-01"}},
        "versions": {"4.19.1": {"name": "4.19.1", "date": "2024-08-30"}},
    })
    assert facts == (
        ReleaseFact("endoflife:xen", "4.19.1", dt.date(2024, 8, 30)),
        ReleaseFact("endoflife:xen", "4.19", dt.date(2024, 7, 29)),
    )


def test_product_comes_from_an_archive_member_name() -> None:
    (raw,) = split_all(doc_from({"versions": {}}, "data.zip!Linux-Kernel.json"), ADAPTER)
    assert isinstance(raw, RawRecord) and raw.record_id == "linux:linux_kernel"


@pytest.mark.parametrize(("data", "pointer"), [
    ({"versions": {"6.6.1": {"name": "6.6.1", "date": "2023-13-01"}}},
     '$.versions["6.6.1"].date'),
    ({"versions": {"6.6.1": {"name": "6.6.1"}}}, '$.versions["6.6.1"]'),
    ({"versions": {"6.6.1": {"name": "6.6.1", "date": ""}}}, '$.versions["6.6.1"].date'),
    ({"releases": {"6.6": {"releaseDate": 20231030}}}, '$.releases["6.6"].releaseDate'),
    ({"releases": {"6.6": "2023-10-30"}}, '$.releases["6.6"]'),
])
def test_a_bad_date_rejects_the_file_naming_the_entry(data: Any, pointer: str) -> None:
    with pytest.raises(RecordError) as caught:
        _normalise(data)
    assert caught.value.pointer == pointer
