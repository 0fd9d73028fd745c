"""The NVD adapter: bare API 2.0 records, API 2.0 response pages and the NVD 1.1 feed.

Real-data tests read ``../shared/data/feeds/nvd`` and check values stated in those files;
sad paths build their own small documents.
"""

from __future__ import annotations

import copy
import datetime as dt
from pathlib import Path
from typing import Any

import orjson
import pytest

from engine.errors import RecordError
from engine.pvdb import Pvdb
from engine.pvdb.feeds import adapter_for
from engine.pvdb.feeds.nvd import NvdAdapter
from engine.pvdb.models import (
    AffectedFact,
    KevFact,
    MatchKind,
    NormalisedRecord,
    RawRecord,
    ReferenceFact,
    Status,
    VulnState,
)
from tests.pvdb.feeds.helpers import doc_from, doc_from_file, normalise_all, split_all

ADAPTER = NvdAdapter()
LEGACY = "legacy_1.1/nvdcve-1.1-test-data.json"
PAGE = "api_response_samples/vunnel-full-page.api2-response.json"
XEN_PAGE = "api_response_samples/CVE-2022-33745.api2-response.json"


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0,
        micro: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, second, micro, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def nvd(feeds_dir: Path) -> Path:
    return feeds_dir / "nvd"


def record(nvd: Path, name: str) -> NormalisedRecord:
    """The one record of ``nvd/<name>.json``."""
    (only,) = normalise_all(doc_from_file(nvd / f"{name}.json"), ADAPTER)
    return only


def by_id(nvd: Path, relative: str) -> dict[str, NormalisedRecord]:
    return {r.record_id: r for r in normalise_all(doc_from_file(nvd / relative), ADAPTER)}


def statements(rec: NormalisedRecord, group: int) -> list[AffectedFact]:
    return [a for a in rec.affected if a.group == group]


# --- real data -----------------------------------------------------------------------------


@pytest.mark.shared_data
def test_every_nvd_file_is_detected_and_normalises(nvd: Path) -> None:
    files = sorted(nvd.rglob("*.json"))
    assert len(files) == 14
    counts = {}
    for path in files:
        doc = doc_from_file(path)
        assert isinstance(adapter_for(doc), NvdAdapter), path
        records = normalise_all(doc, ADAPTER)  # raises on any RecordError
        counts[str(path.relative_to(nvd))] = len(records)
    assert counts.pop(LEGACY) == 669
    assert counts.pop(PAGE) == 38
    assert counts.pop(XEN_PAGE) == 1
    assert counts == {f"{p.stem}.json": 1 for p in nvd.glob("CVE-*.json")}


@pytest.mark.shared_data
@pytest.mark.parametrize("relative", [PAGE, XEN_PAGE])
def test_api_pages_split_into_every_item_that_total_results_states(
    nvd: Path, relative: str
) -> None:
    doc = doc_from_file(nvd / relative)
    items = split_all(doc, ADAPTER)
    assert all(isinstance(i, RawRecord) for i in items)
    assert len(items) == doc.json["totalResults"] == doc.json["resultsPerPage"]
    raws = [i for i in items if isinstance(i, RawRecord)]
    assert [r.pointer for r in raws] == [f"$.vulnerabilities[{n}].cve" for n in range(len(raws))]
    assert [r.record_id for r in raws] == [v["cve"]["id"] for v in doc.json["vulnerabilities"]]


@pytest.mark.shared_data
def test_legacy_feed_splits_into_669_distinct_cves(nvd: Path) -> None:
    raws = split_all(doc_from_file(nvd / LEGACY), ADAPTER)
    assert len(raws) == 669
    assert all(isinstance(r, RawRecord) for r in raws)
    assert len({r.record_id for r in raws if isinstance(r, RawRecord)}) == 669
    first = raws[0]
    assert isinstance(first, RawRecord)
    assert (first.record_id, first.pointer) == ("CVE-2022-0090", "$.CVE_Items[0]")
    assert first.modified == utc(2022, 1, 25, 14, 49)


@pytest.mark.shared_data
def test_kernel_record_states_each_stable_branch_range(nvd: Path) -> None:
    rec = record(nvd, "CVE-2024-26976")
    (vuln,) = rec.vulns
    assert vuln.assigner == "416baaa9-dc9f-4396-8d5f-8c081fb06d67"
    assert vuln.published == utc(2024, 5, 1, 6, 15, 14, 667000)
    assert vuln.modified == utc(2026, 8, 4, 11, 17, 30, 40000)
    assert vuln.title is None and vuln.state is VulnState.PUBLISHED
    assert vuln.description and vuln.description.startswith("In the Linux kernel")

    kernel = statements(rec, 0)
    assert [(a.start, a.end) for a in kernel] == [
        ("2.6.38", "4.19.312"), ("4.20", "5.4.274"), ("5.5", "5.10.215"),
        ("5.11", "5.15.154"), ("5.16", "6.1.84"), ("6.2", "6.6.24"),
        ("6.7", "6.7.12"), ("6.8", "6.8.3"),
    ]
    for a in kernel:
        assert (a.vendor, a.product, a.scheme) == ("linux", "linux_kernel", "kernel")
        assert a.match_kind is MatchKind.CPE
        assert a.cpe == "cpe:2.3:o:linux:linux_kernel:*:*:*:*:*:*:*:*"
        assert (a.status, a.default_status) == (Status.AFFECTED, Status.UNAFFECTED)
        assert a.start_inclusive and not a.end_inclusive
        assert a.fixed == a.end and a.exact is None and a.condition is None

    (debian,) = statements(rec, 1)
    assert (debian.product, debian.exact, debian.scheme) == ("debian_linux", "10.0", "generic")
    assert debian.start is None and debian.end is None and debian.fixed is None

    assert {(s.provider, s.cvss_version) for s in rec.severities} == {
        ("416baaa9-dc9f-4396-8d5f-8c081fb06d67", "3.1"),
        ("134c704f-9b21-4f2e-91b3-4a467353bcc0", "3.1"),
    }


@pytest.mark.shared_data
def test_amd_firmware_is_affected_only_with_its_processor(nvd: Path) -> None:
    rec = record(nvd, "CVE-2023-20588")
    assert len(rec.affected) == 2 + 31  # two Debian releases, 31 firmware/CPU pairs
    assert [a.exact for a in statements(rec, 0)] == ["11.0", "12.0"]
    assert all(a.condition is None for a in statements(rec, 0))

    (firmware,) = statements(rec, 1)
    assert firmware.cpe == "cpe:2.3:o:amd:epyc_7351p_firmware:-:*:*:*:*:*:*:*"
    assert (firmware.vendor, firmware.product) == ("amd", "epyc_7351p_firmware")
    assert firmware.condition == "only with cpe:2.3:h:amd:epyc_7351p:-:*:*:*:*:*:*:*"
    assert firmware.exact is None  # version "-": not a concrete version
    # The processor itself (vulnerable: false) is a condition, never a statement.
    assert not [a for a in rec.affected if a.cpe and a.cpe.startswith("cpe:2.3:h:")]
    assert all(a.condition for a in rec.affected if a.group >= 1)


@pytest.mark.shared_data
def test_esxi_record_carries_nvds_kev_copy_and_both_scores(nvd: Path) -> None:
    rec = record(nvd, "CVE-2024-37085")
    assert rec.kev == (KevFact(
        rec.vulns[0].vuln_id,
        date_added=dt.date(2024, 7, 30),
        due_date=dt.date(2024, 8, 20),
        ransomware="Unknown",
        name="VMware ESXi Authentication Bypass Vulnerability",
        required_action="Apply mitigations per vendor instructions or discontinue use of the"
        " product if mitigations are unavailable.",
    ),)
    scores = {s.provider: (s.vector, s.base_score, s.base_severity) for s in rec.severities}
    assert scores == {
        "nvd@nist.gov": ("CVSS:3.1/AV:N/AC:L/PR:H/UI:N/S:U/C:H/I:H/A:H", 7.2, "HIGH"),
        "security@vmware.com": ("CVSS:3.1/AV:N/AC:L/PR:H/UI:R/S:U/C:H/I:H/A:H", 6.8, "MEDIUM"),
    }
    assert rec.warnings == ()
    # The advisory is listed once per source in the file; one fact per URL.
    assert rec.references == (ReferenceFact(
        rec.vulns[0].vuln_id,
        "https://support.broadcom.com/web/ecx/support-content-notification/-/external/"
        "content/SecurityAdvisories/0/24505",
        ("Patch", "Vendor Advisory"),
    ),)
    foundation, *esxi = rec.affected
    assert (foundation.product, foundation.start, foundation.end, foundation.fixed) == (
        "cloud_foundation", "4.0", "5.2", "5.2")
    assert len(esxi) == 12
    assert esxi[0].exact == "7.0"
    assert {a.exact for a in esxi[1:]} == {"8.0"}
    assert esxi[-1].cpe == "cpe:2.3:o:vmware:esxi:8.0:update_2c:*:*:*:*:*:*"


@pytest.mark.shared_data
def test_unanalysed_record_has_scores_but_no_statements(nvd: Path) -> None:
    rec = record(nvd, "CVE-2024-3446")
    assert rec.vulns[0].assigner == "secalert@redhat.com"
    assert rec.affected == () and rec.kev == ()
    assert [s.provider for s in rec.severities] == ["secalert@redhat.com"]


@pytest.mark.shared_data
def test_legacy_feed_ranges_scores_and_and_nodes(nvd: Path) -> None:
    records = by_id(nvd, LEGACY)
    gitlab = records["CVE-2022-0090"]
    assert gitlab.vulns[0].assigner == "cve@gitlab.com"
    assert gitlab.vulns[0].published == utc(2022, 1, 18, 17, 15)
    assert [(a.start, a.end, a.fixed) for a in gitlab.affected[::2]] == [
        ("14.6.0", "14.6.1", "14.6.1"), ("14.5.0", "14.5.3", "14.5.3"),
        (None, "14.4.5", "14.4.5"),
    ]
    assert {(s.provider, s.cvss_version, s.base_score) for s in gitlab.severities} == {
        ("nvd@nist.gov", "3.1", 6.5), ("nvd@nist.gov", "2.0", 5.0),
    }
    assert [r.tags for r in gitlab.references] == [
        ("Permissions Required",), ("Third Party Advisory",), ("Broken Link",)]

    kernel_only = statements(records["CVE-2021-3669"], 1)
    assert [(a.product, a.start, a.end, a.end_inclusive, a.fixed) for a in kernel_only] == [
        ("spectrum_copy_data_management", "2.2.0.0", "2.2.15.0", True, None),
        ("spectrum_protect_plus", "10.1.0", "10.1.10.2", True, None),
    ]
    assert {a.condition for a in kernel_only} == {
        "only with cpe:2.3:o:linux:linux_kernel:-:*:*:*:*:*:*:*"}

    rejected = records["CVE-2022-3063"]
    assert rejected.vulns[0].state is VulnState.REJECTED
    assert rejected.affected == () and rejected.severities == ()


@pytest.mark.shared_data
def test_no_other_feed_is_taken_for_nvd(feeds_dir: Path) -> None:
    others = [p for p in feeds_dir.rglob("*.json") if "nvd" not in p.relative_to(feeds_dir).parts]
    assert len(others) > 100
    assert [p for p in others if NvdAdapter.detect(doc_from_file(p))] == []


@pytest.mark.shared_data
def test_ingest_end_to_end_is_idempotent(nvd: Path, db_path: Path) -> None:
    ids = {r.record_id for path in nvd.rglob("*.json")
           for r in split_all(doc_from_file(path), ADAPTER) if isinstance(r, RawRecord)}
    with Pvdb.open(db_path) as db:
        first = db.ingest([str(nvd)])
        assert first.problems == []
        assert first.counts["nvd"].added == len(ids) == 718
        # CVE-2022-33745 is both in an API page and (older) in the 1.1 feed.
        assert first.counts["nvd"].stale == 1
        second = db.ingest([str(nvd)])
    assert second.problems == []
    assert second.changed == 0


# --- built documents ---------------------------------------------------------------------


def cve(**changes: Any) -> dict[str, Any]:
    """A small, valid API 2.0 ``cve`` object."""
    data: dict[str, Any] = {
        "id": "CVE-2099-0001",
        "sourceIdentifier": "cna@example.org",
        "published": "2099-01-01T00:00:00.000",
        "lastModified": "2099-01-02T00:00:00.000",
        "vulnStatus": "Analyzed",
        "descriptions": [{"lang": "es", "value": "Hola"}, {"lang": "en", "value": "Hello"}],
        "metrics": {"cvssMetricV31": [{
            "source": "nvd@nist.gov", "type": "Primary",
            "cvssData": {"vectorString": "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
                         "baseScore": 9.8},
        }]},
        "configurations": [{"nodes": [{"operator": "OR", "negate": False, "cpeMatch": [
            {"vulnerable": True, "criteria": "cpe:2.3:a:example:app:*:*:*:*:*:*:*:*",
             "versionStartExcluding": "1.0", "versionEndIncluding": "1.4"},
        ]}]}],
        "references": [{"url": "https://example.org/advisory", "tags": ["Vendor Advisory"]}],
    }
    data.update(changes)
    return data


def page(*items: Any) -> dict[str, Any]:
    return {"resultsPerPage": len(items), "startIndex": 0, "totalResults": len(items),
            "format": "NVD_CVE", "version": "2.0", "timestamp": "2099-01-03T00:00:00.000",
            "vulnerabilities": list(items)}


def normalise_one(data: dict[str, Any]) -> NormalisedRecord:
    (rec,) = normalise_all(doc_from(data), ADAPTER)
    return rec


def test_built_record_normalises() -> None:
    rec = normalise_one(cve())
    (vuln,) = rec.vulns
    assert (vuln.description, vuln.assigner) == ("Hello", "cna@example.org")
    assert vuln.modified == utc(2099, 1, 2)
    (a,) = rec.affected
    assert (a.start, a.start_inclusive, a.end, a.end_inclusive) == ("1.0", False, "1.4", True)
    assert a.fixed is None and a.exact is None and a.scheme == "generic"
    assert rec.severities[0].base_score == 9.8 and rec.kev == ()


def test_a_stated_score_that_disagrees_with_the_vector_is_a_warning() -> None:
    data = cve()
    data["metrics"]["cvssMetricV31"][0]["cvssData"]["baseScore"] = 5.0
    rec = normalise_one(data)
    assert rec.severities[0].base_score == 9.8
    (warning,) = rec.warnings
    assert warning.startswith("$.metrics.cvssMetricV31[0].cvssData")


@pytest.mark.parametrize("body", [
    orjson.dumps(cve())[:-40],  # truncated
    b"\x00\xff garbage",
    b"[]",
    b'"CVE-2099-0001"',
    orjson.dumps({"id": "CVE-2099-0001", "lastModified": "2099-01-02T00:00:00"}),
    orjson.dumps({"dataType": "CVE_RECORD", "cveMetadata": {"cveId": "CVE-2099-0001"},
                  "containers": {}}),
    orjson.dumps({"id": "GHSA-xxxx", "modified": "2099-01-02T00:00:00Z",
                  "published": "2099-01-01T00:00:00Z", "affected": []}),
    orjson.dumps({"title": "CISA KEV", "catalogVersion": "2099.01.01",
                  "vulnerabilities": [{"cveID": "CVE-2099-0001"}]}),
    orjson.dumps({"document": {"category": "csaf_vex"}, "vulnerabilities": []}),
])
def test_what_is_not_nvd_is_not_detected(body: bytes) -> None:
    assert not NvdAdapter.detect(doc_from(body))


def test_a_cpe_match_without_criteria_names_its_path() -> None:
    data = cve()
    nodes = data["configurations"][0]["nodes"]
    good = nodes[0]["cpeMatch"][0]
    nodes.append({"operator": "OR", "cpeMatch": [copy.deepcopy(good) for _ in range(4)]})
    del nodes[1]["cpeMatch"][3]["criteria"]
    with pytest.raises(RecordError) as caught:
        normalise_one(data)
    assert caught.value.pointer == "$.configurations[0].nodes[1].cpeMatch[3]"
    assert "criteria" in caught.value.reason


def test_a_criteria_that_is_not_a_cpe_names_its_path() -> None:
    data = cve()
    data["configurations"][0]["nodes"][0]["cpeMatch"][0]["criteria"] = "not-a-cpe"
    with pytest.raises(RecordError) as caught:
        normalise_one(data)
    assert caught.value.pointer == "$.configurations[0].nodes[0].cpeMatch[0].criteria"


def test_an_invalid_cvss_vector_is_a_record_error() -> None:
    data = cve()
    data["metrics"]["cvssMetricV31"][0]["cvssData"]["vectorString"] = "CVSS:3.1/AV:Q/AC:L"
    with pytest.raises(RecordError) as caught:
        normalise_one(data)
    assert caught.value.pointer == "$.metrics.cvssMetricV31[0].cvssData.vectorString"


def test_a_rejected_record_has_no_affected_statements() -> None:
    rec = normalise_one(cve(vulnStatus="Rejected"))
    assert rec.vulns[0].state is VulnState.REJECTED
    assert rec.affected == () and rec.severities == ()


def test_a_page_item_without_an_id_is_a_record_error_and_the_rest_still_splits() -> None:
    nameless = cve()
    del nameless["id"]
    items = split_all(doc_from(page({"cve": cve()}, {"cve": nameless}, {"oops": 1},
                                   {"cve": cve(id="CVE-2099-0002")})), ADAPTER)
    assert [type(i) for i in items] == [RawRecord, RecordError, RecordError, RawRecord]
    errors = [i for i in items if isinstance(i, RecordError)]
    assert [e.pointer for e in errors] == ["$.vulnerabilities[1].cve", "$.vulnerabilities[2]"]
    assert [i.record_id for i in items if isinstance(i, RawRecord)] == [
        "CVE-2099-0001", "CVE-2099-0002"]


def test_a_bad_timestamp_or_id_is_yielded_not_raised() -> None:
    items = split_all(doc_from(page({"cve": cve(lastModified="yesterday")},
                                    {"cve": cve(id="GHSA-1234")})), ADAPTER)
    assert [i.pointer for i in items if isinstance(i, RecordError)] == [
        "$.vulnerabilities[0].cve.lastModified", "$.vulnerabilities[1].cve.id"]


def test_a_bare_record_and_its_page_copy_hash_the_same() -> None:
    (bare,) = split_all(doc_from(cve()), ADAPTER)
    (paged,) = split_all(doc_from(page({"cve": cve()})), ADAPTER)
    assert isinstance(bare, RawRecord) and isinstance(paged, RawRecord)
    assert bare.content_hash == paged.content_hash
    assert (bare.pointer, paged.pointer) == ("$", "$.vulnerabilities[0].cve")


def test_a_legacy_item_without_an_id_is_a_record_error() -> None:
    item: dict[str, Any] = {"cve": {"CVE_data_meta": {"ASSIGNER": "cna@example.org"}},
            "configurations": {"nodes": []}, "impact": {},
            "publishedDate": "2099-01-01T00:00Z", "lastModifiedDate": "2099-01-02T00:00Z"}
    named = copy.deepcopy(item)
    named["cve"]["CVE_data_meta"]["ID"] = "CVE-2099-0003"
    feed = {"CVE_data_type": "CVE", "CVE_data_format": "MITRE", "CVE_Items": [item, named]}
    missing, raw = split_all(doc_from(feed), ADAPTER)
    assert isinstance(missing, RecordError)
    assert missing.pointer == "$.CVE_Items[0].cve.CVE_data_meta"
    assert isinstance(raw, RawRecord) and raw.modified == utc(2099, 1, 2)
    assert ADAPTER.normalise(raw).vulns[0].assigner == "cna@example.org"
