"""Facts about the Linux kernel CNA's records, checked against the records themselves.

For each record in ../shared/data/feeds/cve5_linux_cna the expectations are read from
its ``affected[]`` entry with ``defaultStatus: affected``: the first affected release,
one ``X.Y.Z <= X.Y.*`` unaffected entry per fixed stable branch, and the mainline fix.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from engine.pvdb import Component, Pvdb
from engine.pvdb import versions as v

pytestmark = pytest.mark.shared_data


def kernel(version: str) -> Component:
    return Component(kind="kernel", vendor="linux", product="linux_kernel", version=version)


@pytest.fixture(scope="module")
def kernel_db(feeds_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pvdb]:
    path = tmp_path_factory.mktemp("kernel") / "pvdb.duckdb"
    with Pvdb.open(path) as db:
        report = db.ingest([str(feeds_dir / "cve5_linux_cna")])
        assert report.problems == []
        yield db


def _semver_entry(record: dict[str, Any]) -> dict[str, Any] | None:
    for entry in record["containers"]["cna"]["affected"]:
        if entry.get("defaultStatus") == "affected":
            return dict(entry)
    return None


def _backport_ranges(record: dict[str, Any]) -> list[tuple[str, str]]:
    """Semver ``affected`` ranges in the ``defaultStatus: unaffected`` entry: releases of an
    older branch that received the buggy commit as a backport."""
    out = []
    for entry in record["containers"]["cna"]["affected"]:
        if entry.get("defaultStatus") != "unaffected":
            continue
        for x in entry.get("versions", []):
            if x.get("versionType") == "semver" and x["status"] == "affected" and "lessThan" in x:
                out.append((x["version"], x["lessThan"]))
    return out


def _records(feeds_dir: Path) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted((feeds_dir / "cve5_linux_cna").glob("*/*.json")):
        out.append((path.stem, orjson.loads(path.read_bytes())))
    return out


def _findings(db: Pvdb, version: str) -> dict[str, Any]:
    return {f.vuln_id: f for f in db.affecting([kernel(version)]).findings}


def test_every_record_read_back(kernel_db: Pvdb, feeds_dir: Path) -> None:
    """Per record and per fixed stable branch: the release before the fix is affected and
    closed by exactly that fix; the fix itself and the mainline fix are not affected."""
    checked = 0
    for cve_id, record in _records(feeds_dir):
        entry = _semver_entry(record)
        if entry is None:
            # Only backport ranges (e.g. CVE-2021-4440: 5.10.215 <= v < 5.10.218).
            for lo, hi in _backport_ranges(record):
                assert _findings(kernel_db, lo)[cve_id].fix.closing_version == hi, cve_id
                assert cve_id not in _findings(kernel_db, hi), cve_id
                checked += 1
            continue
        first = next(x["version"] for x in entry["versions"]
                     if x["status"] == "affected" and "lessThan" not in x)
        fixes = [x["version"] for x in entry["versions"]
                 if str(x.get("lessThanOrEqual", "")).endswith(".*")]
        mainline = next(x["version"] for x in entry["versions"]
                        if x.get("lessThanOrEqual") == "*")
        backports = _backport_ranges(record)
        for fixed in fixes:
            major, minor, patch = (int(p) for p in fixed.split("."))
            before = f"{major}.{minor}.{patch - 1}"
            backported = any(
                v.compare("kernel", lo, before) <= 0 < v.compare("kernel", hi, before)
                for lo, hi in backports
            )
            if patch == 0 or (v.compare("kernel", before, first) < 0 and not backported):
                continue  # the branch never had the bug
            found = _findings(kernel_db, before)
            assert cve_id in found, f"{cve_id}: {before} should be affected (fix {fixed})"
            assert found[cve_id].fix.closing_version == fixed, cve_id
            assert cve_id not in _findings(kernel_db, fixed), f"{cve_id}: {fixed} is fixed"
            checked += 1
        assert cve_id not in _findings(kernel_db, mainline), f"{cve_id}: {mainline} is fixed"
    assert checked >= 60


def test_cve_2024_42135_by_hand(kernel_db: Pvdb) -> None:
    """vhost_task SIGKILL: affected from 6.4, fixed in 6.6.39, 6.9.9 and mainline 6.10."""
    cve = "CVE-2024-42135"
    assert cve not in _findings(kernel_db, "6.3.13")  # before 6.4: unaffected
    assert _findings(kernel_db, "6.4")[cve].fix.closing_version == "6.6.39"
    assert _findings(kernel_db, "6.6.38")[cve].fix.closing_version == "6.6.39"
    assert cve not in _findings(kernel_db, "6.6.39")
    # 6.8 got no backport: the closing fix is the next branch's.
    assert _findings(kernel_db, "6.8.12")[cve].fix.closing_version == "6.9.9"
    assert cve not in _findings(kernel_db, "6.9.9")
    assert cve not in _findings(kernel_db, "6.10")
    assert cve not in _findings(kernel_db, "6.12.1")
    finding = _findings(kernel_db, "6.6.38")[cve]
    assert set(finding.fix.patch_ids) == {
        "abe067dc3a662eef7d5cddbbc41ed50a0b68b0af",
        "dec987fe2df670827eb53b97c9552ed8dfc63ad4",
        "db5247d9bf5c6ade9fd70b4e4897441e0269b233",
    }


def test_backported_bug_follows_the_record(kernel_db: Pvdb) -> None:
    """CVE-2024-26695 is "affected from 6.0", but its other entry says the bug reached
    5.10.137 <= v < 5.10.210 as a backport: that range is affected although it is below
    6.0, and releases of 5.10 before the backport are not."""
    cve = "CVE-2024-26695"
    assert _findings(kernel_db, "5.10.209")[cve].fix.closing_version == "5.10.210"
    assert cve not in _findings(kernel_db, "5.10.136")
    assert cve not in _findings(kernel_db, "5.10.210")
    assert _findings(kernel_db, "6.1.78")[cve].fix.closing_version == "6.1.79"


def test_distribution_kernel_release_compares_its_upstream_part(kernel_db: Pvdb) -> None:
    found = _findings(kernel_db, "6.6.38-1-cloud-amd64")
    assert found["CVE-2024-42135"].fix.closing_version == "6.6.39"
