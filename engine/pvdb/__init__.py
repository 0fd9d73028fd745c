"""The Predictive Vulnerability Database.

Public surface::

    from engine.pvdb import Pvdb, Component

    with Pvdb.open(path) as db:
        report = db.ingest(["feeds/snapshot"])          # IngestReport
        answer = db.affecting([Component(kind="kernel", vendor="linux",
                                         product="linux_kernel", version="6.6.30")])
        detail = db.show("CVE-2024-42135")
        past = db.history()                                 # per-line fixes, release dates

A predictor plugs into ``affecting`` through :class:`AvailabilityEstimator`
(``engine.predict`` provides one). ``history`` is the module of the history's types.

Everything else in this package is internal.
"""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from engine.config import Settings, load_settings
from engine.errors import DatabaseError
from engine.model import Component
from engine.pvdb import history, store
from engine.pvdb.estimation import AvailabilityEstimator
from engine.pvdb.history import History
from engine.pvdb.ingest import IngestReport, Problem, ProgressCallback, SourceCounts
from engine.pvdb.query_models import (
    AffectingReport,
    Availability,
    AvailabilityBasis,
    ComponentCoverage,
    CoverageStatus,
    Evidence,
    Finding,
    Fix,
    FixStatus,
    SourceCoverage,
    Undetermined,
)
from engine.pvdb.versions import compare as compare_versions

__all__ = [
    "AffectingReport",
    "Availability",
    "AvailabilityBasis",
    "AvailabilityEstimator",
    "Component",
    "ComponentCoverage",
    "CoverageStatus",
    "Evidence",
    "Finding",
    "Fix",
    "FixStatus",
    "History",
    "IngestReport",
    "Problem",
    "Pvdb",
    "SourceCounts",
    "SourceCoverage",
    "Undetermined",
    "compare_versions",
    "history",
]


class Pvdb:
    """A PVDB file, open for reading (and writing unless ``read_only``). Threads may
    share one: its queries take turns on its connection.

    Reads see the generation that was live when the file was opened (or, for a writer,
    when its last ingest switched its own generation in); an ingest builds the next
    generation beside the live file and switches it in at its end
    (:func:`store.next_generation`), so readers are never locked out."""

    def __init__(self, path: Path, *, read_only: bool = False,
                 settings: Settings | None = None) -> None:
        self.path = path
        self.read_only = read_only
        self.settings = settings or load_settings(db=path)
        if not read_only and not store.current(path):
            with store.next_generation(path):  # created, migrated or folded: switched in
                pass
        self._con = store.connect(path, read_only=True)
        self._index: Any = None
        self._facts: Any = None
        self._reports: Any = None
        self._reports_generation = -1
        self._history: tuple[int, History] | None = None
        self._frozen: tuple[int, str] | None = None
        self._writing = False
        self._lock = threading.RLock()  # one query at a time on the connection

    @classmethod
    def open(cls, path: Path | None = None, *, read_only: bool = False,
             settings: Settings | None = None) -> Pvdb:
        """Open the PVDB at ``path`` (default: the configured ``VIGIL_DB``)."""
        settings = settings or load_settings()
        return cls(path or settings.db, read_only=read_only, settings=settings)

    def __enter__(self) -> Pvdb:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._con.close()

    @property
    def generation(self) -> int:
        """The counter of fact-changing writes (read once per generation opened: the
        file a reader has open does not change under it)."""
        return self._generation()[0]

    @property
    def generation_id(self) -> str:
        """An id of this generation's facts (:func:`store.generation_id`; for a file
        written before it existed, an id of this open connection)."""
        return self._generation()[1]

    def _generation(self) -> tuple[int, str]:
        if self._frozen is not None:
            return self._frozen
        found = (store.generation(self._con),
                 store.generation_id(self._con) or f"open:{uuid.uuid4().hex}")
        if not self._writing:  # a reader's file does not change under it
            self._frozen = found
        return found

    def ingest(self, sources: Sequence[str], *,
               progress: ProgressCallback | None = None) -> IngestReport:
        """Ingest files, folders and URLs (see :mod:`engine.pvdb.ingest`)."""
        from engine.pvdb.ingest import ingest

        if self.read_only:
            raise DatabaseError(f"the PVDB {self.path} is open read-only")
        reader = self._con
        with store.next_generation(self.path) as con:
            self._con, self._writing, self._frozen = con, True, None
            try:
                before = self.generation
                report = ingest(con, sources, self.settings, progress=progress)
                if self.generation != before or history.stored_generation(con) != before:
                    self._refresh_history(kernel_only=True)
            finally:
                self._con, self._writing, self._frozen = reader, False, None
        # the new generation is live: read it from now on
        self._con = store.connect(self.path, read_only=True)
        reader.close()
        return report

    def history(self) -> History:
        """What the PVDB says happened per (vulnerability, line) and per product line
        (:mod:`engine.pvdb.history`). Derived once per generation when an ingest ends and
        stored with the data; read once per generation and kept."""
        with self._lock:
            return self._history_now()

    def _history_now(self) -> History:
        generation = self.generation
        if self._history is not None and self._history[0] == generation:
            return self._history[1]
        if history.stored_generation(self._con) == generation:
            found = history.read(self._con)
        elif not self._writing:
            # stored by an older Vigil, or an ingest was killed before storing it: work it
            # out (once for this generation) without writing
            found = history.derive(self._con, self._match_index())
        else:
            found = self._refresh_history()
        self._history = (generation, found)
        return found

    def _refresh_history(self, *, kernel_only: bool = False) -> History:
        """Bring the stored history to this generation: restamped when none of its inputs
        changed, else derived (with only the kernel's part of the match index when no
        query needs the rest) and stored."""
        generation = self.generation
        fingerprint = history.inputs_fingerprint(self._con)
        if history.stored_fingerprint(self._con) == fingerprint and \
                history.stored_generation(self._con) is not None:
            history.restamp(self._con, generation, fingerprint)
            found = history.read(self._con)
        else:
            if kernel_only:
                from engine.pvdb.matching import MatchIndex

                index = MatchIndex.load(self._con, generation, product=history.KERNEL)
            else:
                index = self._match_index()
            found = history.derive(self._con, index)
            history.store(self._con, generation, found, fingerprint)
        self._history = (generation, found)
        return found

    def _match_index(self) -> Any:
        from engine.pvdb.query import match_index

        return match_index(self)

    def affecting(
        self,
        components: Sequence[Component],
        *,
        within_days: int | None = None,
        min_score: float | None = None,
        kev_only: bool = False,
        as_of: dt.datetime | None = None,
        estimator: AvailabilityEstimator | None = None,
    ) -> AffectingReport:
        """The vulnerabilities that affect ``components``.

        ``within_days`` keeps findings whose fix is available, or expected, no later than
        that many days after ``as_of``; ``min_score`` keeps findings with a CVSS base score
        at least that high (from any provider); ``kev_only`` keeps CISA KEV entries.
        ``estimator`` estimates when lines with no fix of their own get one; without it
        such findings say only what was released (``engine.pvdb.estimation``).
        """
        from engine.pvdb.query import affecting

        with self._lock:
            return affecting(self, components, within_days=within_days, min_score=min_score,
                             kev_only=kev_only, as_of=as_of, estimator=estimator)

    def show(self, vuln_id: str) -> dict[str, Any]:
        """Every fact the PVDB holds about one vulnerability, per source."""
        from engine.pvdb.query import show

        return show(self, vuln_id)

    def status(self) -> list[dict[str, Any]]:
        """Per source: records stored, last sync, schema version."""
        from engine.pvdb.ingest import source_status

        return source_status(self._con)

    def last_problems(self) -> dict[str, Any] | None:
        """The last ingest run with its problems and warnings (None before any)."""
        from engine.pvdb.ingest import last_run_problems

        return last_run_problems(self._con)

    def coverage(self) -> list[dict[str, Any]]:
        """Per ecosystem and release (packages) or vendor/product (products): the sources
        that cover it, how many records, as of when (:mod:`engine.pvdb.coverage`)."""
        from engine.pvdb.coverage import by_ecosystem

        return by_ecosystem(self._con)
