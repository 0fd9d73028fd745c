"""The PVDB's DuckDB file: opening, migrating and writing records' facts atomically.

Generations. A write never touches the live file that readers have open: the writer
(one at a time, under the lock file ``<db>.lock``) copies the live file beside it to
``<db>.next``, writes its batches there (each one transaction, as before), and when it is
done checkpoints it and switches it in with one :func:`os.replace`. Readers that had the
live file open keep their consistent view of the generation they opened; readers that
open it after the switch get the new one. A writer killed before the switch leaves the
live file as it was (the next run discards its ``.next`` and starts from the live file
again, and ingest being idempotent, completes the work); one killed after it has
finished. So an ingest never locks a reader out, and a reader never waits.

Readers attach the file read-only to a connection of their own (``ATTACH ... READ_ONLY``
on an in-memory database): DuckDB shares one database instance per path within a
process, which would hand a process that reopens the path after a switch the generation
it already had open.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import fcntl
import operator
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from engine.errors import DatabaseError
from engine.pvdb import schema
from engine.pvdb.models import (
    AffectedFact,
    AliasFact,
    EpssFact,
    FixFact,
    KevFact,
    NormalisedRecord,
    RawRecord,
    ReferenceFact,
    ReleaseFact,
    SeverityFact,
    VulnFact,
)


@dataclass(frozen=True, slots=True)
class StoredRecord:
    content_hash: str
    modified: dt.datetime | None
    ingested_at: dt.datetime

    @property
    def effective_time(self) -> dt.datetime:
        """The record's own modified time, or when Vigil first saw this content."""
        return self.modified or self.ingested_at


NEXT_SUFFIX = ".next"
"""The next generation is built at ``<db>.next`` (its WAL at ``<db>.next.wal``)."""
LOCK_SUFFIX = ".lock"
"""The writers' lock file beside the PVDB (kept; only the lock on it matters)."""


def _next_path(path: Path) -> Path:
    return path.with_name(path.name + NEXT_SUFFIX)


def _wal(path: Path) -> Path:
    return path.with_name(path.name + ".wal")


def _open_error(path: Path, exc: Exception) -> DatabaseError:
    message = str(exc)
    if "lock" in message.lower():
        return DatabaseError(f"the PVDB {path} is in use by another process",
                             tip="wait for the other Vigil command to finish")
    return DatabaseError(f"cannot open the PVDB {path}: {message}")


def connect(path: Path, *, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """Open the PVDB at ``path``: read-only, the live generation as it is now; writable,
    ``path`` itself, migrated (for a file no reader shares: :func:`next_generation`
    gives the writable connection of a live PVDB)."""
    if read_only:
        return open_reader(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        con = duckdb.connect(str(path))
    except duckdb.IOException as exc:
        raise _open_error(path, exc) from exc
    except (duckdb.Error, OSError) as exc:
        raise DatabaseError(f"cannot open the PVDB {path}: {exc}") from exc
    schema.migrate(con)
    return con


def open_reader(path: Path) -> duckdb.DuckDBPyConnection:
    """A read-only connection to the live generation of the PVDB at ``path`` (its own
    database instance: see the module's docstring)."""
    if not path.exists():
        raise DatabaseError(
            f"no PVDB at {path}",
            tip="build one with `vigil feeds ingest PATH`, or set VIGIL_DB",
        )
    con = duckdb.connect(":memory:")
    try:
        quoted = str(path).replace("'", "''")
        con.execute(f"ATTACH '{quoted}' AS pvdb (READ_ONLY)")
        con.execute("USE pvdb")
    except duckdb.IOException as exc:
        con.close()
        raise _open_error(path, exc) from exc
    except duckdb.Error as exc:
        con.close()
        raise DatabaseError(f"cannot open the PVDB {path}: {exc}") from exc
    version = schema.current_version(con)
    if version != schema.SCHEMA_VERSION:
        con.close()
        raise DatabaseError(
            f"the PVDB {path} has schema version {version}, expected "
            f"{schema.SCHEMA_VERSION}",
            tip="run any `vigil feeds` command once to migrate it",
        )
    return con


def current(path: Path) -> bool:
    """Whether the live file exists, is folded (no WAL of an older writer) and has this
    version's schema."""
    if not path.exists() or _wal(path).exists():
        return False
    try:
        con = open_reader(path)
    except DatabaseError:
        return False
    con.close()
    return True


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def writer_lock(path: Path) -> Iterator[None]:
    """The lock one writer of the PVDB at ``path`` holds (DatabaseError at once when
    another holds it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(path.name + LOCK_SUFFIX), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DatabaseError(f"another process is writing the PVDB {path}",
                                tip="wait for the other ingest to finish") from None
        yield
    finally:
        os.close(fd)  # releases the lock


@contextlib.contextmanager
def next_generation(path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A writable connection to the next generation of the PVDB at ``path``: a copy of
    the live file (or a new file), migrated. When the block ends normally the generation
    is checkpointed, synced and switched in atomically; when it raises (or the process
    dies) the live file is left as it was."""
    staging = _next_path(path)
    with writer_lock(path):
        for leftover in (staging, _wal(staging)):
            leftover.unlink(missing_ok=True)  # a killed writer's: never switched in
        live_wal = _wal(path)
        if path.exists():
            shutil.copyfile(path, staging)
            if live_wal.exists():  # written in place by an older writer: fold it in
                shutil.copyfile(live_wal, _wal(staging))
        con = connect(staging)
        try:
            yield con
            con.execute("CHECKPOINT")
        except BaseException:
            con.close()
            for leftover in (staging, _wal(staging)):
                leftover.unlink(missing_ok=True)
            raise
        con.close()
        _wal(staging).unlink(missing_ok=True)  # folded in by the checkpoint and close
        _fsync(staging)
        live_wal.unlink(missing_ok=True)  # its records are in the new generation
        os.replace(staging, path)
        _fsync(path.parent)


def generation(con: duckdb.DuckDBPyConnection) -> int:
    """A counter bumped by every write that changed facts (for cache invalidation)."""
    rows = con.execute("SELECT value FROM meta WHERE key = 'generation'").fetchall()
    return int(rows[0][0]) if rows else 0


def generation_id(con: duckdb.DuckDBPyConnection) -> str | None:
    """A random id replaced by every write that changed facts, or None in a file no
    write of this version has touched: two files with the same id hold the same facts
    (a copy keeps it; diverging copies each get new ones, where the counter could meet)."""
    rows = con.execute("SELECT value FROM meta WHERE key = 'generation_id'").fetchall()
    return str(rows[0][0]) if rows else None


def load_stored(
    con: duckdb.DuckDBPyConnection, keys: Iterable[tuple[str, str]]
) -> dict[tuple[str, str], StoredRecord]:
    """The stored hash and times of those of ``keys`` (source, record_id) that exist."""
    wanted = list(keys)
    if not wanted:
        return {}
    con.register("_wanted_keys", pa.table({"source": [k[0] for k in wanted],
                                           "record_id": [k[1] for k in wanted]}))
    try:
        table = con.sql(
            "SELECT r.source, r.record_id, r.content_hash, r.modified, r.ingested_at"
            " FROM records r SEMI JOIN _wanted_keys w USING (source, record_id)"
        ).to_arrow_table()
    finally:
        con.unregister("_wanted_keys")
    columns = [table.column(i).to_pylist() for i in range(5)]
    return {
        (s, r): StoredRecord(h, m, i)
        for s, r, h, m, i in zip(*columns, strict=True)
    }


# Columns of each fact table after (source, record_id), in the order of the dataclass fields
# of the fact type (renamed where SQL needs another name).
_RENAMES = {"group": "grp", "start": "start_v", "end": "end_v"}
_FACT_FIELDS: dict[str, str] = {
    "vulnerabilities": "vulns",
    "aliases": "aliases",
    "severities": "severities",
    "affected": "affected",
    "fixes": "fixes",
    "refs": "references",
    "kev": "kev",
    "epss": "epss",
    "releases": "releases",
}


class RejectedBatch(Exception):
    """A batch holds a record whose facts cannot be stored (a value of the wrong type, a
    missing required value): nothing of the batch was written."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_DATA_ERRORS = (
    duckdb.ConstraintException,
    duckdb.ConversionException,
    duckdb.InvalidInputException,
    duckdb.OutOfRangeException,
    duckdb.TypeMismatchException,
)
"""Errors of an INSERT that come from the values written, not from the database."""


def write_batch(
    con: duckdb.DuckDBPyConnection,
    batch: Sequence[tuple[RawRecord, NormalisedRecord]],
    *,
    now: dt.datetime,
    history: Sequence[tuple[RawRecord, NormalisedRecord]] = (),
) -> None:
    """Replace the facts of every record in ``batch`` in one transaction.

    Every dated EPSS score of the batch, and of ``history`` (stale records: older scores
    whose records are not replaced), is added to the ``epss_history`` log in the same
    transaction (a score already logged for its date is kept).

    A process killed before COMMIT leaves the database as it was before the batch. When a
    value of the batch cannot be stored, nothing is written and :class:`RejectedBatch`
    says why (the caller finds the record by writing smaller batches).
    """
    if not batch:
        if history:
            _write_history(con, history)
        return
    keys = pa.table(
        {
            "source": [raw.source.value for raw, _ in batch],
            "record_id": [raw.record_id for raw, _ in batch],
        }
    )
    record_rows = pa.table(
        {
            "source": [raw.source.value for raw, _ in batch],
            "record_id": [raw.record_id for raw, _ in batch],
            "content_hash": [raw.content_hash for raw, _ in batch],
            "modified": pa.array([raw.modified for raw, _ in batch], pa.timestamp("us", "UTC")),
            "ingested_at": pa.array([now] * len(batch), pa.timestamp("us", "UTC")),
            "origin": [raw.origin for raw, _ in batch],
        }
    )
    fact_tables = {name: _fact_table(name, batch) for name in _FACT_FIELDS}
    scores = _history_table([*batch, *history])
    try:
        con.execute("BEGIN TRANSACTION")
        con.register("_batch_keys", keys)
        for name in ("records", *schema.FACT_TABLES):
            con.execute(
                f"DELETE FROM {name} WHERE (source, record_id) IN "
                "(SELECT source, record_id FROM _batch_keys)"
            )
        con.register("_batch_records", record_rows)
        con.execute("INSERT INTO records SELECT * FROM _batch_records")
        for name, table in fact_tables.items():
            if table is not None:
                con.register("_batch_facts", table)
                con.execute(f"INSERT INTO {name} BY NAME SELECT * FROM _batch_facts")
                con.unregister("_batch_facts")
        if scores is not None:
            _insert_history(con, scores)
        con.execute(
            "UPDATE meta SET value = CAST(CAST(value AS BIGINT) + 1 AS VARCHAR)"
            " WHERE key = 'generation'"
        )
        con.execute("INSERT OR REPLACE INTO meta VALUES ('generation_id', ?)",
                    [uuid.uuid4().hex])
        con.execute("COMMIT")
    except _DATA_ERRORS as exc:
        con.execute("ROLLBACK")
        raise RejectedBatch(str(exc).split("\n", 1)[0]) from exc
    except duckdb.Error as exc:
        con.execute("ROLLBACK")
        raise DatabaseError(f"writing a batch of {len(batch)} records failed: {exc}") from exc
    finally:
        for view in ("_batch_keys", "_batch_records"):
            with contextlib.suppress(duckdb.Error):
                con.unregister(view)


def _history_table(items: Sequence[tuple[RawRecord, NormalisedRecord]]) -> pa.Table | None:
    """The ``epss_history`` rows of ``items``' dated EPSS scores (None: there are none)."""
    rows = [(raw, fact) for raw, record in items for fact in record.epss
            if fact.score_date is not None]
    if not rows:
        return None
    try:
        return pa.table({
            "source": pa.array([raw.source.value for raw, _ in rows], pa.string()),
            "vuln_id": pa.array([fact.vuln_id for _, fact in rows], pa.string()),
            "score_date": pa.array([fact.score_date for _, fact in rows], pa.date32()),
            "score": pa.array([fact.score for _, fact in rows], pa.float64()),
            "percentile": pa.array([fact.percentile for _, fact in rows], pa.float64()),
            "record_id": pa.array([raw.record_id for raw, _ in rows], pa.string()),
            "origin": pa.array([raw.origin for raw, _ in rows], pa.string()),
        })
    except pa.ArrowException as exc:
        raise RejectedBatch(f"epss_history: {exc}") from exc


def _insert_history(con: duckdb.DuckDBPyConnection, scores: pa.Table) -> None:
    con.register("_batch_scores", scores)
    try:
        con.execute("INSERT OR IGNORE INTO epss_history BY NAME SELECT * FROM _batch_scores")
    finally:
        con.unregister("_batch_scores")


def _write_history(con: duckdb.DuckDBPyConnection,
                   items: Sequence[tuple[RawRecord, NormalisedRecord]]) -> None:
    """Log the dated EPSS scores of ``items`` (stale records) in one transaction."""
    scores = _history_table(items)
    if scores is None:
        return
    try:
        con.execute("BEGIN TRANSACTION")
        _insert_history(con, scores)
        con.execute("COMMIT")
    except _DATA_ERRORS as exc:
        con.execute("ROLLBACK")
        raise RejectedBatch(str(exc).split("\n", 1)[0]) from exc
    except duckdb.Error as exc:
        con.execute("ROLLBACK")
        raise DatabaseError(f"logging {len(items)} EPSS scores failed: {exc}") from exc


def _arrow_type(annotation: str) -> pa.DataType:
    """The Arrow type of a fact field from its annotation, so that a value of another
    type is refused rather than converted."""
    if "datetime" in annotation:
        return pa.timestamp("us", "UTC")
    if "date" in annotation:
        return pa.date32()
    if "tuple[str" in annotation:
        return pa.list_(pa.string())
    for name, kind in (("float", pa.float64()), ("bool", pa.bool_()), ("int", pa.int64())):
        if annotation.split(" |")[0] == name:
            return kind
    return pa.string()  # str, the id NewTypes and the StrEnums


_FACT_TYPES = (VulnFact, AliasFact, SeverityFact, AffectedFact, FixFact, ReferenceFact,
               KevFact, EpssFact, ReleaseFact)
_FIELD_NAMES: dict[type, tuple[str, ...]] = {
    cls: tuple(f.name for f in dataclasses.fields(cls)) for cls in _FACT_TYPES
}
_FIELD_TYPES: dict[type, tuple[pa.DataType, ...]] = {
    cls: tuple(_arrow_type(str(f.type)) for f in dataclasses.fields(cls)) for cls in _FACT_TYPES
}


def _fact_table(
    table: str, batch: Iterable[tuple[RawRecord, NormalisedRecord]]
) -> pa.Table | None:
    """One Arrow table of every fact of kind ``table`` in the batch, column by column."""
    attr = _FACT_FIELDS[table]
    facts: list[Any] = []
    sources: list[str] = []
    record_ids: list[str] = []
    for raw, record in batch:
        items = getattr(record, attr)
        if items:
            facts.extend(items)
            sources.extend([raw.source.value] * len(items))
            record_ids.extend([raw.record_id] * len(items))
    if not facts:
        return None
    kind = type(facts[0])
    names = _FIELD_NAMES[kind]
    columns = zip(*map(operator.attrgetter(*names), facts), strict=True)
    arrays: dict[str, Any] = {"source": sources, "record_id": record_ids}
    for name, arrow_type, values in zip(names, _FIELD_TYPES[kind], columns, strict=True):
        try:
            arrays[_RENAMES.get(name, name)] = pa.array(values, type=arrow_type)
        except pa.ArrowException as exc:
            raise RejectedBatch(f"{table}.{name}: {exc}") from exc
    return pa.table(arrays)
