"""Ingest feed documents into the PVDB: idempotent, incremental and crash-safe.

For every record the adapter cuts out of a document, the ingest decides:

* **added**: no record with this ``(source, record_id)`` is stored;
* **unchanged**: the stored record has the same content hash (nothing is written);
* **updated**: the content differs and the record is newer than the stored one;
* **stale**: the content differs but the stored record is at least as new (kept).

"Newer" compares the records' own modified times (``dateUpdated``, ``lastModified``,
``modified``…). A record that carries no such time (the Linux kernel CNA's own files, for
example) is dated by when Vigil first stored that content, so a later undated version
replaces an earlier one, and re-reading an older dated copy does not undo it.

Changed records are written in batches, each batch one transaction with the records'
hashes, so a process killed mid-ingest leaves a consistent database and the next run
completes the work.

Every dated EPSS score read is kept in the ``epss_history`` log, whatever its record's
verdict: a stale EPSS record (a file of an older date read after a newer one) does not
replace the current score, but its score is logged for its date (an answer as of a past
date uses it, :mod:`engine.pvdb.asof`).
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from engine.config import Settings
from engine.errors import FeedError, RecordError
from engine.gcpause import paused_gc
from engine.pvdb import sources, store
from engine.pvdb.feeds import adapter_for
from engine.pvdb.feeds.base import Document, FeedAdapter
from engine.pvdb.models import NormalisedRecord, RawRecord, Source

ProgressCallback = Callable[[str, int, int], None]
"""Called as ``progress(origin, done, total)`` after each source file or URL."""

_MAX_STORED_PROBLEMS = 10_000


@dataclass(slots=True)
class SourceCounts:
    """What happened to the records of one feed kind during one ingest."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    stale: int = 0
    problems: int = 0

    @property
    def changed(self) -> int:
        return self.added + self.updated


@dataclass(frozen=True, slots=True)
class Problem:
    """A document or record that was rejected; everything else still loaded."""

    origin: str
    record_id: str | None
    pointer: str
    reason: str

    def __str__(self) -> str:
        where = self.origin + (f" [{self.record_id}]" if self.record_id else "")
        return f"{where} at {self.pointer}: {self.reason}"


@dataclass(slots=True)
class IngestReport:
    run_id: str
    counts: dict[str, SourceCounts] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """Files that are not feeds (origin, reason): read, recognised as nothing, left alone."""
    warnings: list[Problem] = field(default_factory=list)
    """Parts of loaded records that were understood but not used, or corrected."""
    not_modified: list[str] = field(default_factory=list)
    """URLs whose server answered 304 Not Modified."""
    documents: int = 0
    seconds: float = 0.0

    @property
    def changed(self) -> int:
        """Records added or updated: zero when the input was already ingested."""
        return sum(c.changed for c in self.counts.values())

    def total(self) -> SourceCounts:
        out = SourceCounts()
        for c in self.counts.values():
            out.added += c.added
            out.updated += c.updated
            out.unchanged += c.unchanged
            out.stale += c.stale
            out.problems += c.problems
        return out


def decide(stored: store.StoredRecord | None, raw: RawRecord, now: dt.datetime) -> str:
    """``added``, ``unchanged``, ``updated`` or ``stale`` (see the module docstring)."""
    if stored is None:
        return "added"
    if stored.content_hash == raw.content_hash:
        return "unchanged"
    incoming = raw.modified or now
    return "updated" if incoming > stored.effective_time else "stale"


_LOOKUP_CHUNK = 5000
"""Records whose stored versions are looked up in one query."""


@dataclass(slots=True)
class _Pending:
    """A changed record waiting to be written, with what undoing its count needs."""

    origin: str
    raw: RawRecord
    record: NormalisedRecord
    verdict: str
    previous: store.StoredRecord | None


class _Writer:
    """Collects changed records and writes them in batches.

    When a batch cannot be stored because of a value in it, the batch is written again in
    halves until the records that cannot be stored are found: those are reported as
    problems and every other record of the batch is written."""

    def __init__(self, con: duckdb.DuckDBPyConnection, batch_size: int, now: dt.datetime,
                 report: IngestReport, stored: dict[tuple[str, str], store.StoredRecord]
                 ) -> None:
        self.con = con
        self.batch_size = batch_size
        self.now = now
        self.report = report
        self.stored = stored
        self.pending: dict[tuple[str, str], _Pending] = {}
        self.history: list[tuple[RawRecord, NormalisedRecord]] = []
        """Stale records whose dated scores go to the EPSS log only."""

    def add(self, item: _Pending) -> None:
        key = (item.raw.source.value, item.raw.record_id)
        replaced = self.pending.get(key)
        if replaced is not None and replaced.raw.source is Source.EPSS:
            # a newer score of the same CVE in this run: the older one is still logged
            self.history.append((replaced.raw, replaced.record))
        self.pending[key] = item
        if len(self.pending) >= self.batch_size:
            self.flush()

    def add_history(self, raw: RawRecord, record: NormalisedRecord) -> None:
        self.history.append((raw, record))
        if len(self.history) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            batch = list(self.pending.values())
            self.pending.clear()
            self._write(batch)
        if self.history:
            # its own transaction: logging a score twice keeps the first, so a crash
            # before it commits is made good by the next run reading the file again
            history, self.history = self.history, []
            store.write_batch(self.con, [], now=self.now, history=history)

    def _write(self, batch: list[_Pending]) -> None:
        try:
            store.write_batch(self.con, [(p.raw, p.record) for p in batch], now=self.now)
        except store.RejectedBatch as exc:
            if len(batch) == 1:
                self._reject(batch[0], exc.reason)
                return
            middle = len(batch) // 2
            self._write(batch[:middle])
            self._write(batch[middle:])

    def _reject(self, item: _Pending, reason: str) -> None:
        """Count ``item`` as a problem instead of the change it was counted as."""
        raw = item.raw
        counts = self.report.counts[raw.source.value]
        setattr(counts, item.verdict, getattr(counts, item.verdict) - 1)
        counts.problems += 1
        key = (raw.source.value, raw.record_id)
        if item.previous is None:
            self.stored.pop(key, None)
        else:
            self.stored[key] = item.previous
        self.report.warnings = [
            w for w in self.report.warnings
            if (w.origin, w.record_id) != (item.origin, raw.record_id)
        ]
        self.report.problems.append(
            Problem(item.origin, raw.record_id, raw.pointer, f"cannot be stored: {reason}"))


def ingest(
    con: duckdb.DuckDBPyConnection,
    source_args: Sequence[str],
    settings: Settings,
    *,
    progress: ProgressCallback | None = None,
) -> IngestReport:
    """Ingest every document named by ``source_args`` (files, folders, URLs)."""
    # Fewer, larger checkpoints during a bulk write: the WAL keeps every committed batch
    # durable, and one checkpoint at the end folds it into the database file.
    con.execute("SET checkpoint_threshold = '1GB'")
    try:
        with paused_gc():
            return _ingest(con, source_args, settings, progress)
    finally:
        con.execute("RESET checkpoint_threshold")
        con.execute("CHECKPOINT")


def _ingest(
    con: duckdb.DuckDBPyConnection,
    source_args: Sequence[str],
    settings: Settings,
    progress: ProgressCallback | None,
) -> IngestReport:
    started = time.perf_counter()
    now = dt.datetime.now(dt.UTC)
    report = IngestReport(run_id=uuid.uuid4().hex)
    stored: dict[tuple[str, str], store.StoredRecord] = {}
    writer = _Writer(con, settings.ingest_batch, now, report, stored)
    pipeline = _Pipeline(con, writer, report, stored)

    limits = sources.Limits.of(settings)
    plan: list[str | Path | sources.Refused] = []
    for arg in source_args:
        if sources.is_url(arg):
            if settings.offline:
                raise FeedError(
                    f"{arg}: offline mode forbids downloading",
                    tip="ingest a local copy, or unset VIGIL_OFFLINE / --offline",
                )
            plan.append(arg)
        else:
            plan.extend(sources.list_files(Path(arg)))

    for done, item in enumerate(plan, start=1):
        origin = item.origin if isinstance(item, sources.Refused) else str(item)
        try:
            if isinstance(item, sources.Refused):
                pipeline.refused(item)
            elif isinstance(item, Path):
                pipeline.documents(sources.open_file(item, limits))
            else:
                _ingest_url(con, item, settings, limits, pipeline)
        except FeedError as exc:
            report.problems.append(
                Problem(origin, None, "$", exc.summary.removeprefix(f"{origin}: ")))
        if progress:
            progress(origin, done, len(plan))
    pipeline.settle()
    writer.flush()
    report.seconds = time.perf_counter() - started
    _record_run(con, report, [str(p) for p in plan if not isinstance(p, sources.Refused)],
                now)
    return report


def _ingest_url(
    con: duckdb.DuckDBPyConnection,
    url: str,
    settings: Settings,
    limits: sources.Limits,
    pipeline: _Pipeline,
) -> None:
    previous = sources.load_validators(con, url)
    fetched = sources.fetch(
        url, previous, cache_dir=settings.http_cache, timeout=settings.http_timeout,
        limits=limits,
    )
    if fetched.status == 304:
        pipeline.report.not_modified.append(url)
        return
    pipeline.documents(fetched.documents(limits))
    # Validators are saved only once every record of the body is committed: a crash
    # before this point makes the next sync download and ingest the body again.
    pipeline.settle()
    pipeline.writer.flush()
    if fetched.validators is not None:
        sources.save_validators(con, fetched.validators)


class _Pipeline:
    """Cuts documents into records, looks their stored versions up in chunks, decides,
    normalises what changed and hands it to the writer, in input order."""

    def __init__(self, con: duckdb.DuckDBPyConnection, writer: _Writer,
                 report: IngestReport, stored: dict[tuple[str, str], store.StoredRecord]
                 ) -> None:
        self.con = con
        self.writer = writer
        self.report = report
        self.stored = stored
        """Stored versions looked up so far, updated as records are written."""
        self.pending: list[tuple[FeedAdapter, str, RawRecord]] = []

    def documents(self, items: Iterator[Document | sources.Refused]) -> None:
        """Every document of one source, one at a time (none is kept once read)."""
        for item in items:
            if isinstance(item, sources.Refused):
                self.refused(item)
            else:
                self.document(item)
            del item

    def refused(self, item: sources.Refused) -> None:
        self.report.problems.append(Problem(item.origin, None, "$", item.reason))

    def document(self, doc: Document) -> None:
        report = self.report
        report.documents += 1
        try:
            adapter = adapter_for(doc)
        except MemoryError:
            raise
        except Exception as exc:  # a detect() tripped by an odd document
            report.problems.append(Problem(doc.origin, None, "$", f"cannot be read: {exc!r}"))
            return
        if adapter is None:
            reason = _unrecognised_reason(doc)
            if reason is None:
                report.skipped.append((doc.origin, "not a vulnerability feed format Vigil reads"))
            else:
                report.problems.append(Problem(doc.origin, None, "$", reason))
            return
        counts = report.counts.setdefault(adapter.source.value, SourceCounts())
        for item in _split(adapter, doc):
            if isinstance(item, Problem):
                counts.problems += 1
                report.problems.append(item)
                continue
            self.pending.append((adapter, doc.origin, item))
            if len(self.pending) >= _LOOKUP_CHUNK:
                self.settle()

    def settle(self) -> None:
        """Decide every pending record (one lookup query for the chunk)."""
        if not self.pending:
            return
        unknown = {(raw.source.value, raw.record_id) for _, _, raw in self.pending} - set(
            self.stored)
        self.stored.update(store.load_stored(self.con, unknown))
        pending, self.pending = self.pending, []
        for adapter, origin, raw in pending:
            self._record(adapter, origin, raw)

    def _record(self, adapter: FeedAdapter, origin: str, raw: RawRecord) -> None:
        report = self.report
        counts = report.counts[adapter.source.value]
        key = (raw.source.value, raw.record_id)
        previous = self.stored.get(key)
        verdict = decide(previous, raw, self.writer.now)
        if verdict == "unchanged" or (verdict == "stale" and raw.source is not Source.EPSS):
            setattr(counts, verdict, getattr(counts, verdict) + 1)
            return
        try:
            record = adapter.normalise(raw)
        except RecordError as exc:
            counts.problems += 1
            pointer = exc.pointer
            if raw.pointer != "$" and pointer.startswith("$") and not pointer.startswith(
                raw.pointer
            ):
                pointer = raw.pointer + pointer[1:]  # record-relative -> document path
            report.problems.append(Problem(origin, raw.record_id, pointer, exc.reason))
            return
        except MemoryError:
            raise
        except Exception as exc:  # a record the adapter did not foresee must not stop the rest
            counts.problems += 1
            report.problems.append(
                Problem(origin, raw.record_id, raw.pointer, f"unexpected structure: {exc!r}")
            )
            return
        setattr(counts, verdict, getattr(counts, verdict) + 1)
        if verdict == "stale":  # an older EPSS score: logged for its date, not stored
            self.writer.add_history(raw, record)
            return
        report.warnings.extend(
            Problem(origin, raw.record_id, w.split(":", 1)[0], w.split(":", 1)[-1].strip())
            for w in record.warnings
        )
        self.stored[key] = store.StoredRecord(raw.content_hash, raw.modified, self.writer.now)
        self.writer.add(_Pending(origin, raw, record, verdict, previous))


def _split(adapter: FeedAdapter, doc: Document) -> Iterator[RawRecord | Problem]:
    try:
        for item in adapter.split(doc):
            if isinstance(item, RecordError):
                yield Problem(doc.origin, getattr(item, "record_id", None), item.pointer,
                              item.reason)
            else:
                yield item
    except RecordError as exc:
        yield Problem(doc.origin, getattr(exc, "record_id", None), exc.pointer, exc.reason)
    except FeedError as exc:
        yield Problem(doc.origin, None, "$", exc.summary)
    except MemoryError:
        raise
    except Exception as exc:  # a document the adapter did not foresee must not stop the rest
        yield Problem(doc.origin, None, "$", f"cannot be read: {exc!r}")


def _unrecognised_reason(doc: Document) -> str | None:
    """Why a document no adapter recognised is a problem, or None when it is simply
    not a feed (documentation, a manifest, a schema…)."""
    name = doc.name.lower()
    if name.endswith(".json") and doc.json is None:
        if not doc.body.strip():
            return "empty file"
        return f"not valid JSON: {doc.json_error()}"
    return None


def _record_run(
    con: duckdb.DuckDBPyConnection, report: IngestReport, origins: list[str], started: dt.datetime
) -> None:
    totals = report.total()
    con.execute(
        "INSERT INTO ingest_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            report.run_id,
            started,
            dt.datetime.now(dt.UTC),
            origins,
            totals.added,
            totals.updated,
            totals.unchanged,
            totals.stale,
            len(report.problems),
            sorted(report.counts),
        ],
    )
    rows = [
        (report.run_id, p.origin, p.record_id, p.pointer, p.reason, kind)
        for kind, found in (("problem", report.problems), ("warning", report.warnings))
        for p in found[:_MAX_STORED_PROBLEMS]
    ]
    if rows:
        con.executemany(
            "INSERT INTO ingest_problems (run_id, origin, record_id, pointer, reason, kind) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            rows,
        )


def last_run_problems(con: duckdb.DuckDBPyConnection) -> dict[str, object] | None:
    """The last ingest run (id, when, origins) with its problems and warnings as stored
    (at most :data:`_MAX_STORED_PROBLEMS` of each); None before the first ingest."""
    run = con.execute(
        "SELECT run_id, started_at, finished_at, origins FROM ingest_runs "
        "ORDER BY finished_at DESC NULLS LAST, started_at DESC LIMIT 1"
    ).fetchone()
    if run is None:
        return None
    rows = con.execute(
        "SELECT kind, origin, record_id, pointer, reason FROM ingest_problems "
        "WHERE run_id = ? ORDER BY kind, origin, record_id, pointer",
        [run[0]],
    ).fetchall()
    found = [
        {"kind": k, "origin": o, "record_id": r, "pointer": p, "reason": why}
        for k, o, r, p, why in rows
    ]
    return {
        "run_id": run[0],
        "started_at": run[1],
        "finished_at": run[2],
        "origins": list(run[3]),
        "problems": [f for f in found if f["kind"] == "problem"],
        "warnings": [f for f in found if f["kind"] == "warning"],
    }


def source_status(con: duckdb.DuckDBPyConnection) -> list[dict[str, object]]:
    """Per feed kind: records stored, last ingest that touched it, schema version."""
    from engine.pvdb.schema import current_version

    version = current_version(con)
    rows = con.execute(
        """
        SELECT r.source, count(*) AS records, max(r.ingested_at) AS last_change,
               (SELECT max(finished_at) FROM ingest_runs i WHERE list_contains(i.sources, r.source))
                 AS last_sync
        FROM records r GROUP BY r.source ORDER BY r.source
        """
    ).fetchall()
    return [
        {
            "source": source,
            "records": int(records),
            "last_change": last_change,
            "last_sync": last_sync,
            "schema_version": version,
        }
        for source, records, last_change, last_sync in rows
    ]
