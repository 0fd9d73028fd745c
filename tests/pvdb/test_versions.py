"""Version schemes compare as their vendors number versions, never as strings."""

from __future__ import annotations

import pytest

from engine.errors import VersionSchemeError
from engine.pvdb import versions


@pytest.mark.parametrize(
    ("scheme", "low", "high"),
    [
        ("kernel", "6.9.9", "6.10"),
        ("kernel", "6.10-rc7", "6.10"),
        ("kernel", "2.6.38", "6.1"),
        ("kernel", "6.1.0-18-amd64", "6.1.1"),
        ("semver", "1.9.0", "1.10.0"),
        ("rpm", "5.14.0-362.8.1.el9_3", "5.14.0-362.13.1.el9_3"),
        ("rpm", "15.8-3.el9", "15.8-4.el9_3.alma.1"),
        ("deb", "1:2.3-4", "1:2.10-1"),
        ("deb", "2.36-9+deb12u3", "2.36-9+deb12u4"),
        ("generic", "10.0.17763.999", "10.0.17763.6054"),
        ("generic", "1.2.3", "1.2.3.1"),
    ],
)
def test_orders_like_the_vendor(scheme: str, low: str, high: str) -> None:
    assert versions.compare(scheme, low, high) == -1
    assert versions.compare(scheme, high, low) == 1
    assert versions.compare(scheme, low, low) == 0


def test_string_order_would_be_wrong() -> None:
    # The reason none of this is string comparison.
    assert "6.10" < "6.9.9"
    assert versions.compare("kernel", "6.10", "6.9.9") == 1


def test_wildcard_end_covers_the_branch() -> None:
    def in_branch(v: str) -> bool:
        return versions.in_range("kernel", v, start="6.6.39", start_inclusive=True,
                                 end="6.6.*", end_inclusive=True)

    assert in_branch("6.6.39")
    assert in_branch("6.6.120")
    assert not in_branch("6.6.38")
    assert not in_branch("6.7")
    assert versions.in_range("kernel", "7.0", start="6.10", start_inclusive=True,
                             end="*", end_inclusive=True)


def test_exclusive_bounds() -> None:
    assert not versions.in_range("semver", "2.0.0", start="2.0.0", start_inclusive=False,
                                 end=None, end_inclusive=False)
    assert not versions.in_range("semver", "3.0.0", start=None, start_inclusive=True,
                                 end="3.0.0", end_inclusive=False)
    assert versions.in_range("semver", "3.0.0", start=None, start_inclusive=True,
                             end="3.0.0", end_inclusive=True)


@pytest.mark.parametrize("scheme", ["git", "custom", "PI", "unknown"])
def test_incomparable_schemes_are_refused(scheme: str) -> None:
    with pytest.raises(VersionSchemeError, match="cannot be compared"):
        versions.parse(scheme, "1.0")


@pytest.mark.parametrize(("scheme", "text"), [("kernel", "See advisory"), ("deb", "a b"),
                                                ("generic", "various ")])
def test_unreadable_versions_are_refused(scheme: str, text: str) -> None:
    with pytest.raises(VersionSchemeError, match="not a valid"):
        versions.parse(scheme, text)
