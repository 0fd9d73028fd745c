"""What the PVDB knew on a past date, for answers as of that date.

``Pvdb.affecting(components, as_of=D)`` (``vigil pvdb affecting --as-of D``, and the
policy input built for a decision at time D) uses only the facts known by D:

* **records**: a record's statements are used only once the record was public. Its own
  publication date says when (CVE 5 ``datePublished``, NVD ``published``, OSV
  ``published``, CSAF ``initial_release_date``); a record that has none is kept out only
  where a lower bound the PVDB can prove is after D: a ``CVE-YYYY-…`` record is not public
  before 1 January YYYY (the year of a CVE id is the year it was reserved or made
  public), and a record of the Linux kernel CNA (whose records carry no date at all) not
  before the mainline development cycle that holds its fix began, the release of the
  mainline version before the one it names as holding the original fix (the CNA assigns a
  CVE only to a fix already in the kernel, `Documentation/process/cve.rst`).
* **fixes**: a fixed version released after D (by the advisory that names it, or by the
  product's release history) is no fix on D: the finding's fix is the next one released
  by then, or none.
* **KEV**: an entry added to the catalog after D is left out.
* **EPSS**: the score of the latest day on or before D (every dated score is kept, in
  ``epss_history``).

What the PVDB cannot know, and every past answer says (:class:`Past`):

* superseded versions of a record are not kept: a record modified after D is used as it
  is now, so what it says may include later changes (affected versions added, ranges
  corrected, scores revised); only its fixes released after D are left out;
* a record without a publication date whose bound is not after D is used, whether or not
  it was public on D;
* a record withdrawn or rejected after D (a CVE rejected, a KEV entry removed) is as it is
  now: rejected, or absent.

The dates are read once per PVDB generation, and only when a query asks about a day
before the newest dated fact (:func:`newest`); later days are answered as now.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TypeVar

import duckdb

from engine.pvdb import kernels, versions
from engine.pvdb.statements import Group

K = TypeVar("K")

RecordKey = tuple[str, str]
"""(source, record_id) of a stored record."""

_CVE_YEAR = re.compile(r"^CVE-(\d{4})-\d+$")
_MAINLINE = re.compile(r"^\d+\.\d+$")
LINUX_CNA = "Linux"
"""The Linux kernel CNA's short name, as CVE 5 records carry it (``assignerShortName``)."""

_RELEASE_PRODUCT = f"{kernels.UPSTREAM_KERNEL[0]}:{kernels.UPSTREAM_KERNEL[1]}"
"""The kernel's name in the ``releases`` table."""


@dataclass(frozen=True, slots=True)
class RecordDates:
    """When one record can have been public, and when it was last modified."""

    public_from: dt.date | None
    """Its own publication date, else the latest provable lower bound (None: none)."""
    exact: bool
    """``public_from`` is the record's own publication date."""
    modified: dt.date | None
    """The record's own modified time (None: it states none)."""


def _utc_day(column: str) -> str:
    return f"CAST(({column}) AT TIME ZONE 'UTC' AS DATE)"


def newest(con: duckdb.DuckDBPyConnection) -> dt.date | None:
    """The latest day any fact is dated (a publication, a modification, a release, a fix,
    a KEV addition, an EPSS score, the year of a CVE id): an answer as of this day or
    later is the current answer. None for an empty PVDB."""
    row = con.execute(f"""
        SELECT greatest(
            (SELECT max({_utc_day('modified')}) FROM records),
            (SELECT max({_utc_day('published')}) FROM vulnerabilities),
            (SELECT max(release_date) FROM releases),
            (SELECT max(fix_date) FROM fixes),
            (SELECT max(date_added) FROM kev),
            (SELECT max(score_date) FROM epss_history),
            (SELECT make_date(max(CAST(regexp_extract(record_id, '^CVE-(\\d{{4}})-\\d+$', 1)
                                       AS INTEGER)), 1, 1)
             FROM records WHERE regexp_full_match(record_id, '^CVE-\\d{{4}}-\\d+$')))
    """).fetchall()
    value = row[0][0]
    return value if isinstance(value, dt.date) else None


class Knowledge:
    """The publication and modification dates of every record that states versions, for
    one PVDB generation."""

    def __init__(self, records: dict[RecordKey, RecordDates]) -> None:
        self.records = records
        self._hidden: OrderedDict[dt.date, frozenset[RecordKey]] = OrderedDict()

    @classmethod
    def load(cls, con: duckdb.DuckDBPyConnection) -> Knowledge:
        rows = con.execute(f"""
            WITH pub AS (
                SELECT source, record_id, min(published) AS published,
                       bool_or(assigner = ?) AS linux
                FROM vulnerabilities GROUP BY ALL)
            SELECT r.source, r.record_id, {_utc_day('r.modified')}, {_utc_day('p.published')},
                   coalesce(p.linux, false)
            FROM records r LEFT JOIN pub p USING (source, record_id)
            WHERE (r.source, r.record_id) IN (SELECT DISTINCT source, record_id FROM affected)
        """, [LINUX_CNA]).fetchall()
        linux = {(source, record_id) for source, record_id, _, published, is_linux in rows
                 if is_linux and published is None}
        bounds = _linux_bounds(con, linux) if linux else {}
        records: dict[RecordKey, RecordDates] = {}
        for source, record_id, modified, published, _ in rows:
            key = (source, record_id)
            if published is not None:
                records[key] = RecordDates(published, True, modified)
                continue
            bound = bounds.get(key)
            year = _CVE_YEAR.match(record_id)
            if year is not None:
                start = dt.date(int(year.group(1)), 1, 1)
                bound = start if bound is None else max(bound, start)
            records[key] = RecordDates(bound, False, modified)
        return cls(records)

    def hidden(self, day: dt.date) -> frozenset[RecordKey]:
        """The records not public on ``day`` (kept for a few days asked)."""
        found = self._hidden.get(day)
        if found is None:
            found = frozenset(key for key, dates in self.records.items()
                              if dates.public_from is not None and dates.public_from > day)
            self._hidden[day] = found
            if len(self._hidden) > 8:
                self._hidden.popitem(last=False)
        else:
            self._hidden.move_to_end(day)
        return found


def _linux_bounds(con: duckdb.DuckDBPyConnection, records: set[RecordKey]
                  ) -> dict[RecordKey, dt.date]:
    """For Linux CNA records: the release of the mainline version before the earliest
    mainline version each names as fixed (the cycle its fix was merged in opened then)."""
    mainline = sorted(
        ((versions.sort_key("kernel", version), day) for version, day in con.execute(
            "SELECT version, release_date FROM releases WHERE product = ?",
            [_RELEASE_PRODUCT]).fetchall() if _MAINLINE.match(version)),
        key=lambda item: item[0] or ())
    known = [(key, day) for key, day in mainline if key is not None]
    out: dict[RecordKey, dt.date] = {}
    for source, record_id, fixed in con.execute(
        "SELECT source, record_id, list(DISTINCT fixed) FROM affected"
        " WHERE vendor = ? AND product = ? AND fixed IS NOT NULL GROUP BY ALL",
        list(kernels.UPSTREAM_KERNEL),
    ).fetchall():
        key = (source, record_id)
        if key not in records:
            continue
        fixes = [k for v in fixed if _MAINLINE.match(v)
                 and (k := versions.sort_key("kernel", v)) is not None]
        if not fixes:
            continue
        first = min(fixes)
        before = [day for release, day in known if release < first]
        if before:
            out[key] = before[-1]
    return out


@dataclass(slots=True)
class Past:
    """One answer's view of a past day: what it left out and what it could not know."""

    day: dt.date
    knowledge: Knowledge
    hidden: frozenset[RecordKey]
    left_out: set[RecordKey] = field(default_factory=set)
    """Records about the asked components that were not public yet."""
    consulted: set[RecordKey] = field(default_factory=set)
    """Records used for the answer."""
    later_fixes: set[tuple[str, str]] = field(default_factory=set)
    """(vulnerability, fixed version) left out: released after the day."""

    def keep(self, groups: Iterable[tuple[K, Group]]) -> list[tuple[K, Group]]:
        """The (key, group) pairs whose record was public on the day; the others are
        counted as left out."""
        kept = []
        for item in groups:
            st = item[1][0]
            record = (st.source, st.record_id)
            if record in self.hidden:
                self.left_out.add(record)
            else:
                self.consulted.add(record)
                kept.append(item)
        return kept

    def revised(self) -> int:
        """Records used that were modified after the day."""
        records = self.knowledge.records
        return sum(1 for r in self.consulted
                   if (d := records.get(r)) is not None and d.modified is not None
                   and d.modified > self.day)

    def undated(self) -> int:
        """Records used that carry no publication date of their own."""
        records = self.knowledge.records
        return sum(1 for r in self.consulted
                   if (d := records.get(r)) is None or not d.exact)
