"""The PVDB and the policy, held open for many placements.

:class:`Deciding` opens the PVDB read-only and loads the policy once (again on the next
call while either fails), keeps one decision log writer (the service's, so that one
writer keeps the hash chain) and a second, quiet decider on the same evaluator for dry
runs, and decides one placement at a time (:func:`decide_placement`).
"""

from __future__ import annotations

import datetime as dt
import threading
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
                        log = self._given_log or DecisionLog(self.settings.decision_log)
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

    def readiness(self) -> list[str]:
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
        with self._lock:
            decider = self._decider if record else self._quiet
            pvdb = self._pvdb
            if decider is None or pvdb is None:
                raise NotReady("Vigil is shutting down; try again")
            return decide_placement(decider, pvdb, request, result, host_id=host_id,
                                    patched=patched, now=now, estimator=self.estimator(now),
                                    attestation_token=attestation_token if record else None)

    def close(self) -> None:
        with self._lock:
            if self._quiet is not None:
                self._quiet.close()  # the evaluator both deciders share
            if self._log is not None:
                self._log.close()
            self._log = None
            if self._pvdb is not None:
                self._pvdb.close()
            self._decider = self._quiet = None
            self._pvdb = None
            self._estimators = None
