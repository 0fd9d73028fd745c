"""The preparation queue: patched configurations to build before their patch ships.

``vigil predict prepare`` records, for an approved image, every affecting vulnerability
whose fix is expected within the decision window: the image, its components, the expected
patch (closing version or the line's backport), the expected date and interval, and the
date the patched configuration is needed by (the interval's low end: ready and attested
when the patch may first ship). The patched-configuration builder (``vigil images
prepare``) consumes ``pending`` and ``ready`` requests and marks each ``done`` or
``failed`` with the reason.

``vigil predict recheck`` looks again at pending requests whose expected date has passed:
if the fix now exists the request becomes ``ready`` (build it now); otherwise the miss is
logged in ``prediction_misses`` with the new estimate, and the request is re-dated.

The queue is its own DuckDB file (``VIGIL_PREDICT_DB``), migrated forward-only like the
PVDB; a request is identified by (image, vulnerability, component), so preparing the same
image twice updates rather than duplicates.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import orjson

from engine.migrations import StateFile
from engine.predict.errors import QueueError

SCHEMA_VERSION = 2
_MIGRATIONS = {
    1: """
    CREATE TABLE preparation_requests (
        request_id VARCHAR PRIMARY KEY,
        image VARCHAR NOT NULL,
        vuln_id VARCHAR NOT NULL,
        component VARCHAR NOT NULL,
        components JSON NOT NULL,
        expected_patch VARCHAR NOT NULL,
        expected_date DATE,
        interval_low DATE,
        interval_high DATE,
        confidence DOUBLE,
        basis VARCHAR NOT NULL,
        source VARCHAR,
        needed_by DATE,
        status VARCHAR NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL,
        UNIQUE (image, vuln_id, component)
    );
    CREATE TABLE prediction_misses (
        request_id VARCHAR NOT NULL,
        vuln_id VARCHAR NOT NULL,
        component VARCHAR NOT NULL,
        predicted_date DATE NOT NULL,
        checked_at TIMESTAMPTZ NOT NULL,
        new_date DATE,
        new_basis VARCHAR NOT NULL,
        new_source VARCHAR
    );
    """,
    2: """
    ALTER TABLE preparation_requests ADD COLUMN reason VARCHAR;
    """,
}

STATUSES = ("pending", "ready", "withdrawn", "done", "failed")
"""``done`` and ``failed`` are set by the builder that consumed the request (``vigil
images prepare``), with the reason."""


@dataclass(frozen=True, slots=True)
class Request:
    request_id: str
    image: str
    vuln_id: str
    component: str
    components: list[dict[str, object]]
    expected_patch: str
    expected_date: dt.date | None
    interval_low: dt.date | None
    interval_high: dt.date | None
    confidence: float | None
    basis: str
    source: str | None
    needed_by: dt.date | None
    status: str
    created_at: dt.datetime
    updated_at: dt.datetime
    reason: str | None = None
    """Why the request is ``done``, ``failed`` or ``withdrawn``, when its consumer said."""


@dataclass(frozen=True, slots=True)
class Miss:
    request_id: str
    vuln_id: str
    component: str
    predicted_date: dt.date
    checked_at: dt.datetime
    new_date: dt.date | None
    new_basis: str
    new_source: str | None


class Queue(StateFile):
    """The queue file, open for reading and writing."""

    MIGRATIONS = _MIGRATIONS
    NAME = "the preparation queue"
    SETTING = "VIGIL_PREDICT_DB"
    ERROR = QueueError

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._con = duckdb.connect(str(path))
        except (duckdb.Error, OSError) as exc:
            raise QueueError(f"cannot open the preparation queue {path}: {exc}",
                             tip="check VIGIL_PREDICT_DB, or wait for another Vigil command"
                             ) from exc
        self._migrate()

    def upsert(self, *, image: str, vuln_id: str, component: str,
               components: Sequence[dict[str, object]], expected_patch: str,
               expected_date: dt.date | None, interval: tuple[dt.date, dt.date] | None,
               confidence: float | None, basis: str, source: str | None,
               needed_by: dt.date | None, now: dt.datetime) -> tuple[str, bool]:
        """Record a request, or update the pending one for the same (image, vulnerability,
        component). Returns (request id, created)."""
        found = self._con.execute(
            "SELECT request_id FROM preparation_requests WHERE image = ? AND vuln_id = ?"
            " AND component = ?", [image, vuln_id, component]).fetchone()
        low, high = interval or (None, None)
        values = [orjson.dumps(list(components)).decode(), expected_patch, expected_date, low,
                  high, confidence, basis, source, needed_by]
        try:
            if found:
                self._con.execute(
                    "UPDATE preparation_requests SET components = ?, expected_patch = ?,"
                    " expected_date = ?, interval_low = ?, interval_high = ?, confidence = ?,"
                    " basis = ?, source = ?, needed_by = ?, updated_at = ?,"
                    " status = 'pending', reason = NULL WHERE request_id = ?",
                    [*values, now, found[0]])
                return str(found[0]), False
            request_id = uuid.uuid4().hex
            self._con.execute(
                "INSERT INTO preparation_requests VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
                " 'pending', ?, ?, NULL)",
                [request_id, image, vuln_id, component, *values, now, now])
            return request_id, True
        except duckdb.Error as exc:
            raise QueueError(f"recording a preparation request failed: {exc}") from exc

    def requests(self, status: str | None = None) -> list[Request]:
        sql = "SELECT * FROM preparation_requests"
        args: list[object] = []
        if status is not None:
            sql += " WHERE status = ?"
            args.append(status)
        rows = self._con.execute(sql + " ORDER BY needed_by NULLS LAST, image, vuln_id",
                                 args).fetchall()
        return [_request(r) for r in rows]

    def set_status(self, request_id: str, status: str, now: dt.datetime, *,
                   reason: str | None = None) -> None:
        if status not in STATUSES:
            raise QueueError(f"unknown request status {status!r}")
        self._con.execute("UPDATE preparation_requests SET status = ?, updated_at = ?,"
                          " reason = ? WHERE request_id = ?", [status, now, reason, request_id])

    def log_miss(self, request: Request, *, checked_at: dt.datetime, new_date: dt.date | None,
                 new_basis: str, new_source: str | None,
                 new_interval: tuple[dt.date, dt.date] | None,
                 new_confidence: float | None) -> Miss:
        """Log that ``request``'s expected date passed without a fix, and re-date it."""
        assert request.expected_date is not None
        miss = Miss(request.request_id, request.vuln_id, request.component,
                    request.expected_date, checked_at, new_date, new_basis, new_source)
        low, high = new_interval or (None, None)
        try:
            self._con.execute("BEGIN TRANSACTION")
            self._con.execute("INSERT INTO prediction_misses VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                              [miss.request_id, miss.vuln_id, miss.component,
                               miss.predicted_date, checked_at, new_date, new_basis,
                               new_source])
            self._con.execute(
                "UPDATE preparation_requests SET expected_date = ?, interval_low = ?,"
                " interval_high = ?, confidence = ?, basis = ?, source = ?,"
                " needed_by = coalesce(?, needed_by), updated_at = ? WHERE request_id = ?",
                [new_date, low, high, new_confidence, new_basis, new_source, low, checked_at,
                 request.request_id])
            self._con.execute("COMMIT")
        except duckdb.Error as exc:
            self._con.execute("ROLLBACK")
            raise QueueError(f"logging a missed prediction failed: {exc}") from exc
        return miss

    def misses(self) -> list[Miss]:
        rows = self._con.execute("SELECT * FROM prediction_misses ORDER BY checked_at").fetchall()
        return [Miss(*r) for r in rows]


def _request(row: tuple[object, ...]) -> Request:
    values = list(row)
    values[4] = orjson.loads(str(values[4]))
    return Request(*values)  # type: ignore[arg-type]
