"""The CISA Known Exploited Vulnerabilities (KEV) catalog.

One document is the whole catalog: ``{"title", "catalogVersion", "dateReleased", "count",
"vulnerabilities": [...]}``. The catalog's own JSON Schema (a ``$schema`` document whose
``properties`` name the same keys) is not claimed: it has no top-level ``vulnerabilities``
list.

Each ``vulnerabilities[i]`` entry is one record, identified by its ``cveID`` and located at
``$.vulnerabilities[i]``. Entries carry no modified time of their own, so each takes the
catalog's ``dateReleased``: every entry is hashed on its own, so a new catalog version
changes only the entries CISA changed (a ``knownRansomwareCampaignUse`` flip, a new
``dueDate``…), and re-reading an older catalog afterwards is stale, not a revert.

What is read from an entry (one :class:`~engine.pvdb.models.KevFact`):

* ``dateAdded`` (required) and ``dueDate`` (optional), as dates;
* ``knownRansomwareCampaignUse`` (``Known`` / ``Unknown``; catalogs from before CISA
  added the field give ``Unknown``; any other value is a bad entry);
* ``vendorProject``, ``product``, ``vulnerabilityName`` and ``requiredAction`` as stated.

``shortDescription``, ``notes`` and ``cwes`` are not used. An entry whose ``cveID`` is not
a CVE id is reported (with its path) when the catalog is split; an entry with a bad date is
reported when it is normalised. Either way the rest of the catalog loads.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from engine.errors import RecordError
from engine.pvdb.feeds.base import (
    CVE_ID,
    Document,
    FeedAdapter,
    expect,
    optional,
    parse_date,
    parse_datetime,
    raw_record,
)
from engine.pvdb.models import KevFact, NormalisedRecord, RawRecord, Source, VulnId

_UNKNOWN_RANSOMWARE = "Unknown"
_RANSOMWARE_VALUES = ("Known", _UNKNOWN_RANSOMWARE)


class KevAdapter(FeedAdapter):
    source = Source.KEV
    description = "CISA Known Exploited Vulnerabilities catalog"

    @classmethod
    def detect(cls, doc: Document) -> bool:
        data = doc.json
        return (
            isinstance(data, dict)
            and isinstance(data.get("vulnerabilities"), list)
            and isinstance(data.get("catalogVersion"), str)
        )

    @classmethod
    def resembles(cls, doc: Document) -> bool:
        """A catalog without its ``catalogVersion``, or with a ``vulnerabilities`` that
        is not a list."""
        data = doc.json
        if not isinstance(data, dict):
            return False
        entries = data.get("vulnerabilities")
        return ("catalogVersion" in data and "vulnerabilities" in data) or (
            isinstance(entries, list) and bool(entries) and isinstance(entries[0], dict)
            and "cveID" in entries[0])

    def split(self, doc: Document) -> Iterator[RawRecord | RecordError]:
        entries = expect(doc.json, "vulnerabilities", list, "$")
        released = parse_datetime(optional(doc.json, "dateReleased", str, "$"), "$.dateReleased")
        for i, entry in enumerate(entries):
            pointer = f"$.vulnerabilities[{i}]"
            try:
                cve_id = _cve_id(entry, pointer)
            except RecordError as exc:
                yield exc
                continue
            yield raw_record(self.source, cve_id, released, entry, doc, pointer)

    def normalise(self, raw: RawRecord) -> NormalisedRecord:
        entry, pointer = raw.data, raw.pointer
        date_added = parse_date(expect(entry, "dateAdded", str, pointer), f"{pointer}.dateAdded")
        if date_added is None:
            raise RecordError("dateAdded is empty", pointer=f"{pointer}.dateAdded")
        ransomware = _text(entry, "knownRansomwareCampaignUse", pointer) or _UNKNOWN_RANSOMWARE
        if ransomware not in _RANSOMWARE_VALUES:
            raise RecordError(f"must be Known or Unknown, got {ransomware!r}",
                              pointer=f"{pointer}.knownRansomwareCampaignUse")
        fact = KevFact(
            vuln_id=VulnId(raw.record_id),
            date_added=date_added,
            due_date=parse_date(optional(entry, "dueDate", str, pointer), f"{pointer}.dueDate"),
            ransomware=ransomware,
            vendor=_text(entry, "vendorProject", pointer),
            product=_text(entry, "product", pointer),
            name=_text(entry, "vulnerabilityName", pointer),
            required_action=_text(entry, "requiredAction", pointer),
        )
        return NormalisedRecord(self.source, raw.record_id, kev=(fact,))


def _cve_id(entry: Any, pointer: str) -> str:
    """The entry's ``cveID``; a RecordError naming its path when it is not a CVE id."""
    cve_id: str = expect(entry, "cveID", str, pointer).strip()
    if not CVE_ID.match(cve_id):
        raise RecordError(f"not a CVE id: {cve_id!r}", pointer=f"{pointer}.cveID")
    return cve_id


def _text(entry: dict[str, Any], key: str, pointer: str) -> str | None:
    """An optional string field, stripped; ``None`` when missing or blank."""
    value = optional(entry, key, str, pointer)
    if value is None:
        return None
    return value.strip() or None
