"""Every file under ../shared/data/feeds ingests; a second run changes nothing; facts from
different feeds meet on the right CVEs."""

from __future__ import annotations

import csv
import zipfile
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from engine.predict import estimator_for
from engine.pvdb import Component, IngestReport, Pvdb

pytestmark = [pytest.mark.shared_data, pytest.mark.slow]

# Files in the data folder that are not read as feeds: documentation, manifests, the KEV
# catalog's JSON Schema, the MSRC CVRF documents (their dates are read from the derived
# table), Intel's per-platform microcode table, and beside the kernel CNA's records (zip)
# their ``.dyad`` files (the vulnerable/fixed commit pairs the JSON record states too) and
# the derived per-record git history (history.csv.gz). The XSA/QSB lists and the Patch
# Tuesday and microcode release tables are read (engine/pvdb/feeds/xen_xsa.py,
# vendor_releases.py).
NOT_FEEDS = (".md", "manifest.csv", "known_exploited_vulnerabilities_schema.json", ".xml",
             "microcode_platform_updates_derived.csv", ".dyad", "kernel_cna_full/history.csv")


@pytest.fixture(scope="module")
def ingested(feeds_dir: Path, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[tuple[Pvdb, IngestReport, IngestReport]]:
    path = tmp_path_factory.mktemp("all") / "pvdb.duckdb"
    with Pvdb.open(path) as db:
        first = db.ingest([str(feeds_dir)])
        second = db.ingest([str(feeds_dir)])
        yield db, first, second


def test_every_file_ingests(ingested: tuple[Pvdb, IngestReport, IngestReport],
                            feeds_dir: Path) -> None:
    _, first, _ = ingested
    assert first.problems == [], "\n".join(map(str, first.problems[:20]))
    skipped = [origin for origin, _ in first.skipped]
    assert all(p.endswith(NOT_FEEDS) for p in skipped), [
        p for p in skipped if not p.endswith(NOT_FEEDS)][:20]
    assert first.documents == sum(_documents(p) for p in feeds_dir.rglob("*") if p.is_file())
    for source in ("cve5", "nvd", "kev", "epss", "osv", "csaf", "releases"):
        assert first.counts[source].added > 0, source


def _documents(path: Path) -> int:
    """Documents in one file: a zip archive's members, else one."""
    if not zipfile.is_zipfile(path):
        return 1
    with zipfile.ZipFile(path) as archive:
        return sum(1 for info in archive.infolist() if not info.is_dir())


def test_second_run_reports_zero_changes(ingested: tuple[Pvdb, IngestReport, IngestReport]
                                         ) -> None:
    _, first, second = ingested
    assert first.changed > 0
    assert second.changed == 0
    assert second.problems == []


def test_kev_and_epss_attach_to_the_right_cves(
    ingested: tuple[Pvdb, IngestReport, IngestReport], feeds_dir: Path
) -> None:
    db = ingested[0]
    catalog = orjson.loads((feeds_dir / "kev/known_exploited_vulnerabilities.json").read_bytes())
    entry = next(e for e in catalog["vulnerabilities"] if e["cveID"] == "CVE-2024-37085")
    kev = {r["source"]: r for r in db.show("CVE-2024-37085")["kev"]}["kev"]
    assert (str(kev["date_added"]), str(kev["due_date"]), kev["ransomware"]) == (
        entry["dateAdded"], entry["dueDate"], entry["knownRansomwareCampaignUse"])
    newest = sorted((feeds_dir / "epss/kev_epss_snapshots").glob("*.csv"))[-1]
    rows = {r["CVE"]: r for r in csv.DictReader(newest.open(encoding="utf-8"))}
    epss = db.show("CVE-2024-1086")["epss"]
    assert [(e["score"], e["percentile"]) for e in epss] == [
        (float(rows["CVE-2024-1086"]["EPSS"]), float(rows["CVE-2024-1086"]["EPSS Percentile"]))]
    assert str(epss[0]["score_date"]) == newest.stem.split("-", 1)[1]  # epss_kev_nvd-DATE


def test_kernel_finding_joins_cna_nvd_kev_and_release_dates(
    ingested: tuple[Pvdb, IngestReport, IngestReport], feeds_dir: Path
) -> None:
    db = ingested[0]
    host = [Component(kind="kernel", vendor="linux", product="linux_kernel", version="6.6.23")]
    finding = {f.vuln_id: f for f in db.affecting(
        host, estimator=estimator_for(db)).findings}["CVE-2024-26976"]
    assert finding.fix.closing_version == "6.6.24"
    releases = orjson.loads(
        (feeds_dir / "releases/endoflife_release_data/linux-kernel.json").read_bytes())
    assert str(finding.fix.availability.date) == releases["versions"]["6.6.24"]["date"]
    assert finding.fix.availability.basis.value == "vendor"
    providers = {(s.source, s.provider) for s in finding.severities}
    record = orjson.loads((feeds_dir / "nvd/CVE-2024-26976.json").read_bytes())
    nvd_providers = {("nvd", m["source"]) for ms in record["metrics"].values() for m in ms
                     if "cvssData" in m}
    assert nvd_providers and nvd_providers <= providers, "NVD's scores sit beside the CNA's"
    assert ("cve5", "Linux") in providers


def test_nvd_cpe_ranges_match_without_cna_data(
    ingested: tuple[Pvdb, IngestReport, IngestReport], feeds_dir: Path
) -> None:
    """CVE-2024-26976 in NVD: each cpeMatch range decides for a kernel in it."""
    record = orjson.loads((feeds_dir / "nvd/CVE-2024-26976.json").read_bytes())
    ranges = [m for c in record["configurations"] for n in c["nodes"] for m in n["cpeMatch"]
              if "linux_kernel" in m["criteria"] and "versionEndExcluding" in m]
    assert ranges
    db = ingested[0]
    for m in ranges:
        end = m["versionEndExcluding"]
        detail = db.show("CVE-2024-26976")
        nvd_rows = [a for a in detail["affected"]
                    if a["source"] == "nvd" and a["end_v"] == end]
        assert nvd_rows and nvd_rows[0]["start_v"] == m.get("versionStartIncluding")
