"""Product release histories from endoflife.date's release-data (``releases/<product>.json``).

A document is ``{"releases": {cycle: {...}}, "versions": {version: {"name", "date"}}}`` (a
JSON object with no other top-level keys) and names no product: the product is the file
name's stem (``linux-kernel.json`` is ``linux-kernel``). The whole file is one record,
identified by the product key and undated (``modified`` is ``None``), so the content hash
decides whether a newer copy replaces the stored one.

:class:`~engine.pvdb.models.ReleaseFact` names a product with one string. Products with a
CPE identity use ``vendor:product`` from :data:`CPE_PRODUCTS` (``linux-kernel`` is
``linux:linux_kernel``, so a kernel fix's stable version gets a vendor release date);
any other product is ``endoflife:<stem>``.

What is read, one ReleaseFact per version:

* every ``versions`` entry: the version (its key) and its ``date``;
* every release cycle with a ``releaseDate``: the cycle name as the version
  (``rhel`` ``9``, ``freebsd`` ``14.1``), for products whose file lists cycles only;
* every cycle's ``latest`` version with its ``latestReleaseDate`` (``nvidia-driver``).

A version listed in ``versions`` keeps that date; the cycle data only adds versions it
does not list. A missing or malformed date rejects the file with the path of the entry, and
so does a file that dates no version at all (it would replace a stored history with
nothing).

Other files next to these in a release-data snapshot are release calendars, not version
histories, and no adapter claims them: endoflife.date product pages (``*.md``, YAML front
matter), Xen security advisory dates (``sec-xsa.yml``), Intel microcode and Patch Tuesday
tables (``*.csv``), MSRC CVRF documents (``*.xml``) and ``manifest.csv``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any

from engine.errors import RecordError
from engine.pvdb.feeds.base import (
    Document,
    FeedAdapter,
    FeedFormatError,
    expect,
    optional,
    parse_date,
    raw_record,
)
from engine.pvdb.models import NormalisedRecord, RawRecord, ReleaseFact, Source

CPE_PRODUCTS: dict[str, tuple[str, str]] = {
    "linux-kernel": ("linux", "linux_kernel"),
}
"""endoflife.date product name -> CPE-style ``(vendor, product)`` key."""

_KEYS = frozenset({"releases", "versions"})


def product_for(name: str) -> str:
    """The ReleaseFact product string for an endoflife.date product name."""
    known = CPE_PRODUCTS.get(name)
    return f"{known[0]}:{known[1]}" if known else f"endoflife:{name}"


class ReleasesAdapter(FeedAdapter):
    source = Source.RELEASES
    description = "endoflife.date release-data (versions and release dates)"

    @classmethod
    def detect(cls, doc: Document) -> bool:
        data = doc.json
        return (
            isinstance(data, dict)
            and bool(data)
            and set(data) <= _KEYS
            and all(isinstance(value, dict) for value in data.values())
        )

    def split(self, doc: Document) -> Iterator[RawRecord | RecordError]:
        name = PurePosixPath(doc.name.rsplit("!", 1)[-1]).stem.lower()
        if not name:
            raise FeedFormatError(f"{doc.origin}: no product name in the file name")
        yield raw_record(self.source, product_for(name), None, doc.json, doc)

    def normalise(self, raw: RawRecord) -> NormalisedRecord:
        dates: dict[str, dt.date] = {}
        for version, day in _dated_versions(raw.data):
            dates.setdefault(version, day)
        if not dates:
            raise RecordError("no version or release cycle with a date", pointer="$")
        facts = tuple(ReleaseFact(raw.record_id, v, day) for v, day in dates.items())
        return NormalisedRecord(self.source, raw.record_id, releases=facts)


def _dated_versions(data: Any) -> Iterator[tuple[str, dt.date]]:
    """(version, release date) pairs: ``versions`` first, then the release cycles."""
    versions = optional(data, "versions", dict, "$") or {}
    for version, entry in versions.items():
        where = f'$.versions["{version}"]'
        yield version, _date(expect(entry, "date", str, where), f"{where}.date")
    cycles = optional(data, "releases", dict, "$") or {}
    for cycle, entry in cycles.items():
        yield from _cycle_dates(cycle, entry, f'$.releases["{cycle}"]')


def _cycle_dates(cycle: str, entry: Any, where: str) -> Iterator[tuple[str, dt.date]]:
    """A release cycle's own release date, and its latest version's."""
    if not isinstance(entry, dict):
        raise RecordError(f"expected an object, got {type(entry).__name__}", pointer=where)
    released = optional(entry, "releaseDate", str, where)
    if released is not None:
        yield cycle, _date(released, f"{where}.releaseDate")
    latest = optional(entry, "latest", str, where)
    latest_date = optional(entry, "latestReleaseDate", str, where)
    if latest and latest_date is not None:
        yield latest, _date(latest_date, f"{where}.latestReleaseDate")


def _date(value: str, pointer: str) -> dt.date:
    """A required date; a RecordError naming the path when it is empty or malformed."""
    day = parse_date(value, pointer)
    if day is None:
        raise RecordError("empty date", pointer=pointer)
    return day
