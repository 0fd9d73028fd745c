"""Distribution advisories as published: Red Hat CSAF 2.0 (``.json.xz``, as that source
stores them), Ubuntu and Debian OSV, and AlmaLinux OSV, with the real records in
../shared/data/feeds/distro and ../shared/data/feeds/osv."""

from __future__ import annotations

import lzma
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from engine.pvdb import AffectingReport, Component, Pvdb
from engine.pvdb.query_models import Finding

pytestmark = pytest.mark.shared_data

RHEL9_GA = "pkg:rpm/redhat/kernel@5.14.0-427.13.1.el9_4"


@pytest.fixture(scope="module")
def distro_db(feeds_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pvdb]:
    path = tmp_path_factory.mktemp("distro") / "pvdb.duckdb"
    with Pvdb.open(path) as db:
        report = db.ingest([str(feeds_dir / "distro"), str(feeds_dir / "osv"),
                            str(feeds_dir / "kev")])
        assert report.problems == []
        assert report.counts["csaf"].added == 4
        yield db


def ask(db: Pvdb, *purls: str) -> AffectingReport:
    return db.affecting([Component(kind="kernel", purl=p, version="x") for p in purls],
                        within_days=None, min_score=None, kev_only=False, as_of=None,
                        estimator=None)


def found(db: Pvdb, purl: str) -> dict[str, Finding]:
    return {f.vuln_id: f for f in ask(db, purl).findings}


def _cves(feeds_dir: Path, name: str) -> set[str]:
    data = orjson.loads(lzma.decompress((feeds_dir / "distro/redhat" / name).read_bytes()))
    return {v["cve"] for v in data["vulnerabilities"]}


def test_rhel9_kernel_before_and_at_the_fixing_release(distro_db: Pvdb) -> None:
    before = found(distro_db, RHEL9_GA)
    finding = before["CVE-2024-36971"]
    assert finding.fix.closing_version == "5.14.0-427.31.1.el9_4"
    assert finding.kev is not None
    assert {(e.source, e.record_id) for e in finding.evidence} >= {
        ("csaf", "RHSA-2024:5363")}
    at_fix = found(distro_db, "pkg:rpm/redhat/kernel@5.14.0-427.31.1.el9_4")
    assert "CVE-2024-36971" not in at_fix
    # fixed later on the same EUS stream (RHSA-2024:10771): still affected at 427.31.1
    assert at_fix["CVE-2022-48804"].fix.closing_version == (
        "5.14.0-427.47.1.el9_4")
    assert "CVE-2022-48804" not in found(distro_db, "pkg:rpm/redhat/kernel@5.14.0-427.47.1.el9_4")
    assert found(distro_db, "pkg:rpm/redhat/kernel@5.14.0-427.57.1.el9_4") == {}


def test_rhel9_kernel_gets_every_cve_its_advisories_fix(distro_db: Pvdb,
                                                        feeds_dir: Path) -> None:
    expected = set()
    for name in ("rhsa-2024_5363.json.xz", "rhsa-2024_10771.json.xz",
                 "rhsa-2025_2270.json.xz"):
        expected |= _cves(feeds_dir, name)
    assert set(found(distro_db, RHEL9_GA)) >= expected
    # and at least what AlmaLinux's rebuild of the same kernel is reported with from
    # ALSA-2024:5363 (the same fixes)
    alma = found(distro_db, "pkg:rpm/almalinux/kernel@5.14.0-427.13.1.el9_4")
    assert "CVE-2024-36971" in alma
    assert _cves(feeds_dir, "rhsa-2024_5363.json.xz") <= set(found(distro_db, RHEL9_GA))


def test_rhel8_statements_stay_on_rhel8(distro_db: Pvdb, feeds_dir: Path) -> None:
    rhel8 = found(distro_db, "pkg:rpm/redhat/kernel@4.18.0-553.5.1.el8_10")
    assert set(rhel8) == _cves(feeds_dir, "rhsa-2024_5101.json.xz")
    assert rhel8["CVE-2024-2201"].fix.closing_version == (
        "4.18.0-553.16.1.el8_10")
    assert found(distro_db, "pkg:rpm/redhat/kernel@4.18.0-553.16.1.el8_10") == {}
    # CVE-2024-2201 is only in the RHEL 8 advisory: a RHEL 9 kernel is not judged by it
    assert "CVE-2024-2201" not in found(distro_db, RHEL9_GA)


def test_every_architecture_and_subpackage_is_one_package(distro_db: Pvdb) -> None:
    core = found(distro_db, "pkg:rpm/redhat/kernel-core@5.14.0-427.13.1.el9_4?arch=aarch64")
    assert "CVE-2024-36971" in core


def test_ubuntu_osv_kernel(distro_db: Pvdb) -> None:
    # UBUNTU-CVE-2025-38094 covers Ubuntu Pro 14.04 (trusty) "linux": every version
    trusty = found(distro_db, "pkg:deb/ubuntu/linux@3.13.0-170.220?distro=trusty")
    assert "CVE-2025-38094" in trusty
    # the same record says nothing about 24.04
    assert found(distro_db, "pkg:deb/ubuntu/linux@6.8.0-31.31?distro=noble") == {}


def test_debian_osv_record(distro_db: Pvdb) -> None:
    # DSA-3029-1: nginx in Debian 7 (wheezy) fixed in 1.2.1-2.2+wheezy3
    assert "CVE-2014-3616" in found(distro_db,
                                    "pkg:deb/debian/nginx@1.2.1-2.2+wheezy2?distro=wheezy")
    assert "CVE-2014-3616" not in found(distro_db,
                                        "pkg:deb/debian/nginx@1.2.1-2.2+wheezy3?distro=wheezy")
    assert "CVE-2014-3616" not in found(distro_db, "pkg:deb/debian/nginx@1.2.1-2.2?distro=jessie")
