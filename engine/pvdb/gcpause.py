"""Pausing Python's cyclic garbage collector around bulk work."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Pause the cyclic garbage collector for the duration of the block.

    Ingest and index loading allocate millions of short-lived, acyclic objects; the
    collections those allocations trigger cost more than the work itself (measured: a
    300,000-record ingest took 113 s with the collector and 66 s without). Reference
    counting still frees everything; one collection runs at the end.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
        gc.collect()
