"""Provisioning requests, durable: their own DuckDB file (setting ``requests_db``).

A request moves through these states, each move one transaction that writes the
request's row *and* an append-only ``request_events`` row (so a kill at any point leaves
both or neither)::

    awaiting_approval -> approved -> launched
          |   \\            \\
          |    rejected      failed     (the launcher refused it for good)
          expired
    delayed -> (re-checked at recheck_at) -> awaiting_approval | delayed | rejected

``rejected`` is also where a request ends when the flow rejects it. A move is made only
from the states it names (:meth:`RequestStore.move`), so two approvals race to one
``approved`` and only the winner launches; the schema is migrated forward-only with
:func:`engine.migrations.migrate`.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import duckdb
import orjson

from engine.errors import EXIT_CHECK, DatabaseError, NotFoundError, VigilError
from engine.migrations import StateFile

RequestStatus = Literal["awaiting_approval", "approved", "launched", "rejected", "expired",
                        "delayed", "failed"]
STATUSES: tuple[RequestStatus, ...] = ("awaiting_approval", "approved", "launched",
                                       "rejected", "expired", "delayed", "failed")
FINAL: frozenset[str] = frozenset({"launched", "rejected", "expired", "failed"})

SCHEMA_VERSION = 1
_MIGRATIONS = {
    1: """
    CREATE TABLE requests (
        request_id VARCHAR PRIMARY KEY,
        tenant VARCHAR NOT NULL,
        status VARCHAR NOT NULL,
        ask JSON NOT NULL,
        verdict VARCHAR,
        host_id VARCHAR,
        target_host VARCHAR,
        target_image_version VARCHAR,
        patch_host_first BOOLEAN NOT NULL,
        decision_id VARCHAR,
        reasons JSON NOT NULL,
        warnings JSON NOT NULL,
        steps JSON NOT NULL,
        failed_step VARCHAR,
        report JSON,
        report_jws VARCHAR,
        preparation JSON NOT NULL,
        recheck_at TIMESTAMPTZ,
        expires_at TIMESTAMPTZ,
        checks INTEGER NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL,
        approved_at TIMESTAMPTZ,
        approved_by VARCHAR,
        launched_at TIMESTAMPTZ,
        launch_ref VARCHAR,
        failure VARCHAR
    );
    CREATE TABLE request_events (
        request_id VARCHAR NOT NULL,
        seq INTEGER NOT NULL,
        event_at TIMESTAMPTZ NOT NULL,
        actor VARCHAR NOT NULL,
        event VARCHAR NOT NULL,
        status_before VARCHAR,
        status_after VARCHAR,
        detail JSON,
        PRIMARY KEY (request_id, seq)
    );
    """,
}

_COLUMNS = ("request_id", "tenant", "status", "ask", "verdict", "host_id", "target_host",
            "target_image_version", "patch_host_first", "decision_id", "reasons", "warnings",
            "steps", "failed_step", "report", "report_jws", "preparation", "recheck_at",
            "expires_at", "checks", "created_at", "updated_at", "approved_at", "approved_by",
            "launched_at", "launch_ref", "failure")
_JSON = {"ask", "reasons", "warnings", "steps", "report", "preparation"}


class RequestsDbError(DatabaseError):
    """The requests file cannot be opened, migrated or written."""


class RequestNotFound(NotFoundError):
    """No such request (or not one of the caller's tenant)."""


class RequestConflict(VigilError):
    """The request's state does not allow what was asked (approving an expired one)."""

    exit_code = EXIT_CHECK

    def __init__(self, summary: str, *, status: str, tip: str | None = None) -> None:
        super().__init__(summary, tip=tip)
        self.status = status


@dataclass(frozen=True)
class RequestRecord:
    """One provisioning request as stored."""

    request_id: str
    tenant: str
    status: RequestStatus
    ask: dict[str, Any]
    verdict: str | None
    host_id: str | None
    target_host: str | None
    target_image_version: str | None
    patch_host_first: bool
    decision_id: str | None
    reasons: list[str]
    warnings: list[str]
    steps: list[dict[str, Any]]
    failed_step: str | None
    report: dict[str, Any] | None
    report_jws: str | None
    preparation: list[str]
    recheck_at: dt.datetime | None
    expires_at: dt.datetime | None
    checks: int
    created_at: dt.datetime
    updated_at: dt.datetime
    approved_at: dt.datetime | None = None
    approved_by: str | None = None
    launched_at: dt.datetime | None = None
    launch_ref: str | None = None
    failure: str | None = None


@dataclass(frozen=True)
class RequestEvent:
    request_id: str
    seq: int
    at: dt.datetime
    actor: str
    event: str
    before: str | None
    after: str | None
    detail: dict[str, Any] | None = field(default=None)


def _dump(value: object) -> str:
    return orjson.dumps(value, default=str).decode()


def _record(row: Sequence[object]) -> RequestRecord:
    values: dict[str, Any] = dict(zip(_COLUMNS, row, strict=True))
    for name in _JSON:
        if values[name] is not None:
            values[name] = orjson.loads(str(values[name]))
    for name in ("recheck_at", "expires_at", "created_at", "updated_at", "approved_at",
                 "launched_at"):
        if isinstance(values[name], dt.datetime):
            values[name] = values[name].astimezone(dt.UTC)
    return RequestRecord(**values)


class RequestStore(StateFile):
    """The requests file, open for reading and writing (one writer: the service)."""

    MIGRATIONS = _MIGRATIONS
    NAME = "the provisioning requests"
    SETTING = "VIGIL_REQUESTS_DB"
    ERROR = RequestsDbError

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.RLock()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._con = duckdb.connect(str(path))
        except (duckdb.Error, OSError) as exc:
            raise RequestsDbError(f"cannot open the provisioning requests {path}: {exc}",
                                  tip="check VIGIL_REQUESTS_DB, or stop the other Vigil "
                                      "service using it") from exc
        self._migrate()

    def close(self) -> None:
        with self._lock:
            self._con.close()

    # -- writing ------------------------------------------------------------------------

    def _event(self, request_id: str, at: dt.datetime, actor: str, event: str,
               before: str | None, after: str | None, detail: dict[str, Any] | None) -> None:
        row = self._con.execute("SELECT coalesce(max(seq), 0) FROM request_events WHERE "
                                "request_id = ?", [request_id]).fetchone()
        seq = int(row[0]) + 1 if row else 1
        self._con.execute("INSERT INTO request_events VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                          [request_id, seq, at, actor, event, before, after,
                           None if detail is None else _dump(detail)])

    def _atomic(self, what: str, body: Any) -> Any:
        con = self._con
        with self._lock:
            try:
                con.execute("BEGIN TRANSACTION")
            except duckdb.Error as exc:
                raise RequestsDbError(f"{what} failed: {exc}") from exc
            try:
                out = body()
                con.execute("COMMIT")
                return out
            except BaseException as exc:
                con.execute("ROLLBACK")
                if isinstance(exc, duckdb.Error):
                    raise RequestsDbError(f"{what} failed: {exc}") from exc
                raise

    def create(self, record: RequestRecord, *, actor: str) -> RequestRecord:
        values = [_dump(getattr(record, c)) if c in _JSON else getattr(record, c)
                  for c in _COLUMNS]

        def body() -> None:
            self._con.execute(f"INSERT INTO requests VALUES ({', '.join('?' * len(values))})",
                              values)
            self._event(record.request_id, record.created_at, actor, "created", None,
                        record.status, {"verdict": record.verdict,
                                        "decision_id": record.decision_id})

        self._atomic("recording the provisioning request", body)
        return self.get(record.request_id)

    def move(self, request_id: str, allowed: Iterable[str], to: str, *, actor: str,
             at: dt.datetime, event: str, detail: dict[str, Any] | None = None,
             **fields: Any) -> tuple[bool, RequestRecord]:
        """Move the request to ``to`` (setting ``fields``) if its status is one of
        ``allowed``, in one transaction with its event row. Returns whether it moved and
        the record as it now is."""
        allowed = set(allowed)
        for name in fields:
            if name not in _COLUMNS or name in ("request_id", "tenant", "created_at"):
                raise ValueError(f"cannot set {name}")

        def body() -> bool:
            row = self._con.execute("SELECT status FROM requests WHERE request_id = ?",
                                    [request_id]).fetchone()
            if row is None:
                raise RequestNotFound(f"no provisioning request {request_id}")
            before = str(row[0])
            if before not in allowed:
                return False
            sets = {**fields, "status": to, "updated_at": at}
            self._con.execute(
                f"UPDATE requests SET {', '.join(f'{k} = ?' for k in sets)} "
                "WHERE request_id = ?",
                [_dump(v) if k in _JSON else v for k, v in sets.items()] + [request_id])
            self._event(request_id, at, actor, event, before, to, detail)
            return True

        moved = bool(self._atomic(f"updating provisioning request {request_id}", body))
        return moved, self.get(request_id)

    def note(self, request_id: str, *, actor: str, at: dt.datetime, event: str,
             detail: dict[str, Any] | None = None) -> None:
        """An event that changes no state (a launch attempt that will be retried)."""
        self._atomic(f"noting on provisioning request {request_id}",
                     lambda: self._event(request_id, at, actor, event, None, None, detail))

    # -- reading ------------------------------------------------------------------------

    def _select(self, where: str, args: Sequence[object]) -> list[RequestRecord]:
        with self._lock:
            rows = self._con.execute(f"SELECT {', '.join(_COLUMNS)} FROM requests {where}",
                                     list(args)).fetchall()
        return [_record(r) for r in rows]

    def get(self, request_id: str) -> RequestRecord:
        found = self._select("WHERE request_id = ?", [request_id])
        if not found:
            raise RequestNotFound(f"no provisioning request {request_id}")
        return found[0]

    def find(self, *, tenant: str | None = None, status: str | None = None,
             limit: int = 100) -> list[RequestRecord]:
        where, args = "WHERE 1=1", []
        if tenant is not None:
            where += " AND tenant = ?"
            args.append(tenant)
        if status is not None:
            where += " AND status = ?"
            args.append(status)
        return self._select(where + " ORDER BY created_at DESC, request_id LIMIT ?",
                            [*args, int(limit)])

    def due_rechecks(self, now: dt.datetime) -> list[RequestRecord]:
        return self._select("WHERE status = 'delayed' AND recheck_at <= ? "
                            "ORDER BY recheck_at", [now])

    def due_expiries(self, now: dt.datetime) -> list[RequestRecord]:
        return self._select("WHERE status = 'awaiting_approval' AND expires_at <= ? "
                            "ORDER BY expires_at", [now])

    def approved(self) -> list[RequestRecord]:
        """Approved and not launched yet (after a restart: the launches to resume)."""
        return self._select("WHERE status = 'approved' ORDER BY approved_at", [])

    def next_due(self) -> dt.datetime | None:
        with self._lock:
            row = self._con.execute(
                "SELECT min(t) FROM (SELECT recheck_at AS t FROM requests WHERE status = "
                "'delayed' UNION ALL SELECT expires_at FROM requests WHERE status = "
                "'awaiting_approval')").fetchone()
        value = row[0] if row else None
        return value.astimezone(dt.UTC) if isinstance(value, dt.datetime) else None

    def events(self, request_id: str) -> list[RequestEvent]:
        with self._lock:
            rows = self._con.execute("SELECT * FROM request_events WHERE request_id = ? "
                                     "ORDER BY seq", [request_id]).fetchall()
        return [RequestEvent(str(r[0]), int(r[1]), r[2].astimezone(dt.UTC), str(r[3]),
                             str(r[4]), r[5], r[6],
                             None if r[7] is None else orjson.loads(str(r[7])))
                for r in rows]
