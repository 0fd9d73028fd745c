"""Feed adapters, one module per format, discovered from this package.

Each module defines one :class:`~engine.pvdb.feeds.base.FeedAdapter` subclass. Their
``detect`` methods must be mutually exclusive: a document is read by the one adapter
that recognises it.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from functools import cache

from engine.pvdb.feeds.base import Document, FeedAdapter, FeedFormatError

__all__ = ["Document", "FeedAdapter", "FeedFormatError", "adapter_for", "adapters"]


@cache
def adapters() -> tuple[FeedAdapter, ...]:
    """One instance of every adapter in this package, in module-name order."""
    found: list[FeedAdapter] = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name == "base" or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if (
                issubclass(obj, FeedAdapter)
                and obj is not FeedAdapter
                and obj.__module__ == module.__name__
                and not inspect.isabstract(obj)
            ):
                found.append(obj())
    return tuple(found)


def adapter_for(doc: Document) -> FeedAdapter | None:
    """The adapter that recognises ``doc``; else the first whose format ``doc`` resembles
    (it then reports what is wrong); else None: ``doc`` is not a feed."""
    for adapter in adapters():
        if adapter.detect(doc):
            return adapter
    for adapter in adapters():
        if adapter.resembles(doc):
            return adapter
    return None
