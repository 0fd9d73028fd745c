"""The chain of a decision log checked in bulk: one scan, hashed on two threads.

The log is read once, in storage order (no sort), as Arrow record batches
(:meth:`DecisionLog.scan`): DuckDB joins each record's hashed bytes (``prev_hash`` and
the body, :func:`~engine.decide.body_frame` in vector form; for large records it hands
them on in five pieces around the input and the result, hashed in place) and the bytes
are hashed straight from the Arrow buffers (offsets and memoryview slices, no Python
string per record) on two threads (``hashlib`` lets go of the interpreter while it hashes
more than 2 KB), while the next batch is read and the one before is handed on.

Nothing is checked less than record by record: for every record of a batch its sequence
number must be one more than the one before, its ``prev_hash`` the record hash before it
and its computed hash its record hash (each compared in vector form, every byte). The
records that pass all three, rest on a bundle the log holds and on no attestation result
are passed to :meth:`ChainVerifier.advance` together; every other record (the first of
each batch, whose link is to the batch before; one that fails a check; one framed in
Python; one resting on an attestation result or a missing bundle) is handed over as a
:class:`~engine.decide.ChainRow` to be fed to :meth:`ChainVerifier.link` on its own, so
that each problem is named exactly as the record-by-record check names it. A record a
checkpoint stands at ends a run, so that the checkpoint is checked right after it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from engine.decide import ChainRow, DecisionLog, StoredRow

HASH_THREADS = 2
"""Threads hashing a batch (the reference machine has two cores)."""

BATCH_BYTES = 8 << 20
"""About how much hashed text one batch holds (at least 8 records)."""


@dataclass(frozen=True, slots=True)
class Run:
    """``count`` records that passed every check in bulk, the last at ``last_seq`` with
    record hash ``head`` and time ``micros``; ``size`` bytes hashed."""

    count: int
    size: int
    last_seq: int
    head: str
    micros: int


@dataclass(frozen=True, slots=True)
class At:
    """The record just handed on (in a :class:`Run` or as a ChainRow) is ``seq``: its
    checkpoints are due."""

    seq: int


@dataclass(frozen=True, slots=True)
class Rows:
    """The stored rows of a batch whose records were all handed on (``full``)."""

    rows: list[StoredRow]


Event = ChainRow | Run | At | Rows


def _buffers(array: Any) -> tuple[memoryview, list[int]]:
    """The data and the offsets (one more than the values) of a ``large_string``
    array."""
    buffers = array.buffers()
    offsets = memoryview(buffers[1]).cast("q")[array.offset:array.offset + len(array) + 1]
    data = memoryview(buffers[2]) if buffers[2] is not None else memoryview(b"")
    return data, offsets.tolist()


def _digests(data: memoryview, offsets: list[int], lo: int, hi: int) -> bytes:
    """SHA-256 of each value ``lo`` to ``hi`` (excluded), concatenated."""
    sha256 = hashlib.sha256
    return b"".join([sha256(data[offsets[i]:offsets[i + 1]]).digest()
                     for i in range(lo, hi)])


def _split(count: int, parts: int) -> list[tuple[int, int]]:
    step = -(-count // parts)
    return [(lo, min(count, lo + step)) for lo in range(0, count, step)]


def _digests_of_pieces(pieces: list[tuple[memoryview, list[int]]], lo: int, hi: int
                       ) -> bytes:
    """:func:`_digests` of values given in pieces (each value the pieces' values at its
    position, in order)."""
    sha256 = hashlib.sha256
    out = []
    for i in range(lo, hi):
        data, offsets = pieces[0]
        digest = sha256(data[offsets[i]:offsets[i + 1]])
        for data, offsets in pieces[1:]:
            digest.update(data[offsets[i]:offsets[i + 1]])
        out.append(digest.digest())
    return b"".join(out)


def _large_strings(array: Any) -> Any:
    return array if array.type == pa.large_string() else array.cast(pa.large_string())


class _Pending:
    """One batch whose hashing was started: the hashed bytes joined (column 8), or in
    five pieces (column 8 and the batch's last four: large records)."""

    def __init__(self, batch: Any, pool: ThreadPoolExecutor) -> None:
        self.batch = batch
        hashed = _large_strings(batch.column(8))
        split = _split(batch.num_rows, HASH_THREADS)
        self.futures: list[Future[bytes]]
        if batch.schema.names[-1] != "hashed_after":
            self.data, self.offsets = _buffers(hashed)
            self.futures = [pool.submit(_digests, self.data, self.offsets, lo, hi)
                            for lo, hi in split]
            return
        pieces = [_buffers(hashed), *(_buffers(_large_strings(batch.column(i)))
                                      for i in range(batch.num_columns - 4,
                                                     batch.num_columns))]
        # the bytes hashed up to each record, over the five pieces
        self.offsets = [sum(offsets[i] - offsets[0] for _, offsets in pieces)
                        for i in range(batch.num_rows + 1)]
        self.futures = [pool.submit(_digests_of_pieces, pieces, lo, hi) for lo, hi in split]

    def digests(self) -> bytes:
        return b"".join(f.result() for f in self.futures)


def _not_true(mask: Any) -> list[int]:
    """The positions where a boolean array is not true (null is not)."""
    bad = pc.invert(pc.fill_null(mask, False))
    return [i for i, v in enumerate(bad.to_pylist()) if v]


def _events(pending: _Pending, marks: set[int], bundles: set[str], full: bool,
            stored: Callable[[int], StoredRow]) -> Iterator[Event]:
    batch = pending.batch
    n = batch.num_rows
    seq_col, prev_col, hash_col = batch.column(0), batch.column(2), batch.column(3)
    revision_col, attestation_col, odd_col = (batch.column(i) for i in range(5, 8))
    seqs: list[int] = seq_col.to_pylist()
    special: set[int] = {0}
    if n > 1:  # (1) and (2) within the batch, in vector form
        step = pc.subtract(seq_col.slice(1), seq_col.slice(0, n - 1))
        special.update(i + 1 for i in _not_true(pc.equal(step, 1)))
        special.update(i + 1 for i in _not_true(pc.equal(prev_col.slice(1),
                                                        hash_col.slice(0, n - 1))))
    special.update(_not_true(pc.invert(odd_col)))
    special.update(_not_true(pc.or_(pc.is_null(revision_col),
                                   pc.is_in(revision_col, value_set=pa.array(
                                       sorted(bundles), pa.large_string())))))
    special.update(_not_true(pc.is_null(attestation_col)))
    digests = pending.digests()
    # (3): every computed hash against its record hash, all at once when they match
    hex_digests = digests.hex()
    hash_data, hash_offsets = _buffers(hash_col.cast(pa.large_string()))
    whole = bytes(hash_data[hash_offsets[0]:hash_offsets[-1]])
    uniform = hash_col.null_count == 0 and hash_offsets[-1] - hash_offsets[0] == 64 * n
    if not (uniform and whole == hex_digests.encode()):
        hashes = hash_col.to_pylist()
        special.update(i for i in range(n)
                       if hashes[i] != hex_digests[64 * i:64 * i + 64])
    offsets = pending.offsets
    micros_col = batch.column(4)

    def run(lo: int, hi: int) -> Run:
        return Run(hi - lo, offsets[hi] - offsets[lo], seqs[hi - 1],
                   str(hash_col[hi - 1].as_py()), int(micros_col[hi - 1].as_py()))

    events = sorted(special | {i for i, s in enumerate(seqs) if s in marks})
    start = 0
    for i in events:
        if i > start:
            yield run(start, i)
        if i in special:
            yield _chain_row(batch, i, seqs[i], hex_digests, offsets, stored)
        else:
            yield run(i, i + 1)
        if seqs[i] in marks:
            yield At(seqs[i])
        start = i + 1
    if n > start:
        yield run(start, n)
    if full:
        columns = [batch.column(i).to_pylist() if i != 11 else _times(batch.column(4))
                   for i in range(9, 24)]
        yield Rows([StoredRow(*values) for values in zip(*columns, strict=True)])


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _times(micros: Any) -> list[dt.datetime]:
    """The records' times (UTC) from their microseconds since 1970: the instants Arrow's
    own conversion of the time column gives, a tenth of its cost."""
    return [_EPOCH + dt.timedelta(microseconds=m) for m in micros.to_pylist()]


def _chain_row(batch: Any, i: int, seq: int, hex_digests: str, offsets: list[int],
               stored: Callable[[int], StoredRow]) -> ChainRow:
    get = [batch.column(c)[i].as_py() for c in range(8)]
    row = None
    if get[7]:  # framed in Python: the row as stored
        row = stored(seq)
        data = (row.prev_hash + row.body()).encode()
        computed, size = hashlib.sha256(data).hexdigest(), len(data)
    else:
        computed, size = hex_digests[64 * i:64 * i + 64], offsets[i + 1] - offsets[i]
    return ChainRow(seq, get[1], get[2], get[3], computed, size, get[4], get[5], get[6],
                    row)


def scan_chain(log: DecisionLog, *, marks: set[int], bundles: set[str], full: bool = False,
               stored: Callable[[int], StoredRow]) -> Iterator[Event]:
    """The log's records in storage order as events (see the module): :class:`Run` and
    ChainRow in order, :class:`At` after the record a checkpoint in ``marks`` (sizes)
    stands at, and with ``full`` the batch's :class:`Rows` after its records. ``stored``:
    a record as stored, by sequence number (the rows framed in Python)."""
    with ThreadPoolExecutor(HASH_THREADS, thread_name_prefix="vigil-hash") as pool:
        pending: _Pending | None = None
        for batch in log.scan(full=full, batch_bytes=BATCH_BYTES):
            started = _Pending(batch, pool)
            if pending is not None:
                yield from _events(pending, marks, bundles, full, stored)
            pending = started
        if pending is not None:
            yield from _events(pending, marks, bundles, full, stored)


__all__ = ["BATCH_BYTES", "HASH_THREADS", "At", "Event", "Rows", "Run", "scan_chain"]
