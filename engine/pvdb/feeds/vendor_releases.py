"""Vendor security-release histories kept as CSV tables: Microsoft's monthly security
update documents and Intel's microcode releases.

Each file is one record of the ``releases`` source, recognised by its exact header:

* ``cvrf_id,initial_release_date,current_release_date,vulnerability_count,source_path``
  (Microsoft CVRF documents, one per monthly release or out-of-band release): every row is
  ``ReleaseFact(product="microsoft:security_update", version=cvrf_id,
  release_date=initial_release_date)``. Timestamps without a zone are UTC; the date is
  the UTC date of the release instant.
* ``release_tag,release_date,intel_sa_ids,platform_rows`` (Intel microcode releases,
  with the INTEL-SA advisories each one addresses): every row is
  ``ReleaseFact(product="intel:microcode", version=release_tag, release_date=…)``, and
  each advisory named is ``FixFact(vuln_id="INTEL-SA-…", vendor="intel",
  product="microcode", fixed_version=release_tag, advisory_id=…, fix_date=…)``. An
  advisory named by several releases was fixed for more platforms in each later one.

Other CSV files (EPSS, manifests, per-platform tables) are not claimed here. A row whose
cell count differs from the header's, or a table with no rows, rejects the file.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator

from engine.errors import RecordError
from engine.pvdb.feeds.base import (
    Document,
    FeedAdapter,
    FeedFormatError,
    parse_date,
    raw_record,
)
from engine.pvdb.models import FixFact, NormalisedRecord, RawRecord, ReleaseFact, Source, VulnId

MSRC_HEADER = ["cvrf_id", "initial_release_date", "current_release_date",
               "vulnerability_count", "source_path"]
INTEL_HEADER = ["release_tag", "release_date", "intel_sa_ids", "platform_rows"]
_LAYOUTS = {tuple(MSRC_HEADER): "microsoft:security_update",
            tuple(INTEL_HEADER): "intel:microcode"}
_INTEL_SA = re.compile(r"^INTEL-SA-\d{5}$")


def _layout(doc: Document) -> str | None:
    if not doc.name.lower().endswith(".csv"):
        return None
    head = doc.body[:512].decode("utf-8-sig", errors="replace").splitlines()
    if not head:
        return None
    header = next(csv.reader([head[0]]), [])
    return _LAYOUTS.get(tuple(h.strip() for h in header))


class VendorReleasesAdapter(FeedAdapter):
    source = Source.RELEASES
    description = "vendor security-release tables (Microsoft CVRF dates, Intel microcode)"

    @classmethod
    def detect(cls, doc: Document) -> bool:
        return _layout(doc) is not None

    def split(self, doc: Document) -> Iterator[RawRecord | RecordError]:
        product = _layout(doc)
        text = doc.text
        if product is None or text is None:
            raise FeedFormatError(f"{doc.origin}: not a vendor release table")
        reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
        header = [h.strip() for h in next(reader, [])]
        rows: list[dict[str, str]] = []
        for cells in reader:
            if not cells:
                continue
            if len(cells) != len(header):
                yield RecordError(f"expected {len(header)} columns, got {len(cells)}",
                                  pointer=f"line {reader.line_num}")
                return
            rows.append(dict(zip(header, cells, strict=True)))
        if not rows:
            yield RecordError("no rows under the header", pointer="line 2")
            return
        yield raw_record(self.source, product, None, {"product": product, "rows": rows}, doc)

    def normalise(self, raw: RawRecord) -> NormalisedRecord:
        product = raw.data["product"]
        releases: list[ReleaseFact] = []
        fixes: list[FixFact] = []
        for i, row in enumerate(raw.data["rows"], start=2):
            where = f"line {i}"
            if product == "microsoft:security_update":
                version = (row.get("cvrf_id") or "").strip()
                day = parse_date(row.get("initial_release_date"), f"{where}.initial_release_date")
            else:
                version = (row.get("release_tag") or "").strip()
                day = parse_date(row.get("release_date"), f"{where}.release_date")
            if not version:
                raise RecordError("empty release name", pointer=where)
            if day is None:
                raise RecordError("empty release date", pointer=where)
            releases.append(ReleaseFact(product, version, day))
            if product == "intel:microcode":
                for sa in filter(None, (s.strip() for s in (row.get("intel_sa_ids") or "")
                                        .split(";"))):
                    if not _INTEL_SA.match(sa):
                        raise RecordError(f"not an INTEL-SA id: {sa!r}",
                                          pointer=f"{where}.intel_sa_ids")
                    fixes.append(FixFact(VulnId(sa), vendor="intel", product="microcode",
                                         fixed_version=version, advisory_id=sa, fix_date=day))
        return NormalisedRecord(self.source, raw.record_id, releases=tuple(releases),
                                fixes=tuple(fixes))
