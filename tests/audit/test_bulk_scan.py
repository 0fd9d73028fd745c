"""The bulk check (one scan, hashed on two threads, runs of clean records advanced
together) finds what the record-by-record check finds, wherever in a batch the tamper is:
the first record of a batch (its link is to the batch before), the last of one thread's
half, the first of the other's, the last of the log; the right record is named."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb
import pytest

from engine.audit import bulk, verify_log
from engine.decide import DecisionLog, StoredRow, decision_log
from engine.keys import load_signing_key, load_verification_key
from tests.audit.conftest import tamper

T = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
COUNT = 40
EVERY = 5
ROWS = 8
"""Records per batch in these tests (the scan's least): 4 per hashing thread."""


@pytest.fixture(autouse=True, params=["joined", "pieces"])
def small_batches(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test twice: the hashed bytes joined by DuckDB, and handed on in five pieces
    (as for large records)."""
    monkeypatch.setattr(bulk, "BATCH_BYTES", 1)
    if request.param == "pieces":
        monkeypatch.setattr(decision_log, "_PIECES_ABOVE", 0)


def _write(path: Path, key: Path) -> None:
    with DecisionLog(path, signing_key=load_signing_key(key), checkpoint_every=EVERY) as log:
        for i in range(COUNT):
            log.append(decision_id=f"d-{i + 1:03d}", timestamp=T + dt.timedelta(minutes=i),
                       path="vigil/decision",
                       input_document={"host": {"id": f"h{i}"}, "pad": "x" * 3000},
                       result={"verdict": "admit"}, bundle_revision=None,
                       evaluator="regorus", metrics={"n": i},
                       error=('fail "closed"\n\\' if i % 7 == 3 else
                              "control \x01" if i == 20 else None),
                       labels={"a": "b"})


@pytest.fixture()
def log_path(tmp_path: Path, audit_keys: tuple[Path, Path]) -> Path:
    path = tmp_path / "log.duckdb"
    _write(path, audit_keys[0])
    return path


def _both(path: Path, pub: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[dict, dict]:  # type: ignore[type-arg]
    """The verification in bulk and record by record (rows read in ranges of sequence
    numbers), as JSON."""
    keys = [load_verification_key(pub)]
    with DecisionLog(path, read_only=True) as log:
        assert log.in_storage_order()
        seen: list[int] = []
        fast = verify_log(log, keys, expect_every=EVERY, on_row=lambda r: seen.append(r.seq))
    with monkeypatch.context() as m:
        m.setattr(DecisionLog, "in_storage_order", lambda self: False)
        with DecisionLog(path, read_only=True) as log:
            slow = verify_log(log, keys, expect_every=EVERY)
    assert seen == sorted(seen) and len(seen) == fast.records
    return fast.to_json(), slow.to_json()


def test_an_intact_log_verifies_in_bulk(log_path: Path, audit_keys: tuple[Path, Path],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    with DecisionLog(log_path, read_only=True) as log:
        handed: list[StoredRow] = []
        verify_log(log, [load_verification_key(audit_keys[1])], on_row=handed.append)
        stored = list(log.rows())
    assert handed == stored  # the report's rows are the stored rows, times as instants
    assert [r.timestamp.isoformat() for r in handed] == [r.timestamp.isoformat()
                                                         for r in stored]
    fast, slow = _both(log_path, audit_keys[1], monkeypatch)
    assert fast["verified"] and fast["records"] == COUNT, fast["problems"]
    assert len(fast["checkpoints"]) == COUNT // EVERY
    assert fast == slow
    with DecisionLog(log_path, read_only=True) as log:
        events = list(bulk.scan_chain(log, marks={40}, bundles=set(), stored=lambda s: (
            next(iter(log.rows("seq = ?", [s]))))))
    singles = [e.seq for e in events if not isinstance(e, (bulk.Run, bulk.At, bulk.Rows))]
    assert singles == [1, 9, 17, 21, 25, 33]  # each batch's first, and the one framed
    assert sum(e.count for e in events if isinstance(e, bulk.Run)) == COUNT - len(singles)
    with DecisionLog(log_path, read_only=True) as log:
        found = verify_log(log, [load_verification_key(audit_keys[1])], expect_every=EVERY)
    assert found.bytes_hashed == sum(
        len((r.prev_hash + r.body()).encode()) for r in DecisionLog(log_path).rows())


# 1: first of the log; 4: last of the first thread's half of batch 1 (its error escaped
# by DuckDB); 5: first of the second half; 8: last of batch 1; 9: first of batch 2
# (linked to batch 1); 21: a row framed in Python (a control character); 40: the last
@pytest.mark.parametrize("seq", [1, 4, 5, 8, 9, 11, 21, 23, 40])
def test_an_edited_input_is_named_wherever_it_is(log_path: Path, seq: int,
                                                 audit_keys: tuple[Path, Path],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    tamper(log_path, f"UPDATE decision_log SET input = replace(input, 'xxx', 'xyx') "
                   f"WHERE seq = {seq}")
    fast, slow = _both(log_path, audit_keys[1], monkeypatch)
    assert fast == slow
    assert fast["first_broken"]["seq"] == seq
    assert fast["first_broken"]["decision_id"] == f"d-{seq:03d}"
    assert "content does not match" in fast["first_broken"]["what"]


@pytest.mark.parametrize("seq", [2, 8, 9, 16, 17])
def test_a_broken_link_is_named(log_path: Path, seq: int, audit_keys: tuple[Path, Path],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    tamper(log_path, f"UPDATE decision_log SET prev_hash = repeat('0', 64) WHERE seq = {seq}")
    fast, slow = _both(log_path, audit_keys[1], monkeypatch)
    assert fast == slow
    assert fast["first_broken"]["seq"] == seq and not fast["verified"]


@pytest.mark.parametrize("seq", [3, 8, 9, 33])
def test_a_record_hash_in_other_letters_is_not_its_hash(log_path: Path, seq: int,
                                                        audit_keys: tuple[Path, Path],
                                                        monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    tamper(log_path, f"UPDATE decision_log SET record_hash = upper(record_hash) WHERE seq = {seq}")
    fast, slow = _both(log_path, audit_keys[1], monkeypatch)
    assert fast == slow
    assert fast["first_broken"]["seq"] == seq


@pytest.mark.parametrize("seq", [8, 9, 21])
def test_a_deleted_record_is_named_in_bulk(log_path: Path, seq: int,
                                           audit_keys: tuple[Path, Path],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    tamper(log_path, f"DELETE FROM decision_log WHERE seq = {seq}")
    fast, slow = _both(log_path, audit_keys[1], monkeypatch)
    assert fast == slow
    assert fast["first_broken"]["seq"] == seq and "missing" in fast["first_broken"]["what"]


def test_a_rewrite_with_hashes_recomputed_is_caught_by_a_checkpoint(
        log_path: Path, audit_keys: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    con = duckdb.connect(str(log_path))
    con.execute("UPDATE decision_log SET metrics = '{\"n\":99}' WHERE seq = 14")
    con.close()
    with DecisionLog(log_path) as log:  # every hash from record 14 on recomputed
        rows = list(log.rows("seq >= ?", [14]))
        prev = next(iter(log.rows("seq = ?", [13]))).record_hash
        updates = []
        for row in rows:
            new = row.computed_hash(prev)
            updates.append((prev, new, row.seq))
            prev = new
    con = duckdb.connect(str(log_path))
    con.executemany("UPDATE decision_log SET prev_hash = ?, record_hash = ? WHERE seq = ?",
                    updates)
    con.close()
    fast, slow = _both(log_path, audit_keys[1], monkeypatch)
    assert fast == slow and not fast["verified"]
    assert fast["first_broken"]["seq"] == 11 and "rewritten" in fast["first_broken"]["what"]


def test_rows_stored_out_of_order_are_read_in_sequence(log_path: Path,
                                                       audit_keys: tuple[Path, Path]) -> None:
    tamper(log_path, "CREATE TABLE moved AS SELECT * FROM decision_log WHERE seq <= 3",
         "DELETE FROM decision_log WHERE seq <= 3",
         "INSERT INTO decision_log SELECT * FROM moved", "DROP TABLE moved")
    with DecisionLog(log_path, read_only=True) as log:
        assert not log.in_storage_order()
        found = verify_log(log, [load_verification_key(audit_keys[1])], expect_every=EVERY)
    assert found.ok, found.problems
    assert found.records == COUNT


def test_a_scan_left_early_stops_its_reading_thread(log_path: Path) -> None:
    import threading

    with DecisionLog(log_path, read_only=True) as log:
        batches = log.scan(batch_bytes=1)
        first = next(batches)
        assert first.num_rows == ROWS
        batches.close()  # the caller stops after one batch
        assert not [t for t in threading.enumerate() if t.name == "vigil-scan"]
        assert len(list(log.rows())) == COUNT  # the connection is free again
