"""The CISA KEV catalog adapter, on the real catalog and on catalogs built here."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import orjson
import pytest

from engine.errors import RecordError
from engine.pvdb import Pvdb
from engine.pvdb.feeds import adapter_for
from engine.pvdb.feeds.base import parse_datetime
from engine.pvdb.feeds.kev import KevAdapter
from engine.pvdb.models import KevFact, RawRecord, Source
from tests.pvdb.feeds.helpers import doc_from, doc_from_file, normalise_all, split_all

ADAPTER = KevAdapter()


@pytest.fixture(scope="module")
def catalog_path(feeds_dir: Path) -> Path:
    return feeds_dir / "kev" / "known_exploited_vulnerabilities.json"


def _entry(cve_id: str, **changes: Any) -> dict[str, Any]:
    entry = {
        "cveID": cve_id,
        "vendorProject": "Linux",
        "product": "Kernel",
        "vulnerabilityName": "Linux Kernel Use-After-Free Vulnerability",
        "dateAdded": "2024-05-30",
        "shortDescription": "…",
        "requiredAction": "Apply mitigations per vendor instructions.",
        "dueDate": "2024-06-20",
        "knownRansomwareCampaignUse": "Unknown",
        "notes": "",
        "cwes": ["CWE-416"],
    }
    entry.update(changes)
    return entry


def _catalog(*entries: dict[str, Any], version: str = "2025.08.25") -> dict[str, Any]:
    return {
        "title": "CISA Catalog of Known Exploited Vulnerabilities",
        "catalogVersion": version,
        "dateReleased": "2025-08-25T17:04:19.9796Z",
        "count": len(entries),
        "vulnerabilities": list(entries),
    }


def _kev_facts(doc_obj: dict[str, Any]) -> dict[str, KevFact]:
    return {r.record_id: r.kev[0] for r in normalise_all(doc_from(doc_obj), ADAPTER)}


# --- the real catalog ------------------------------------------------------------------


def test_detects_the_catalog_but_not_its_schema(feeds_dir: Path, catalog_path: Path) -> None:
    assert isinstance(adapter_for(doc_from_file(catalog_path)), KevAdapter)
    schema = doc_from_file(feeds_dir / "kev" / "known_exploited_vulnerabilities_schema.json")
    assert not KevAdapter.detect(schema)
    assert adapter_for(schema) is None


def test_claims_no_other_file_of_the_feeds(feeds_dir: Path, catalog_path: Path) -> None:
    claimed = [
        p for p in sorted(feeds_dir.rglob("*"))
        if p.is_file() and KevAdapter.detect(doc_from_file(p))
    ]
    assert claimed == [catalog_path]


def test_one_record_per_catalog_entry(catalog_path: Path) -> None:
    items = split_all(doc_from_file(catalog_path), ADAPTER)
    records = [i for i in items if isinstance(i, RawRecord)]
    assert len(records) == len(items) == 1404
    assert len({r.record_id for r in records}) == 1404
    first = records[0]
    assert (first.source, first.record_id, first.pointer) == (
        Source.KEV, "CVE-2025-48384", "$.vulnerabilities[0]"
    )
    released = orjson.loads(catalog_path.read_bytes())["dateReleased"]
    assert {r.modified for r in records} == {parse_datetime(released, "$")}


@pytest.mark.parametrize(
    ("cve_id", "added", "due", "ransomware", "vendor", "product"),
    [
        ("CVE-2024-37085", dt.date(2024, 7, 30), dt.date(2024, 8, 20), "Known",
         "VMware", "ESXi"),
        ("CVE-2024-1086", dt.date(2024, 5, 30), dt.date(2024, 6, 20), "Unknown",
         "Linux", "Kernel"),
    ],
)
def test_facts_of_named_entries(
    catalog_path: Path, cve_id: str, added: dt.date, due: dt.date, ransomware: str,
    vendor: str, product: str,
) -> None:
    records = {r.record_id: r for r in normalise_all(doc_from_file(catalog_path), ADAPTER)}
    record = records[cve_id]
    assert record.source is Source.KEV
    assert not record.vulns and not record.severities
    (fact,) = record.kev
    assert (fact.vuln_id, fact.date_added, fact.due_date, fact.ransomware) == (
        cve_id, added, due, ransomware
    )
    assert (fact.vendor, fact.product) == (vendor, product)
    assert fact.name and fact.required_action


def test_a_new_catalog_version_changes_only_the_changed_entries(catalog_path: Path) -> None:
    catalog = orjson.loads(catalog_path.read_bytes())
    before = {r.record_id: r.content_hash for r in ADAPTER.split(doc_from(catalog))
              if isinstance(r, RawRecord)}
    catalog["catalogVersion"] = "2099.01.01"
    catalog["dateReleased"] = "2099-01-01T00:00:00Z"
    for entry in catalog["vulnerabilities"]:
        if entry["cveID"] == "CVE-2024-1086":
            entry["knownRansomwareCampaignUse"] = "Known"
    after = {r.record_id: r.content_hash for r in ADAPTER.split(doc_from(catalog))
             if isinstance(r, RawRecord)}
    assert [cve for cve in before if before[cve] != after[cve]] == ["CVE-2024-1086"]


# --- catalogs built here ---------------------------------------------------------------


def test_missing_ransomware_field_reads_as_unknown() -> None:
    entry = _entry("CVE-2021-44228")
    del entry["knownRansomwareCampaignUse"]
    del entry["dueDate"]
    fact = _kev_facts(_catalog(entry))["CVE-2021-44228"]
    assert (fact.ransomware, fact.due_date) == ("Unknown", None)


def test_bad_cve_id_is_reported_with_its_path_and_the_rest_loads() -> None:
    catalog = _catalog(_entry("CVE-2024-1086"), _entry("not-a-cve"), {"vendorProject": "x"})
    items = split_all(doc_from(catalog), ADAPTER)
    assert isinstance(items[0], RawRecord)
    errors = [i for i in items if isinstance(i, RecordError)]
    assert [e.pointer for e in errors] == ["$.vulnerabilities[1].cveID", "$.vulnerabilities[2]"]
    assert "not a CVE id" in errors[0].reason
    assert "cveID" in errors[1].reason


@pytest.mark.parametrize(("field", "value"), [("dateAdded", "2024-13-45"),
                                               ("dueDate", "soon"), ("dateAdded", "")])
def test_bad_date_is_a_record_error_naming_the_field(field: str, value: str) -> None:
    catalog = _catalog(_entry("CVE-2024-1086"), _entry("CVE-2024-37085", **{field: value}))
    raws = [r for r in ADAPTER.split(doc_from(catalog)) if isinstance(r, RawRecord)]
    assert ADAPTER.normalise(raws[0]).kev[0].date_added == dt.date(2024, 5, 30)
    with pytest.raises(RecordError) as caught:
        ADAPTER.normalise(raws[1])
    assert caught.value.pointer == f"$.vulnerabilities[1].{field}"


# --- through the ingest ----------------------------------------------------------------


def test_ingest_is_idempotent_and_updates_a_changed_entry(
    catalog_path: Path, db_path: Path, tmp_path: Path
) -> None:
    catalog = orjson.loads(catalog_path.read_bytes())
    with Pvdb.open(db_path) as db:
        first = db.ingest([str(catalog_path)])
        assert first.counts["kev"].added == 1404 and not first.problems
        assert db.ingest([str(catalog_path)]).changed == 0

        for entry in catalog["vulnerabilities"]:
            if entry["cveID"] == "CVE-2024-1086":
                entry["knownRansomwareCampaignUse"] = "Known"
        catalog["dateReleased"] = "2099-01-01T00:00:00.000Z"
        newer = tmp_path / "known_exploited_vulnerabilities.json"
        newer.write_bytes(orjson.dumps(catalog))
        third = db.ingest([str(newer)])
        assert (third.counts["kev"].updated, third.counts["kev"].unchanged) == (1, 1403)
        # Reading the older catalog again afterwards does not revert the entry.
        older = db.ingest([str(catalog_path)])
        assert (older.counts["kev"].stale, older.changed) == (1, 0)
        row = db._con.execute(
            "select date_added, due_date, ransomware from kev where vuln_id = ?",
            ["CVE-2024-1086"],
        ).fetchall()
        assert row == [(dt.date(2024, 5, 30), dt.date(2024, 6, 20), "Known")]


def test_ingest_reports_a_bad_entry_and_loads_the_rest(db_path: Path, tmp_path: Path) -> None:
    path = tmp_path / "kev.json"
    path.write_bytes(orjson.dumps(_catalog(
        _entry("CVE-2024-1086"), _entry("CVE-2024-37085", dateAdded="30/07/2024"),
        _entry("CVE 2021 44228"),
    )))
    with Pvdb.open(db_path) as db:
        report = db.ingest([str(path)])
        stored = db._con.execute("select vuln_id from kev").fetchall()
    assert report.counts["kev"].added == 1
    assert {(p.record_id, p.pointer) for p in report.problems} == {
        ("CVE-2024-37085", "$.vulnerabilities[1].dateAdded"),
        (None, "$.vulnerabilities[2].cveID"),
    }
    assert stored == [("CVE-2024-1086",)]
