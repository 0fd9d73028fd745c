"""What the flow reads from the other parts' state files, each behind a small port:

* :class:`FleetFile`: the fleet inventory (``fleet_db``), re-read when its file changes
  (while it is being rewritten the last inventory read stands), and written (a launched
  VM) under the same lock, since one process may not hold a DuckDB file open twice with
  different modes;
* :class:`CatalogFile`: the host's patched configuration from the image catalog
  (``images_db``), :func:`engine.images.patched_configuration`, re-read when the file
  changes;
* :class:`PreparationQueue`: asks the predictor's preparation queue (``predict_db``) for
  the patched configurations a ``delay`` needs (:func:`engine.predict.prepare`).
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol, TypeVar

from engine.decide import PatchedConfiguration
from engine.errors import VigilError
from engine.fleet import Fleet, FleetSnapshot
from engine.model import Component, ImageRef
from engine.pvdb import Pvdb

T = TypeVar("T")


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns)


class FleetSource(Protocol):
    def snapshot(self) -> FleetSnapshot | str:
        """The inventory, or why there is none."""
        ...


class FleetFile:
    """The fleet inventory file, read and written under one lock."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._cached: tuple[tuple[int, int], FleetSnapshot] | None = None

    def snapshot(self) -> FleetSnapshot | str:
        with self._lock:
            stamp = _stamp(self.path)
            if stamp is None:
                return (f"there is no fleet inventory at {self.path} (import one with "
                        "`vigil fleet import`)")
            cached = self._cached
            if cached is not None and cached[0] == stamp:
                return cached[1]
            try:
                with Fleet.open(self.path, read_only=True) as fleet:
                    snap = fleet.snapshot()
            except VigilError as exc:
                if cached is not None:
                    return cached[1]  # being rewritten: the last inventory read stands
                return f"the fleet inventory does not open: {exc.summary}"
            self._cached = (stamp, snap)
            return snap

    def write(self, body: Callable[[Fleet], T]) -> T:
        """Run ``body`` on the inventory opened for writing (closed again after)."""
        with self._lock, Fleet.open(self.path) as fleet:
            out = body(fleet)
        with self._lock:
            self._cached = None
        return out


class PatchedSource(Protocol):
    def patched(self, image: ImageRef) -> PatchedConfiguration: ...


class CatalogFile:
    """Patched configurations from the image catalog file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._cached: dict[tuple[str, str], PatchedConfiguration] = {}
        self._stamp: tuple[int, int] | None = None

    def patched(self, image: ImageRef) -> PatchedConfiguration:
        from engine.images import Catalog, patched_configuration

        with self._lock:
            stamp = _stamp(self.path)
            if stamp is None:
                return PatchedConfiguration(state="none")
            if stamp != self._stamp:
                self._cached.clear()
                self._stamp = stamp
            key = (image.name, image.version)
            known = self._cached.get(key)
            if known is not None:
                return known
            try:
                with Catalog(self.path, read_only=True) as catalog:
                    state = patched_configuration(catalog, image)
            except VigilError:
                return PatchedConfiguration(state="none")  # unreadable now: nothing ready
            self._cached[key] = state
            return state


class Preparation(Protocol):
    def request(self, image: ImageRef, components: Sequence[Component],
                now: dt.datetime) -> list[str]:
        """Queue the patched configurations ``image`` needs; the request ids."""
        ...


class PreparationQueue:
    """The predictor's preparation queue file."""

    def __init__(self, path: Path, using: Callable[[Callable[[Pvdb], list[str]]], list[str]],
                 *, window_days: int) -> None:
        """``using(body)`` runs ``body(pvdb)`` with the PVDB the placements read."""
        self.path = path
        self.using = using
        self.window_days = window_days
        self._lock = threading.Lock()
        self._done: dict[tuple[str, str, dt.date], list[str]] = {}

    def request(self, image: ImageRef, components: Sequence[Component],
                now: dt.datetime) -> list[str]:
        from engine.predict import Queue, prepare

        def body(pvdb: Pvdb) -> list[str]:
            with Queue(self.path) as queue:
                done = prepare(pvdb, queue, f"{image.name}@{image.version}",
                               list(components), as_of=now, window_days=self.window_days)
            return [p.request_id for p in done]

        # queued once per image and day: the queue's upsert would write the same rows again
        key = (image.name, image.version, now.astimezone(dt.UTC).date())
        with self._lock:
            known = self._done.get(key)
            if known is None:
                known = self.using(body)
                self._done = {k: v for k, v in self._done.items() if k[2] == key[2]}
                self._done[key] = known
            return list(known)
