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

A file is claimed by its name (``.yml`` / ``.yaml``) and a list item opening with ``xsa:``
(or ``qsb:``) near its start. Invalid YAML, or YAML that is not a list of mappings, rejects
the file; a missing or malformed number or date rejects it naming the list index.
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
_FIRST_ITEM = {key: re.compile(rf"^-[ \t]+{key}:", re.MULTILINE) for key in ("xsa", "qsb")}
_SNIFF_CHARS = 2000


class _Loader(yaml.SafeLoader):  # type: ignore[misc]  # (PyYAML ships no types)
    """Safe YAML with dates kept as written: a date that is no day (2024-02-30) is then
    reported with its path instead of failing the whole parse."""


_Loader.add_constructor("tag:yaml.org,2002:timestamp",
                        lambda loader, node: loader.construct_scalar(node))


def _claims(doc: Document, key: str) -> bool:
    """A YAML file whose list items open with ``key:``."""
    return (
        doc.name.lower().endswith((".yml", ".yaml"))
        and doc.text is not None
        and _FIRST_ITEM[key].search(doc.text[:_SNIFF_CHARS]) is not None
    )


def _yaml_list(doc: Document, key: str) -> list[dict[str, Any]]:
    """The file's list of mappings; FeedFormatError when it is not one."""
    try:
        data = yaml.load(doc.text or "", Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        reason = getattr(exc, "problem", None) or " ".join(str(exc).split())
        raise FeedFormatError(f"{doc.origin}: not valid YAML{where}: {reason}") from None
    if not (isinstance(data, list) and data and all(isinstance(item, dict) for item in data)):
        raise FeedFormatError(f"{doc.origin}: not a list of {key} entries")
    return data


def _entry_date(item: dict[str, Any], where: str) -> dt.date:
    if item.get("date") is None:
        raise RecordError("missing required field 'date'", pointer=where)
    return _date(item["date"], f"{where}.date")


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
        return _claims(doc, "xsa")

    def split(self, doc: Document) -> Iterator[RawRecord | RecordError]:
        yield raw_record(self.source, "xen:xsa", None, _yaml_list(doc, "xsa"), doc)

    def normalise(self, raw: RawRecord) -> NormalisedRecord:
        releases: list[ReleaseFact] = []
        fixes: list[FixFact] = []
        for i, item in enumerate(raw.data):
            where = f"$[{i}]"
            number = item.get("xsa")
            if not isinstance(number, int) or isinstance(number, bool) or number <= 0:
                raise RecordError(f"not an XSA number: {number!r}", pointer=f"{where}.xsa")
            xsa = f"XSA-{number}"
            day = _entry_date(item, where)
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
        return _claims(doc, "qsb") and not _claims(doc, "xsa")

    def split(self, doc: Document) -> Iterator[RawRecord | RecordError]:
        yield raw_record(self.source, "qubes:qsb", None, _yaml_list(doc, "qsb"), doc)

    def normalise(self, raw: RawRecord) -> NormalisedRecord:
        releases = [
            ReleaseFact("qubes:qsb", qsb_number(item.get("qsb"), f"$[{i}].qsb"),
                        _entry_date(item, f"$[{i}]"))
            for i, item in enumerate(raw.data)
        ]
        return NormalisedRecord(self.source, raw.record_id, releases=tuple(releases))
