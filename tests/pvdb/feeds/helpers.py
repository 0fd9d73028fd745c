"""Helpers for adapter tests: run one adapter over a document, in memory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from engine.errors import RecordError
from engine.pvdb.feeds import adapter_for
from engine.pvdb.feeds.base import Document, FeedAdapter
from engine.pvdb.models import NormalisedRecord, RawRecord


def doc_from(obj: Any, name: str = "test.json") -> Document:
    body = obj if isinstance(obj, bytes) else orjson.dumps(obj)
    return Document(name, body)


def doc_from_file(path: Path) -> Document:
    return Document(str(path), path.read_bytes())


def normalise_all(doc: Document, adapter: FeedAdapter | None = None) -> list[NormalisedRecord]:
    """Every record of ``doc`` normalised; any RecordError is raised."""
    adapter = adapter or adapter_for(doc)
    assert adapter is not None, f"no adapter recognises {doc.origin}"
    out = []
    for item in adapter.split(doc):
        if isinstance(item, RecordError):
            raise item
        out.append(adapter.normalise(item))
    return out


def split_all(doc: Document, adapter: FeedAdapter) -> list[RawRecord | RecordError]:
    return list(adapter.split(doc))
