"""The CVE JSON 5 adapter, on real records and on records built here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from engine.errors import RecordError
from engine.pvdb.feeds.cve5 import Cve5Adapter
from engine.pvdb.models import MatchKind, Status, VulnState
from tests.pvdb.feeds.helpers import doc_from, doc_from_file, normalise_all
from tests.pvdb.records import cve5_record

ADAPTER = Cve5Adapter()


def _record(feeds_dir: Path, name: str) -> tuple[dict[str, Any], Any]:
    path = next(feeds_dir.glob(f"cve5/*/{name}.json"))
    return orjson.loads(path.read_bytes()), normalise_all(doc_from_file(path), ADAPTER)[0]


@pytest.mark.shared_data
def test_every_real_record_normalises(feeds_dir: Path) -> None:
    paths = sorted(feeds_dir.glob("cve5*/*/*.json"))
    assert len(paths) == 172
    for path in paths:
        doc = doc_from_file(path)
        assert ADAPTER.detect(doc), path
        (record,) = normalise_all(doc, ADAPTER)
        assert record.vulns[0].vuln_id == path.stem


@pytest.mark.shared_data
def test_red_hat_package_entries_become_rpm_statements(feeds_dir: Path) -> None:
    raw, record = _record(feeds_dir, "CVE-2023-6683")
    entry = next(a for a in raw["containers"]["cna"]["affected"]
                 if any(v.get("versionType") == "rpm" for v in a.get("versions", [])))
    version = entry["versions"][0]
    facts = [a for a in record.affected if a.package == entry["packageName"]]
    assert facts, "the packageName entry is a package statement"
    fact = facts[0]
    assert (fact.match_kind, fact.ecosystem, fact.scheme) == (MatchKind.PACKAGE, "rpm/redhat",
                                                              "rpm")
    assert (fact.start, fact.status, fact.default_status) == (
        version["version"], Status.UNAFFECTED, Status.AFFECTED)


@pytest.mark.shared_data
def test_scores_are_kept_per_provider(feeds_dir: Path) -> None:
    raw, record = _record(feeds_dir, "CVE-2024-2201")
    adp = next(a for a in raw["containers"]["adp"] if "metrics" in a
               and any("cvssV3_1" in m for m in a["metrics"]))
    vector = next(m["cvssV3_1"]["vectorString"] for m in adp["metrics"] if "cvssV3_1" in m)
    assert [(s.provider, s.vector) for s in record.severities] == [
        (adp["providerMetadata"]["shortName"], vector)]
    # Xen states no comparable version: the statement is kept, in a non-comparable scheme.
    assert {a.scheme for a in record.affected} == {"custom"}


@pytest.mark.shared_data
def test_microsoft_custom_dotted_versions_compare_as_numbers(feeds_dir: Path) -> None:
    raw, record = _record(feeds_dir, "CVE-2023-24932")
    first = raw["containers"]["cna"]["affected"][0]
    fact = next(a for a in record.affected if a.group == 0)
    assert fact.scheme == "generic"
    assert (fact.start, fact.end, fact.fixed) == (
        first["versions"][0]["version"], first["versions"][0]["lessThan"],
        first["versions"][0]["lessThan"])


def test_rejected_record() -> None:
    (record,) = normalise_all(doc_from(cve5_record("CVE-2024-0001", state="REJECTED")), ADAPTER)
    assert record.vulns[0].state is VulnState.REJECTED
    assert record.vulns[0].description == "duplicate"
    assert record.affected == () and record.severities == ()


def test_metrics_are_computed_from_the_vector() -> None:
    vector = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"
    rec = cve5_record("CVE-2024-0002", metrics=[
        {"cvssV3_1": {"vectorString": vector, "baseScore": 5.0}}])
    (record,) = normalise_all(doc_from(rec), ADAPTER)
    assert (record.severities[0].base_score, record.severities[0].base_severity) == (9.8,
                                                                                      "CRITICAL")
    assert any("differs from the vector's 9.8" in w for w in record.warnings)


@pytest.mark.parametrize(
    ("mutate", "pointer", "reason"),
    [
        (lambda r: r["cveMetadata"].update(state="DRAFT"), "$.cveMetadata.state",
         "unknown state"),
        (lambda r: r["containers"].pop("cna"), "$.containers", "missing required field 'cna'"),
        (lambda r: r["containers"]["cna"]["affected"][0]["versions"][0].pop("version"),
         "$.containers.cna.affected[0].versions[0]", "missing required field 'version'"),
        (lambda r: r["containers"]["cna"].update(
            metrics=[{"cvssV3_1": {"vectorString": "CVSS:3.1/AV:X"}}]),
         "$.containers.cna.metrics[0].cvssV3_1", "invalid CVSS vector"),
        (lambda r: r["cveMetadata"].update(dateUpdated="yesterday"),
         "$.cveMetadata.dateUpdated", "not an ISO 8601 timestamp"),
    ],
)
def test_malformed_records_name_the_path(mutate: Any, pointer: str, reason: str) -> None:
    rec = cve5_record("CVE-2024-0003")
    mutate(rec)
    with pytest.raises(RecordError) as caught:
        normalise_all(doc_from(rec), ADAPTER)
    assert caught.value.pointer == pointer
    assert reason in caught.value.reason


def test_not_a_cve_id_is_reported_at_split() -> None:
    rec = cve5_record("CVE-2024-0004")
    rec["cveMetadata"]["cveId"] = "GHSA-xxxx"
    (item,) = list(ADAPTER.split(doc_from(rec)))
    assert isinstance(item, RecordError)
    assert item.pointer == "$.cveMetadata.cveId"


@pytest.mark.parametrize("body", [b"", b"[]", b'{"cveMetadata": 1', b'{"id": "CVE-1"}'])
def test_other_documents_are_not_detected(body: bytes) -> None:
    assert not ADAPTER.detect(doc_from(body))
