"""Distribution kernels are judged by their distribution's advisories, and against upstream
ranges only through the upstream release they really are (engine/pvdb/kernels.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.pvdb import AffectingReport, Component, Pvdb, kernels

KERNEL = "CVE-2024-36971"


def kernel(version: str, vendor: str = "linux", product: str = "linux_kernel") -> Component:
    return Component(kind="kernel", vendor=vendor, product=product, version=version)


@pytest.mark.parametrize(
    ("release", "vendor", "upstream", "package"),
    [
        ("6.6.39", None, "6.6.39", None),
        ("6.10-rc3", None, "6.10-rc3", None),
        ("6.1.0-18-amd64", None, "6.1.76", ("deb/debian", "linux", "6.1.76-1", "12")),
        ("6.1.0-18-cloud-amd64", "debian", "6.1.76",
         ("deb/debian", "linux", "6.1.76-1", "12")),
        ("6.1.76-1", "debian", "6.1.76", ("deb/debian", "linux", "6.1.76-1", None)),
        ("6.12.38+deb13-amd64", None, "6.12.38", None),
        ("6.6.15-amd64", None, "6.6.15", None),
        ("5.14.0-427.13.1.el9_4.x86_64", "redhat", None,
         ("rpm/redhat", "kernel", "5.14.0-427.13.1.el9_4", "9")),
        ("5.14.0-427.13.1.el9_4", "almalinux", None,
         ("rpm/almalinux", "kernel", "5.14.0-427.13.1.el9_4", "9")),
        ("5.14.0-427.13.1.el9_4", None, None, None),
        ("6.8.0-31-generic", None, None, None),
        ("6.1.0-99-amd64", None, None, None),
        ("6.6.30-custom", None, None, None),
    ],
)
def test_release_strings(release: str, vendor: str | None, upstream: str | None,
                         package: tuple[str, str, str, str | None] | None) -> None:
    reading = kernels.read_release(release, vendor)
    assert reading.upstream == upstream
    assert reading.package == package
    assert (reading.reason is None) == (upstream is not None)


def test_debian_package_versions_give_the_upstream_release() -> None:
    assert kernels.debian_upstream("6.1.76-1") == "6.1.76"
    assert kernels.debian_upstream("6.1.76-1~bpo11+1") == "6.1.76"
    assert kernels.debian_upstream("6.1.0-18") == "6.1.0"  # a package version, not an ABI
    assert kernels.is_debian_kernel_package("linux-image-6.1.0-18-amd64")


@pytest.fixture(scope="module")
def kernel_db(feeds_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pvdb]:
    path = tmp_path_factory.mktemp("kernels") / "pvdb.duckdb"
    with Pvdb.open(path) as db:
        report = db.ingest([str(feeds_dir / "cve5"), str(feeds_dir / "cve5_linux_cna"),
                            str(feeds_dir / "distro")])
        assert report.problems == []
        yield db


def ask(db: Pvdb, *components: Component) -> AffectingReport:
    return db.affecting(list(components), within_days=None, min_score=None, kev_only=False,
                        as_of=None, estimator=None)


def ids(report: AffectingReport) -> set[str]:
    return {f.vuln_id for f in report.findings}


@pytest.mark.shared_data
def test_debian_abi_name_is_its_upstream_release(kernel_db: Pvdb) -> None:
    abi = ids(ask(kernel_db, kernel("6.1.0-18-amd64")))
    assert abi == ids(ask(kernel_db, kernel("6.1.76")))
    # fixed in 6.1.56 and 6.1.75: not on 6.1.76 (they were, read as 6.1.0)
    assert {"CVE-2023-52482", "CVE-2024-26598"} <= ids(ask(kernel_db, kernel("6.1.0")))
    assert not abi & {"CVE-2023-52482", "CVE-2024-26598"}
    assert "CVE-2025-21991" in abi
    # the same kernel named by its package
    purl = Component(kind="kernel", purl="pkg:deb/debian/linux-image-6.1.0-18-amd64@6.1.76-1"
                     "?distro=bookworm", version="6.1.76-1")
    assert ids(ask(kernel_db, purl)) == abi


@pytest.mark.shared_data
def test_rhel_kernel_is_never_upstream_5_14(kernel_db: Pvdb) -> None:
    release = "5.14.0-427.13.1.el9_4"
    upstream_5_14 = ids(ask(kernel_db, kernel("5.14.0")))
    assert KERNEL in upstream_5_14
    # named only as the upstream product: nothing is compared, everything undetermined
    report = ask(kernel_db, kernel(release))
    assert report.findings == []
    assert {u.vuln_id for u in report.undetermined} >= upstream_5_14
    assert all("RHEL-family" in u.reason for u in report.undetermined)
    # named with its distribution: judged by Red Hat's advisories only
    rhel = ask(kernel_db, kernel(f"{release}.x86_64", vendor="redhat", product="kernel"))
    assert rhel.undetermined == []
    finding = {f.vuln_id: f for f in rhel.findings}[KERNEL]
    assert finding.fix.closing_version == "5.14.0-427.31.1.el9_4"
    assert {e.source for e in finding.evidence} == {"csaf"}
    fixed = ask(kernel_db, kernel("5.14.0-427.31.1.el9_4", vendor="redhat", product="kernel"))
    assert KERNEL not in ids(fixed)


@pytest.mark.shared_data
def test_ubuntu_kernel_release_is_undetermined_upstream(kernel_db: Pvdb) -> None:
    report = ask(kernel_db, kernel("6.8.0-31-generic"))
    assert report.findings == []
    assert report.undetermined
    assert all(u.reason.startswith("Ubuntu kernel 6.8.0-31-generic") for u in report.undetermined)
    # as its package, under Ubuntu's own records (UBUNTU-CVE-2025-38094: Pro 14.04 only)
    trusty = Component(kind="kernel", purl="pkg:deb/ubuntu/linux@3.13.0-170.220?distro=trusty",
                       version="3.13.0-170.220")
    assert "CVE-2025-38094" in ids(ask(kernel_db, trusty))


@pytest.mark.shared_data
def test_unknown_debian_abi_is_not_guessed(kernel_db: Pvdb) -> None:
    report = ask(kernel_db, kernel("6.1.0-99-amd64"))
    assert report.findings == []
    assert all("Debian kernel ABI 6.1.0-99" in u.reason for u in report.undetermined)


# --- coverage: every answer says which loaded sources cover each component -------------


@pytest.mark.shared_data
def test_coverage_is_stated_per_component(kernel_db: Pvdb) -> None:
    from engine.pvdb import CoverageStatus

    report = ask(
        kernel_db,
        Component(kind="kernel", purl="pkg:rpm/redhat/kernel@5.14.0-427.57.1.el9_4",
                  version="5.14.0-427.57.1.el9_4"),
        Component(kind="kernel", purl="pkg:deb/ubuntu/linux@6.8.0-31.31?distro=noble",
                  version="6.8.0-31.31"),
        kernel("6.8.0-31-generic"),
        kernel("6.1.0-18-amd64"),
    )
    rhel, noble, ubuntu_release, debian = report.coverage
    # no finding at the newest build, but covered: Red Hat's CSAF speaks of RHEL 9 kernels
    assert not [f for f in report.findings if f.component == 0]
    assert rhel.status is CoverageStatus.COVERED
    assert [(s.source, s.scope) for s in rhel.sources] == [
        ("csaf", "rpm/redhat kernel (release 9)")]
    assert rhel.sources[0].as_of is not None and rhel.sources[0].records == 3
    # the loaded Ubuntu record is for 14.04 only: 24.04 is uncovered, not "0 vulnerabilities"
    assert noble.status is CoverageStatus.UNCOVERED and noble.sources == []
    assert ubuntu_release.status is CoverageStatus.UNDETERMINED
    assert ubuntu_release.notes and "Ubuntu kernel" in ubuntu_release.notes[0]
    assert debian.status is CoverageStatus.COVERED
    assert {s.source for s in debian.sources} == {"cve5"}
    assert {s.scope for s in debian.sources} == {"linux/linux_kernel"}


@pytest.mark.shared_data
def test_feeds_status_lists_coverage_per_ecosystem(kernel_db: Pvdb) -> None:
    rows = {(r["kind"], r["scope"]): r for r in kernel_db.coverage()}
    rhel9 = rows[("package", "rpm/redhat (release 9)")]
    assert rhel9["sources"] == ["csaf"] and rhel9["records"] == 3
    assert rows[("package", "deb/ubuntu (release 14)")]["sources"] == ["osv"]
    assert "cve5" in rows[("product", "linux/linux_kernel")]["sources"]
