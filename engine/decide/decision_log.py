"""The append-only decision log, in its own DuckDB file.

One row per decision: decision id, timestamp, query path, input, result, bundle
revision, evaluator, timings, and an error when the engine rejected because the policy
could not decide. Decisions OPA servers made land here too: OPA's decision-log plugin
uploads its events (``vigil bundle serve --accept-decision-logs``), and
:meth:`DecisionLog.append_opa_event` keeps each with its bundles' revisions. The log
offers no update or delete.

**The chain.** Each row stores the SHA-256 of the row before it (``prev_hash``, 64 zeros
for the first) and its own ``record_hash`` = SHA-256(``prev_hash`` + the row's body), the
body being the canonical JSON (sorted keys, no spaces, UTF-8) of every field
(:func:`body_text`; the JSON values are hashed as stored, byte for byte, so a check never
parses a row's input). A changed, removed, inserted or reordered row breaks the chain.

**Signed checkpoints.** An edit that recomputes every hash after it keeps the chain
whole; a signed checkpoint catches it. Like a transparency log's signed tree head, a
checkpoint says: in the log ``log_id``, the record ``size`` has the chain hash ``head``,
at ``time``, signed (compact JWS, ``typ`` :data:`CHECKPOINT_TYP`) by the key ``kid``.
With a signing key (``audit_signing_key``) the log writes one every
``audit_checkpoint_every`` records, in the transaction of the record it covers, and one
at every export; ``vigil audit checkpoint`` writes one on demand. Keys rotate: each
checkpoint names its key id, and the verifier holds the current and retired public keys.

The bundles that decided are stored once per revision (``decision_bundles``) and the
signed attestation results decisions rested on once per SHA-256 (``decision_attestations``;
the row's hash covers that SHA-256), so that a recorded decision can be replayed with the
very policy that made it and its host's evidence checked again.

:meth:`DecisionLog.export_ndjson` writes OPA decision-log events (``decision_id``,
``labels``, ``bundles``, ``path``, ``input``, ``result``, ``timestamp``, ``metrics``), each
with a ``vigil`` member that carries what the hash covers beyond the event (sequence
number, hashes, evaluator, the raw error and bundle fields), the first time they are
needed the bundle and the attestation result it rests on, and the checkpoints at that
record (the export's own checkpoint on its last line): an export verifies on its own.

Several processes may share one log file (``shared=True``): each operation then opens the
file, waiting up to ``wait`` seconds while another process holds it, and closes it.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import itertools
import json
import platform
import random
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from json.encoder import encode_basestring
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import duckdb

from engine import __version__
from engine.decide.errors import DecisionLogError

if TYPE_CHECKING:
    from engine.config import Settings
    from engine.keys import SigningKey

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
ALTER TABLE decision_log ADD COLUMN IF NOT EXISTS attestation_sha256 VARCHAR;
CREATE TABLE IF NOT EXISTS decision_bundles (
    revision VARCHAR NOT NULL,
    sha256 VARCHAR NOT NULL,
    archive BLOB NOT NULL,
    origin VARCHAR,
    recorded_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (revision, sha256)
);
CREATE TABLE IF NOT EXISTS decision_attestations (
    sha256 VARCHAR PRIMARY KEY,
    token VARCHAR NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS decision_checkpoints (
    number BIGINT PRIMARY KEY,
    size BIGINT NOT NULL,
    head VARCHAR NOT NULL,
    signed_at TIMESTAMPTZ NOT NULL,
    key_id VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,
    token VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS decision_meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL);
"""
GENESIS = "0" * 64
"""The ``prev_hash`` of the first record."""

CHECKPOINT_TYP = "vigil-checkpoint+jws"
"""The ``typ`` of a signed checkpoint."""

_BATCH = 512
"""Rows fetched at a time when the log is streamed."""


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
    attestation_sha256: str | None = None
    """SHA-256 of the signed attestation result the decision rested on, when recorded."""

    def opa_event(self) -> dict[str, Any]:
        """This decision as an OPA decision-log event."""
        event: dict[str, Any] = {
            "decision_id": self.decision_id,
            "labels": self.labels,
            "bundles": _event_bundles(self.bundles, self.bundle_revision),
            "path": self.path,
            "input": self.input,
            "result": self.result,
            "requested_by": "vigil",
            "timestamp": opa_timestamp(self.timestamp),
            "metrics": self.metrics,
        }
        if self.error:
            event["error"] = {"code": "vigil_fail_closed", "message": self.error}
        return event


@dataclass(frozen=True, slots=True)
class StoredRow:
    """One record as stored: its JSON fields as the canonical text that was hashed."""

    seq: int
    decision_id: str
    timestamp: dt.datetime
    path: str
    input_text: str
    result_text: str
    bundle_revision: str | None
    evaluator: str
    metrics_text: str
    error: str | None
    labels_text: str
    prev_hash: str
    record_hash: str
    bundles_text: str | None
    attestation_sha256: str | None

    def body(self) -> str:
        return body_text(
            attestation_sha256=self.attestation_sha256, bundle_revision=self.bundle_revision,
            bundles_text=self.bundles_text, decision_id=self.decision_id, error=self.error,
            evaluator=self.evaluator, input_text=self.input_text,
            labels_text=self.labels_text, metrics_text=self.metrics_text, path=self.path,
            result_text=self.result_text, timestamp_text=hashed_timestamp(self.timestamp))

    def computed_hash(self, prev: str) -> str:
        """The record hash this row has when ``prev`` is the hash before it."""
        return chain_hash(prev, self.body())

    def record(self) -> DecisionRecord:
        return DecisionRecord(
            seq=self.seq, decision_id=self.decision_id, timestamp=self.timestamp,
            path=self.path, input=json.loads(self.input_text),
            result=json.loads(self.result_text), bundle_revision=self.bundle_revision,
            evaluator=self.evaluator, metrics=json.loads(self.metrics_text),
            error=self.error, labels=json.loads(self.labels_text),
            bundles=json.loads(self.bundles_text) if self.bundles_text is not None else None,
            attestation_sha256=self.attestation_sha256)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed checkpoint as stored (``token`` is the compact JWS; the other fields are
    what the log says it signed, to be checked against the token's payload)."""

    number: int
    size: int
    head: str
    signed_at: dt.datetime
    key_id: str
    kind: str
    token: str


# --- the hash's definition ------------------------------------------------------------


def canonical(value: Any) -> str:
    """The canonical JSON text of a value: sorted keys, no spaces, UTF-8 (not escaped)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


_canonical = canonical


def _text(value: str | None) -> str:
    return "null" if value is None else str(encode_basestring(value))


def body_text(*, attestation_sha256: str | None, bundle_revision: str | None,
              bundles_text: str | None, decision_id: str, error: str | None,
              evaluator: str, input_text: str, labels_text: str, metrics_text: str,
              path: str, result_text: str, timestamp_text: str) -> str:
    """What a record's hash covers: the canonical JSON of its fields, assembled from the
    JSON fields' stored canonical text (``bundles`` and ``attestation_sha256`` only when
    recorded, so rows written before those existed keep their hashes). Equal to
    ``canonical(_body(...))`` of the parsed values, which :func:`_body` states."""
    before, between, after = body_frame(
        attestation_sha256=attestation_sha256, bundle_revision=bundle_revision,
        bundles_text=bundles_text, decision_id=decision_id, error=error,
        evaluator=evaluator, labels_text=labels_text, metrics_text=metrics_text, path=path,
        timestamp_text=timestamp_text)
    return "".join((before, input_text, between, result_text, after))


def body_frame(*, attestation_sha256: str | None, bundle_revision: str | None,
               bundles_text: str | None, decision_id: str, error: str | None,
               evaluator: str, labels_text: str, metrics_text: str, path: str,
               timestamp_text: str) -> tuple[str, str, str]:
    """:func:`body_text` around the input's and the result's text: (before the input,
    between them, after the result); what the bulk check hashes around their bytes."""
    head = ("{" if attestation_sha256 is None
            else '{"attestation_sha256":' + _text(attestation_sha256) + ",")
    bundles = "" if bundles_text is None else ',"bundles":' + bundles_text
    return ("".join((head, '"bundle_revision":', _text(bundle_revision), bundles,
                     ',"decision_id":', _text(decision_id), ',"error":', _text(error),
                     ',"evaluator":', _text(evaluator), ',"input":')),
            "".join((',"labels":', labels_text, ',"metrics":', metrics_text, ',"path":',
                     _text(path), ',"result":')),
            "".join((',"timestamp":', _text(timestamp_text), "}")))


def _body(decision_id: str, timestamp: str, path: str, input_document: Any, result: Any,
          bundle_revision: str | None, evaluator: str, metrics: Any, error: str | None,
          labels: Any, bundles: dict[str, str] | None,
          attestation_sha256: str | None = None) -> dict[str, Any]:
    """The record body as a value: the reference definition :func:`body_text` follows."""
    body = {"decision_id": decision_id, "timestamp": timestamp, "path": path,
            "input": input_document, "result": result, "bundle_revision": bundle_revision,
            "evaluator": evaluator, "metrics": metrics, "error": error, "labels": labels}
    if bundles is not None:
        body["bundles"] = bundles
    if attestation_sha256 is not None:
        body["attestation_sha256"] = attestation_sha256
    return body


def chain_hash(prev: str, body: str) -> str:
    """A record's hash: SHA-256 of the previous record's hash (hex) and its body."""
    return hashlib.sha256((prev + body).encode()).hexdigest()


def hashed_timestamp(when: dt.datetime) -> str:
    """A record's timestamp as its hash covers it."""
    return when.astimezone(dt.UTC).isoformat()


def opa_timestamp(when: dt.datetime) -> str:
    """A record's timestamp as its OPA event states it."""
    return when.astimezone(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _event_bundles(bundles: dict[str, str] | None, revision: str | None
                   ) -> dict[str, dict[str, str]]:
    if bundles:
        return {name: {"revision": rev} for name, rev in bundles.items()}
    return {"vigil": {"revision": revision or ""}}


def checkpoint_payload(*, log_id: str, number: int, size: int, head: str,
                       time_text: str, kid: str, kind: str, every: int) -> bytes:
    """What a checkpoint signs."""
    return canonical({"log_id": log_id, "number": number, "size": size, "head": head,
                      "time": time_text, "kid": kid, "kind": kind, "every": every}).encode()


# --- the hash computed in bulk ---------------------------------------------------------

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_CHUNK_BYTES = 64 << 20
"""About how much record text one bulk read holds."""


@dataclass(frozen=True, slots=True)
class ChainRow:
    """What the chain check needs of one record, its hash computed."""

    seq: int
    decision_id: str
    prev_hash: str
    record_hash: str
    computed: str
    """SHA-256 of ``prev_hash`` and the body, as the row holds them now."""
    size: int
    """Bytes hashed."""
    micros: int
    """The timestamp, microseconds since 1970 (UTC)."""
    bundle_revision: str | None
    attestation_sha256: str | None
    row: StoredRow | None
    """The whole row, when asked for (``full``)."""


# --- the export's lines ---------------------------------------------------------------


def event_line(row: StoredRow, extension: dict[str, Any]) -> str:
    """One export line: the record's OPA event with the ``vigil`` member ``extension``,
    canonical JSON; the input's stored text stands in it verbatim."""
    prefix, suffix = event_frame(row, extension)
    return prefix + row.input_text + suffix


def event_frame(row: StoredRow, extension: dict[str, Any]) -> tuple[str, str]:
    """The export line of ``row`` before and after its input's text."""
    bundles = json.loads(row.bundles_text) if row.bundles_text is not None else None
    error = ("" if not row.error else ',"error":' + canonical(
        {"code": "vigil_fail_closed", "message": row.error}))
    prefix = "".join(('{"bundles":', canonical(_event_bundles(bundles, row.bundle_revision)),
                      ',"decision_id":', _text(row.decision_id), error, ',"input":'))
    suffix = "".join((',"labels":', row.labels_text, ',"metrics":', row.metrics_text,
                      ',"path":', _text(row.path), ',"requested_by":"vigil","result":',
                      row.result_text, ',"timestamp":', _text(opa_timestamp(row.timestamp)),
                      ',"vigil":', canonical(extension), "}"))
    return prefix, suffix


def row_extension(row: StoredRow) -> dict[str, Any]:
    """The ``vigil`` member of a record's export line, before bundles, attestation
    results and checkpoints are attached."""
    ext: dict[str, Any] = {
        "seq": row.seq, "prev_hash": row.prev_hash, "record_hash": row.record_hash,
        "bundle_revision": row.bundle_revision, "evaluator": row.evaluator,
        "error": row.error,
        "bundles": json.loads(row.bundles_text) if row.bundles_text is not None else None,
    }
    if row.attestation_sha256 is not None:
        ext["attestation_sha256"] = row.attestation_sha256
    return ext


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


_ROW_PLACES = "(" + ", ".join(["?"] * 15) + ")"
_ROW_COLUMNS = ("seq, decision_id, ts, path, input, result, bundle_revision, evaluator, "
                "metrics, error, labels, prev_hash, record_hash, bundles, attestation_sha256")


_ARROW_ROWS = 4
"""Rows from which a group is inserted as one Arrow table (binding 15 parameters a row
costs DuckDB more than reading the table)."""


def _insert_arrow(con: duckdb.DuckDBPyConnection, rows: list[list[Any]]) -> None:
    """Insert ``rows`` (in :data:`_ROW_COLUMNS` order) as one Arrow table."""
    import pyarrow as pa

    names = [c.strip() for c in _ROW_COLUMNS.split(",")]
    types = [pa.int64(), pa.string(), pa.timestamp("us", tz="UTC"), *[pa.string()] * 12]
    columns = list(zip(*rows, strict=True))
    arrays = [pa.array(list(values), type=kind)
              for values, kind in zip(columns, types, strict=True)]
    # read by DuckDB's replacement scan (this frame's ``vigil_log_rows``): a view
    # registered would be other work on the connection while a result is open
    vigil_log_rows = pa.table(arrays, names=names)  # noqa: F841
    con.execute(f"INSERT INTO decision_log ({_ROW_COLUMNS}) SELECT {_ROW_COLUMNS} "
                "FROM vigil_log_rows")


class _TipMoved(Exception):
    """Another writer appended after the tip this object kept."""


def _is_collision(exc: duckdb.Error) -> bool:
    """Whether an append failed on its seq (a primary key another writer took) or on
    a write-write conflict with another transaction."""
    text = str(exc).lower()
    return isinstance(exc, duckdb.ConstraintException | duckdb.TransactionException) or \
        "conflict" in text or "duplicate key" in text


def _rollback(con: duckdb.DuckDBPyConnection) -> None:
    """Roll back the open transaction (a failed COMMIT may have ended it already)."""
    with suppress(duckdb.Error):
        con.execute("ROLLBACK")


def _is_lock_conflict(exc: duckdb.Error) -> bool:
    text = str(exc).lower()
    return "lock" in text and ("conflicting" in text or "could not set" in text)


_NEEDS_ESCAPE = r'[\x00-\x1f"\\]'
"""What :func:`_text` escapes: a row with one in a text field is framed in Python."""

_STAMP_SQL = ("CASE WHEN epoch_us(ts) >= 0 AND epoch_us(ts) < 253402300800000000 THEN "
              "strftime(make_timestamp(epoch_us(ts)), '%Y-%m-%dT%H:%M:%S') || CASE WHEN "
              "epoch_us(ts) % 1000000 = 0 THEN '' ELSE '.' || lpad((epoch_us(ts) % 1000000)"
              "::VARCHAR, 6, '0') END || '+00:00' END")
"""``hashed_timestamp`` of ``ts`` in SQL, for years 1970-9999 (else NULL: Python's)."""


_SQL_ESCAPES = (("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t"),
                ("\b", "\\b"), ("\f", "\\f"))
"""What :func:`_text` writes for each character it escapes with a short form (the
backslash first); the other control characters (``\\u00XX``) are framed in Python."""

_SQL_ODD = r"[\x00-\x07\x0b\x0e-\x1f]"
"""A text field holding one of these is framed by :func:`body_frame` itself."""


def _sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _sql_text(column: str) -> str:
    """:func:`_text` of a text column in SQL."""
    escaped = column
    for char, written in _SQL_ESCAPES:
        escaped = f"replace({escaped}, {_sql_literal(char)}, {_sql_literal(written)})"
    return f"CASE WHEN {column} IS NULL THEN 'null' ELSE concat('\"', {escaped}, '\"') END"


_TEXT_FIELDS = ("attestation_sha256", "bundle_revision", "decision_id", "error", "evaluator",
                "path")


def _hashed_parts() -> list[str]:
    """The SQL expressions whose concatenation is what a record's hash covers:
    ``prev_hash`` and :func:`body_text` (:func:`body_frame` in vector form, over the
    columns as stored); ``input`` and ``result`` stand in it as themselves."""
    q = _sql_text
    return [
        "prev_hash",
        "CASE WHEN attestation_sha256 IS NULL THEN '{' ELSE concat('{\"attestation_sha256\":', "
        f"{q('attestation_sha256')}, ',') END",
        "'\"bundle_revision\":'", q("bundle_revision"),
        "CASE WHEN bundles IS NULL THEN '' ELSE concat(',\"bundles\":', bundles) END",
        "',\"decision_id\":'", q("decision_id"), "',\"error\":'", q("error"),
        "',\"evaluator\":'", q("evaluator"), "',\"input\":'", "input",
        "',\"labels\":'", "labels", "',\"metrics\":'", "metrics", "',\"path\":'", q("path"),
        "',\"result\":'", "result", "',\"timestamp\":\"'", f"({_STAMP_SQL})", "'\"}'"]


def _hashed_sql() -> tuple[str, str]:
    """(the bytes a record's hash covers as one SQL expression; the condition under which
    it does not hold and the row is framed in Python). One ``concat`` (a chain of ``||``
    copies the text once per operator)."""
    odd = " OR ".join([f"({_STAMP_SQL}) IS NULL", "prev_hash IS NULL", "input IS NULL",
                       "result IS NULL", "labels IS NULL", "metrics IS NULL",
                       f"regexp_matches(concat({', '.join(_TEXT_FIELDS)}), "
                       f"{_sql_literal(_SQL_ODD)})"])
    return f"concat({', '.join(_hashed_parts())})", odd


def _pieces_sql() -> list[str]:
    """The same bytes as five expressions: before the input, the input, between it and
    the result, the result, after it."""
    parts = _hashed_parts()
    i, r = parts.index("input"), parts.index("result")
    return [f"concat({', '.join(parts[:i])})", "input",
            f"concat({', '.join(parts[i + 1:r])})", "result",
            f"concat({', '.join(parts[r + 1:])})"]


_PIECES_ABOVE = 256 << 20
"""Above this much text in one vector, :meth:`DecisionLog.scan` hands the hashed bytes on
in five pieces instead of joined."""

_VECTOR = 2048
"""Rows in one of DuckDB's vectors: a scan holds a vector's text, twice when joined,
whatever the batches it hands on."""


_END = object()


def _read_ahead(reader: Any, depth: int = 2) -> Iterator[Any]:
    """The batches of an Arrow stream, the next ``depth`` read by a thread of their own
    while the caller works on one (DuckDB scans without the interpreter's lock). Only
    the stream is used in that thread; the caller's connection stays in the caller's."""
    import queue

    ahead: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def read() -> None:
        try:
            while not stop.is_set():
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    break
                ahead.put(batch)
            ahead.put(_END)
        except BaseException as exc:  # handed to the caller, raised there
            ahead.put(exc)

    thread = threading.Thread(target=read, name="vigil-scan", daemon=True)
    thread.start()
    try:
        while True:
            item = ahead.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # let it finish the batch it reads, then stop
            with contextlib.suppress(queue.Empty):
                ahead.get(timeout=0.05)
        thread.join()


def _bytes_setting(con: duckdb.DuckDBPyConnection, name: str) -> int:
    (found,) = con.execute("SELECT value FROM duckdb_settings() WHERE name = ?",
                           [name]).fetchall()
    number, _, unit = str(found[0]).partition(" ")
    scale = {"bytes": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40,
             "KB": 1000, "MB": 10**6, "GB": 10**9, "TB": 10**12}.get(unit, 1)
    return int(float(number) * scale)


SCAN_COLUMNS = ("seq", "decision_id", "prev_hash", "record_hash", "micros",
                "bundle_revision", "attestation_sha256", "odd", "hashed")
"""The columns of :meth:`DecisionLog.scan`'s batches (then, with ``full``, the stored
row's in :data:`_ROW_COLUMNS`' order)."""


def _large(text: str) -> Any:
    import pyarrow as pa

    return pa.scalar(text, pa.large_string())


def _quoted(column: Any) -> Any:
    """:func:`_text` of a text column whose values need no escape."""
    import pyarrow.compute as pc

    return pc.if_else(pc.is_null(column), _large("null"),
                      pc.binary_join_element_wise(_large('"'), column, _large('"'), _large("")))


def _hashed(table: Any, full: bool) -> Iterator[ChainRow]:
    """The rows of one bulk read (Arrow: the stored columns in :data:`_ROW_COLUMNS`'
    order, then ``micros`` and ``stamp``) with their hashes. The bytes hashed are joined
    by Arrow (:func:`body_frame` in vector form, in 64-bit offsets) for rows whose text
    fields need no escape and whose time is in years 1970-9999; the others are framed
    by :func:`body_frame` itself."""
    import pyarrow as pa
    import pyarrow.compute as pc

    cols = [c.cast(pa.large_string()) if pa.types.is_string(c.type) else c
            for c in table.columns]
    ids, path, revision, evaluator, metrics, error, labels, prev = (
        cols[i] for i in (1, 3, 6, 7, 8, 9, 10, 11))
    inputs, results, bundles, attestation, stamp = cols[4], cols[5], cols[13], cols[14], \
        cols[16]
    odd = pc.is_null(stamp)
    for text in (ids, path, evaluator, error, revision, attestation):
        odd = pc.or_(odd, pc.fill_null(pc.match_substring_regex(text, _NEEDS_ESCAPE), False))
    L = _large
    join = pc.binary_join_element_wise
    head = pc.if_else(pc.is_null(attestation), L("{"),
                      join(L('{"attestation_sha256":'), _quoted(attestation), L(","), L("")))
    bundled = pc.if_else(pc.is_null(bundles), L(""), join(L(',"bundles":'), bundles, L("")))
    whole = join(prev, head, L('"bundle_revision":'), _quoted(revision), bundled,
                 L(',"decision_id":'), _quoted(ids), L(',"error":'), _quoted(error),
                 L(',"evaluator":'), _quoted(evaluator), L(',"input":'), inputs,
                 L(',"labels":'), labels, L(',"metrics":'), metrics, L(',"path":'),
                 _quoted(path), L(',"result":'), results, L(',"timestamp":"'), stamp,
                 L('"}'), L(""))
    hashed = pc.cast(pc.fill_null(whole, L("")), pa.large_binary()).to_pylist()
    odd_rows = odd.to_pylist()
    seqs, names, prevs, hashes, micros = (cols[i].to_pylist() for i in (0, 1, 11, 12, 15))
    revisions, attestations = revision.to_pylist(), attestation.to_pylist()
    stored = ([StoredRow(*r) for r in zip(*(c.to_pylist() for c in cols[:15]), strict=True)]
              if full else None)
    sha256 = hashlib.sha256
    for i, data in enumerate(hashed):
        row = stored[i] if stored is not None else None
        if odd_rows[i]:
            whole_row = row or StoredRow(*(c[i].as_py() for c in cols[:15]))
            data = (whole_row.prev_hash + whole_row.body()).encode()
        yield ChainRow(seqs[i], names[i], prevs[i], hashes[i], sha256(data).hexdigest(),
                       len(data), micros[i], revisions[i], attestations[i], row)


class DecisionLog:
    """Append-only decision log in a DuckDB file (its own file, its own tables).

    ``shared``: open the file for each operation and close it after, so that other
    processes can write between them; ``wait``: seconds to wait for a file another process
    holds. ``signing_key``: the key checkpoints are signed with, one every
    ``checkpoint_every`` records and one at every export.
    """

    def __init__(self, path: Path, *, read_only: bool = False, shared: bool = False,
                 wait: float = 0.0, signing_key: SigningKey | None = None,
                 checkpoint_every: int = 1000) -> None:
        self.path = path
        self.read_only = read_only
        self.shared = shared
        self.wait = wait
        self.signing_key = signing_key
        self.checkpoint_every = max(1, checkpoint_every)
        self._lock = threading.RLock()  # one connection, shared by readers and writers
        self._con: duckdb.DuckDBPyConnection | None = None
        self._active: duckdb.DuckDBPyConnection | None = None
        self._log_id: str | None = None
        # kept between appends while this object holds the file open (not ``shared``):
        # the last record's (seq, hash) and the attestation results already stored; a
        # writer that moved the tip meanwhile makes the next seq collide, and the append
        # re-reads the tip and tries again
        self._tip_known: tuple[int, str] | None = None
        self._stored_attestations: set[str] = set()
        if not shared:
            self._con = self._open()

    @classmethod
    def from_settings(cls, settings: Settings, *, read_only: bool = False,
                      shared: bool = False) -> DecisionLog:
        """The configured log (``decision_log``), with the checkpoint signing key and
        cadence and the wait for another process (``decision_log_wait``)."""
        key = None
        if settings.audit_signing_key is not None and not read_only:
            from engine.keys import KeyLoadError, load_signing_key

            try:
                key = load_signing_key(settings.audit_signing_key)
            except KeyLoadError as exc:
                from engine.errors import ConfigError

                raise ConfigError(f"audit_signing_key: {exc.reason}",
                                  tip="point VIGIL_AUDIT_SIGNING_KEY at a PEM private key"
                                  ) from None
        return cls(settings.decision_log, read_only=read_only, shared=shared,
                   wait=settings.decision_log_wait, signing_key=key,
                   checkpoint_every=settings.audit_checkpoint_every)

    # --- the connection ---------------------------------------------------------------

    def _open(self) -> duckdb.DuckDBPyConnection:
        path = self.path
        deadline = time.monotonic() + self.wait
        pause = 0.005
        while True:
            try:
                if self.read_only and not path.exists():
                    raise DecisionLogError(f"there is no decision log at {path}",
                                           tip="set VIGIL_DECISION_LOG or pass --log")
                if not self.read_only:
                    path.parent.mkdir(parents=True, exist_ok=True)
                con = duckdb.connect(str(path), read_only=self.read_only)
                break
            except duckdb.Error as exc:
                left = deadline - time.monotonic()
                if _is_lock_conflict(exc) and left > 0:
                    time.sleep(min(left, pause * random.uniform(0.5, 1.5)))
                    pause = min(pause * 2, 0.1)
                    continue
                if _is_lock_conflict(exc):
                    raise DecisionLogError(
                        f"the decision log {path} is in use by another process"
                        f" (waited {self.wait:g} s)",
                        tip="wait for the other command to finish, or raise "
                            "VIGIL_DECISION_LOG_WAIT") from None
                raise DecisionLogError(f"cannot open the decision log {path}: {exc}",
                                       tip="set VIGIL_DECISION_LOG to a writable file"
                                       ) from exc
            except OSError as exc:
                raise DecisionLogError(f"cannot open the decision log {path}: {exc}",
                                       tip="set VIGIL_DECISION_LOG to a writable file"
                                       ) from exc
        try:
            if not self.read_only:
                con.execute(_SCHEMA)
                con.execute("INSERT INTO decision_meta VALUES ('log_id', ?)"
                            " ON CONFLICT DO NOTHING", [str(uuid.uuid4())])
            self._log_id = self._read_log_id(con)
        except duckdb.Error as exc:
            con.close()
            raise DecisionLogError(f"cannot open the decision log {path}: {exc}") from exc
        return con

    @staticmethod
    def _read_log_id(con: duckdb.DuckDBPyConnection) -> str | None:
        try:
            row = con.execute("SELECT value FROM decision_meta WHERE key = 'log_id'"
                              ).fetchone()
        except duckdb.CatalogException:  # a log written before checkpoints, read only
            return None
        return str(row[0]) if row else None

    @contextmanager
    def _session(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._lock:
            if self._con is not None:
                yield self._con
                return
            if self._active is not None:  # an operation inside another (same thread)
                yield self._active
                return
            con = self._open()
            self._active = con
            try:
                yield con
            finally:
                self._active = None
                con.close()

    @contextmanager
    def held(self) -> Iterator[None]:
        """Keep one connection for the operations inside the block (a shared log is
        otherwise opened and closed by each)."""
        with self._session():
            yield

    def __enter__(self) -> DecisionLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None
            self._tip_known = None
            self._stored_attestations.clear()

    @property
    def log_id(self) -> str | None:
        """The log's identity (a UUID made when the file was created), which every
        checkpoint names."""
        if self._log_id is None:
            with self._session():
                pass
        return self._log_id

    def _has_column(self, con: duckdb.DuckDBPyConnection, table: str, column: str) -> bool:
        return bool(con.execute(
            "SELECT 1 FROM information_schema.columns WHERE table_name = ? AND"
            " column_name = ?", [table, column]).fetchone())

    def _has_table(self, con: duckdb.DuckDBPyConnection, table: str) -> bool:
        return bool(con.execute("SELECT 1 FROM information_schema.tables WHERE table_name = ?",
                                [table]).fetchone())

    # --- writing ----------------------------------------------------------------------

    def record_bundle(self, revision: str, archive: bytes, origin: str) -> None:
        digest = hashlib.sha256(archive).hexdigest()
        with self._session() as con:
            con.execute(
                "INSERT INTO decision_bundles VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                [revision, digest, archive, origin, dt.datetime.now(dt.UTC)])

    def _tip(self, con: duckdb.DuckDBPyConnection) -> tuple[int, str]:
        """The last row's (seq, record_hash), inside the caller's transaction: its seq
        from ``max(seq)`` and its hash by that seq (both cheap at any size, where an
        ``ORDER BY seq DESC LIMIT 1`` sorts)."""
        top = con.execute("SELECT max(seq) FROM decision_log").fetchone()
        seq = int(top[0]) if top and top[0] is not None else 0
        if seq == 0:
            return 0, GENESIS
        row = con.execute("SELECT record_hash FROM decision_log WHERE seq = ?",
                          [seq]).fetchone()
        if row is None:
            raise duckdb.InvalidInputException(f"the decision log has no record {seq}")
        return seq, str(row[0])

    @staticmethod
    def _row(seq: int, prev: str, entry: dict[str, Any]) -> tuple[list[Any], str | None]:
        """The stored row (in ``_ROW_COLUMNS`` order) of one decision at ``seq`` after
        ``prev``, and the attestation result token to store beside it (or None)."""
        given = entry.get("attestation_result")
        token = given.strip() if given else None
        attestation = hashlib.sha256(token.encode()).hexdigest() if token else None
        bundles = entry.get("bundles")
        texts = (canonical(entry["input_document"]), canonical(entry["result"]),
                 canonical(entry["metrics"]), canonical(entry["labels"]),
                 None if bundles is None else canonical(bundles))
        stored = StoredRow(
            seq=seq, decision_id=entry["decision_id"], timestamp=entry["timestamp"],
            path=entry["path"], input_text=texts[0], result_text=texts[1],
            bundle_revision=entry["bundle_revision"], evaluator=entry["evaluator"],
            metrics_text=texts[2], error=entry["error"], labels_text=texts[3],
            prev_hash=prev, record_hash="", bundles_text=texts[4],
            attestation_sha256=attestation)
        record_hash = stored.computed_hash(prev)
        return ([seq, stored.decision_id, stored.timestamp, stored.path, texts[0], texts[1],
                 stored.bundle_revision, stored.evaluator, texts[2], stored.error, texts[3],
                 prev, record_hash, texts[4], attestation], token)


    def append(self, *, decision_id: str, timestamp: dt.datetime, path: str,
               input_document: dict[str, Any], result: dict[str, Any],
               bundle_revision: str | None, evaluator: str, metrics: dict[str, int],
               error: str | None, labels: dict[str, str],
               bundles: dict[str, str] | None = None, skip_known: bool = False,
               attestation_result: str | None = None) -> bool:
        """Append one decision; with ``skip_known``, a decision id already logged is left
        as it is (an uploader retrying) and False returned. ``attestation_result``: the
        signed attestation result (compact JWS) the decision rested on, stored once by
        its SHA-256, which the record's hash covers."""
        entry = {"decision_id": decision_id, "timestamp": timestamp, "path": path,
                 "input_document": input_document, "result": result,
                 "bundle_revision": bundle_revision, "evaluator": evaluator,
                 "metrics": metrics, "error": error, "labels": labels, "bundles": bundles,
                 "attestation_result": attestation_result}
        return self._append([entry], known_id=decision_id if skip_known else None)

    def _sign(self, con: duckdb.DuckDBPyConnection, size: int, head: str, kind: str
              ) -> Checkpoint:
        """Write a checkpoint of (``size``, ``head``) inside the caller's transaction."""
        from engine.keys import sign_compact

        key = self.signing_key
        if key is None or self._log_id is None:
            raise DecisionLogError("no key to sign a checkpoint with",
                                   tip="set VIGIL_AUDIT_SIGNING_KEY to a PEM private key")
        row = con.execute("SELECT coalesce(max(number), 0) + 1 FROM decision_checkpoints"
                          ).fetchone()
        number = int(row[0]) if row else 1
        now = dt.datetime.now(dt.UTC)
        payload = checkpoint_payload(
            log_id=self._log_id, number=number, size=size, head=head,
            time_text=opa_timestamp(now), kid=key.kid, kind=kind,
            every=self.checkpoint_every)
        token = sign_compact(payload, key, CHECKPOINT_TYP)
        con.execute("INSERT INTO decision_checkpoints VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [number, size, head, now, key.kid, kind, token])
        return Checkpoint(number, size, head, now, key.kid, kind, token)

    def checkpoint(self, kind: str = "manual") -> Checkpoint | None:
        """Sign the current head (None when the log is empty). An export signs one
        (``kind`` ``export``); ``vigil audit checkpoint`` signs one on demand."""
        with self._session() as con:
            try:
                con.execute("BEGIN TRANSACTION")
                row = con.execute("SELECT seq, record_hash FROM decision_log ORDER BY seq"
                                  " DESC LIMIT 1").fetchone()
                made = None if row is None else self._sign(con, int(row[0]), row[1], kind)
                con.execute("COMMIT")
            except duckdb.Error as exc:
                con.execute("ROLLBACK")
                raise DecisionLogError(f"cannot write a checkpoint to the decision log "
                                       f"{self.path}: {exc}") from exc
        return made

    def append_many(self, entries: list[dict[str, Any]]) -> None:
        """Append several decisions (each the keyword arguments of :meth:`append`, without
        ``skip_known``) in one transaction, chained in order: all are logged or none. The
        rows, their hashes and the periodic checkpoints are those the same single
        appends would write; the rows go in one statement (an Arrow table from
        :data:`_ARROW_ROWS` rows on)."""
        if entries:
            self._append(entries)

    _RETRIES = 8
    """Appends tried again when another writer moved the tip in between."""

    def _append(self, entries: list[dict[str, Any]], *, known_id: str | None = None
                ) -> bool:
        """Chain ``entries`` after the tip in one transaction (all or none), with their
        attestation results and periodic checkpoints; False (nothing written) when
        ``known_id`` is already logged. The tip is the one kept from the last append
        while the file stays open; when another writer appended since, the first seq
        collides (its primary key): the transaction is rolled back, the tip read again
        and the append tried again."""
        with self._lock:
            for attempt in range(self._RETRIES):
                try:
                    return self._append_once(entries, known_id,
                                             trust_tip=attempt == 0)
                except _TipMoved:
                    self._tip_known = None
                    self._stored_attestations.clear()
            return self._append_once(entries, known_id, trust_tip=False, last=True)

    def _chain(self, entries: list[dict[str, Any]], seq: int, prev: str
               ) -> tuple[list[list[Any]], dict[str, str], list[tuple[int, str]]]:
        """The rows of ``entries`` chained after (``seq``, ``prev``), the attestation
        results not stored yet (by SHA-256) and the checkpoints due (size, head)."""
        rows: list[list[Any]] = []
        tokens: dict[str, str] = {}
        signed: list[tuple[int, str]] = []
        for entry in entries:
            seq += 1
            row, token = self._row(seq, prev, entry)
            if token is not None:
                tokens[row[-1]] = token
            rows.append(row)
            prev = row[12]
            if self.signing_key is not None and seq % self.checkpoint_every == 0:
                signed.append((seq, prev))
        fresh = {d: t for d, t in tokens.items() if d not in self._stored_attestations}
        return rows, fresh, signed

    @staticmethod
    def _insert(con: duckdb.DuckDBPyConnection, rows: list[list[Any]]) -> None:
        if len(rows) >= _ARROW_ROWS:
            _insert_arrow(con, rows)
        else:
            con.execute(f"INSERT INTO decision_log ({_ROW_COLUMNS}) VALUES "
                        + ", ".join([_ROW_PLACES] * len(rows)),
                        [value for row in rows for value in row])

    def _failed(self, exc: duckdb.Error, last: bool) -> DecisionLogError:
        if not last and _is_collision(exc):
            raise _TipMoved from exc
        self._tip_known = None
        return DecisionLogError(f"cannot append to the decision log {self.path}: {exc}")

    def _kept(self, rows: list[list[Any]], fresh: dict[str, str]) -> None:
        """Keep the tip and the attestation results of an append just committed."""
        if self._con is not None and rows:
            self._tip_known = (int(rows[-1][0]), str(rows[-1][12]))
            self._stored_attestations.update(fresh)
            if len(self._stored_attestations) > 65536:
                self._stored_attestations.clear()

    def _append_once(self, entries: list[dict[str, Any]], known_id: str | None, *,
                     trust_tip: bool, last: bool = False) -> bool:
        with self._session() as con:
            kept = self._tip_known if trust_tip and self._con is not None else None
            if kept is not None and known_id is None:
                rows, fresh, signed = self._chain(entries, *kept)
                if not fresh and not signed:
                    # the rows alone: one statement, its own transaction (DuckDB's
                    # statements cost a fraction of a millisecond each)
                    try:
                        self._insert(con, rows)
                    except duckdb.Error as exc:
                        raise self._failed(exc, last) from exc
                    self._kept(rows, fresh)
                    return True
            try:
                con.execute("BEGIN TRANSACTION")
                if known_id is not None and con.execute(
                        "SELECT 1 FROM decision_log WHERE decision_id = ?",
                        [known_id]).fetchone():
                    con.execute("ROLLBACK")
                    return False
                seq, prev = kept if kept is not None else self._tip(con)
                rows, fresh, signed = self._chain(entries, seq, prev)
                now = dt.datetime.now(dt.UTC)
                for digest, token in fresh.items():
                    con.execute("INSERT INTO decision_attestations VALUES (?, ?, ?)"
                                " ON CONFLICT DO NOTHING", [digest, token, now])
                self._insert(con, rows)
                for size, head in signed:
                    self._sign(con, size, head, "periodic")
                con.execute("COMMIT")
            except duckdb.Error as exc:
                _rollback(con)
                raise self._failed(exc, last) from exc
            except BaseException:  # an entry that is not a decision: nothing written
                _rollback(con)
                raise
            self._kept(rows, fresh)
        return True

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
            error=None if error is None else canonical(error),
            labels={str(k): str(v) for k, v in (labels or {}).items()},
            bundles=bundles or None, skip_known=True)

    # --- reading ----------------------------------------------------------------------

    def _select(self, con: duckdb.DuckDBPyConnection) -> str:
        """The stored rows' columns in ``_ROW_COLUMNS`` order, by their names; those a
        log written before them lacks are NULL."""
        columns = _ROW_COLUMNS
        for column in ("bundles", "attestation_sha256"):
            if not self._has_column(con, "decision_log", column):
                columns = columns.replace(column, f"NULL::VARCHAR AS {column}")
        return f"SELECT {columns} FROM decision_log"

    def rows(self, where: str = "", params: list[Any] | None = None, *,
             batch: int = _BATCH) -> Iterator[StoredRow]:
        """The stored rows in sequence order, streamed (``where`` an SQL condition on the
        columns, e.g. ``seq >= ?``)."""
        with self._session() as con:
            cursor = con.cursor()
            try:
                cursor.execute(f"{self._select(con)} {'WHERE ' + where if where else ''}"
                               " ORDER BY seq", params or [])
                while True:
                    chunk = cursor.fetchmany(batch)
                    if not chunk:
                        return
                    for row in chunk:
                        yield StoredRow(*row)
            finally:
                cursor.close()

    def chain_rows(self, *, full: bool = False) -> Iterator[ChainRow]:
        """Every record in sequence order with its hash computed in bulk: the records
        read as Arrow in ranges of sequence numbers (each range's rows sorted, never the
        whole log), the input's and result's bytes hashed as stored, within
        :func:`body_frame`. ``full``: each with its :class:`StoredRow`."""
        with self._session() as con:
            select = self._select(con)
            found = con.execute("SELECT count(*) FROM decision_log").fetchone()
            count = int(found[0]) if found else 0
            if not count:
                return
            sample = con.execute(
                "SELECT avg(strlen(input) + strlen(result)) FROM (SELECT input, "
                "result FROM decision_log LIMIT 64)").fetchone()
            size = float(sample[0]) if sample and sample[0] is not None else 1.0
            step = int(max(16, min(4096, _CHUNK_BYTES // max(size, 1.0))))
            starts = [int(r[0]) for r in con.execute(
                "SELECT seq FROM (SELECT seq, row_number() OVER (ORDER BY seq) AS n FROM "
                "decision_log) WHERE n % ? = 1 ORDER BY seq", [step]).fetchall()]
            columns = select.removeprefix("SELECT ").removesuffix(" FROM decision_log")
            query = (f"SELECT {columns}, epoch_us(ts) AS micros, {_STAMP_SQL} AS stamp "
                     "FROM decision_log WHERE seq >= ? AND seq < ? ORDER BY seq")
            ends = [*starts[1:], None]
            cursor = con.cursor()
            try:
                cursor.execute("SET arrow_large_buffer_size = true")
                for start, end in zip(starts, ends, strict=True):
                    if end is None:
                        table = cursor.sql(query.replace(" AND seq < ?", ""),
                                           params=[start]).to_arrow_table()
                    else:
                        table = cursor.sql(query, params=[start, end]).to_arrow_table()
                    yield from _hashed(table, full)
            finally:
                cursor.close()

    def in_storage_order(self) -> bool:
        """Whether the rows are stored in sequence order (as the writer stores them), so
        that :meth:`scan` meets them in that order."""
        with self._session() as con:
            found = con.execute(
                "SELECT count(*) FROM (SELECT seq, lag(seq) OVER (ORDER BY rowid) AS before"
                " FROM decision_log) WHERE seq <= before").fetchone()
        return not (found and found[0])

    def scan(self, *, full: bool = False, batch_bytes: int = 32 << 20,
             memory_limit: str = "512MB", threads: int = 1) -> Iterator[Any]:
        """Every record once, in storage order (no sort), as Arrow record batches of
        about ``batch_bytes`` of hashed text: the columns :data:`SCAN_COLUMNS`, where
        ``hashed`` is what its hash covers (``prev_hash`` and :func:`body_text`, joined by
        DuckDB) unless ``odd`` (a field that :func:`body_frame` must frame, a time outside
        the years 1970-9999, or a NULL where the schema has none: ``hashed`` is then not
        the record's and it is framed in Python); with ``full``, then every stored
        column. DuckDB runs with ``memory_limit`` (raised to what one of its vectors of
        these records takes, read and joined) and ``threads`` for the scan: a read-only
        pass needs no large buffer pool."""
        whole, odd = _hashed_sql()
        with self._session() as con:
            source = f"({self._select(con)})"
            sample = con.execute(  # a range of seq, not a LIMIT: that reads a whole vector
                "SELECT avg(strlen(input) + strlen(result)) FROM decision_log WHERE seq <"
                " (SELECT min(seq) FROM decision_log) + 64").fetchall()
            size = float(sample[0][0]) if sample and sample[0][0] is not None else 1.0
            rows = int(max(8, min(65536, batch_bytes // max(size + 400, 1.0))))
            extra = f", {_ROW_COLUMNS}" if full else ""
            pieces = size * _VECTOR > _PIECES_ABOVE
            if pieces:  # not joined: a vector of them would be held twice
                before, *rest = _pieces_sql()
                whole = before
                extra += ", " + ", ".join(f"{e} AS hashed_{n}" for e, n in zip(
                    rest, ("input", "between", "result", "after"), strict=True))
            query = (f"SELECT seq, decision_id, prev_hash, record_hash, epoch_us(ts) AS "
                     f"micros, bundle_revision, attestation_sha256, ({odd}) AS odd, "
                     f"{whole} AS hashed{extra} "
                     f"FROM {source}")
            cursor = con.cursor()
            settings = {r[0]: r[1] for r in cursor.execute(
                "SELECT name, value FROM duckdb_settings() WHERE name IN ('memory_limit', "
                "'threads')").fetchall()}
            try:
                # at least what one vector of these records takes, read and joined (a
                # range query instead reads the whole column again for every range)
                least = int((2 if pieces else 3) * _VECTOR * (size + 400))
                cursor.execute(f"SET memory_limit = {_sql_literal(memory_limit)}")
                if least > _bytes_setting(cursor, "memory_limit"):
                    cursor.execute(f"SET memory_limit = '{least // (1 << 20)}MB'")
                cursor.execute(f"SET threads = {int(threads)}")
                cursor.execute("SET arrow_large_buffer_size = true")
                reader = cursor.sql(query).to_arrow_reader(rows)
                try:
                    for batch in _read_ahead(reader):
                        if batch.num_rows:
                            yield batch
                except duckdb.OutOfMemoryException as exc:
                    raise DecisionLogError(
                        f"cannot read the decision log {self.path}: {exc}".splitlines()[0],
                        tip="its records grow beyond the first ones' size; free memory "
                            "or read it on a larger machine") from None
            finally:
                for name, value in settings.items():
                    with contextlib.suppress(duckdb.Error):
                        cursor.execute(f"SET {name} = {_sql_literal(str(value))}")
                cursor.close()

    def search(self, *, host: str = "", tenant: str = "", verdict: str = "",
               reason: str = "", since: dt.datetime | None = None,
               until: dt.datetime | None = None, limit: int = 500) -> list[dict[str, Any]]:
        """The newest ``limit`` decisions matching every filter given, found by DuckDB in
        the log (the input's host id and tenant, the result's verdict, a reason's message
        containing ``reason`` in any case, ``since`` <= time < ``until``): each with its
        sequence number, id, time, host, tenant, verdict, reasons' messages and error."""
        host_sql = "json_extract_string(input, '$.host.id')"
        tenant_sql = "json_extract_string(input, '$.request.tenant')"
        verdict_sql = "json_extract_string(result, '$.verdict')"
        reasons_sql = "json_extract_string(result, '$.reasons[*].message')"
        where: list[str] = []
        params: list[Any] = []
        for sql, value in ((host_sql, host), (tenant_sql, tenant), (verdict_sql, verdict)):
            if value:
                where.append(f"{sql} = ?")
                params.append(value)
        if reason:
            where.append(f"len(list_filter({reasons_sql}, lambda m: contains(lower(m), ?))) > 0")
            params.append(reason.lower())
        if since is not None:
            where.append("ts >= ?")
            params.append(since)
        if until is not None:
            where.append("ts < ?")
            params.append(until)
        query = (f"SELECT seq, decision_id, ts, {host_sql}, {tenant_sql}, {verdict_sql}, "
                 f"{reasons_sql}, error FROM decision_log "
                 f"{'WHERE ' + ' AND '.join(where) if where else ''} "
                 "ORDER BY seq DESC LIMIT ?")
        with self._session() as con:
            try:
                found = con.execute(query, [*params, max(0, limit)]).fetchall()
            except duckdb.Error as exc:
                raise DecisionLogError(f"cannot search the decision log {self.path}: {exc}"
                                       ) from exc
        return [{"seq": r[0], "id": r[1], "timestamp": r[2], "host": r[3] or "",
                 "tenant": r[4] or "", "verdict": r[5] or "", "reasons": list(r[6] or []),
                 "error": r[7]} for r in found]

    def file_state(self) -> tuple[Any, ...]:
        """What changes when anything in the log's files changes: each file's size and
        modification time (the database and its write-ahead log), the record count, the
        last record's hash and the checkpoints' count."""
        stats: list[Any] = []
        for path in (self.path, self.path.with_name(self.path.name + ".wal")):
            try:
                st = path.stat()
                stats.append((st.st_ino, st.st_size, st.st_mtime_ns))
            except OSError:
                stats.append(None)
        with self._session() as con:
            head = con.execute("SELECT count(*), max(seq), max_by(record_hash, seq) FROM "
                               "decision_log").fetchone()
            marks = con.execute("SELECT count(*), max(number) FROM decision_checkpoints"
                                ).fetchone() if self._has_table(
                con, "decision_checkpoints") else None
        return (*stats, head, marks)

    def _records(self, where: str = "", params: list[Any] | None = None
                 ) -> Iterator[DecisionRecord]:
        for row in self.rows(where, params):
            yield row.record()

    def get(self, decision_id: str) -> DecisionRecord | None:
        found = list(self._records("decision_id = ?", [decision_id]))
        return found[0] if found else None

    def since(self, when: dt.datetime | None = None) -> list[DecisionRecord]:
        if when is None:
            return list(self._records())
        return list(self._records("ts >= ?", [when]))

    def stats(self) -> tuple[int, int, dt.datetime | None, dt.datetime | None]:
        """(records, last sequence number, first timestamp, last timestamp)."""
        with self._session() as con:
            row = con.execute("SELECT count(*), coalesce(max(seq), 0), min(ts), max(ts)"
                              " FROM decision_log").fetchone()
        assert row is not None
        return int(row[0]), int(row[1]), row[2], row[3]

    def bundle(self, revision: str) -> bytes | None:
        with self._session() as con:
            row = con.execute(
                "SELECT archive FROM decision_bundles WHERE revision = ? ORDER BY recorded_at"
                " DESC LIMIT 1", [revision]).fetchone()
        return bytes(row[0]) if row else None

    def bundle_revisions(self) -> set[str]:
        with self._session() as con:
            return {r[0] for r in con.execute("SELECT DISTINCT revision FROM decision_bundles"
                                              ).fetchall()}

    def bundle_entries(self, revision: str) -> list[tuple[str, bytes, str | None]]:
        """Every archive stored under ``revision``: (sha256, archive, origin)."""
        with self._session() as con:
            return [(r[0], bytes(r[1]), r[2]) for r in con.execute(
                "SELECT sha256, archive, origin FROM decision_bundles WHERE revision = ?"
                " ORDER BY recorded_at", [revision]).fetchall()]

    def attestation(self, sha256: str) -> str | None:
        """The signed attestation result stored under its SHA-256."""
        with self._session() as con:
            if not self._has_table(con, "decision_attestations"):
                return None
            row = con.execute("SELECT token FROM decision_attestations WHERE sha256 = ?",
                              [sha256]).fetchone()
        return str(row[0]) if row else None

    def attestation_hashes(self) -> set[str]:
        with self._session() as con:
            if not self._has_table(con, "decision_attestations"):
                return set()
            return {r[0] for r in con.execute("SELECT sha256 FROM decision_attestations"
                                              ).fetchall()}

    def checkpoints(self) -> list[Checkpoint]:
        with self._session() as con:
            if not self._has_table(con, "decision_checkpoints"):
                return []
            return [Checkpoint(*r) for r in con.execute(
                "SELECT number, size, head, signed_at, key_id, kind, token FROM"
                " decision_checkpoints ORDER BY number").fetchall()]

    def first_seq_since(self, when: dt.datetime) -> int | None:
        with self._session() as con:
            row = con.execute("SELECT min(seq) FROM decision_log WHERE ts >= ?", [when]
                              ).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def export_ndjson(self, out: IO[bytes], since: dt.datetime | None = None, *,
                      checkpoint: bool = True) -> int:
        """Write the log (from the first record at or after ``since``) as NDJSON OPA
        events that verify on their own. With a signing key (and ``checkpoint``), the
        head is signed first (an ``export`` checkpoint) and the export stops there."""
        with self._session():
            return self._export(out, since, checkpoint)

    def _export(self, out: IO[bytes], since: dt.datetime | None, checkpoint: bool) -> int:
        if checkpoint and self.signing_key is not None and not self.read_only:
            self.checkpoint("export")
        first = 1
        if since is not None:
            found = self.first_seq_since(since)
            if found is None:
                return 0
            first = found
        marks: dict[int, list[Checkpoint]] = {}
        for cp in self.checkpoints():
            if cp.size >= first:
                marks.setdefault(cp.size, []).append(cp)
        last = max(marks) if marks else None
        sent_bundles: set[str] = set()
        sent_attestations: set[str] = set()
        count = 0
        where, params = "seq >= ?", [first]
        if last is not None and checkpoint and self.signing_key is not None:
            where, params = "seq >= ? AND seq <= ?", [first, last]
        for row in self.rows(where, params):
            ext = row_extension(row)
            revision = row.bundle_revision
            if revision and revision not in sent_bundles:
                sent_bundles.add(revision)
                entries = self.bundle_entries(revision)
                if entries:
                    sha, archive, origin = entries[-1]
                    ext["bundle"] = {"revision": revision, "sha256": sha, "origin": origin,
                                     "archive": base64.b64encode(archive).decode()}
            if row.attestation_sha256 and row.attestation_sha256 not in sent_attestations:
                sent_attestations.add(row.attestation_sha256)
                token = self.attestation(row.attestation_sha256)
                if token is not None:
                    ext["attestation_result"] = token
            if row.seq in marks:
                ext["checkpoints"] = [cp.token for cp in marks[row.seq]]
            out.write(event_line(row, ext).encode() + b"\n")
            count += 1
        return count

    def verify_chain(self) -> list[str]:
        """Problems with the hash chain (empty when every row is intact and in place).
        Signed checkpoints are checked by ``engine.audit``."""
        problems: list[str] = []
        prev = GENESIS
        expected_seq = 1
        for row in self.rows():
            if row.seq != expected_seq:
                problems.append(f"row {expected_seq} is missing (next is {row.seq})")
                expected_seq = row.seq
            if row.prev_hash != prev or row.record_hash != row.computed_hash(prev):
                problems.append(f"decision {row.decision_id} (row {row.seq}) was changed")
            prev = row.record_hash
            expected_seq += 1
        return problems


__all__ = [
    "CHECKPOINT_TYP",
    "GENESIS",
    "SCAN_COLUMNS",
    "ChainRow",
    "Checkpoint",
    "DecisionLog",
    "DecisionRecord",
    "StoredRow",
    "body_frame",
    "body_text",
    "canonical",
    "chain_hash",
    "checkpoint_payload",
    "event_frame",
    "event_line",
    "hashed_timestamp",
    "opa_timestamp",
    "row_extension",
]
