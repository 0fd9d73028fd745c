"""EPSS exploit-prediction scores, from CSV files in one of two layouts.

* **FIRST daily file** (``epss_scores-YYYY-MM-DD.csv``): an optional comment line
  ``#model_version:v2023.03.01,score_date:2025-02-20T00:00:00+0000``, then the header
  ``cve,epss,percentile``.
* **KEV_EPSS snapshot** (jgamblin/KEV_EPSS ``epss_kev_nvd.csv``): the header starts
  ``CVE,CVSS3,EPSS``; newer snapshots add ``EPSS Percentile``, ``Vendor`` and ``Product``.
  Only CVEs in the KEV catalog are listed. The ``CVSS3`` column is NVD's base score
  without its vector: no severity fact is made from it (a score without a vector cannot be
  checked); NVD's own records give the vector. ``Description``, ``Vendor`` and ``Product``
  are not read either.

Each data row is one record, identified by its CVE id and located as ``line N`` (the 1-based
line of the file where the row starts). It gives one
:class:`~engine.pvdb.models.EpssFact`: the score, the percentile (``None`` when the file
has no such column) and the score date.

The score date is the record's modified time, so a newer file replaces an older score and
re-reading an older file counts its rows as stale. It is taken from the comment line's
``score_date`` when there is one, otherwise from a ``YYYY-MM-DD`` date in the file name
(KEV_EPSS snapshots do not state their date inside the file: name them
``epss_kev_nvd-YYYY-MM-DD.csv`` after the day they were taken). A file with neither gets no
score date, and the ingest dates its rows by when it first stores them. The hashed content
is the CVE id, the score and percentile text and the score date, so the same score on
another day is a new version of the record.

A score or percentile that is not a number in ``[0, 1]`` is reported with its line and
column; the other rows still load.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from engine.errors import RecordError
from engine.pvdb.feeds.base import (
    CVE_ID,
    Document,
    FeedAdapter,
    FeedFormatError,
    parse_datetime,
    raw_record,
)
from engine.pvdb.models import EpssFact, NormalisedRecord, RawRecord, Source, VulnId

_COMMENT_DATE = re.compile(r"score_date:\s*([^,\s]+)")
_NAME_DATE = re.compile(r"(?<!\d)\d{4}-\d{2}-\d{2}(?!\d)")
_SCORE_ROW = re.compile(r'^"?CVE-\d{4}-\d{4,}"?\s*[,;\t]\s*'
                        r'"?\d*\.?\d+(?:[eE][-+]?\d+)?"?\s*(?:[,;\t]|$)')
"""A data row as EPSS files write them: a CVE id, then a number (score or CVSS)."""
_SNIFF_BYTES = 4096
"""How much of a document :meth:`EpssAdapter.detect` looks at (comment and header)."""


@dataclass(frozen=True, slots=True)
class _Layout:
    """The header names of the columns read, as one CSV layout writes them."""

    cve: str
    score: str
    percentile: str


_FIRST = _Layout(cve="cve", score="epss", percentile="percentile")
_KEV_EPSS = _Layout(cve="CVE", score="EPSS", percentile="EPSS Percentile")


class EpssAdapter(FeedAdapter):
    source = Source.EPSS
    description = "EPSS scores (FIRST daily CSV or KEV_EPSS snapshot)"

    @classmethod
    def detect(cls, doc: Document) -> bool:
        head = doc.body[:_SNIFF_BYTES].decode("utf-8-sig", errors="replace")
        _, _, stream = _open_csv(head)
        return _layout(next(csv.reader(stream), [])) is not None

    @classmethod
    def resembles(cls, doc: Document) -> bool:
        """A CSV with a header Vigil does not read (corrupted, missing) but named like an
        EPSS file, or whose first rows are a CVE id and a number."""
        head = doc.body[:_SNIFF_BYTES].decode("utf-8-sig", errors="replace")
        if not head.strip():
            return False
        if "epss" in doc.name.lower() and doc.name.lower().endswith(".csv"):
            return True
        lines = [line for line in head.splitlines()[:4] if not line.startswith("#")]
        return any(_SCORE_ROW.match(line) for line in lines[:3])

    def split(self, doc: Document) -> Iterator[RawRecord | RecordError]:
        text = doc.text
        if text is None:
            raise FeedFormatError(f"{doc.origin}: not UTF-8 text")
        comment, offset, stream = _open_csv(text)
        reader = csv.reader(stream)
        header = next(reader, [])
        layout = _layout(header)
        if layout is None:
            raise FeedFormatError(f"{doc.origin}: not an EPSS CSV header: {header}")
        scored = _score_time(comment, doc.name)
        end = offset + reader.line_num
        while True:
            try:
                row = next(reader, None)
            except csv.Error as exc:  # a field over csv's limit (128 KiB), a stray NUL…
                if offset + reader.line_num == end:  # nothing consumed: cannot go on
                    raise FeedFormatError(f"{doc.origin}: line {end + 1}: {exc}") from exc
                start, end = end + 1, offset + reader.line_num
                yield RecordError(str(exc), pointer=f"line {start}")
                continue
            if row is None:
                break
            start, end = end + 1, offset + reader.line_num
            if not row:
                continue
            if len(row) != len(header):
                yield RecordError(f"expected {len(header)} columns, got {len(row)}",
                                  pointer=f"line {start}")
                continue
            cells = dict(zip(header, row, strict=True))
            yield self._row(doc, layout, cells, scored, f"line {start}")

    def _row(
        self, doc: Document, layout: _Layout, cells: dict[str, str],
        scored: dt.datetime | None, pointer: str,
    ) -> RawRecord | RecordError:
        """One data row as a raw record, or a RecordError when its CVE id is unusable.

        The score and percentile are kept as ``[column, text]`` so that normalising can
        name the column of a bad value."""
        cve_id = cells[layout.cve].strip()
        if not CVE_ID.match(cve_id):
            return RecordError(f"not a CVE id: {cve_id!r}",
                               pointer=f"{pointer}, column {layout.cve}")
        percentile = cells.get(layout.percentile, "").strip()
        data = {
            "cve": cve_id,
            "score": [layout.score, cells[layout.score].strip()],
            "percentile": [layout.percentile, percentile] if percentile else None,
            "score_date": scored.date().isoformat() if scored else None,
        }
        return raw_record(self.source, cve_id, scored, data, doc, pointer)

    def normalise(self, raw: RawRecord) -> NormalisedRecord:
        data = raw.data
        percentile = data["percentile"]
        fact = EpssFact(
            vuln_id=VulnId(raw.record_id),
            score=_probability(data["score"], raw.pointer),
            percentile=_probability(percentile, raw.pointer) if percentile else None,
            score_date=dt.date.fromisoformat(data["score_date"]) if data["score_date"] else None,
        )
        return NormalisedRecord(self.source, raw.record_id, epss=(fact,))


def _open_csv(text: str) -> tuple[str | None, int, io.StringIO]:
    """The leading ``#`` comment line (if any), how many lines it takes, and the CSV text
    after it as a stream."""
    stream = io.StringIO(text, newline="")
    first = stream.readline()
    if first.startswith("#"):
        return first.strip(), 1, stream
    stream.seek(0)
    return None, 0, stream


def _layout(header: list[str]) -> _Layout | None:
    """The layout a header row belongs to, or None when it is not an EPSS file."""
    if header[:2] == ["cve", "epss"] and set(header) <= {"cve", "epss", "percentile"}:
        return _FIRST
    if header[:3] == ["CVE", "CVSS3", "EPSS"]:
        return _KEV_EPSS
    return None


def _score_time(comment: str | None, name: str) -> dt.datetime | None:
    """When the scores were computed: the comment's ``score_date``, else a date in the
    file name (midnight UTC), else None."""
    if comment is not None and (found := _COMMENT_DATE.search(comment)):
        return parse_datetime(found.group(1), "line 1")
    found = _NAME_DATE.search(name)
    if found is None:
        return None
    try:
        day = dt.datetime.strptime(found.group(0), "%Y-%m-%d")
    except ValueError:
        reason = f"{name}: {found.group(0)!r} in the file name is not a date"
        raise FeedFormatError(reason) from None
    return day.replace(tzinfo=dt.UTC)


def _probability(cell: Any, pointer: str) -> float:
    """A ``[column, text]`` cell as a number in [0, 1]; a RecordError naming the line and
    column otherwise."""
    column, text = cell
    where = f"{pointer}, column {column}"
    try:
        value = float(text)
    except ValueError:
        raise RecordError(f"not a number: {text!r}", pointer=where) from None
    if not 0.0 <= value <= 1.0:
        raise RecordError(f"{text} is outside [0, 1]", pointer=where)
    return value
