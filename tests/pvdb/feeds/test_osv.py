"""The OSV adapter on real AlmaLinux, Debian, Ubuntu and Red Hat records, and on
malformed records built here."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import orjson
import pytest

from engine.errors import RecordError
from engine.pvdb.feeds import adapter_for
from engine.pvdb.feeds.osv import OsvAdapter
from engine.pvdb.models import MatchKind, NormalisedRecord, Source, Status, VulnState
from tests.pvdb.feeds.helpers import doc_from, doc_from_file, normalise_all

ADAPTER = OsvAdapter()


def _one(doc_path: Path) -> NormalisedRecord:
    (record,) = normalise_all(doc_from_file(doc_path), ADAPTER)
    return record


def _osv(**fields: Any) -> dict[str, Any]:
    """A small valid OSV record (a GitHub-style advisory naming one CVE)."""
    record: dict[str, Any] = {
        "id": "GHSA-aaaa-bbbb-cccc",
        "modified": "2024-05-01T00:00:00Z",
        "published": "2024-04-01T00:00:00Z",
        "aliases": ["CVE-2024-0001"],
        "affected": [{
            "package": {"ecosystem": "PyPI", "name": "demo"},
            "ranges": [{"type": "ECOSYSTEM",
                        "events": [{"introduced": "0"}, {"fixed": "1.2.3"}]}],
        }],
    }
    record.update(fields)
    return record


def _normalise(record: dict[str, Any]) -> NormalisedRecord:
    (normalised,) = normalise_all(doc_from(record), ADAPTER)
    return normalised


def _events(*events: dict[str, str]) -> list[dict[str, Any]]:
    return [{"package": {"ecosystem": "PyPI", "name": "demo"},
             "ranges": [{"type": "ECOSYSTEM", "events": list(events)}]}]


# --- real records -------------------------------------------------------------------


@pytest.mark.shared_data
def test_every_real_osv_record_normalises(feeds_dir: Path) -> None:
    paths = sorted((feeds_dir / "osv").rglob("*.json"))
    assert len(paths) >= 25
    for path in paths:
        doc = doc_from_file(path)
        adapter = adapter_for(doc)
        assert adapter is not None and adapter.source is Source.OSV, path
        (record,) = normalise_all(doc)
        assert record.vulns and record.vulns[0].vuln_id == record.record_id, path
        assert record.affected, path


@pytest.mark.shared_data
def test_almalinux_shim_fix_is_stated_for_every_related_cve(feeds_dir: Path) -> None:
    path = feeds_dir / "osv" / "almalinux9" / "ALSA-2024-1903.json"
    related = orjson.loads(path.read_bytes())["related"]
    record = _one(path)

    assert record.record_id == "ALSA-2024:1903"
    (vuln,) = record.vulns
    assert vuln.title == "Important: shim bug fix update"
    assert vuln.published == dt.datetime(2024, 4, 18, tzinfo=dt.UTC)
    assert vuln.modified == dt.datetime(2024, 5, 10, 18, 1, 28, tzinfo=dt.UTC)
    assert {a.alias for a in record.aliases} == set(related)
    assert "CVE-2023-40547" in related

    for cve in related:
        (stmt,) = [a for a in record.affected if a.vuln_id == cve and a.package == "shim-x64"]
        assert stmt.match_kind is MatchKind.PACKAGE
        assert (stmt.ecosystem, stmt.release, stmt.scheme) == ("rpm/almalinux", "9", "rpm")
        assert stmt.status is Status.AFFECTED and stmt.default_status is Status.UNAFFECTED
        assert stmt.start is None
        assert stmt.end == stmt.fixed == "15.8-4.el9_3.alma.1"
        assert not stmt.end_inclusive
        (fix,) = [f for f in record.fixes if f.vuln_id == cve and f.package == "shim-x64"]
        assert fix.fixed_version == "15.8-4.el9_3.alma.1"
        assert fix.advisory_id == "ALSA-2024:1903"
        assert fix.fix_date == dt.date(2024, 4, 18)
    # Findings are about CVEs, not about the erratum.
    assert all(a.vuln_id != "ALSA-2024:1903" for a in record.affected)
    assert len({a.group for a in record.affected}) == len(record.affected)


@pytest.mark.shared_data
def test_debian_dsa_alias_carries_the_fix(feeds_dir: Path) -> None:
    record = _one(feeds_dir / "osv" / "other" / "DSA-3029-1.json")
    (stmt,) = record.affected
    assert stmt.vuln_id == "CVE-2014-3616"
    assert (stmt.ecosystem, stmt.package, stmt.release, stmt.scheme) == (
        "deb/debian", "nginx", "7", "deb")
    assert stmt.fixed == "1.2.1-2.2+wheezy3"
    (fix,) = record.fixes
    assert (fix.advisory_id, fix.fix_date) == ("DSA-3029-1", dt.date(2014, 9, 20))


@pytest.mark.shared_data
def test_red_hat_osv_upstream_cve_gets_the_score(feeds_dir: Path) -> None:
    record = _one(feeds_dir / "osv" / "other" / "RHSA-2024_4546.json")
    assert {a.alias for a in record.aliases} == {"CVE-2023-45288", "GO-2024-2687"}
    (score,) = record.severities
    assert (score.vuln_id, score.provider, score.cvss_version) == (
        "CVE-2023-45288", "Red Hat", "3.1")
    assert score.base_score == 7.5
    git_lfs = [a for a in record.affected if a.package == "git-lfs"]
    assert len(git_lfs) == 3  # one per Red Hat stream (AUS, E4S, TUS)
    assert {a.fixed for a in git_lfs} == {"0:2.13.3-3.el8_6.1"}
    assert {f.package for f in record.fixes} == {
        "git-lfs", "git-lfs-debuginfo", "git-lfs-debugsource"}


@pytest.mark.shared_data
def test_ubuntu_versions_list_and_open_range(feeds_dir: Path) -> None:
    path = feeds_dir / "osv" / "other" / "UBUNTU-CVE-2025-38094.json"
    versions = orjson.loads(path.read_bytes())["affected"][0]["versions"]
    record = _one(path)
    assert {a.vuln_id for a in record.affected} == {"CVE-2025-38094"}
    exact = {a.exact for a in record.affected if a.exact is not None}
    assert exact == set(versions)
    (open_range,) = [a for a in record.affected if a.exact is None]
    assert open_range.start is None and open_range.end is None
    assert open_range.status is Status.AFFECTED and open_range.scheme == "deb"
    assert record.fixes == ()
    assert any("'Ubuntu'" in w for w in record.warnings)  # a word rating, not a vector


# --- records built here ---------------------------------------------------------------


def test_record_naming_no_cve_is_stated_for_its_own_id() -> None:
    record = _normalise(_osv(aliases=["PYSEC-2024-1"]))
    assert {a.vuln_id for a in record.affected} == {"GHSA-aaaa-bbbb-cccc"}
    (fix,) = record.fixes
    assert (fix.vuln_id, fix.fixed_version, fix.fix_date) == (
        "GHSA-aaaa-bbbb-cccc", "1.2.3", dt.date(2024, 4, 1))
    assert record.affected[0].ecosystem == "pypi/"
    assert record.affected[0].scheme == "generic"


def test_withdrawn_record_keeps_its_state_and_states_nothing() -> None:
    record = _normalise(_osv(withdrawn="2024-06-01T00:00:00Z"))
    assert record.vulns[0].state is VulnState.WITHDRAWN
    assert record.affected == () and record.fixes == ()


def test_semver_last_affected_limit_and_reopened_ranges() -> None:
    record = _normalise(_osv(affected=[{
        "package": {"ecosystem": "npm", "name": "demo"},
        "ranges": [
            {"type": "SEMVER", "events": [{"introduced": "1.0.0"}, {"last_affected": "1.4.2"},
                                          {"introduced": "2.0.0"}, {"limit": "2.1.0"},
                                          {"introduced": "3.0.0"}]},
        ],
    }]))
    spans = [(a.start, a.end, a.end_inclusive, a.fixed) for a in record.affected]
    assert spans == [("1.0.0", "1.4.2", True, None), ("2.0.0", "2.1.0", False, None),
                     ("3.0.0", None, False, None)]
    assert {a.scheme for a in record.affected} == {"semver"}
    assert record.fixes == ()


def test_git_range_fix_commit_is_a_patch_id() -> None:
    record = _normalise(_osv(affected=[{
        "package": {"ecosystem": "PyPI", "name": "demo"},
        "ranges": [{"type": "GIT", "repo": "https://github.com/example/demo",
                    "events": [{"introduced": "aaa111"}, {"fixed": "bbb222"}]}],
    }]))
    (stmt,) = record.affected
    assert (stmt.scheme, stmt.start, stmt.end) == ("git", "aaa111", "bbb222")
    (fix,) = record.fixes
    assert (fix.patch_id, fix.fixed_version) == ("bbb222", None)


def test_unknown_ecosystem_names_its_path() -> None:
    record = _osv(affected=[_osv()["affected"][0],
                            {"package": {"ecosystem": "Nowhere:1", "name": "x"}}])
    with pytest.raises(RecordError) as info:
        _normalise(record)
    assert info.value.pointer == "$.affected[1].package.ecosystem"


@pytest.mark.parametrize(
    ("events", "pointer"),
    [
        ([], "$.affected[0].ranges[0].events"),
        ([{"fixed": "1.0"}], "$.affected[0].ranges[0].events[0]"),
        ([{"introduced": "0", "fixed": "1.0"}], "$.affected[0].ranges[0].events[0]"),
        ([{"introduced": "0"}, {"patched": "1.0"}], "$.affected[0].ranges[0].events[1]"),
        ([{"introduced": "0"}, {"fixed": 1}], "$.affected[0].ranges[0].events[1].fixed"),
        (["0"], "$.affected[0].ranges[0].events[0]"),
    ],
)
def test_malformed_events_are_record_errors(events: list[Any], pointer: str) -> None:
    with pytest.raises(RecordError) as info:
        _normalise(_osv(affected=_events(*events)))
    assert info.value.pointer == pointer


def test_events_that_are_not_a_list_are_a_record_error() -> None:
    record = _osv(affected=[{"package": {"ecosystem": "PyPI", "name": "demo"},
                             "ranges": [{"type": "ECOSYSTEM", "events": {"introduced": "0"}}]}])
    with pytest.raises(RecordError) as info:
        _normalise(record)
    assert info.value.pointer == "$.affected[0].ranges[0].events"


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"",
        orjson.dumps({"id": "X-1"}),  # neither modified nor affected
        orjson.dumps({"cveMetadata": {"cveId": "CVE-2024-0001"}, "containers": {}}),
        orjson.dumps({"id": "CVE-2024-0001", "sourceIdentifier": "x", "lastModified": "x",
                      "vulnStatus": "Analyzed", "published": "x"}),
        orjson.dumps({"document": {"csaf_version": "2.0"}, "id": "x", "modified": "x"}),
    ],
)
def test_not_osv_is_not_detected(body: bytes) -> None:
    assert not OsvAdapter.detect(doc_from(body))
