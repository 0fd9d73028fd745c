"""The per-line fix history is derived once per PVDB generation, when an ingest ends, and
stored with the data: queries read it, never derive it; a stale or missing copy (an older
Vigil's file, an ingest killed before storing it) is noticed by its generation stamp."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from engine.predict import estimator_for
from engine.pvdb import Component, Pvdb, store
from engine.pvdb import history as hist

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOT = ROOT / "feeds" / "snapshot"
KERNEL = Component(kind="kernel", vendor="linux", product="linux_kernel", version="6.6.30")
AS_OF = dt.datetime(2024, 7, 1, tzinfo=dt.UTC)


def _stored(db: Pvdb) -> tuple[int | None, int]:
    con = db._con  # the test reads the table the module owns
    count = con.execute("SELECT count(*) FROM line_fixes").fetchall()[0][0]
    return hist.stored_generation(con), int(count)


@pytest.fixture
def db(tmp_path: Path) -> Pvdb:
    pvdb = Pvdb.open(tmp_path / "pvdb.duckdb")
    pvdb.ingest([str(SNAPSHOT)])
    return pvdb


def test_ingest_stores_the_history_of_its_generation(db: Pvdb) -> None:
    with db:
        generation, count = _stored(db)
        assert generation == db.generation
        derived = hist.derive(db._con, db._match_index())
        assert count == len(derived.fixes) > 0
        assert db.history().fixes == derived.fixes
        assert db.history().end == derived.end
        assert db.history().releases.lines == derived.releases.lines


def test_a_query_reads_the_stored_history_and_never_derives_it(
    db: Pvdb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db.close()

    def refuse(*_: object) -> hist.History:
        raise AssertionError("history derived inside a query")

    monkeypatch.setattr(hist, "derive", refuse)
    with Pvdb.open(tmp_path / "pvdb.duckdb", read_only=True) as again:
        report = again.affecting([KERNEL], as_of=AS_OF, estimator=estimator_for(again, AS_OF))
        assert report.findings


def test_an_unchanged_ingest_keeps_the_stored_history(db: Pvdb,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    with db:
        before = _stored(db)

        def refuse(*_: object) -> hist.History:
            raise AssertionError("history derived although nothing changed")

        monkeypatch.setattr(hist, "derive", refuse)
        assert db.ingest([str(SNAPSHOT)]).changed == 0
        assert _stored(db) == before


def test_a_stale_history_is_derived_again_not_trusted(db: Pvdb, tmp_path: Path) -> None:
    with db:
        good = db.history().fixes
    # as after an ingest killed between its last batch and storing the history: the
    # stored one is of an older generation, derived from other inputs
    con = store.connect(tmp_path / "pvdb.duckdb")
    con.execute("UPDATE meta SET value = '-1' WHERE key = 'history_generation'")
    con.execute("UPDATE meta SET value = 'older' WHERE key = 'history_inputs'")
    con.execute("DELETE FROM line_fixes")
    con.close()
    with Pvdb.open(tmp_path / "pvdb.duckdb", read_only=True) as reader:
        assert reader.history().fixes == good  # derived in memory, nothing written
        assert _stored(reader) == (-1, 0)
    with Pvdb.open(tmp_path / "pvdb.duckdb") as writer:
        assert writer.history().fixes == good  # a writer reads like a reader, too
        assert _stored(writer) == (-1, 0)
        writer.ingest([])  # its next generation stores it
        assert _stored(writer) == (writer.generation, len(good))


def test_an_ingest_that_changes_none_of_its_inputs_restamps_the_history(
        db: Pvdb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Most records of a feed are about other products: an EPSS update changes the
    generation, not the history, which is then restamped, not derived again."""
    with db:
        before = _stored(db)
        epss = tmp_path / "epss" / "epss.csv"
        epss.parent.mkdir()
        text = (SNAPSHOT / "epss.csv").read_text()
        epss.write_text(text.replace("2026-08-22", "2026-08-23").replace("0.28058", "0.3"))

        def refuse(*_: object) -> hist.History:
            raise AssertionError("history derived although none of its inputs changed")

        monkeypatch.setattr(hist, "derive", refuse)
        assert db.ingest([str(epss.parent)]).changed > 0
        assert _stored(db) == (db.generation, before[1]) and db.generation != before[0]
        monkeypatch.undo()
        # the restamped history is what deriving it again gives
        assert db.history().fixes == hist.derive(db._con, db._match_index()).fixes
