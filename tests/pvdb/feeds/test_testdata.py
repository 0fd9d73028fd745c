"""Every feed adapter on its own checked-in data: ``testdata/<adapter>/happy`` and ``sad``.

``happy/`` holds small excerpts of real public feed data (testdata/README.md says where
each came from); the check registered for each file states the records and facts the
adapter makes of it. ``sad/`` holds broken variants made by hand; each is ingested into a
fresh PVDB and the ingest must report exactly the stated problems and warnings, store
nothing of a broken record, and raise nothing. These tests need no shared data.
"""

from __future__ import annotations

import datetime as dt
import pkgutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from engine.pvdb import Problem, Pvdb
from engine.pvdb import feeds as feeds_package
from engine.pvdb.feeds import adapter_for, adapters
from engine.pvdb.feeds.base import Document
from engine.pvdb.models import NormalisedRecord
from tests.pvdb.feeds.helpers import normalise_all

TESTDATA = Path(__file__).parent / "testdata"
UTC = dt.UTC

Check = Callable[[list[NormalisedRecord]], None]
HAPPY: dict[str, Check] = {}
"""testdata-relative path of a happy file -> the check of what it yields."""


def happy(path: str) -> Callable[[Check], Check]:
    """Register ``check`` as what ``testdata/<path>`` must yield."""

    def register(check: Check) -> Check:
        assert path not in HAPPY, path
        HAPPY[path] = check
        return check

    return register


@dataclass(frozen=True)
class Sad:
    """What ingesting one broken file reports, and what of it is still stored."""

    adapter: str | None
    """The adapter class that claims the file (None: no adapter does)."""
    problems: tuple[str, ...] = ()
    """Each problem as ``[record id] at pointer: reason`` (no record id when none)."""
    warnings: tuple[str, ...] = ()
    stored: tuple[str, ...] = ()
    """Record ids that still load (the rest of the document)."""


SAD: dict[str, Sad] = {}
"""testdata-relative path of a sad file -> what ingesting it reports."""


def _doc(path: str) -> Document:
    file = TESTDATA / path
    return Document(str(file), file.read_bytes())


def _raws(path: str) -> list[Any]:
    """What the adapter's split yields for ``testdata/<path>``."""
    doc = _doc(path)
    adapter = adapter_for(doc)
    assert adapter is not None, path
    return list(adapter.split(doc))


def _one(records: list[NormalisedRecord]) -> NormalisedRecord:
    assert len(records) == 1, [r.record_id for r in records]
    return records[0]


def _rows(facts: Iterable[Any], *fields: str) -> list[tuple[Any, ...]]:
    """The named fields of each fact, in order (enum members compare equal to their
    values)."""
    return [tuple(getattr(f, name) for name in fields) for f in facts]


def _said(problem: Problem) -> str:
    """A problem or warning without its origin (a reason naming the file names it
    ``testdata/…``)."""
    where = f"[{problem.record_id}] " if problem.record_id else ""
    reason = problem.reason.replace(str(TESTDATA), "testdata")
    return f"{where}at {problem.pointer}: {reason}"


# --- cve5 --------------------------------------------------------------------------------

_KERNEL_INTRODUCED = "92c58965e9656dc6e682a8ffe520fac0fb256d13"
_KERNEL_FIX_COMMITS = ("3ee59c38ae7369ad1f7b846e05633ccf0d159fab",
                       "fd627ac8a5cff4d45269f164b13ddddc0726f2cc",
                       "061c553c66bc1638c280739999224c8000fd4602",
                       "5a53249d149f48b558368c5338b9921b76a12f8c")
_KERNEL_CPE = "cpe:2.3:o:linux:linux_kernel:*:*:*:*:*:*:*:*"


@happy("cve5/happy/CVE-2025-38469.json")
def _cve5_kernel_cna(records: list[NormalisedRecord]) -> None:
    """The kernel CNA's own record: no dates, git ranges, semver branches, CPE ranges."""
    record = _one(records)
    assert record.record_id == "CVE-2025-38469"
    (vuln,) = record.vulns
    assert (vuln.vuln_id, vuln.state, vuln.assigner, vuln.published, vuln.modified) == (
        "CVE-2025-38469", "published", "Linux", None, None)
    assert vuln.title == ("KVM: x86/xen: Fix cleanup logic in emulation of Xen schedop poll"
                          " hypercalls")
    assert vuln.description is not None and vuln.description.startswith(
        "In the Linux kernel, the following vulnerability has been resolved:\n\nKVM: x86/xen:")
    assert record.severities == () and record.aliases == () and record.warnings == ()
    assert {(a.vendor, a.product) for a in record.affected} == {("linux", "linux_kernel")}
    fields = ("group", "match_kind", "scheme", "status", "default_status", "start", "end",
              "end_inclusive", "exact", "fixed", "cpe")
    assert _rows(record.affected, *fields) == [
        *[(0, "product", "git", "affected", "unaffected", _KERNEL_INTRODUCED, commit, False,
           None, None, None) for commit in _KERNEL_FIX_COMMITS],
        (1, "product", "kernel", "affected", "affected", None, None, False, "6.2", None, None),
        (1, "product", "kernel", "unaffected", "affected", None, "6.2", False, None, None, None),
        (1, "product", "kernel", "unaffected", "affected", "6.6.100", "6.6.*", True, None,
         "6.6.100", None),
        (1, "product", "kernel", "unaffected", "affected", "6.12.40", "6.12.*", True, None,
         "6.12.40", None),
        (1, "product", "kernel", "unaffected", "affected", "6.15.8", "6.15.*", True, None,
         "6.15.8", None),
        (1, "product", "kernel", "unaffected", "affected", "6.16", "*", True, None, "6.16",
         None),
        *[(1000, "cpe", "kernel", "affected", "unaffected", "6.2", end, False, None, end,
           _KERNEL_CPE) for end in ("6.6.100", "6.12.40", "6.15.8", "6.16")],
    ]
    assert _rows(record.fixes, "vendor", "product", "fixed_version", "patch_id", "url") == [
        *[("linux", "linux_kernel", None, c, f"https://git.kernel.org/stable/c/{c}")
          for c in _KERNEL_FIX_COMMITS],
        *[("linux", "linux_kernel", v, None, None)
          for v in ("6.6.100", "6.12.40", "6.15.8", "6.16")],
    ]
    assert [r.url for r in record.references] == [
        f"https://git.kernel.org/stable/c/{c}" for c in _KERNEL_FIX_COMMITS]


@happy("cve5/happy/CVE-2024-31142.json")
def _cve5_xen(records: list[NormalisedRecord]) -> None:
    """A Xen record: no machine-readable versions, an ADP container with SSVC only."""
    record = _one(records)
    (vuln,) = record.vulns
    assert (vuln.vuln_id, vuln.title, vuln.assigner, vuln.state) == (
        "CVE-2024-31142", "x86: Incorrect logic for BTC/SRSO mitigations", "XEN", "published")
    assert vuln.published == dt.datetime(2024, 5, 16, 13, 39, 42, 774000, tzinfo=UTC)
    assert vuln.modified == dt.datetime(2024, 6, 4, 17, 36, 7, 65000, tzinfo=UTC)
    assert vuln.description is not None and vuln.description.startswith(
        "Because of a logical error in XSA-407 (Branch Type Confusion), the\nmitigation")
    assert _rows(record.affected, "group", "match_kind", "vendor", "product", "scheme",
                 "status", "default_status", "exact", "start", "end") == [
        (0, "product", "xen", "xen", "custom", "unknown", "unknown",
         "consult Xen advisory XSA-455", None, None)]
    assert record.severities == () and record.fixes == () and record.warnings == ()
    assert _rows(record.references, "url", "tags") == [
        ("https://xenbits.xenproject.org/xsa/advisory-455.html", ())]


@happy("cve5/happy/CVE-2024-23984.json")
def _cve5_intel(records: list[NormalisedRecord]) -> None:
    """An Intel record: CVSS 4.0 and 3.1 from the CNA, a placeholder version."""
    record = _one(records)
    (vuln,) = record.vulns
    assert (vuln.vuln_id, vuln.title, vuln.assigner) == ("CVE-2024-23984", None, "intel")
    assert vuln.description == (
        "Observable discrepancy in RAPL interface for some Intel(R) Processors may allow a"
        " privileged user to potentially enable information disclosure via local access.")
    assert vuln.published == dt.datetime(2024, 9, 16, 16, 38, 48, 187000, tzinfo=UTC)
    assert vuln.modified == dt.datetime(2024, 10, 7, 18, 23, 30, 844000, tzinfo=UTC)
    assert _rows(record.severities, "provider", "cvss_version", "vector", "base_score",
                 "base_severity") == [
        ("intel", "4.0", "CVSS:4.0/AV:L/AC:H/AT:P/PR:H/UI:N/VC:H/VI:N/VA:N/SC:H/SI:N/SA:N",
         6.8, "MEDIUM"),
        ("intel", "3.1", "CVSS:3.1/AV:L/AC:H/PR:H/UI:N/S:C/C:H/I:N/A:N", 5.3, "MEDIUM"),
    ]
    assert _rows(record.affected, "vendor", "product", "scheme", "status", "default_status",
                 "exact") == [
        ("n/a", "intel(r)_processors", "custom", "affected", "unaffected", "See references")]
    assert record.fixes == () and record.warnings == ()
    assert [r.url for r in record.references] == [
        "https://www.intel.com/content/www/us/en/security-center/advisory/intel-sa-01103.html"]


@happy("cve5/happy/CVE-2024-38796.json")
def _cve5_tianocore(records: list[NormalisedRecord]) -> None:
    """A TianoCore record: an inclusive custom range with no fix, references from an ADP."""
    record = _one(records)
    (vuln,) = record.vulns
    assert (vuln.vuln_id, vuln.title, vuln.assigner) == (
        "CVE-2024-38796", "Integer overflow in PeCoffLoaderRelocateImage", "TianoCore")
    assert vuln.published == dt.datetime(2024, 9, 27, 21, 45, 0, 730000, tzinfo=UTC)
    assert vuln.modified == dt.datetime(2024, 12, 6, 13, 9, 30, 427000, tzinfo=UTC)
    assert _rows(record.severities, "provider", "cvss_version", "vector", "base_score",
                 "base_severity") == [
        ("TianoCore", "3.1", "CVSS:3.1/AV:A/AC:H/PR:L/UI:N/S:U/C:L/I:H/A:L", 5.9, "MEDIUM")]
    # packageName without a collectionURL names no ecosystem: a product statement.
    assert _rows(record.affected, "match_kind", "vendor", "product", "package", "scheme",
                 "status", "default_status", "start", "end", "end_inclusive", "fixed") == [
        ("product", "tianocore", "edk2", None, "custom", "affected", "unaffected", None,
         "edk2-stable202405", True, None)]
    assert record.fixes == ()
    assert [r.url for r in record.references] == [
        "https://github.com/tianocore/edk2/security/advisories/GHSA-xpcr-7hjq-m6qm",
        "https://security.netapp.com/advisory/ntap-20241206-0006/",
    ]


SAD.update({
    "cve5/sad/truncated.json": Sad(None, problems=(
        "at $: not valid JSON: unexpected end of data: line 25 column 3 (char 1000)",)),
    "cve5/sad/data-version-6.json": Sad("Cve5Adapter", problems=(
        "at $.dataVersion: unsupported CVE JSON dataVersion '6.0' (5.x is read)",)),
    "cve5/sad/missing-cve-id.json": Sad("Cve5Adapter", problems=(
        "at $.cveMetadata: missing required field 'cveId'",)),
    "cve5/sad/bad-date-updated.json": Sad("Cve5Adapter", problems=(
        "at $.cveMetadata.dateUpdated: not an ISO 8601 timestamp:"
        " '2024-06-31T17:36:07.065Z'",)),
    "cve5/sad/unknown-state.json": Sad("Cve5Adapter", problems=(
        "[CVE-2024-31142] at $.cveMetadata.state: unknown state 'RESERVED'"
        " (PUBLISHED or REJECTED)",)),
    "cve5/sad/unknown-version-status.json": Sad("Cve5Adapter", problems=(
        "[CVE-2024-31142] at $.containers.cna.affected[0].versions[0].status: status must be"
        " affected, unaffected or unknown, got 'fixed'",)),
    "cve5/sad/bad-version-range.json": Sad("Cve5Adapter", problems=(
        "[CVE-2024-31142] at $.containers.cna.affected[0].versions[0].lessThan: expected"
        " str, got float",)),
    "cve5/sad/bad-cvss-vector.json": Sad("Cve5Adapter", problems=(
        "[CVE-2024-31142] at $.containers.cna.metrics[0].cvssV3_1: invalid CVSS vector"
        " 'CVSS:3.1/AV:L/AC:H/PR:H/UI:N/S:C/C:H/I:N/A:X': Unknown value \"X\" in field"
        " \"A:X\"",)),
})



# --- nvd ---------------------------------------------------------------------------------


@happy("nvd/happy/CVE-2023-45230.json")
def _nvd_bare_record(records: list[NormalisedRecord]) -> None:
    """A bare API 2.0 ``cve`` object: two providers' scores, an inclusive CPE range."""
    record = _one(records)
    (vuln,) = record.vulns
    assert (vuln.vuln_id, vuln.assigner, vuln.state, vuln.title) == (
        "CVE-2023-45230", "infosec@edk2.groups.io", "published", None)
    # naive NVD timestamps are UTC
    assert vuln.published == dt.datetime(2024, 1, 16, 16, 15, 11, 727000, tzinfo=UTC)
    assert vuln.modified == dt.datetime(2024, 1, 23, 19, 39, 22, 663000, tzinfo=UTC)
    assert vuln.description is not None and vuln.description.startswith(
        " EDK2's Network Package is susceptible to a buffer overflow")  # English, not Spanish
    assert _rows(record.severities, "provider", "cvss_version", "vector", "base_score",
                 "base_severity") == [
        ("nvd@nist.gov", "3.1", "CVSS:3.1/AV:A/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H", 8.8, "HIGH"),
        ("infosec@edk2.groups.io", "3.1", "CVSS:3.1/AV:A/AC:L/PR:N/UI:N/S:U/C:H/I:L/A:H", 8.3,
         "HIGH"),
    ]
    assert _rows(record.affected, "group", "match_kind", "vendor", "product", "cpe", "status",
                 "default_status", "start", "end", "end_inclusive", "fixed", "condition") == [
        (0, "cpe", "tianocore", "edk2", "cpe:2.3:a:tianocore:edk2:*:*:*:*:*:*:*:*", "affected",
         "unaffected", None, "202311", True, None, None)]
    assert _rows(record.references, "url", "tags") == [
        ("http://packetstormsecurity.com/files/176574/PixieFail-Proof-Of-Concepts.html",
         ("Third Party Advisory", "VDB Entry")),
        ("http://www.openwall.com/lists/oss-security/2024/01/16/2", ("Mailing List",)),
        ("https://github.com/tianocore/edk2/security/advisories/GHSA-hc6x-cw6p-gj7h",
         ("Vendor Advisory",)),
    ]
    assert record.kev == () and record.fixes == () and record.warnings == ()


@happy("nvd/happy/CVE-2024-3446.json")
def _nvd_awaiting_analysis(records: list[NormalisedRecord]) -> None:
    """An unanalysed record: the CNA's score and references, no CPE statements."""
    record = _one(records)
    (vuln,) = record.vulns
    assert (vuln.vuln_id, vuln.assigner) == ("CVE-2024-3446", "secalert@redhat.com")
    assert vuln.published == dt.datetime(2024, 4, 9, 20, 15, 10, 450000, tzinfo=UTC)
    assert vuln.modified == dt.datetime(2024, 9, 25, 1, 15, 40, 827000, tzinfo=UTC)
    assert _rows(record.severities, "provider", "vector", "base_score", "base_severity") == [
        ("secalert@redhat.com", "CVSS:3.1/AV:L/AC:L/PR:H/UI:N/S:C/C:H/I:H/A:H", 8.2, "HIGH")]
    assert record.affected == () and record.kev == ()
    assert [r.url for r in record.references] == [
        "https://access.redhat.com/errata/RHSA-2024:6964",
        "https://access.redhat.com/security/cve/CVE-2024-3446",
        "https://bugzilla.redhat.com/show_bug.cgi?id=2274211",
        "https://patchew.org/QEMU/20240409105537.18308-1-philmd@linaro.org/",
    ]


@happy("nvd/happy/CVE-2022-33745.api2-response.json")
def _nvd_api_page(records: list[NormalisedRecord]) -> None:
    """An API 2.0 response page of one item: a Xen CPE and an OR of distribution CPEs."""
    record = _one(records)
    (vuln,) = record.vulns
    assert (vuln.vuln_id, vuln.assigner) == ("CVE-2022-33745", "security@xen.org")
    assert vuln.published == dt.datetime(2022, 7, 26, 13, 15, 10, 3000, tzinfo=UTC)
    assert vuln.modified == dt.datetime(2023, 11, 7, 3, 48, 22, 143000, tzinfo=UTC)
    assert vuln.description is not None and vuln.description.startswith(
        "insufficient TLB flush for x86 PV guests in shadow mode")
    assert _rows(record.severities, "provider", "vector", "base_score") == [
        ("nvd@nist.gov", "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:C/C:H/I:H/A:H", 8.8)]
    assert _rows(record.affected, "group", "vendor", "product", "cpe", "exact", "start",
                 "end") == [
        (0, "xen", "xen", "cpe:2.3:o:xen:xen:*:*:*:*:*:*:x86:*", None, None, None),
        (1, "debian", "debian_linux", "cpe:2.3:o:debian:debian_linux:11.0:*:*:*:*:*:*:*",
         "11.0", None, None),
        (1, "fedoraproject", "fedora", "cpe:2.3:o:fedoraproject:fedora:35:*:*:*:*:*:*:*", "35",
         None, None),
        (1, "fedoraproject", "fedora", "cpe:2.3:o:fedoraproject:fedora:36:*:*:*:*:*:*:*", "36",
         None, None),
    ]
    # NVD lists a URL once per source: the tags are merged into one reference
    assert _rows(record.references, "url", "tags")[:3] == [
        ("http://www.openwall.com/lists/oss-security/2022/07/26/2",
         ("Mailing List", "Patch", "Third Party Advisory")),
        ("http://www.openwall.com/lists/oss-security/2022/07/26/3",
         ("Mailing List", "Patch", "Third Party Advisory")),
        ("http://xenbits.xen.org/xsa/advisory-408.html", ("Patch", "Vendor Advisory")),
    ]
    assert len(record.references) == 7


@happy("nvd/happy/nvdcve-1.1-CVE-2022-0090.json")
def _nvd_legacy_feed(records: list[NormalisedRecord]) -> None:
    """The retired 1.1 feed: v3 and v2 scores by NVD, three excluding ranges per edition."""
    record = _one(records)
    (vuln,) = record.vulns
    assert (vuln.vuln_id, vuln.assigner) == ("CVE-2022-0090", "cve@gitlab.com")
    assert vuln.published == dt.datetime(2022, 1, 18, 17, 15, tzinfo=UTC)
    assert vuln.modified == dt.datetime(2022, 1, 25, 14, 49, tzinfo=UTC)
    assert vuln.description is not None and vuln.description.startswith(
        "An issue has been discovered affecting GitLab versions prior to 14.4.5")
    assert _rows(record.severities, "provider", "cvss_version", "vector", "base_score") == [
        ("nvd@nist.gov", "3.1", "CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:U/C:N/I:H/A:N", 6.5),
        ("nvd@nist.gov", "2.0", "AV:N/AC:L/Au:N/C:N/I:P/A:N", 5.0),
    ]
    community = "cpe:2.3:a:gitlab:gitlab:*:*:*:*:community:*:*:*"
    enterprise = "cpe:2.3:a:gitlab:gitlab:*:*:*:*:enterprise:*:*:*"
    assert _rows(record.affected, "group", "cpe", "start", "start_inclusive", "end",
                 "end_inclusive", "fixed") == [
        (0, community, "14.6.0", True, "14.6.1", False, "14.6.1"),
        (0, enterprise, "14.6.0", True, "14.6.1", False, "14.6.1"),
        (0, community, "14.5.0", True, "14.5.3", False, "14.5.3"),
        (0, enterprise, "14.5.0", True, "14.5.3", False, "14.5.3"),
        (0, community, None, True, "14.4.5", False, "14.4.5"),
        (0, enterprise, None, True, "14.4.5", False, "14.4.5"),
    ]
    assert _rows(record.references, "url", "tags") == [
        ("https://hackerone.com/reports/1415964", ("Permissions Required",)),
        ("https://gitlab.com/gitlab-org/cves/-/blob/master/2022/CVE-2022-0090.json",
         ("Third Party Advisory",)),
        ("https://gitlab.com/gitlab-org/gitaly/-/issues/3948", ("Broken Link",)),
    ]


SAD.update({
    "nvd/sad/truncated-page.json": Sad(None, problems=(
        "at $: not valid JSON: unexpected end of data: line 23 column 488 (char 1489)",)),
    "nvd/sad/page-version-3.json": Sad("NvdAdapter", problems=(
        "at $.version: unsupported NVD API version '3.0' (2.x is read)",)),
    "nvd/sad/bad-published.json": Sad("NvdAdapter", problems=(
        "[CVE-2023-45230] at $.published: not an ISO 8601 timestamp: '16/01/2024 16:15'",)),
    "nvd/sad/cpe-match-without-vulnerable.json": Sad("NvdAdapter", problems=(
        "[CVE-2023-45230] at $.configurations[0].nodes[0].cpeMatch[0]: missing required"
        " field 'vulnerable'",)),
    "nvd/sad/bad-version-end.json": Sad("NvdAdapter", problems=(
        "[CVE-2023-45230] at $.configurations[0].nodes[0].cpeMatch[0].versionEndIncluding:"
        " expected str, got int",)),
    "nvd/sad/unknown-operator.json": Sad("NvdAdapter", problems=(
        "[CVE-2023-45230] at $.configurations[0].operator: operator must be AND or OR, got"
        " 'XOR'",)),
    "nvd/sad/page-item-not-a-cve-id.json": Sad("NvdAdapter", problems=(
        "at $.vulnerabilities[0].cve.id: not a CVE id: 'CVE-2023-4523O'",),
        stored=("CVE-2023-45234",)),
    "nvd/sad/legacy-bad-vector.json": Sad("NvdAdapter", problems=(
        "[CVE-2022-0090] at $.CVE_Items[0].impact.baseMetricV3.cvssV3.vectorString: invalid"
        " CVSS vector 'CVSS:3.1/AV:N/AC:L': Missing mandatory metrics \"PR, UI, S, C, I, A\"",)),
})


# --- kev ---------------------------------------------------------------------------------

_KEV_RELEASED = dt.datetime(2025, 8, 25, 17, 4, 19, 979600, tzinfo=UTC)
_KEV_ACTION = ("Apply mitigations per vendor instructions or discontinue use of the product if"
               " mitigations are unavailable.")


@happy("kev/happy/known_exploited_vulnerabilities.json")
def _kev_catalog(records: list[NormalisedRecord]) -> None:
    """Two catalog entries: one used in ransomware campaigns, one not known to be."""
    assert [r.record_id for r in records] == ["CVE-2024-37085", "CVE-2024-1086"]
    facts = [fact for r in records for fact in r.kev]
    assert _rows(facts, "vuln_id", "date_added", "due_date", "ransomware", "vendor",
                 "product", "name", "required_action") == [
        ("CVE-2024-37085", dt.date(2024, 7, 30), dt.date(2024, 8, 20), "Known", "VMware",
         "ESXi", "VMware ESXi Authentication Bypass Vulnerability", _KEV_ACTION),
        ("CVE-2024-1086", dt.date(2024, 5, 30), dt.date(2024, 6, 20), "Unknown", "Linux",
         "Kernel", "Linux Kernel Use-After-Free Vulnerability", _KEV_ACTION),
    ]
    for record in records:
        assert (record.vulns, record.affected, record.warnings) == ((), (), ())
    raws = _raws("kev/happy/known_exploited_vulnerabilities.json")
    # entries carry no date of their own: each takes the catalog's dateReleased
    assert _rows(raws, "record_id", "modified", "pointer") == [
        ("CVE-2024-37085", _KEV_RELEASED, "$.vulnerabilities[0]"),
        ("CVE-2024-1086", _KEV_RELEASED, "$.vulnerabilities[1]"),
    ]


SAD.update({
    "kev/sad/truncated.json": Sad(None, problems=(
        "at $: not valid JSON: unexpected end of data: line 13 column 164 (char 600)",)),
    "kev/sad/missing-date-added.json": Sad("KevAdapter", problems=(
        "[CVE-2024-1086] at $.vulnerabilities[0]: missing required field 'dateAdded'",)),
    "kev/sad/bad-due-date.json": Sad("KevAdapter", problems=(
        "[CVE-2024-1086] at $.vulnerabilities[0].dueDate: not a date: '2024-06-31'",)),
    "kev/sad/unknown-ransomware-use.json": Sad("KevAdapter", problems=(
        "[CVE-2024-1086] at $.vulnerabilities[0].knownRansomwareCampaignUse: must be Known or"
        " Unknown, got 'Maybe'",)),
    "kev/sad/entry-without-cve-id.json": Sad("KevAdapter", problems=(
        "at $.vulnerabilities[0]: missing required field 'cveID'",),
        stored=("CVE-2024-37085",)),
})


# --- epss --------------------------------------------------------------------------------


def _epss(records: list[NormalisedRecord]) -> list[tuple[Any, ...]]:
    assert all(len(r.epss) == 1 and r.record_id == r.epss[0].vuln_id for r in records)
    return _rows([r.epss[0] for r in records], "vuln_id", "score", "percentile", "score_date")


@happy("epss/happy/first_format_sample-example-1.csv")
def _epss_first_daily_file(records: list[NormalisedRecord]) -> None:
    """FIRST's layout: the score date comes from the comment line."""
    day = dt.date(2025, 2, 20)
    assert _epss(records) == [
        ("CVE-1999-0001", 0.00383, 0.73075, day),
        ("CVE-1999-0002", 0.01328, 0.85996, day),
        ("CVE-1999-0003", 0.04409, 0.92440, day),
        ("CVE-1999-0004", 0.00917, 0.82963, day),
        ("CVE-1999-0005", 0.91963, 0.99214, day),
    ]
    raws = _raws("epss/happy/first_format_sample-example-1.csv")
    assert [r.pointer for r in raws] == ["line 3", "line 4", "line 5", "line 6", "line 7"]


@happy("epss/happy/epss_kev_nvd-2026-08-22.csv")
def _epss_kev_snapshot(records: list[NormalisedRecord]) -> None:
    """A KEV_EPSS snapshot: the score date comes from the file name; CVSS3 is not read."""
    day = dt.date(2026, 8, 22)
    assert _epss(records) == [
        ("CVE-2024-37085", 0.25952, 0.97822, day),
        ("CVE-2024-1086", 0.28058, 0.97955, day),
    ]
    assert all(r.severities == () for r in records)


@happy("epss/happy/epss_kev_nvd-2023-06-30.csv")
def _epss_old_kev_snapshot(records: list[NormalisedRecord]) -> None:
    """An older snapshot without the percentile column (a quoted description)."""
    assert _epss(records) == [("CVE-2021-44228", 0.97565, None, dt.date(2023, 6, 30))]


SAD.update({
    "epss/sad/score-out-of-range.csv": Sad("EpssAdapter", problems=(
        "[CVE-1999-0001] at line 3, column epss: 1.5 is outside [0, 1]",),
        stored=("CVE-1999-0002",)),
    "epss/sad/score-not-a-number.csv": Sad("EpssAdapter", problems=(
        "[CVE-1999-0001] at line 3, column epss: not a number: 'n/a'",)),
    "epss/sad/epss_kev_nvd-2026-08-22-percent.csv": Sad("EpssAdapter", problems=(
        "[CVE-2024-1086] at line 2, column EPSS Percentile: not a number: '97.955%'",)),
    "epss/sad/short-row.csv": Sad("EpssAdapter", problems=(
        "at line 3: expected 3 columns, got 2",)),
    "epss/sad/not-a-cve-id.csv": Sad("EpssAdapter", problems=(
        "at line 2, column cve: not a CVE id: 'CVE-1999-1'",)),
    "epss/sad/bad-score-date.csv": Sad("EpssAdapter", problems=(
        "at line 1: not an ISO 8601 timestamp: '2025-02-30T00:00:00+0000'",)),
    "epss/sad/epss_kev_nvd-2026-13-01.csv": Sad("EpssAdapter", problems=(
        "at $: epss_kev_nvd-2026-13-01.csv: '2026-13-01' in the file name is not a date",)),
    "epss/sad/not-utf8.csv": Sad("EpssAdapter", problems=(
        "at $: testdata/epss/sad/not-utf8.csv: not UTF-8 text",)),
})


# --- osv ---------------------------------------------------------------------------------


@happy("osv/happy/ALSA-2024-11219.json")
def _osv_almalinux_one_cve(records: list[NormalisedRecord]) -> None:
    """An AlmaLinux erratum naming one CVE: its facts are stated for that CVE."""
    record = _one(records)
    assert record.record_id == "ALSA-2024:11219"
    (vuln,) = record.vulns
    assert (vuln.vuln_id, vuln.title, vuln.state) == (
        "ALSA-2024:11219", "Moderate: edk2:20240524 security update", "published")
    assert vuln.published == dt.datetime(2024, 12, 17, tzinfo=UTC)
    assert vuln.modified == dt.datetime(2024, 12, 23, 8, 27, 2, tzinfo=UTC)
    assert _rows(record.aliases, "vuln_id", "alias") == [("ALSA-2024:11219", "CVE-2024-38796")]
    packages = ("edk2-aarch64", "edk2-ovmf", "edk2-tools", "edk2-tools-doc")
    fixed = "20240524-6.el9_5.3"
    assert _rows(record.affected, "vuln_id", "group", "match_kind", "ecosystem", "package",
                 "release", "scheme", "status", "default_status", "start", "end",
                 "end_inclusive", "fixed") == [
        ("CVE-2024-38796", group, "package", "rpm/almalinux", package, "9", "rpm", "affected",
         "unaffected", None, fixed, False, fixed) for group, package in enumerate(packages)]
    # the fix is dated by the erratum's publication
    assert _rows(record.fixes, "vuln_id", "package", "fixed_version", "advisory_id",
                 "fix_date") == [
        ("CVE-2024-38796", package, fixed, "ALSA-2024:11219", dt.date(2024, 12, 17))
        for package in packages]
    assert _rows(record.references, "vuln_id", "url", "tags") == [
        ("ALSA-2024:11219", "https://access.redhat.com/errata/RHSA-2024:11219", ("advisory",)),
        ("ALSA-2024:11219", "https://access.redhat.com/security/cve/CVE-2024-38796",
         ("report",)),
        ("ALSA-2024:11219", "https://bugzilla.redhat.com/2315390", ("report",)),
        ("ALSA-2024:11219", "https://errata.almalinux.org/9/ALSA-2024-11219.html",
         ("advisory",)),
    ]
    assert record.severities == () and record.warnings == ()


_ALSA_9401_CVES = ("CVE-2023-22655", "CVE-2023-28746", "CVE-2023-38575", "CVE-2023-39368",
                   "CVE-2023-43490", "CVE-2023-45733", "CVE-2023-46103")


@happy("osv/happy/ALSA-2024-9401.json")
def _osv_almalinux_many_cves(records: list[NormalisedRecord]) -> None:
    """An erratum naming seven CVEs: one package statement per CVE, an epoch in the fix."""
    record = _one(records)
    (vuln,) = record.vulns
    assert (vuln.vuln_id, vuln.title) == ("ALSA-2024:9401",
                                          "Moderate: microcode_ctl security update")
    assert vuln.published == dt.datetime(2024, 11, 12, tzinfo=UTC)
    assert vuln.modified == dt.datetime(2024, 11, 18, 11, 46, 59, tzinfo=UTC)
    assert [a.alias for a in record.aliases] == list(_ALSA_9401_CVES)
    fixed = "4:20240910-1.el9_5"
    assert _rows(record.affected, "vuln_id", "group", "ecosystem", "package", "release",
                 "scheme", "end", "fixed") == [
        (cve, group, "rpm/almalinux", "microcode_ctl", "9", "rpm", fixed, fixed)
        for group, cve in enumerate(_ALSA_9401_CVES)]
    assert _rows(record.fixes, "vuln_id", "fixed_version", "advisory_id", "fix_date") == [
        (cve, fixed, "ALSA-2024:9401", dt.date(2024, 11, 12)) for cve in _ALSA_9401_CVES]
    assert len(record.references) == 16 and record.warnings == ()


_RHSA_4546_PACKAGES = ("git-lfs", "git-lfs-debuginfo", "git-lfs-debugsource")


@happy("osv/happy/RHSA-2024_4546.json")
def _osv_red_hat(records: list[NormalisedRecord]) -> None:
    """Red Hat's OSV: the upstream CVE gets the score and the fixes, three RHEL streams."""
    record = _one(records)
    (vuln,) = record.vulns
    assert (vuln.vuln_id, vuln.title, vuln.description) == (
        "RHSA-2024:4546", "Red Hat Security Advisory: git-lfs security update", None)
    assert vuln.published == vuln.modified == dt.datetime(2024, 9, 2, 14, 30, tzinfo=UTC)
    assert _rows(record.aliases, "alias") == [("CVE-2023-45288",), ("GO-2024-2687",)]
    assert _rows(record.severities, "vuln_id", "provider", "cvss_version", "vector",
                 "base_score", "base_severity") == [
        ("CVE-2023-45288", "Red Hat", "3.1", "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H",
         7.5, "HIGH")]
    fixed = "0:2.13.3-3.el8_6.1"
    # (rhel_aus, rhel_e4s, rhel_tus) x packages, one group each; the release is checked
    # below and in test_red_hat_e4s_stream_is_release_8
    assert _rows(record.affected, "vuln_id", "group", "ecosystem", "package", "scheme",
                 "start", "end", "fixed") == [
        ("CVE-2023-45288", group, "rpm/redhat", _RHSA_4546_PACKAGES[group % 3], "rpm", None,
         fixed, fixed) for group in range(9)]
    assert [a.release for a in record.affected] == ["8"] * 9
    assert _rows(record.fixes, "vuln_id", "package", "fixed_version", "advisory_id",
                 "fix_date") == [
        ("CVE-2023-45288", package, fixed, "RHSA-2024:4546", dt.date(2024, 9, 2))
        for package in _RHSA_4546_PACKAGES]
    assert record.references[0].url == "https://access.redhat.com/errata/RHSA-2024:4546"
    assert len(record.references) == 10 and record.warnings == ()


def test_red_hat_e4s_stream_is_release_8() -> None:
    record = _one(normalise_all(_doc("osv/happy/RHSA-2024_4546.json")))
    assert [a.release for a in record.affected] == ["8"] * 9


SAD.update({
    "osv/sad/truncated.json": Sad(None, problems=(
        "at $: not valid JSON: unexpected end of data: line 53 column 5 (char 1000)",)),
    "osv/sad/unknown-event.json": Sad("OsvAdapter", problems=(
        "[ALSA-2024:11219] at $.affected[0].ranges[0].events[1]: unknown event 'unfixed'",)),
    "osv/sad/fixed-before-introduced.json": Sad("OsvAdapter", problems=(
        "[ALSA-2024:11219] at $.affected[0].ranges[0].events[0]: 'fixed' event without an"
        " open 'introduced'",)),
    "osv/sad/unknown-ecosystem.json": Sad("OsvAdapter", problems=(
        "[ALSA-2024:11219] at $.affected[0].package.ecosystem: unknown OSV ecosystem"
        " 'Alma Linux:9'",)),
    "osv/sad/bad-modified.json": Sad("OsvAdapter", problems=(
        "at $.modified: not an ISO 8601 timestamp: '23 Dec 2024'",)),
    "osv/sad/missing-package-name.json": Sad("OsvAdapter", problems=(
        "[ALSA-2024:11219] at $.affected[0].package: missing required field 'name'",)),
    "osv/sad/version-not-a-string.json": Sad("OsvAdapter", problems=(
        "[ALSA-2024:11219] at $.affected[0].versions[0]: expected a version string",)),
    # the range is left out, the rest of the erratum loads
    "osv/sad/unknown-range-type.json": Sad("OsvAdapter", warnings=(
        "[ALSA-2024:11219] at $.affected[0].ranges[0].type: range type 'RPM' is not used",),
        stored=("ALSA-2024:11219",)),
})


# --- csaf --------------------------------------------------------------------------------


@happy("csaf/happy/bsi-2022-0001.json")
def _csaf_bsi(records: list[NormalisedRecord]) -> None:
    """BSI's advisory: named versions affected, the fixed one dated by the only vendor_fix."""
    record = _one(records)
    assert record.record_id == "BSI-2022-0001"
    (vuln,) = record.vulns
    assert (vuln.vuln_id, vuln.title, vuln.published) == ("CVE-2022-27193", None, None)
    assert vuln.modified == dt.datetime(2022, 3, 17, 13, 3, 42, 105000, tzinfo=UTC)
    assert vuln.description is not None and vuln.description.startswith(
        "CSAF Tools CVRF-CSAF-Converter 1.0.0-rc1 resolves XML External Entities (XXE).")
    assert _rows(record.severities, "provider", "cvss_version", "vector", "base_score",
                 "base_severity") == [
        ("Bundesamt für Sicherheit in der Informationstechnik", "3.1",
         "CVSS:3.1/AV:L/AC:L/PR:N/UI:R/S:U/C:H/I:N/A:L/E:F/RL:O/RC:C", 6.1, "MEDIUM")]
    cpe = "cpe:/a:csaf-tools:cvrf-csaf-converter:"
    assert _rows(record.affected, "group", "match_kind", "vendor", "product", "cpe", "scheme",
                 "status", "default_status", "exact", "end", "fixed") == [
        (0, "product", "csaf_tools", "cvrf_csaf_converter", cpe + "1.0.0-rc2", "custom",
         "affected", "unaffected", None, "1.0.0-rc2", "1.0.0-rc2"),
        *[(0, "product", "csaf_tools", "cvrf_csaf_converter", cpe + v, "custom", "affected",
           "unaffected", v, None, None)
          for v in ("1.0.0-alpha", "1.0.0-dev1", "1.0.0-dev2", "1.0.0-dev3", "1.0.0-rc1")],
    ]
    assert _rows(record.fixes, "vuln_id", "vendor", "product", "fixed_version",
                 "advisory_id", "fix_date", "url") == [
        ("CVE-2022-27193", "csaf_tools", "cvrf_csaf_converter", "1.0.0-rc2", "BSI-2022-0001",
         dt.date(2022, 3, 14),
         "https://github.com/csaf-tools/CVRF-CSAF-Converter/releases/tag/1.0.0-rc2")]
    assert record.warnings == ()


_TELNET = ("telnet", "telnet-debuginfo", "telnet-server")


@happy("csaf/happy/rhsa-2022_0011.json")
def _csaf_red_hat_rpms(records: list[NormalisedRecord]) -> None:
    """A Red Hat advisory without purls: RPMs read from their NEVRA branches, the release
    from the platform's CPE, the fix dated by the advisory (the vendor_fix has no date)."""
    record = _one(records)
    assert record.record_id == "RHSA-2022:0011"
    (vuln,) = record.vulns
    assert vuln.vuln_id == "CVE-2020-10188"
    assert vuln.title == ("CVE-2020-10188 telnet-server: no bounds checks in nextitem()"
                          " function allows to remotely execute arbitrary code")
    assert vuln.published == dt.datetime(2020, 2, 28, tzinfo=UTC)
    assert vuln.modified == dt.datetime(2022, 1, 4, 8, 38, tzinfo=UTC)
    fixed = "1:0.17-65.el7_6"
    # three RHEL 7.6 streams (AUS, E4S, TUS) and several architectures: one statement per
    # package
    assert _rows(record.affected, "group", "match_kind", "ecosystem", "package", "release",
                 "scheme", "status", "default_status", "end", "fixed") == [
        (group, "package", "rpm/redhat", package, "7", "rpm", "affected", "unaffected", fixed,
         fixed) for group, package in enumerate(_TELNET)]
    assert _rows(record.fixes, "package", "fixed_version", "advisory_id", "fix_date",
                 "url") == [
        (package, fixed, "RHSA-2022:0011", dt.date(2022, 1, 4),
         "https://access.redhat.com/errata/RHSA-2022:0011") for package in _TELNET]
    assert [r.url for r in record.references] == [
        "https://access.redhat.com/security/cve/CVE-2020-10188",
        "https://bugzilla.redhat.com/show_bug.cgi?id=1811673",
    ]
    assert record.severities == () and record.warnings == ()


@happy("csaf/happy/rhsa-2021_5217.json")
def _csaf_red_hat_product_fix(records: list[NormalisedRecord]) -> None:
    """A fixed product without a version: the fix alone, no statement."""
    record = _one(records)
    (vuln,) = record.vulns
    assert vuln.vuln_id == "CVE-2021-4133"
    assert vuln.published == dt.datetime(2021, 12, 16, 17, 5, tzinfo=UTC)
    assert vuln.modified == dt.datetime(2021, 12, 20, 16, 16, tzinfo=UTC)
    assert record.affected == ()
    assert _rows(record.fixes, "vuln_id", "vendor", "product", "fixed_version",
                 "advisory_id", "fix_date", "url") == [
        ("CVE-2021-4133", "redhat", "red_hat_single_sign_on", None, "RHSA-2021:5217",
         dt.date(2021, 12, 20), "https://access.redhat.com/errata/RHSA-2021:5217")]
    assert len(record.references) == 4 and record.warnings == ()


SAD.update({
    "csaf/sad/truncated.json": Sad(None, problems=(
        "at $: not valid JSON: unexpected end of data: line 67 column 63 (char 1999)",)),
    "csaf/sad/csaf-version-2-1.json": Sad("CsafAdapter", problems=(
        "at $.document.csaf_version: unsupported CSAF version '2.1' (2.0 is read)",)),
    "csaf/sad/missing-publisher-name.json": Sad("CsafAdapter", problems=(
        "[BSI-2022-0001] at $.document.publisher: missing required field 'name'",)),
    "csaf/sad/bad-release-date.json": Sad("CsafAdapter", problems=(
        "at $.document.tracking.current_release_date: not an ISO 8601 timestamp:"
        " '2022-03-32T13:03:42.105Z'",)),
    "csaf/sad/bad-remediation-date.json": Sad("CsafAdapter", problems=(
        "[BSI-2022-0001] at $.vulnerabilities[0].remediations[0].date: not a date:"
        " '14.03.2022'",)),
    "csaf/sad/bad-cve-id.json": Sad("CsafAdapter", problems=(
        "[BSI-2022-0001] at $.vulnerabilities[0].cve: not a CVE id: 'CVE 2022-27193'",)),
    "csaf/sad/unknown-status-list.json": Sad("CsafAdapter", warnings=(
        "[BSI-2022-0001] at $.vulnerabilities[0].product_status.fixd: not a CSAF product"
        " status; not used",), stored=("BSI-2022-0001",)),
    "csaf/sad/bad-version-range.json": Sad("CsafAdapter", warnings=(
        "[BSI-2022-0001] at $.product_tree.branches[0].branches[0].branches[0].product:"
        " version range 'from 1.0.0-alpha to 1.0.0-rc1' is not understood; not used",),
        stored=("BSI-2022-0001",)),
})


# --- releases ----------------------------------------------------------------------------


def _releases(records: list[NormalisedRecord], record_id: str) -> list[tuple[Any, ...]]:
    record = _one(records)
    assert record.record_id == record_id
    assert (record.vulns, record.fixes, record.warnings) == ((), (), ())
    return _rows(record.releases, "product", "version", "release_date")


@happy("releases/happy/linux-kernel.json")
def _releases_kernel(records: list[NormalisedRecord]) -> None:
    """Kernel versions, under the CPE-style product of the kernel (the fixes of
    cve5/happy/CVE-2025-38469.json)."""
    product = "linux:linux_kernel"
    assert _releases(records, product) == [
        (product, "6.16", dt.date(2025, 7, 27)),
        (product, "6.6.100", dt.date(2025, 7, 24)),
        (product, "6.15.8", dt.date(2025, 7, 24)),
        (product, "6.12.40", dt.date(2025, 7, 24)),
        (product, "6.2", dt.date(2023, 2, 19)),
    ]


@happy("releases/happy/rhel.json")
def _releases_cycles(records: list[NormalisedRecord]) -> None:
    """A product listing release cycles only: each cycle is a version."""
    product = "endoflife:rhel"
    assert _releases(records, product) == [
        (product, "9", dt.date(2022, 5, 18)),
        (product, "8", dt.date(2019, 5, 7)),
        (product, "10", dt.date(2025, 5, 20)),
    ]


@happy("releases/happy/nvidia-driver.json")
def _releases_latest(records: list[NormalisedRecord]) -> None:
    """Cycles without a release date: their latest version with its date."""
    product = "endoflife:nvidia-driver"
    assert _releases(records, product) == [
        (product, "610.88", dt.date(2026, 8, 3)),
        (product, "610.57.04", dt.date(2026, 8, 3)),
    ]


SAD.update({
    "releases/sad/truncated.json": Sad(None, problems=(
        "at $: not valid JSON: unexpected end of data: line 10 column 3 (char 150)",)),
    "releases/sad/missing-date.json": Sad("ReleasesAdapter", problems=(
        "[endoflife:missing-date] at $.versions[\"6.16\"]: missing required field 'date'",)),
    "releases/sad/bad-date.json": Sad("ReleasesAdapter", problems=(
        "[endoflife:bad-date] at $.versions[\"6.16\"].date: not a date: '2025-02-30'",)),
    "releases/sad/date-as-number.json": Sad("ReleasesAdapter", problems=(
        "[endoflife:date-as-number] at $.versions[\"6.16\"].date: expected str, got int",)),
    "releases/sad/cycle-not-an-object.json": Sad("ReleasesAdapter", problems=(
        "[endoflife:cycle-not-an-object] at $.releases[\"9\"]: expected an object, got str",)),
    "releases/sad/empty-release-date.json": Sad("ReleasesAdapter", problems=(
        "[endoflife:empty-release-date] at $.releases[\"9\"].releaseDate: empty date",)),
    "releases/sad/nothing-dated.json": Sad("ReleasesAdapter", problems=(
        "[endoflife:nothing-dated] at $: no version or release cycle with a date",)),
})


# --- xen_xsa -----------------------------------------------------------------------------


@happy("xen_xsa/happy/sec-xsa.yml")
def _xsa_list(records: list[NormalisedRecord]) -> None:
    """XSA release dates: the upstream fix on that day, and the Qubes bulletin (undated
    here) for the XSAs that affected Qubes OS."""
    record = _one(records)
    assert record.record_id == "xen:xsa"
    march, april = dt.date(2024, 3, 12), dt.date(2024, 4, 9)
    assert _rows(record.releases, "product", "version", "release_date") == [
        ("xen:xsa", "XSA-452", march), ("xen:xsa", "XSA-453", march),
        ("xen:xsa", "XSA-454", april), ("xen:xsa", "XSA-455", april),
        ("xen:xsa", "XSA-456", april),
    ]
    assert _rows(record.fixes, "vuln_id", "vendor", "product", "advisory_id", "fix_date") == [
        ("XSA-452", "xen", "xen", "XSA-452", march),
        ("XSA-452", "qubes", "qubes_os", "QSB-101", None),
        ("XSA-453", "xen", "xen", "XSA-453", march),
        ("XSA-454", "xen", "xen", "XSA-454", april),
        ("XSA-455", "xen", "xen", "XSA-455", april),
        ("XSA-455", "qubes", "qubes_os", "QSB-102", None),
        ("XSA-456", "xen", "xen", "XSA-456", april),
        ("XSA-456", "qubes", "qubes_os", "QSB-102", None),
    ]
    assert record.warnings == ()


@happy("xen_xsa/happy/sec-qsb.yml")
def _qsb_list(records: list[NormalisedRecord]) -> None:
    """Qubes security bulletin dates (QSB-102 fixed XSA-455 and XSA-456 in Qubes OS)."""
    record = _one(records)
    assert record.record_id == "qubes:qsb"
    assert _rows(record.releases, "product", "version", "release_date") == [
        ("qubes:qsb", "101", dt.date(2024, 3, 12)),
        ("qubes:qsb", "102", dt.date(2024, 4, 9)),
    ]
    assert record.fixes == ()


SAD.update({
    "xen_xsa/sad/sec-xsa-bad-indent.yml": Sad("XsaListAdapter", problems=(
        "at $: testdata/xen_xsa/sad/sec-xsa-bad-indent.yml: not valid YAML at line 4, column"
        " 2: expected <block end>, but found '<block mapping start>'",)),
    "xen_xsa/sad/sec-xsa-bad-date.yml": Sad("XsaListAdapter", problems=(
        "[xen:xsa] at $[0].date: not a date: '2024-02-30'",)),
    "xen_xsa/sad/sec-xsa-not-a-number.yml": Sad("XsaListAdapter", problems=(
        "[xen:xsa] at $[0].xsa: not an XSA number: 'four-five-five'",)),
    "xen_xsa/sad/sec-xsa-bad-qsb.yml": Sad("XsaListAdapter", problems=(
        "[xen:xsa] at $[0].qsb: not a QSB number: 'next'",)),
    "xen_xsa/sad/sec-xsa-missing-date.yml": Sad("XsaListAdapter", problems=(
        "[xen:xsa] at $[1]: missing required field 'date'",)),
    "xen_xsa/sad/sec-qsb-bad-date.yml": Sad("QsbListAdapter", problems=(
        "[qubes:qsb] at $[0].date: not a date: 'April 2024'",)),
})


# --- vendor_releases ---------------------------------------------------------------------


@happy("vendor_releases/happy/patch_tuesday_release_dates_derived.csv")
def _msrc_releases(records: list[NormalisedRecord]) -> None:
    """Microsoft's security update documents: UTC dates of the initial release (zoned and
    naive timestamps), an out-of-band release (2017-May-B) included."""
    record = _one(records)
    assert record.record_id == "microsoft:security_update"
    product = "microsoft:security_update"
    assert _rows(record.releases, "product", "version", "release_date") == [
        (product, "2017-May-B", dt.date(2017, 5, 8)),
        (product, "2017-May", dt.date(2017, 5, 9)),
        (product, "2024-Mar", dt.date(2024, 3, 12)),
    ]
    assert record.fixes == ()


@happy("vendor_releases/happy/microcode_releases_derived.csv")
def _intel_microcode_releases(records: list[NormalisedRecord]) -> None:
    """Intel microcode releases and the INTEL-SA advisories each fixes (INTEL-SA-01097 and
    -01103 first in 20240910, for more platforms in 20241112)."""
    record = _one(records)
    assert record.record_id == "intel:microcode"
    november, october, september = (dt.date(2024, 11, 12), dt.date(2024, 10, 29),
                                    dt.date(2024, 9, 10))
    assert _rows(record.releases, "product", "version", "release_date") == [
        ("intel:microcode", "microcode-20241112", november),
        ("intel:microcode", "microcode-20241029", october),
        ("intel:microcode", "microcode-20240910", september),
    ]
    assert _rows(record.fixes, "vuln_id", "vendor", "product", "fixed_version", "advisory_id",
                 "fix_date") == [
        *[(sa, "intel", "microcode", "microcode-20241112", sa, november)
          for sa in ("INTEL-SA-01079", "INTEL-SA-01097", "INTEL-SA-01101", "INTEL-SA-01103")],
        *[(sa, "intel", "microcode", "microcode-20240910", sa, september)
          for sa in ("INTEL-SA-01097", "INTEL-SA-01103")],
    ]


SAD.update({
    "vendor_releases/sad/patch_tuesday-bad-date.csv": Sad("VendorReleasesAdapter", problems=(
        "[microsoft:security_update] at line 2.initial_release_date: not an ISO 8601"
        " timestamp: '2024-03-32T07:00:00'",)),
    "vendor_releases/sad/patch_tuesday-no-name.csv": Sad("VendorReleasesAdapter", problems=(
        "[microsoft:security_update] at line 2: empty release name",)),
    "vendor_releases/sad/patch_tuesday-extra-cell.csv": Sad("VendorReleasesAdapter",
        problems=("at line 2: expected 5 columns, got 6",)),
    "vendor_releases/sad/patch_tuesday-header-only.csv": Sad("VendorReleasesAdapter",
        problems=("at line 2: no rows under the header",)),
    "vendor_releases/sad/microcode-bad-sa-id.csv": Sad("VendorReleasesAdapter", problems=(
        "[intel:microcode] at line 2.intel_sa_ids: not an INTEL-SA id: 'INTEL-SA-1097'",)),
    "vendor_releases/sad/microcode-truncated.csv": Sad("VendorReleasesAdapter", problems=(
        "at line 3: expected 4 columns, got 2",)),
})

# --- the checks, run ---------------------------------------------------------------------
# (keep this section last: the parametrisations below read HAPPY and SAD as filled above)

_FACT_TABLES = ("vulnerabilities", "aliases", "severities", "affected", "fixes", "refs", "kev",
                "epss", "releases")


@pytest.mark.parametrize("path", sorted(HAPPY))
def test_happy_file_yields_its_facts(path: str) -> None:
    doc = _doc(path)
    adapter = adapter_for(doc)
    assert adapter is not None, f"no adapter reads {path}"
    assert type(adapter).__module__ == f"{feeds_package.__name__}.{path.split('/')[0]}"
    HAPPY[path](normalise_all(doc, adapter))


@pytest.mark.parametrize("path", sorted(SAD))
def test_sad_file_reports_exactly_its_problem(path: str, db_path: Path) -> None:
    expected = SAD[path]
    adapter = adapter_for(_doc(path))
    assert (type(adapter).__name__ if adapter else None) == expected.adapter
    with Pvdb.open(db_path) as db:
        report = db.ingest([str(TESTDATA / path)])
        assert [_said(p) for p in report.problems] == list(expected.problems)
        assert [_said(w) for w in report.warnings] == list(expected.warnings)
        stored = {r for (r,) in db._con.execute("SELECT record_id FROM records").fetchall()}
        assert stored == set(expected.stored)
        for table in _FACT_TABLES:
            rows = db._con.execute(f"SELECT DISTINCT record_id FROM {table}").fetchall()
            assert {r for (r,) in rows} <= stored, table
    assert expected.problems or expected.warnings, "a sad file must be reported"


def test_happy_files_ingest_cleanly_and_a_second_run_changes_nothing(db_path: Path) -> None:
    paths = [str(TESTDATA / p) for p in sorted(HAPPY)]
    with Pvdb.open(db_path) as db:
        first = db.ingest(paths)
        assert [str(p) for p in first.problems] == []
        assert first.skipped == []
        assert first.changed == sum(len(normalise_all(_doc(p))) for p in HAPPY)
        second = db.ingest(paths)
        assert (second.changed, second.problems) == (0, [])



def _adapter_modules() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules(feeds_package.__path__)
                  if m.name != "base" and not m.name.startswith("_"))


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def test_every_adapter_module_has_happy_and_sad_data() -> None:
    modules = _adapter_modules()
    assert "cve5" in modules and "xen_xsa" in modules
    missing = [f"{module}/{kind}" for module in modules for kind in ("happy", "sad")
               if not _files(TESTDATA / module / kind)]
    assert missing == [], f"adapter modules without testdata: {missing}"
    folders = sorted(p.name for p in TESTDATA.iterdir() if p.is_dir())
    assert folders == modules, "a testdata folder names no adapter module"


def test_every_adapter_reads_one_of_its_happy_files() -> None:
    readers = {type(adapter_for(_doc(path))) for path in HAPPY}
    assert {type(a) for a in adapters()} <= readers


def test_every_file_has_its_check_and_its_readme_row() -> None:
    on_disk = {p.relative_to(TESTDATA).as_posix() for p in _files(TESTDATA)} - {"README.md"}
    assert sorted(on_disk - set(HAPPY) - set(SAD)) == [], "files without a check"
    assert sorted((set(HAPPY) | set(SAD)) - on_disk) == [], "checks without a file"
    assert all(path.split("/")[1] == "happy" for path in HAPPY)
    assert all(path.split("/")[1] == "sad" for path in SAD)
    readme = (TESTDATA / "README.md").read_text(encoding="utf-8")
    assert sorted(p for p in on_disk if f"| `{p}` |" not in readme) == [], (
        "files README.md does not account for")
