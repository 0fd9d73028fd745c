"""Distribution versions: RPM and Debian epochs (purl qualifier or ``N:`` prefix, a missing
epoch is 0), Debian's ``~``, and distribution releases named by number or code name."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.pvdb import Component, Pvdb, identity, versions
from engine.pvdb.identity import IdentityError


@pytest.mark.parametrize(
    ("scheme", "low", "high"),
    [
        ("rpm", "8.2.0-11.el9_4", "17:6.2.0-11.el9_0.9"),   # any epoch beats none
        ("rpm", "15:6.2.0-50.module+el8.10.0", "17:6.2.0-11.el9_0.9"),
        ("rpm", "1.0~rc1-1", "1.0-1"),
        ("rpm", "1.0-1", "1.0^git1-1"),
        ("deb", "1.0~rc1-1", "1.0-1"),
        ("deb", "6.1.76-1~bpo11+1", "6.1.76-1"),
        ("deb", "2.0-1", "1:0.9-1"),
        ("deb", "6.1.76-1", "6.1.90-1"),
    ],
)
def test_epochs_and_tildes_order_as_the_distribution_does(scheme: str, low: str,
                                                          high: str) -> None:
    assert versions.compare(scheme, low, high) == -1
    assert versions.compare(scheme, high, low) == 1


@pytest.mark.parametrize("scheme", ["rpm", "deb"])
def test_a_missing_epoch_is_zero(scheme: str) -> None:
    assert versions.compare(scheme, "0:1.2-3", "1.2-3") == 0


@pytest.mark.parametrize(
    ("purl", "version", "release"),
    [
        ("pkg:rpm/redhat/qemu-kvm@8.2.0-11.el9_4?epoch=17", "17:8.2.0-11.el9_4", "9"),
        ("pkg:rpm/redhat/qemu-kvm@17:8.2.0-11.el9_4", "17:8.2.0-11.el9_4", "9"),
        ("pkg:rpm/redhat/qemu-kvm@17:8.2.0-11.el9_4?epoch=17", "17:8.2.0-11.el9_4", "9"),
        ("pkg:rpm/redhat/qemu-kvm@8.2.0-11.el9_4?epoch=0", "8.2.0-11.el9_4", "9"),
        ("pkg:rpm/redhat/kernel@4.18.0-553.16.1.el8_10?arch=x86_64", "4.18.0-553.16.1.el8_10",
         "8"),
        ("pkg:rpm/redhat/qemu-kvm@6.2.0-50.module+el8.10.0+22027+db0a70a4?epoch=15",
         "15:6.2.0-50.module+el8.10.0+22027+db0a70a4", "8"),
        ("pkg:deb/debian/linux@6.1.76-1?distro=bookworm", "6.1.76-1", "12"),
        ("pkg:deb/debian/linux@6.1.76-1?distro=debian-12", "6.1.76-1", "12"),
        ("pkg:deb/ubuntu/linux@6.8.0-31.31?distro=noble", "6.8.0-31.31", "24"),
        # as Ubuntu's OSV records publish it: a second '?' where '&' is meant
        ("pkg:deb/ubuntu/linux@3.13.0-206.257?arch=src?distro=esm-infra-legacy/trusty",
         "3.13.0-206.257", "14"),
        ("pkg:deb/debian/dpkg@1:1.21.22?distro=bookworm", "1:1.21.22", "12"),
    ],
)
def test_purls_carry_epoch_and_release(purl: str, version: str, release: str) -> None:
    key, got = identity.purl_key(purl)
    assert got == version
    assert key.release == release


def test_an_epoch_that_disagrees_with_the_version_is_refused() -> None:
    with pytest.raises(IdentityError, match="disagrees"):
        identity.purl_key("pkg:rpm/redhat/qemu-kvm@15:8.2.0-11.el9_4?epoch=17")
    with pytest.raises(IdentityError, match="not a number"):
        identity.purl_key("pkg:rpm/redhat/qemu-kvm@8.2.0-11.el9_4?epoch=x")


def test_osv_ecosystems_and_purl_releases_meet() -> None:
    assert identity.ecosystem_key("Debian:12", "linux").release == "12"
    assert identity.ecosystem_key("Ubuntu:24.04:LTS", "linux").release == "24"
    assert identity.ecosystem_key("Ubuntu:Pro:14.04:LTS", "linux").release == "14"


# --- the epoch qualifier decides, with the real records --------------------------------

QEMU = "pkg:rpm/redhat/qemu-kvm@8.2.0-11.el9_4"


@pytest.fixture(scope="module")
def qemu_db(feeds_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pvdb]:
    """The Red Hat CNA's CVE-2023-6683 record: RHEL 9 qemu-kvm is unaffected from
    ``17:8.2.0-11.el9_4`` on (and affected below)."""
    path = tmp_path_factory.mktemp("qemu") / "pvdb.duckdb"
    with Pvdb.open(path) as db:
        report = db.ingest([str(feeds_dir / "cve5/2023/CVE-2023-6683.json")])
        assert report.problems == []
        yield db


def _ids(db: Pvdb, purl: str) -> set[str]:
    report = db.affecting([Component(kind="hypervisor", purl=purl, version="x")],
                          within_days=None, min_score=None, kev_only=False, as_of=None,
                          estimator=None)
    return {f.vuln_id for f in report.findings}


@pytest.mark.shared_data
def test_epoch_qualifier_is_read(qemu_db: Pvdb) -> None:
    assert "CVE-2023-6683" not in _ids(qemu_db, f"{QEMU}?epoch=17")
    assert "CVE-2023-6683" not in _ids(qemu_db, "pkg:rpm/redhat/qemu-kvm@17:8.2.0-11.el9_4")
    assert "CVE-2023-6683" in _ids(qemu_db, "pkg:rpm/redhat/qemu-kvm@8.2.0-10.el9_4?epoch=17")


@pytest.mark.shared_data
def test_a_missing_epoch_is_zero_and_so_older(qemu_db: Pvdb) -> None:
    # epoch 0: below 17:anything, so affected (as rpm itself would order it)
    assert "CVE-2023-6683" in _ids(qemu_db, QEMU)


@pytest.mark.parametrize(
    ("scheme", "mine", "fix", "same"),
    [
        ("rpm", "5.14.0-427.13.1.el9_4", "5.14.0-427.31.1.el9_4", True),
        ("rpm", "5.14.0-427.13.1.el9_4", "5.14.0-503.11.1.el9_5", False),
        ("rpm", "17:8.2.0-11.el9_4", "17:8.2.0-11.el9_4.4", True),
        ("rpm", "15:6.2.0-50.module+el8.10.0+22027", "17:8.2.0-11.el9_4", False),
        ("kernel", "6.6.30", "6.6.34", True),
        ("kernel", "6.1.76", "6.10.3", False),
        ("deb", "6.1.76-1", "6.1.90-1", True),
    ],
)
def test_fix_lines(scheme: str, mine: str, fix: str, same: bool) -> None:
    assert (versions.line_of(scheme, mine) == versions.line_of(scheme, fix)) is same
