"""The decision log's writers: the tip kept between appends (and re-read when another
writer moved it), and the decider's group commit (one transaction per group of waiting
decisions, each caller answered only once its record is in the log)."""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path
from typing import Any

import duckdb
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from engine.decide.decider import _LogWriter
from engine.decide.decision_log import DecisionLog
from engine.decide.errors import DecisionLogError
from engine.keys import load_signing_key


def _entry(n: int, *, token: str | None = None) -> dict[str, Any]:
    return {"decision_id": f"d-{n}", "timestamp": dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
            + dt.timedelta(seconds=n), "path": "vigil/decision/result",
            "input_document": {"n": n}, "result": {"verdict": "admit"},
            "bundle_revision": "r1", "evaluator": "test", "metrics": {"t": n},
            "error": None, "labels": {"app": "vigil"}, "attestation_result": token}


def _ids(log: DecisionLog) -> list[str]:
    return [r.decision_id for r in log.rows()]


def test_the_kept_tip_chains_like_a_fresh_read(tmp_path: Path) -> None:
    with DecisionLog(tmp_path / "d.duckdb") as log:
        for n in range(5):
            log.append_many([_entry(n, token="a.b.c" if n % 2 else None)])
        log.append_many([_entry(n) for n in range(5, 9)])
        assert log.verify_chain() == []
        assert _ids(log) == [f"d-{n}" for n in range(9)]
        assert log.attestation_hashes() and len(log.attestation_hashes()) == 1


def test_another_writer_moving_the_tip_makes_the_append_read_it_again(tmp_path: Path
                                                                       ) -> None:
    path = tmp_path / "d.duckdb"
    with DecisionLog(path) as first:
        first.append_many([_entry(0), _entry(1)])  # first keeps the tip at 2
        # a second writer on the same file (in this process: the same database)
        with DecisionLog(path) as second:
            second.append_many([_entry(2)])
            second.append_many([_entry(3)])
        # first's kept seq 3 collides: it reads the tip again and appends after 4
        first.append_many([_entry(4)])
        first.append_many([_entry(5)])
        assert _ids(first) == [f"d-{n}" for n in range(6)]
        assert [r.seq for r in first.rows()] == list(range(1, 7))
        assert first.verify_chain() == []


def test_a_failed_append_forgets_the_kept_tip(tmp_path: Path) -> None:
    with DecisionLog(tmp_path / "d.duckdb") as log:
        log.append_many([_entry(0)])
        with pytest.raises(DecisionLogError):
            log.append_many([_entry(0)])  # the same decision id twice: refused
        log.append_many([_entry(1)])
        assert _ids(log) == ["d-0", "d-1"] and log.verify_chain() == []


def test_group_commit_logs_every_concurrent_decision_in_order(tmp_path: Path) -> None:
    log = DecisionLog(tmp_path / "d.duckdb")
    writer = _LogWriter(log)
    groups: list[int] = []
    append_many = log.append_many

    def counted(entries: list[dict[str, Any]]) -> None:
        groups.append(len(entries))
        append_many(entries)

    log.append_many = counted  # type: ignore[method-assign]
    threads, per = 8, 40
    answered: dict[int, list[str]] = {t: [] for t in range(threads)}

    def caller(t: int) -> None:
        for i in range(per):
            n = t * 1000 + i
            writer.append(_entry(n))
            # answered: the record is already in the log
            answered[t].append(f"d-{n}")

    try:
        workers = [threading.Thread(target=caller, args=(t,)) for t in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    finally:
        writer.close()
    ids = _ids(log)
    assert len(ids) == len(set(ids)) == threads * per  # none lost, none twice
    assert sum(groups) == threads * per
    seq_of = {i: s for s, i in enumerate(ids)}
    for t in range(threads):  # each caller's decisions in the order it made them
        assert [seq_of[i] for i in answered[t]] == sorted(seq_of[i] for i in answered[t])
    assert [r.seq for r in log.rows()] == list(range(1, threads * per + 1))
    assert log.verify_chain() == []
    log.close()


def test_a_failed_commit_fails_every_decision_of_its_group(tmp_path: Path) -> None:
    log = DecisionLog(tmp_path / "d.duckdb")
    log.append_many([_entry(0)])
    gate = threading.Event()
    entered = threading.Event()
    real = log.append_many

    def failing(entries: list[dict[str, Any]]) -> None:
        if entries[0]["decision_id"] == "d-1":  # the first, alone: hold the writer
            entered.set()
            gate.wait()
            return real(entries)
        raise DecisionLogError("the disk is full")

    log.append_many = failing  # type: ignore[method-assign]
    writer = _LogWriter(log)
    errors: dict[int, BaseException | None] = {}

    def caller(n: int) -> None:
        try:
            writer.append(_entry(n))
            errors[n] = None
        except BaseException as exc:
            errors[n] = exc

    first = threading.Thread(target=caller, args=(1,))
    first.start()
    entered.wait()
    rest = [threading.Thread(target=caller, args=(n,)) for n in range(2, 7)]
    for t in rest:
        t.start()
    while writer._queue.qsize() < 5:  # all five queued behind the held group
        threading.Event().wait(0.001)
    gate.set()
    for t in (first, *rest):
        t.join()
    writer.close()
    assert errors[1] is None
    assert all(isinstance(errors[n], DecisionLogError) for n in range(2, 7))
    assert _ids(log) == ["d-0", "d-1"]
    log.close()


def test_periodic_checkpoints_sign_the_kept_tip(tmp_path: Path) -> None:
    key = load_signing_key(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    with DecisionLog(tmp_path / "d.duckdb", signing_key=key, checkpoint_every=3) as log:
        for n in range(7):
            log.append_many([_entry(n)])
        marks = log.checkpoints()
    assert [(c.size, c.kind) for c in marks] == [(3, "periodic"), (6, "periodic")]
    con = duckdb.connect(str(tmp_path / "d.duckdb"), read_only=True)
    try:
        heads = con.execute("SELECT seq, record_hash FROM decision_log WHERE seq IN (3, 6)"
                            " ORDER BY seq").fetchall()
    finally:
        con.close()
    assert [(c.size, c.head) for c in marks] == [(s, h) for s, h in heads]


def test_a_group_inserted_as_arrow_stores_what_single_appends_store(tmp_path: Path
                                                                    ) -> None:
    entries = [_entry(n, token=f"t.{n % 2}.x") for n in range(9)]
    entries[3]["error"] = 'an "error"\n with text to escape'
    entries[4]["bundles"] = {"vigil": "r1", "other": "r2"}
    with DecisionLog(tmp_path / "one.duckdb") as one:
        for entry in entries:
            one.append_many([entry])
        single = [(r.body(), r.record_hash, r.timestamp) for r in one.rows()]
    with DecisionLog(tmp_path / "group.duckdb") as group:
        group.append_many(entries)  # one Arrow insert
        grouped = [(r.body(), r.record_hash, r.timestamp) for r in group.rows()]
        assert group.verify_chain() == []
        assert len(group.attestation_hashes()) == 2
    assert grouped == single
