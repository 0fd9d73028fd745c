"""The CSAF adapter on real Red Hat, BSI, Cisco and VEX documents, on malformed documents
built here, and the OSV + CSAF samples through the real ingest pipeline."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest

from engine.errors import RecordError
from engine.pvdb import Pvdb, identity
from engine.pvdb.feeds import adapter_for
from engine.pvdb.feeds.csaf import CsafAdapter
from engine.pvdb.models import MatchKind, NormalisedRecord, Source, Status
from tests.pvdb.feeds.helpers import doc_from, doc_from_file, normalise_all, split_all

ADAPTER = CsafAdapter()


def _one(path: Path) -> NormalisedRecord:
    (record,) = normalise_all(doc_from_file(path), ADAPTER)
    return record


def _products(branches: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for branch in branches:
        if "product" in branch:
            yield branch["product"]
        yield from _products(branch.get("branches", []))


def _csaf(**vulnerability: Any) -> dict[str, Any]:
    """A small CSAF 2.0 advisory: one vendor, one product, versions 1.0 and 1.1."""
    return {
        "document": {
            "csaf_version": "2.0",
            "category": "csaf_security_advisory",
            "title": "demo",
            "publisher": {"category": "vendor", "name": "Example PSIRT",
                          "namespace": "https://example.com"},
            "tracking": {"id": "EX-2024-0001", "status": "final", "version": "1",
                         "initial_release_date": "2024-03-01T00:00:00Z",
                         "current_release_date": "2024-03-02T00:00:00Z",
                         "revision_history": []},
        },
        "product_tree": {"branches": [{
            "category": "vendor", "name": "Example",
            "branches": [{"category": "product_name", "name": "Widget", "branches": [
                {"category": "product_version", "name": "1.0",
                 "product": {"name": "Widget 1.0", "product_id": "W-1.0"}},
                {"category": "product_version", "name": "1.1",
                 "product": {"name": "Widget 1.1", "product_id": "W-1.1"}},
                {"category": "product_version_range", "name": "vers:semver/>=2.0.0|<2.3.0",
                 "product": {"name": "Widget 2.x", "product_id": "W-2"}},
                {"category": "product_version_range", "name": "all the old ones",
                 "product": {"name": "Widget old", "product_id": "W-old"}},
            ]}],
        }]},
        "vulnerabilities": [{"cve": "CVE-2024-0002", **vulnerability}],
    }


def _normalise(document: dict[str, Any]) -> NormalisedRecord:
    (record,) = normalise_all(doc_from(document), ADAPTER)
    return record


# --- real documents -------------------------------------------------------------------


@pytest.mark.shared_data
def test_every_real_csaf_document_normalises(feeds_dir: Path) -> None:
    paths = sorted((feeds_dir / "csaf").glob("*.json"))
    assert len(paths) >= 15
    for path in paths:
        doc = doc_from_file(path)
        adapter = adapter_for(doc)
        assert adapter is not None and adapter.source is Source.CSAF, path
        (record,) = normalise_all(doc)
        cves = {v.vuln_id for v in record.vulns}
        assert {a.vuln_id for a in record.affected} <= cves, path
        assert {f.vuln_id for f in record.fixes} <= cves, path


@pytest.mark.shared_data
def test_red_hat_qemu_kvm_fix_from_purl_and_remediation(feeds_dir: Path) -> None:
    path = feeds_dir / "csaf" / "rhsa-2024_4420.json"
    data = orjson.loads(path.read_bytes())
    (purl,) = [
        p["product_identification_helper"]["purl"]
        for p in _products(data["product_tree"]["branches"])
        if p["product_id"].startswith("qemu-kvm-6.2.0-50.") and ".src." in p["product_id"]
    ]
    key, version = identity.purl_key(purl)
    assert (key.type, key.namespace, key.name) == ("rpm", "redhat", "qemu-kvm")
    assert "epoch=15" in purl

    record = _one(path)
    assert record.record_id == "RHSA-2024:4420"
    (vuln,) = record.vulns
    assert vuln.vuln_id == "CVE-2024-4467"
    assert vuln.published == dt.datetime(2024, 7, 2, 15, tzinfo=dt.UTC)
    assert vuln.description and "qemu-img" in vuln.description
    (stmt,) = [a for a in record.affected if a.package == "qemu-kvm"]
    assert stmt.match_kind is MatchKind.PACKAGE
    assert (stmt.ecosystem, stmt.release, stmt.scheme) == ("rpm/redhat", "8", "rpm")
    assert stmt.start is None and not stmt.end_inclusive
    # the purl's epoch qualifier is part of the version it names
    assert version is not None and version.startswith("15:")
    assert stmt.end == stmt.fixed == version
    assert stmt.fixed == "15:6.2.0-50.module+el8.10.0+22027+db0a70a4"
    assert stmt.status is Status.AFFECTED and stmt.default_status is Status.UNAFFECTED
    (fix,) = [f for f in record.fixes if f.package == "qemu-kvm"]
    assert fix.fixed_version == stmt.fixed
    assert fix.advisory_id == "RHSA-2024:4420"
    assert fix.fix_date == dt.date(2024, 7, 9)  # remediations[0].date
    assert fix.url == "https://access.redhat.com/errata/RHSA-2024:4420"
    (score,) = record.severities
    assert (score.provider, score.base_score) == ("Red Hat Product Security", 7.8)


@pytest.mark.shared_data
def test_red_hat_kernel_rt_without_purl_is_read_from_its_nevra(feeds_dir: Path) -> None:
    record = _one(feeds_dir / "csaf" / "rhsa-2023_4378.json")
    assert {v.vuln_id for v in record.vulns} == {
        "CVE-2022-45869", "CVE-2023-0458", "CVE-2023-1998", "CVE-2023-3090", "CVE-2023-35788"}
    stmts = [a for a in record.affected
             if a.vuln_id == "CVE-2023-3090" and a.package == "kernel-rt"]
    assert {(a.ecosystem, a.release, a.fixed) for a in stmts} == {
        ("rpm/redhat", "9", "5.14.0-284.25.1.rt14.310.el9_2")}
    (fix,) = [f for f in record.fixes if f.vuln_id == "CVE-2023-3090" and f.package == "kernel-rt"]
    # The remediation has no date: the advisory's initial release date is the fix date.
    assert fix.fix_date == dt.date(2023, 8, 1)
    # This test copy carries a dangling platform reference; it is reported, not fatal.
    assert any("notmatch-NFV-9.2.0.Z.MAIN.EUS" in w for w in record.warnings)


@pytest.mark.shared_data
def test_red_hat_epoch_from_nevra(feeds_dir: Path) -> None:
    record = _one(feeds_dir / "csaf" / "rhsa-2021_3029.json")
    fixes = {f.fixed_version for f in record.fixes if f.package == "microcode_ctl"}
    assert fixes == {"2:2.1-53.18.el7_7"}
    assert {a.release for a in record.affected} == {"7"}


@pytest.mark.shared_data
def test_red_hat_known_not_affected_is_unaffected(feeds_dir: Path) -> None:
    record = _one(feeds_dir / "csaf" / "rhsa-2025_23414.json")
    unaffected = [a for a in record.affected if a.status is Status.UNAFFECTED]
    assert unaffected and all(a.exact for a in unaffected)
    assert {a.package for a in unaffected} >= {"bind-chroot", "bind-devel"}
    (fix,) = [f for f in record.fixes if f.vuln_id == "CVE-2025-40778" and f.package == "bind"]
    assert fix.fixed_version == "32:9.8.2-0.68.rc1.el6_10.17"  # purl qualifier epoch=32
    assert fix.fix_date == dt.date(2025, 12, 17)


@pytest.mark.shared_data
def test_vex_known_not_affected_range(feeds_dir: Path) -> None:
    record = _one(feeds_dir / "csaf" / "sec-vex-2022-0001.json")
    assert record.record_id == "SEC-VEX-2022-0001"
    assert {v.vuln_id for v in record.vulns} == {
        "CVE-2021-44228", "CVE-2021-45046", "CVE-2021-45105"}
    assert len(record.affected) == 3
    for stmt in record.affected:
        assert stmt.status is Status.UNAFFECTED
        assert stmt.match_kind is MatchKind.PRODUCT
        assert (stmt.vendor, stmt.product) == ("secvisogram", "secvisogram")
        assert (stmt.start, stmt.end, stmt.end_inclusive) == (None, "1.14.0", True)
        assert stmt.scheme == "generic"
    assert record.fixes == ()


@pytest.mark.shared_data
def test_bsi_fix_dated_by_the_only_vendor_fix(feeds_dir: Path) -> None:
    record = _one(feeds_dir / "csaf" / "bsi-2022-0001.json")
    (fix,) = record.fixes
    assert (fix.vendor, fix.product, fix.fixed_version) == (
        "csaf_tools", "cvrf_csaf_converter", "1.0.0-rc2")
    assert fix.fix_date == dt.date(2022, 3, 14)
    assert fix.url == "https://github.com/csaf-tools/CVRF-CSAF-Converter/releases/tag/1.0.0-rc2"
    exact = {a.exact for a in record.affected if a.exact}
    assert exact == {"1.0.0-alpha", "1.0.0-dev1", "1.0.0-dev2", "1.0.0-dev3", "1.0.0-rc1"}
    assert {a.scheme for a in record.affected} == {"custom"}  # not plain dotted numbers


@pytest.mark.shared_data
def test_cisco_known_affected_service_packs(feeds_dir: Path) -> None:
    record = _one(feeds_dir / "csaf" / "cisco-sa-20180328-smi2.json")
    assert len(record.affected) == 259
    assert all(a.status is Status.AFFECTED and a.exact for a in record.affected)
    assert any(a.product == "ios" and a.exact == "12.2(55)SE" for a in record.affected)
    (score,) = record.severities
    assert (score.provider, score.base_score) == ("Cisco PSIRT", 9.8)


@pytest.mark.shared_data
@pytest.mark.parametrize("name", ["rhsa-2019_1862.json", "rhsa-2023_1441.json"])
def test_documents_without_cve_load_with_no_cve_facts(feeds_dir: Path, name: str) -> None:
    record = _one(feeds_dir / "csaf" / name)
    assert record.vulns == () and record.affected == () and record.fixes == ()


# --- documents built here -------------------------------------------------------------


def test_statuses_ranges_and_fix_date_fallback() -> None:
    record = _normalise(_csaf(
        product_status={"fixed": ["W-1.1"], "known_affected": ["W-1.0"],
                        "known_not_affected": ["W-2"], "under_investigation": ["W-old"]},
        remediations=[{"category": "vendor_fix", "details": "upgrade", "product_ids": ["W-1.1"],
                       "url": "https://example.com/fix"}],
    ))
    fixed, exact, ranged = record.affected  # fixed, known_affected, known_not_affected
    assert (fixed.status, fixed.start, fixed.end, fixed.fixed) == (
        Status.AFFECTED, None, "1.1", "1.1")
    assert (exact.status, exact.exact, exact.scheme) == (Status.AFFECTED, "1.0", "generic")
    assert (ranged.status, ranged.start, ranged.end, ranged.end_inclusive, ranged.scheme) == (
        Status.UNAFFECTED, "2.0.0", "2.3.0", False, "semver")
    assert len({a.group for a in record.affected}) == 1  # one product: one group
    (fix,) = record.fixes
    assert (fix.fix_date, fix.url) == (dt.date(2024, 3, 1), "https://example.com/fix")
    assert any("'all the old ones'" in w for w in record.warnings)


def test_missing_tracking_id_is_a_record_error() -> None:
    document = _csaf()
    del document["document"]["tracking"]["id"]
    (item,) = split_all(doc_from(document), ADAPTER)
    assert isinstance(item, RecordError)
    assert item.pointer == "$.document.tracking"


def test_bad_purl_names_its_path() -> None:
    document = _csaf(product_status={"fixed": ["W-1.0"]})
    product = document["product_tree"]["branches"][0]["branches"][0]["branches"][0]["product"]
    product["product_identification_helper"] = {"purl": "not a purl"}
    with pytest.raises(RecordError) as info:
        _normalise(document)
    assert info.value.pointer == ("$.product_tree.branches[0].branches[0].branches[0]"
                                  ".product.product_identification_helper.purl")


def test_bad_cve_id_names_its_path() -> None:
    document = _csaf()
    document["vulnerabilities"][0]["cve"] = "CVE-24-1"
    with pytest.raises(RecordError) as info:
        _normalise(document)
    assert info.value.pointer == "$.vulnerabilities[0].cve"


def test_unknown_product_id_is_a_warning() -> None:
    record = _normalise(_csaf(product_status={"known_affected": ["W-9"]}))
    assert record.affected == ()
    assert record.warnings == (
        "$.vulnerabilities[0].product_status.known_affected[0]: unknown product id 'W-9'",)


@pytest.mark.parametrize(
    "body",
    [
        b"garbage",
        b"{\"document\": ",
        orjson.dumps({"document": {"csaf_version": "1.2"}}),
        orjson.dumps({"document": "2.0"}),
        orjson.dumps({"id": "GHSA-x", "modified": "2024-01-01T00:00:00Z", "affected": []}),
    ],
)
def test_not_csaf_is_not_detected(body: bytes) -> None:
    assert not CsafAdapter.detect(doc_from(body))


# --- the real pipeline ----------------------------------------------------------------


@pytest.mark.shared_data
def test_real_osv_and_csaf_ingest_end_to_end(feeds_dir: Path, db_path: Path) -> None:
    sources = [str(feeds_dir / "osv"), str(feeds_dir / "csaf")]
    with Pvdb.open(db_path) as db:
        first = db.ingest(sources)
        assert first.problems == []
        assert all(origin.endswith("manifest.csv") for origin, _ in first.skipped)
        assert first.counts["osv"].added >= 25 and first.counts["csaf"].added >= 15
        again = db.ingest(sources)
        assert again.changed == 0 and again.problems == []

    con = duckdb.connect(str(db_path), read_only=True)
    try:
        row = con.execute(
            "SELECT fixed_version, fix_date FROM fixes WHERE source = 'osv'"
            " AND vuln_id = 'CVE-2023-40547' AND package = 'shim-x64'"
        ).fetchone()
        assert row == ("15.8-4.el9_3.alma.1", dt.date(2024, 4, 18))
        row = con.execute(
            "SELECT count(*) FROM affected WHERE source = 'csaf' AND status = 'unaffected'"
            " AND record_id = 'SEC-VEX-2022-0001'"
        ).fetchone()
        assert row == (3,)
    finally:
        con.close()
