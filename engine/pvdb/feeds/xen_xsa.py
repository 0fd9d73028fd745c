"""Xen security advisory (XSA) and Qubes security bulletin (QSB) release lists.

Two YAML lists as the Qubes OS website keeps them (``_data/sec-xsa.yml`` and
``_data/sec-qsb.yml``); each whole file is one record of the ``releases`` source.

``sec-xsa.yml``: ``[{xsa: 455, date: 2024-04-09, affected: true|false, qsb: "101-2024"}]``
— the public release date of every XSA (the day its patches are published, announced in
advance to the predisclosure list), whether Qubes OS was affected and which QSB fixed it
there. Read as:

* ``ReleaseFact(product="xen:xsa", version="XSA-455", release_date=date)``;
* ``FixFact(vuln_id="XSA-455", vendor="xen", product="xen", advisory_id="XSA-455",
  fix_date=date)``: the upstream patches;
* when a QSB is named, ``FixFact(vuln_id="XSA-455", vendor="qubes", product="qubes_os",
  advisory_id="QSB-101")`` with no date: the Qubes fix, dated by the QSB's release
  (``qubes:qsb`` below) — the downstream lag is what the predictor learns from.

``sec-qsb.yml``: ``[{qsb: "101", title: …, date: 2024-04-09}]`` — read as
``ReleaseFact(product="qubes:qsb", version="101", release_date=date)``.

A missing or malformed number or date rejects the file naming the list index.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import Any

import yaml

from engine.errors import RecordError
from engine.pvdb.feeds.base import Document, FeedAdapter, FeedFormatError, raw_record
from engine.pvdb.models import FixFact, NormalisedRecord, RawRecord, ReleaseFact, Source, VulnId

_QSB_NUMBER = re.compile(r"^(\d+)(?:-\d{4})?$")


def _yaml_list(doc: Document, key: str) -> list[Any] | None:
    if not doc.name.lower().endswith((".yml", ".yaml")) or doc.text is None:
        return None
    if f"{key}:" not in doc.text[:2000]:
        return None
    try:
        data = yaml.safe_load(doc.text)
    except yaml.YAMLError:
        return None
    if isinstance(data, list) and data and all(
        isinstance(item, dict) and key in item and "date" in item for item in data
    ):
        return data
    return None


def _date(value: Any, pointer: str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).date() if value.tzinfo else value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise RecordError(f"not a date: {value!r}", pointer=pointer)


def _plain(data: list[Any]) -> list[Any]:
    """YAML dates as ISO strings, so the record hashes canonically."""
    return [{k: (v.isoformat() if isinstance(v, dt.date) else v) for k, v in item.items()}
            for item in data]


def qsb_number(value: Any, pointer: str) -> str:
    """``"101-2024"``, ``"101"`` or ``101`` -> ``"101"`` (leading zeros kept off)."""
    m = _QSB_NUMBER.match(str(value).strip())
    if not m:
        raise RecordError(f"not a QSB number: {value!r}", pointer=pointer)
    return str(int(m.group(1)))


class XsaListAdapter(FeedAdapter):
    source = Source.RELEASES
    description = "Xen security advisory release dates (sec-xsa.yml)"

    @classmethod
    def detect(cls, doc: Document) -> bool:
        return _yaml_list(doc, "xsa") is not None

    def split(self, doc: Document) -> Iterator[RawRecord | RecordError]:
        data = _yaml_list(doc, "xsa")
        if data is None:
            raise FeedFormatError(f"{doc.origin}: not an XSA list")
        yield raw_record(self.source, "xen:xsa", None, _plain(data), doc)

    def normalise(self, raw: RawRecord) -> NormalisedRecord:
        releases: list[ReleaseFact] = []
        fixes: list[FixFact] = []
        for i, item in enumerate(raw.data):
            where = f"$[{i}]"
            number = item.get("xsa")
            if not isinstance(number, int) or number <= 0:
                raise RecordError(f"not an XSA number: {number!r}", pointer=f"{where}.xsa")
            xsa = f"XSA-{number}"
            day = _date(item.get("date"), f"{where}.date")
            releases.append(ReleaseFact("xen:xsa", xsa, day))
            fixes.append(FixFact(VulnId(xsa), vendor="xen", product="xen", advisory_id=xsa,
                                 fix_date=day))
            if item.get("qsb") is not None:
                qsb = qsb_number(item["qsb"], f"{where}.qsb")
                fixes.append(FixFact(VulnId(xsa), vendor="qubes", product="qubes_os",
                                     advisory_id=f"QSB-{qsb}"))
        return NormalisedRecord(self.source, raw.record_id, releases=tuple(releases),
                                fixes=tuple(fixes))


class QsbListAdapter(FeedAdapter):
    source = Source.RELEASES
    description = "Qubes security bulletin release dates (sec-qsb.yml)"

    @classmethod
    def detect(cls, doc: Document) -> bool:
        return _yaml_list(doc, "qsb") is not None and _yaml_list(doc, "xsa") is None

    def split(self, doc: Document) -> Iterator[RawRecord | RecordError]:
        data = _yaml_list(doc, "qsb")
        if data is None:
            raise FeedFormatError(f"{doc.origin}: not a QSB list")
        yield raw_record(self.source, "qubes:qsb", None, _plain(data), doc)

    def normalise(self, raw: RawRecord) -> NormalisedRecord:
        releases = [
            ReleaseFact("qubes:qsb", qsb_number(item.get("qsb"), f"$[{i}].qsb"),
                        _date(item.get("date"), f"$[{i}].date"))
            for i, item in enumerate(raw.data)
        ]
        return NormalisedRecord(self.source, raw.record_id, releases=tuple(releases))
