"""The PVDB and the policy, held open for many placements.

:class:`Deciding` opens the PVDB read-only and loads the policy once (again on the next
call while either fails), keeps one decision log writer (the service's, so that one
writer keeps the hash chain) and a second, quiet decider on the same evaluator for dry
runs, and decides one placement at a time (:func:`decide_placement`).

The PVDB is read from the generation that was live when it was opened; when an ingest
switches a new generation in (``os.replace`` of the file), :class:`Deciding` opens it on a
thread of its own, loads its match index and fix history, and only then decides on it:
the decisions meanwhile go on, on the previous one. Host postures are kept by the
decider, keyed on the PVDB generation among the rest.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from engine.config import Settings
from engine.decide import Decider, DecisionLog, PatchedConfiguration, RequestFacts
from engine.errors import VigilError
from engine.predict import Context, Estimator, default_calendars
from engine.provision.placement import Placement, decide_placement
from engine.pvdb import Pvdb

if TYPE_CHECKING:
    from engine.attest import AttestationResult

T = TypeVar("T")


class NotReady(VigilError):
    """The PVDB or the policy is not there (yet)."""


class Deciding:
    """The PVDB (read-only) and the policy's deciders."""

    def __init__(self, settings: Settings, *, decision_log: DecisionLog | None = None
                 ) -> None:
        self.settings = settings
        self._given_log = decision_log
        self._log: DecisionLog | None = None
        self._lock = threading.Lock()
        self._pvdb: Pvdb | None = None
        self._decider: Decider | None = None
        self._quiet: Decider | None = None
        self._estimators: tuple[int, Estimator] | None = None
        self._pvdb_stamp: tuple[int, int, int] | None = None
        self._pvdb_checked = 0.0
        self._reopening = False
        self._readers: dict[int, int] = {}  # decisions reading each PVDB object, by id
        self._idle = threading.Condition(self._lock)  # notified when a decision ends
        self._closing = False
        self._retired: list[Pvdb] = []  # replaced generations a decision still reads

    @property
    def log(self) -> DecisionLog | None:
        """The decision log decisions are written to (None until :meth:`open`)."""
        with self._lock:
            return self._given_log if self._decider is not None and self._log is None \
                else self._log

    def open(self) -> list[str]:
        """Open the PVDB and load the policy; the problems, empty when both are there."""
        with self._lock:
            problems: list[str] = []
            if self._pvdb is None:
                if not self.settings.db.is_file():
                    problems.append(f"no PVDB at {self.settings.db} (build it with "
                                    "`vigil feeds ingest`)")
                else:
                    try:
                        self._pvdb_stamp = self._stamp()
                        self._pvdb = Pvdb.open(self.settings.db, read_only=True,
                                               settings=self.settings)
                    except VigilError as exc:
                        problems.append(f"the PVDB does not open read-only: {exc.summary}")
                    except Exception as exc:  # duckdb's own errors (locked, corrupt)
                        problems.append(f"the PVDB does not open read-only: {exc}")
            if self._decider is None:
                try:
                    quiet = Decider.from_settings(self.settings, log=False)
                    try:
                        # with the configured audit signing key: the service's log signs
                        # its checkpoints like every other writer's
                        log = self._given_log or DecisionLog.from_settings(self.settings)
                        self._decider = Decider(quiet.evaluator, log)
                    except BaseException:
                        quiet.close()
                        raise
                    self._quiet = quiet
                    self._log = log if self._given_log is None else None
                except VigilError as exc:
                    problems.append(f"the policy does not load: {exc.summary}")
                except Exception as exc:  # the decision log's file
                    problems.append(f"the policy or the decision log does not load: {exc}")
            return problems

    # the PVDB's generations -----------------------------------------------------------

    def _stamp(self) -> tuple[int, int, int] | None:
        try:
            st = self.settings.db.stat()
        except OSError:
            return None
        return (st.st_dev, st.st_ino, st.st_mtime_ns)

    def follow(self) -> None:
        """Open a newly switched-in PVDB generation in the background (at most one check
        every 0.2 s): decisions never wait for it."""
        now = time.monotonic()
        if self._reopening or self._pvdb is None or now - self._pvdb_checked < 0.2:
            return
        self._pvdb_checked = now
        stamp = self._stamp()
        if stamp is None or stamp == self._pvdb_stamp:
            return
        self._reopening = True
        threading.Thread(target=self._reopen, args=(stamp,), name="vigil-pvdb-reopen",
                         daemon=True).start()

    def _reopen(self, stamp: tuple[int, int, int]) -> None:
        try:
            fresh = Pvdb.open(self.settings.db, read_only=True, settings=self.settings)
            try:
                fresh.affecting([])  # its match index, loaded before a decision needs it
                estimator = (fresh.generation,
                             Estimator(fresh.history(), default_calendars(self.settings.calendars)))
            except BaseException:
                fresh.close()
                raise
        except Exception:
            self._reopening = False
            return
        with self._lock:
            old = self._pvdb
            if old is None:  # closed meanwhile
                fresh.close()
            else:
                self._pvdb, self._pvdb_stamp, self._estimators = fresh, stamp, estimator
                # decisions run outside the lock: the one replaced is closed once no
                # decision reads it any more
                self._retired.append(old)
                self._close_retired()
        self._reopening = False

    def _close_retired(self) -> None:
        """Close the replaced generations no decision reads (the lock held)."""
        keep = []
        for gone in self._retired:
            if self._readers.get(id(gone), 0):
                keep.append(gone)
            else:
                gone.close()
        self._retired = keep

    def readiness(self) -> list[str]:
        if self._closing:
            return ["Vigil is shutting down"]
        if self._pvdb is None or self._decider is None:
            return self.open()
        return []

    def estimator(self, now: dt.datetime) -> Context:
        """The predictor's estimator as of ``now`` (:func:`engine.predict.estimator_for`),
        its history and release calendars read once per PVDB generation."""
        pvdb = self._pvdb
        if pvdb is None:
            raise NotReady("the PVDB is not open")
        generation = pvdb.generation
        cached = self._estimators
        if cached is None or cached[0] != generation:
            source = self.settings.calendars
            cached = (generation, Estimator(pvdb.history(), default_calendars(source)))
            self._estimators = cached
        return Context(cached[1], now, self.settings.predict_window_days,
                       settings_key=str(self.settings.calendars))

    def knowledge(self) -> tuple[str | None, str | None, float | None]:
        """What a decision rests on besides its input: (the policy's bundle revision, the
        PVDB generation's id, the policy's attestation ``max_age_seconds``), None where
        not loaded or not stated."""
        self.readiness()
        with self._lock:
            decider, pvdb = self._quiet, self._pvdb
            revision = None if decider is None else decider.evaluator.bundle_revision
            generation = None if pvdb is None else pvdb.generation_id
            policy = None if decider is None else getattr(decider.evaluator, "policy", None)
        max_age = None
        try:
            data = getattr(policy, "data", None) or {}
            value = data["vigil"]["config"]["attestation"]["max_age_seconds"]
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                max_age = float(value)
        except (AttributeError, KeyError, TypeError, ValueError):
            pass
        return revision, generation, max_age

    def using(self, body: Callable[[Pvdb], T]) -> T:
        """``body(pvdb)``, one at a time with the decisions."""
        problems = self.readiness()
        if problems:
            raise NotReady(f"the PVDB cannot be read now: {problems[0]}")
        self.follow()
        with self._lock:
            if self._pvdb is None:
                raise NotReady("Vigil is shutting down; try again")
            return body(self._pvdb)

    def decide(self, request: RequestFacts, result: AttestationResult | None, *,
               host_id: str, patched: PatchedConfiguration, now: dt.datetime,
               record: bool = True, attestation_token: str | None = None) -> Placement:
        """Decide and (with ``record``) log; ``attestation_token`` is the EAR the result
        was read from, kept with the logged decision for offline audit."""
        problems = self.readiness()
        if problems:
            raise NotReady(f"Vigil cannot decide placements now: {problems[0]}")
        self.follow()
        with self._lock:
            decider = self._decider if record else self._quiet
            pvdb = self._pvdb
            if decider is None or pvdb is None or self._closing:
                raise NotReady("Vigil is shutting down; try again")
            estimator = self.estimator(now)
            self._readers[id(pvdb)] = self._readers.get(id(pvdb), 0) + 1
        # decided outside the lock, so that decisions overlap (the decider's log writer
        # writes them in groups; the PVDB's queries take turns on its connection)
        try:
            return decide_placement(decider, pvdb, request, result, host_id=host_id,
                                    patched=patched, now=now, estimator=estimator,
                                    attestation_token=attestation_token if record else None)
        finally:
            with self._lock:
                left = self._readers.pop(id(pvdb)) - 1
                if left:
                    self._readers[id(pvdb)] = left
                if self._retired:
                    self._close_retired()
                if not self._readers:
                    self._idle.notify_all()

    def close(self, *, wait: float = 30.0) -> None:
        """Refuse new decisions, wait for those being decided (at most ``wait``
        seconds), write the queued log records, and close the policy, the log and the
        PVDB. A decision still running after ``wait`` fails (closed) on its closed
        PVDB or log rather than keep the service from stopping."""
        with self._lock:
            self._closing = True
            self._idle.wait_for(lambda: not self._readers, timeout=wait)
            decider = self._decider
        if decider is not None:
            decider.stop_logging()  # outside the lock: its queue drains into the log
        with self._lock:
            if self._quiet is not None:
                self._quiet.close()  # the evaluator both deciders share
            if self._log is not None:
                self._log.close()
            self._log = None
            if self._pvdb is not None:
                self._pvdb.close()
            for gone in self._retired:
                gone.close()
            self._retired = []
            self._decider = self._quiet = None
            self._pvdb = None
            self._estimators = None
            self._closing = False  # opened again by the next open()
