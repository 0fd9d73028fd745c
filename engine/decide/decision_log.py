"""The append-only decision log, in its own DuckDB file.

One row per decision: decision id, timestamp, query path, input, result, bundle
revision, evaluator, timings, and an error when the engine rejected because the policy
could not decide. Decisions OPA servers made land here too: OPA's decision-log plugin
uploads its events (``vigil bundle serve --accept-decision-logs``), and
:meth:`DecisionLog.append_opa_event` keeps each with its bundles' revisions. Rows are
chained: each stores the SHA-256 of its content and of the row before it, so a changed or
removed row is detected by :meth:`DecisionLog.verify_chain`. The log offers no update or
delete.

The bundles that decided are stored once per revision (``decision_bundles``), so that a
recorded decision can be replayed with the very policy that made it.

:meth:`DecisionLog.export_ndjson` writes OPA decision-log events (``decision_id``,
``labels``, ``bundles``, ``path``, ``input``, ``result``, ``timestamp``, ``metrics``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import platform
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import duckdb

from engine import __version__
from engine.decide.errors import DecisionLogError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS decision_log (
    seq BIGINT PRIMARY KEY,
    decision_id VARCHAR NOT NULL UNIQUE,
    ts TIMESTAMPTZ NOT NULL,
    path VARCHAR NOT NULL,
    input VARCHAR NOT NULL,
    result VARCHAR NOT NULL,
    bundle_revision VARCHAR,
    evaluator VARCHAR NOT NULL,
    metrics VARCHAR NOT NULL,
    error VARCHAR,
    labels VARCHAR NOT NULL,
    prev_hash VARCHAR NOT NULL,
    record_hash VARCHAR NOT NULL
);
ALTER TABLE decision_log ADD COLUMN IF NOT EXISTS bundles VARCHAR;
CREATE TABLE IF NOT EXISTS decision_bundles (
    revision VARCHAR NOT NULL,
    sha256 VARCHAR NOT NULL,
    archive BLOB NOT NULL,
    origin VARCHAR,
    recorded_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (revision, sha256)
);
"""
_GENESIS = "0" * 64


@dataclass(frozen=True)
class DecisionRecord:
    """One logged decision."""

    seq: int
    decision_id: str
    timestamp: dt.datetime
    path: str
    input: dict[str, Any]
    result: dict[str, Any]
    bundle_revision: str | None
    evaluator: str
    metrics: dict[str, int]
    error: str | None
    labels: dict[str, str]
    bundles: dict[str, str] | None = None
    """Bundle name -> revision, when the decision named several (OPA's ``bundles``)."""

    def opa_event(self) -> dict[str, Any]:
        """This decision as an OPA decision-log event."""
        event: dict[str, Any] = {
            "decision_id": self.decision_id,
            "labels": self.labels,
            "bundles": ({name: {"revision": rev} for name, rev in self.bundles.items()}
                        if self.bundles else
                        {"vigil": {"revision": self.bundle_revision or ""}}),
            "path": self.path,
            "input": self.input,
            "result": self.result,
            "requested_by": "vigil",
            "timestamp": self.timestamp.astimezone(dt.UTC).isoformat(
                timespec="microseconds").replace("+00:00", "Z"),
            "metrics": self.metrics,
        }
        if self.error:
            event["error"] = {"code": "vigil_fail_closed", "message": self.error}
        return event


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _body(decision_id: str, timestamp: str, path: str, input_document: Any, result: Any,
          bundle_revision: str | None, evaluator: str, metrics: Any, error: str | None,
          labels: Any, bundles: dict[str, str] | None) -> dict[str, Any]:
    """What a row's hash covers (``bundles`` only when recorded, so rows written before
    the column existed keep their hashes)."""
    body = {"decision_id": decision_id, "timestamp": timestamp, "path": path,
            "input": input_document, "result": result, "bundle_revision": bundle_revision,
            "evaluator": evaluator, "metrics": metrics, "error": error, "labels": labels}
    if bundles is not None:
        body["bundles"] = bundles
    return body


def _rfc3339(value: Any) -> dt.datetime:
    """An OPA event timestamp (RFC 3339, nanoseconds allowed) as an aware datetime."""
    if not isinstance(value, str):
        raise ValueError("missing")
    text = value.strip().replace("Z", "+00:00")
    head, _, tail = text.partition(".")
    if tail:  # at most microseconds for datetime: cut the fraction, keep the offset
        digits = "".join(itertools.takewhile(str.isdigit, tail))
        text = f"{head}.{digits[:6]}{tail[len(digits):]}"
    when = dt.datetime.fromisoformat(text)
    if when.tzinfo is None:
        raise ValueError(f"{value!r} has no UTC offset")
    return when


def default_labels(evaluator: str) -> dict[str, str]:
    return {"app": "vigil", "id": platform.node() or "vigil", "version": __version__,
            "evaluator": evaluator}


class DecisionLog:
    """Append-only decision log in a DuckDB file (its own file, its own tables)."""

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = path
        try:
            if not read_only:
                path.parent.mkdir(parents=True, exist_ok=True)
            self._con = duckdb.connect(str(path), read_only=read_only)
            if not read_only:
                self._con.execute(_SCHEMA)
        except (duckdb.Error, OSError) as exc:
            raise DecisionLogError(f"cannot open the decision log {path}: {exc}",
                                   tip="set VIGIL_DECISION_LOG to a writable file") from exc
        self._lock = threading.RLock()  # one connection, shared by readers and writers
        self._last: tuple[int, str] | None = None

    def _tip(self) -> tuple[int, str]:
        """The last row's (seq, record_hash), within the open transaction: its seq read
        (from the column's statistics, cheap at any size), its hash remembered from this
        log's last append when that is still the last row, else read."""
        top = self._con.execute("SELECT max(seq) FROM decision_log").fetchone()
        seq = top[0] if top and top[0] is not None else 0
        if seq == 0:
            return 0, _GENESIS
        if self._last is not None and self._last[0] == seq:
            return self._last
        row = self._con.execute("SELECT record_hash FROM decision_log WHERE seq = ?",
                                [seq]).fetchone()
        return seq, row[0]

    def __enter__(self) -> DecisionLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._con.close()

    # --- writing ----------------------------------------------------------------------

    def record_bundle(self, revision: str, archive: bytes, origin: str) -> None:
        digest = hashlib.sha256(archive).hexdigest()
        with self._lock:
            self._con.execute(
                "INSERT INTO decision_bundles VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                [revision, digest, archive, origin, dt.datetime.now(dt.UTC)])

    def append(self, *, decision_id: str, timestamp: dt.datetime, path: str,
               input_document: dict[str, Any], result: dict[str, Any],
               bundle_revision: str | None, evaluator: str, metrics: dict[str, int],
               error: str | None, labels: dict[str, str],
               bundles: dict[str, str] | None = None, skip_known: bool = False) -> bool:
        """Append one decision; with ``skip_known``, a decision id already logged is left
        as it is (an uploader retrying) and False returned."""
        body = _body(decision_id, timestamp.astimezone(dt.UTC).isoformat(), path,
                     input_document, result, bundle_revision, evaluator, metrics, error,
                     labels, bundles)
        with self._lock:
            try:
                self._con.execute("BEGIN TRANSACTION")
                if skip_known and self._con.execute(
                        "SELECT 1 FROM decision_log WHERE decision_id = ?",
                        [decision_id]).fetchone():
                    self._con.execute("ROLLBACK")
                    return False
                last, prev = self._tip()
                seq = last + 1
                record_hash = hashlib.sha256((prev + _canonical(body)).encode()).hexdigest()
                self._con.execute(
                    "INSERT INTO decision_log (seq, decision_id, ts, path, input, result,"
                    " bundle_revision, evaluator, metrics, error, labels, prev_hash,"
                    " record_hash, bundles) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [seq, decision_id, timestamp, path, _canonical(input_document),
                     _canonical(result), bundle_revision, evaluator, _canonical(metrics), error,
                     _canonical(labels), prev, record_hash,
                     None if bundles is None else _canonical(bundles)])
                self._con.execute("COMMIT")
                self._last = (seq, record_hash)
            except duckdb.Error as exc:
                self._con.execute("ROLLBACK")
                raise DecisionLogError(f"cannot append to the decision log {self.path}: "
                                       f"{exc}") from exc
        return True

    def append_many(self, entries: list[dict[str, Any]]) -> None:
        """Append several decisions (each the keyword arguments of :meth:`append`, without
        ``skip_known``) in one transaction, chained in order: all are logged or none."""
        if not entries:
            return
        rows: list[list[Any]] = []
        with self._lock:
            try:
                self._con.execute("BEGIN TRANSACTION")
                seq, prev = self._tip()
                for e in entries:
                    bundles = e.get("bundles")
                    body = _body(e["decision_id"], e["timestamp"].astimezone(dt.UTC).isoformat(),
                                 e["path"], e["input_document"], e["result"],
                                 e["bundle_revision"], e["evaluator"], e["metrics"],
                                 e["error"], e["labels"], bundles)
                    seq += 1
                    record_hash = hashlib.sha256((prev + _canonical(body)).encode()).hexdigest()
                    rows.append([seq, e["decision_id"], e["timestamp"], e["path"],
                                 _canonical(e["input_document"]), _canonical(e["result"]),
                                 e["bundle_revision"], e["evaluator"], _canonical(e["metrics"]),
                                 e["error"], _canonical(e["labels"]), prev, record_hash,
                                 None if bundles is None else _canonical(bundles)])
                    prev = record_hash
                for start in range(0, len(rows), 64):  # one statement per 64 rows
                    chunk = rows[start:start + 64]
                    self._con.execute(
                        "INSERT INTO decision_log (seq, decision_id, ts, path, input, result,"
                        " bundle_revision, evaluator, metrics, error, labels, prev_hash,"
                        " record_hash, bundles) VALUES "
                        + ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"] * len(chunk)),
                        [value for row in chunk for value in row])
                self._con.execute("COMMIT")
                self._last = (seq, prev)
            except duckdb.Error as exc:
                self._con.execute("ROLLBACK")
                raise DecisionLogError(f"cannot append to the decision log {self.path}: "
                                       f"{exc}") from exc

    def append_opa_event(self, event: Any) -> bool:
        """Log one OPA decision-log event (as OPA's decision-log plugin uploads them).
        Returns False for a decision id already logged (OPA retries an upload that it
        did not see acknowledged). Raises DecisionLogError naming what is wrong."""
        if not isinstance(event, dict):
            raise DecisionLogError("a decision-log event is not a JSON object")
        decision_id = event.get("decision_id")
        path = event.get("path")
        if not isinstance(decision_id, str) or not decision_id:
            raise DecisionLogError("a decision-log event has no decision_id")
        if not isinstance(path, str):
            raise DecisionLogError(f"decision {decision_id}: no path")
        try:
            timestamp = _rfc3339(event.get("timestamp"))
        except ValueError as exc:
            raise DecisionLogError(f"decision {decision_id}: timestamp: {exc}") from exc
        raw_bundles = event.get("bundles") or {}
        bundles = {str(name): str((info or {}).get("revision", ""))
                   for name, info in raw_bundles.items()} if isinstance(raw_bundles,
                                                                         dict) else {}
        revision = bundles.get("vigil") or (next(iter(bundles.values())) if len(bundles) == 1
                                            else None)
        labels = event.get("labels") if isinstance(event.get("labels"), dict) else {}
        metrics = {str(k): int(v) for k, v in (event.get("metrics") or {}).items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
        error = event.get("error")
        result = event.get("result")
        given = event.get("input")
        input_document: dict[str, Any] = given if isinstance(given, dict) else {}
        return self.append(
            decision_id=decision_id, timestamp=timestamp, path=path.removeprefix("data."),
            input_document=input_document,
            result=result if isinstance(result, dict) else {"value": result},
            bundle_revision=revision or None, evaluator="opa-server", metrics=metrics,
            error=None if error is None else _canonical(error),
            labels={str(k): str(v) for k, v in (labels or {}).items()},
            bundles=bundles or None, skip_known=True)

    # --- reading ----------------------------------------------------------------------

    _COLUMNS = ("seq, decision_id, ts, path, input, result, bundle_revision, evaluator, "
                "metrics, error, labels, bundles")

    def _records(self, where: str = "", params: list[Any] | None = None
                 ) -> Iterator[DecisionRecord]:
        with self._lock:
            rows = self._con.execute(
                f"SELECT {self._COLUMNS} FROM decision_log {where} ORDER BY seq", params or []
            ).fetchall()
        for row in rows:
            yield DecisionRecord(
                seq=row[0], decision_id=row[1], timestamp=row[2], path=row[3],
                input=json.loads(row[4]), result=json.loads(row[5]), bundle_revision=row[6],
                evaluator=row[7], metrics=json.loads(row[8]), error=row[9],
                labels=json.loads(row[10]),
                bundles=json.loads(row[11]) if row[11] is not None else None)

    def get(self, decision_id: str) -> DecisionRecord | None:
        return next(self._records("WHERE decision_id = ?", [decision_id]), None)

    def since(self, when: dt.datetime | None = None) -> list[DecisionRecord]:
        if when is None:
            return list(self._records())
        return list(self._records("WHERE ts >= ?", [when]))

    def bundle(self, revision: str) -> bytes | None:
        with self._lock:
            row = self._con.execute(
                "SELECT archive FROM decision_bundles WHERE revision = ? ORDER BY recorded_at"
                " DESC LIMIT 1", [revision]).fetchone()
        return bytes(row[0]) if row else None

    def export_ndjson(self, out: IO[bytes], since: dt.datetime | None = None) -> int:
        count = 0
        for record in self.since(since):
            out.write(_canonical(record.opa_event()).encode() + b"\n")
            count += 1
        return count

    def verify_chain(self) -> list[str]:
        """Problems with the hash chain (empty when every row is intact and in place)."""
        problems: list[str] = []
        prev = _GENESIS
        with self._lock:
            rows = self._con.execute(
                "SELECT seq, decision_id, ts, path, input, result, bundle_revision, evaluator,"
                " metrics, error, labels, prev_hash, record_hash, bundles FROM decision_log"
                " ORDER BY seq"
            ).fetchall()
        expected_seq = 1
        for row in rows:
            if row[0] != expected_seq:
                problems.append(f"row {expected_seq} is missing (next is {row[0]})")
                expected_seq = row[0]
            body = _body(row[1], row[2].astimezone(dt.UTC).isoformat(), row[3],
                         json.loads(row[4]), json.loads(row[5]), row[6], row[7],
                         json.loads(row[8]), row[9], json.loads(row[10]),
                         json.loads(row[13]) if row[13] is not None else None)
            digest = hashlib.sha256((prev + _canonical(body)).encode()).hexdigest()
            if row[11] != prev or row[12] != digest:
                problems.append(f"decision {row[1]} (row {row[0]}) was changed")
            prev = row[12]
            expected_seq += 1
        return problems
