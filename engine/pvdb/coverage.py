"""Which loaded sources cover a product or package, and as of when.

A source *covers* a package (``rpm/redhat`` ``kernel`` in release 9) or a product
(``linux/linux_kernel``) when it holds at least one version statement about it: it is
then a source that would have said so had a vulnerability affected the component. A
component under none of its keys is *uncovered*: "no vulnerability found" would mean
nothing, and the answer says so. A package statement with no release covers every
release; one for a release covers only that release.

"As of" is the newest of those records' own modified times (else when they were
ingested): the source's knowledge of the product is at least that recent.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import duckdb

IndexKey = tuple[str, str, str]


@dataclass(frozen=True, slots=True)
class Covered:
    """What one source holds about one key (one release of a package)."""

    source: str
    release: str | None
    records: int
    as_of: dt.datetime | None


_QUERY = """
    SELECT CASE WHEN a.match_kind = 'package' THEN 'package' ELSE 'product' END AS kind,
           CASE WHEN a.match_kind = 'package' THEN coalesce(a.ecosystem, '')
                ELSE coalesce(a.vendor, '') END AS k1,
           CASE WHEN a.match_kind = 'package' THEN coalesce(a.package, '')
                ELSE coalesce(a.product, '') END AS k2,
           CASE WHEN a.match_kind = 'package' THEN a.release END AS release,
           a.source, count(DISTINCT a.record_id) AS records,
           max(coalesce(r.modified, r.ingested_at)) AS as_of
    FROM affected a JOIN records r ON r.source = a.source AND r.record_id = a.record_id
    GROUP BY ALL
"""


def load(con: duckdb.DuckDBPyConnection) -> dict[IndexKey, tuple[Covered, ...]]:
    """Every key's coverage, read in one query."""
    out: dict[IndexKey, list[Covered]] = defaultdict(list)
    for kind, k1, k2, release, source, records, as_of in con.sql(_QUERY).fetchall():
        out[(kind, k1, k2)].append(Covered(source, release, int(records), as_of))
    return {key: tuple(sorted(v, key=lambda c: (c.source, c.release or "")))
            for key, v in out.items()}


def covering(table: dict[IndexKey, tuple[Covered, ...]], key: IndexKey,
             release: str | None) -> list[Covered]:
    """The entries of ``key`` that cover ``release`` (None: any release)."""
    return [c for c in table.get(key, ()) if c.release is None or release is None
            or c.release == release]


def scope(key: IndexKey, release: str | None) -> str:
    """A key in words: ``rpm/redhat kernel (release 9)``, ``linux/linux_kernel``."""
    if key[0] == "package":
        text = f"{key[1]} {key[2]}"
        return f"{text} (release {release})" if release else text
    return f"{key[1]}/{key[2]}"


_BY_ECOSYSTEM = """
    SELECT CASE WHEN a.match_kind = 'package' THEN 'package' ELSE 'product' END AS kind,
           CASE WHEN a.match_kind = 'package'
                THEN coalesce(a.ecosystem, '') || CASE WHEN a.release IS NULL THEN ''
                     ELSE ' (release ' || a.release || ')' END
                ELSE coalesce(a.vendor, '') || '/' || coalesce(a.product, '') END AS scope,
           list(DISTINCT a.source ORDER BY a.source) AS sources,
           count(DISTINCT a.package) AS packages,
           count(DISTINCT (a.source, a.record_id)) AS records,
           max(coalesce(r.modified, r.ingested_at)) AS as_of
    FROM affected a JOIN records r ON r.source = a.source AND r.record_id = a.record_id
    GROUP BY ALL ORDER BY kind, scope
"""


def by_ecosystem(con: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    """Coverage per ecosystem and release (packages) or per vendor/product (products),
    for ``vigil feeds status``: the sources, how many packages and records, as of when."""
    return [
        {"kind": kind, "scope": scope_, "sources": list(sources),
         "packages": int(packages) if kind == "package" else None,
         "records": int(records), "as_of": as_of}
        for kind, scope_, sources, packages, records, as_of in con.sql(
            _BY_ECOSYSTEM).fetchall()
    ]
