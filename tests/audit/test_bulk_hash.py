"""The chain hashed in bulk (``DecisionLog.chain_rows``) gives every record the hash its
row-by-row definition (``StoredRow.computed_hash``) gives, whatever its text holds, and
an edit made behind the writer's back is seen by it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb

from engine.decide import DecisionLog

T = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
CASES = [  # decision id, time, error, bundles, bundle revision
    ("plain", T, None, None, "rev-1"),
    ('quote " backslash \\ newline \n tab \t cr \r bs \b ff \f', T + dt.timedelta(
        microseconds=5), 'err "x" \\ é ü 漢', {"b": "1"}, None),
    ("control \x01 char", T + dt.timedelta(seconds=1), None, None, "r"),
    ("before 1970", dt.datetime(1960, 5, 1, tzinfo=dt.UTC), "e", None, "r\x1f"),
    ("another offset", dt.datetime(2026, 1, 1, 5, tzinfo=dt.timezone(dt.timedelta(hours=3))),
     None, None, None),
    ("non-ascii é", T, "fine é", {"x": "y"}, "r"),
]


def _log(path: Path) -> DecisionLog:
    log = DecisionLog(path)
    for i, (decision_id, when, error, bundles, revision) in enumerate(CASES):
        log.append(decision_id=decision_id, timestamp=when, path="vigil/decision",
                   input_document={"x": 'é"\n\x02', "n": 1.5, "list": [1, None]},
                   result={"verdict": "admit", "v": [1, 2]}, bundle_revision=revision,
                   evaluator="regorus", metrics={"m": i}, error=error,
                   labels={"a": "b"}, bundles=bundles,
                   attestation_result="header.payload.sig" if i % 2 else None)
    return log


def test_bulk_hashes_equal_the_row_definition(tmp_path: Path) -> None:
    with _log(tmp_path / "log.duckdb") as log:
        rows = list(log.rows())
        for full in (False, True):
            bulk = list(log.chain_rows(full=full))
            assert [b.seq for b in bulk] == [r.seq for r in rows]
            for b, r in zip(bulk, rows, strict=True):
                text = (r.prev_hash + r.body()).encode()
                assert b.computed == r.record_hash == r.computed_hash(r.prev_hash)
                assert b.size == len(text)
                assert b.decision_id == r.decision_id and b.prev_hash == r.prev_hash
                assert b.row == (r if full else None)


def test_bulk_hash_sees_an_edit(tmp_path: Path) -> None:
    path = tmp_path / "log.duckdb"
    _log(path).close()
    con = duckdb.connect(str(path))
    con.execute("UPDATE decision_log SET error = 'err \"y\"' WHERE seq = 2")
    con.execute("UPDATE decision_log SET input = replace(input, '1.5', '2.5') WHERE seq = 6")
    con.close()
    with DecisionLog(path, read_only=True) as log:
        broken = [b.seq for b in log.chain_rows() if b.computed != b.record_hash]
    assert broken == [2, 6]


def test_an_empty_log_has_no_rows(tmp_path: Path) -> None:
    with DecisionLog(tmp_path / "log.duckdb") as log:
        assert list(log.chain_rows()) == []
