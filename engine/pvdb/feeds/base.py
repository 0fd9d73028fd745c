"""The one seam every feed adapter sits behind.

A :class:`Document` is one file or HTTP body. An adapter says whether it recognises a
document (:meth:`FeedAdapter.detect`; :meth:`FeedAdapter.resembles` when only a damaged
copy of its format could look like that), cuts it into raw records (:meth:`FeedAdapter.split`,
cheap: id, modified time and content hash only), and turns one raw record into facts
(:meth:`FeedAdapter.normalise`, only for records that changed). Whole-document problems
raise :class:`FeedFormatError`; a bad record raises :class:`engine.errors.RecordError`
and the rest of the document still loads.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

import orjson

from engine.errors import FeedError, RecordError
from engine.pvdb.models import NormalisedRecord, RawRecord, Source

CVE_ID = re.compile(r"^CVE-\d{4}-\d{4,}$")
"""A CVE identifier (``CVE-2024-1086``)."""


class FeedFormatError(FeedError):
    """A document is not in the format its adapter expects."""


@dataclass(frozen=True)
class Document:
    """One feed document: a file's or an HTTP response's bytes and where they came from."""

    origin: str
    body: bytes = field(repr=False)

    @property
    def name(self) -> str:
        return self.origin.rstrip("/").rsplit("/", 1)[-1]

    @cached_property
    def json(self) -> Any:
        """The parsed JSON body, or ``None`` when the body is not JSON."""
        if self.body.lstrip()[:1] not in (b"{", b"["):
            return None
        try:
            return orjson.loads(self.body)
        except orjson.JSONDecodeError:
            return None

    def json_error(self) -> str:
        """Why the body is not valid JSON (for error messages)."""
        try:
            orjson.loads(self.body)
        except orjson.JSONDecodeError as exc:
            return str(exc)
        return "valid JSON"

    @cached_property
    def text(self) -> str | None:
        try:
            return self.body.decode("utf-8-sig")
        except UnicodeDecodeError:
            return None


MAX_DEPTH = 255
"""The deepest nesting of a record's JSON that is read (the canonical serialisation that
gives the content hash goes no deeper); a deeper record is rejected."""


class UnreadableRecord(RecordError):
    """A record that was identified (``record_id``) but cannot be read as a whole."""

    def __init__(self, record_id: str, reason: str, *, pointer: str = "$") -> None:
        super().__init__(reason, pointer=pointer)
        self.record_id = record_id


def content_hash(data: Any) -> str:
    """SHA-256 of a record's canonical JSON (sorted keys, no whitespace)."""
    return hashlib.sha256(orjson.dumps(data, option=orjson.OPT_SORT_KEYS)).hexdigest()


def raw_record(
    source: Source,
    record_id: str,
    modified: dt.datetime | None,
    data: Any,
    doc: Document,
    pointer: str = "$",
) -> RawRecord | RecordError:
    """Build a :class:`RawRecord`, hashing ``data`` canonically; an
    :class:`UnreadableRecord` (to yield as a problem) when ``data`` cannot be serialised:
    nested deeper than :data:`MAX_DEPTH` levels, or an integer beyond 64 bits."""
    try:
        digest = content_hash(data)
    except orjson.JSONEncodeError as exc:
        reason = str(exc)
        if "ecursion" in reason:
            reason = f"nested deeper than {MAX_DEPTH} levels"
        return UnreadableRecord(record_id, f"cannot be read: {reason}", pointer=pointer)
    return RawRecord(
        source=source,
        record_id=record_id,
        modified=modified,
        content_hash=digest,
        data=data,
        origin=doc.origin,
        pointer=pointer,
    )


class FeedAdapter(ABC):
    """One feed format."""

    source: ClassVar[Source]
    description: ClassVar[str]

    @classmethod
    @abstractmethod
    def detect(cls, doc: Document) -> bool:
        """True when this adapter recognises the document's format."""

    @classmethod
    def resembles(cls, doc: Document) -> bool:
        """True when a document :meth:`detect` refused still looks like this format (a
        damaged copy: an id of the wrong type, a corrupted header…). Such a document is
        read by this adapter so that what is wrong with it is reported, not skipped as
        "not a feed"."""
        return False

    @abstractmethod
    def split(self, doc: Document) -> Iterator[RawRecord | RecordError]:
        """Cut a document into raw records; yield a RecordError for a record that
        cannot even be identified. Raise FeedFormatError when the document as a whole
        is unusable."""

    @abstractmethod
    def normalise(self, raw: RawRecord) -> NormalisedRecord:
        """Turn one raw record into facts; raise RecordError naming the JSON path."""


# --- small parsing helpers shared by the adapters -------------------------------------


def parse_datetime(value: Any, pointer: str) -> dt.datetime | None:
    """Parse an ISO 8601 / RFC 3339 timestamp; naive values are taken as UTC."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise RecordError(f"expected a timestamp string, got {type(value).__name__}",
                          pointer=pointer)
    text = value.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        raise RecordError(f"not an ISO 8601 timestamp: {value!r}", pointer=pointer) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC)


def parse_date(value: Any, pointer: str) -> dt.date | None:
    """Parse a date (``YYYY-MM-DD``) or the date part of a timestamp."""
    if value is None or value == "":
        return None
    if isinstance(value, str) and len(value.strip()) == 10:
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            raise RecordError(f"not a date: {value!r}", pointer=pointer) from None
    parsed = parse_datetime(value, pointer)
    return parsed.date() if parsed else None


def expect(obj: Any, key: str, kind: type | tuple[type, ...], pointer: str) -> Any:
    """``obj[key]`` checked to be of ``kind``; a RecordError naming the path otherwise."""
    if not isinstance(obj, dict):
        raise RecordError(f"expected an object, got {type(obj).__name__}", pointer=pointer)
    if key not in obj:
        raise RecordError(f"missing required field {key!r}", pointer=pointer)
    value = obj[key]
    if not isinstance(value, kind):
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise RecordError(
            f"expected {names}, got {type(value).__name__}", pointer=f"{pointer}.{key}"
        )
    return value


def optional(obj: Any, key: str, kind: type | tuple[type, ...], pointer: str) -> Any:
    """Like :func:`expect` but a missing or null key gives ``None``."""
    if not isinstance(obj, dict) or obj.get(key) is None:
        return None
    return expect(obj, key, kind, pointer)
