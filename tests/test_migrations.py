"""The shared schema migrations of the state files: applied once each in order, a file
newer than this Vigil refused naming the setting, a failing migration rolled back."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from engine.errors import DatabaseError
from engine.migrations import migrate, schema_version

STEPS = {1: "CREATE TABLE a (x INTEGER)", 2: "ALTER TABLE a ADD COLUMN y INTEGER"}


def test_each_migration_is_applied_once_in_order(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "s.duckdb"))
    kw = {"name": "the test file", "path": tmp_path, "setting": "VIGIL_X", "error": DatabaseError}
    assert schema_version(con) == 0
    assert migrate(con, {1: STEPS[1]}, **kw) == 0  # type: ignore[arg-type]
    assert migrate(con, STEPS, **kw) == 1  # type: ignore[arg-type]
    assert migrate(con, STEPS, **kw) == 2  # type: ignore[arg-type]
    assert [c[0] for c in con.execute("DESCRIBE a").fetchall()] == ["x", "y"]
    with pytest.raises(DatabaseError, match="newer than this Vigil") as caught:
        migrate(con, {1: STEPS[1]}, **kw)  # type: ignore[arg-type]
    assert "VIGIL_X" in (caught.value.tip or "")


def test_a_failing_migration_leaves_the_last_version(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "s.duckdb"))
    kw = {"name": "the test file", "path": tmp_path, "setting": "VIGIL_X", "error": DatabaseError}
    migrate(con, {1: STEPS[1]}, **kw)  # type: ignore[arg-type]
    with pytest.raises(DatabaseError, match="to schema version 2 failed"):
        migrate(con, {**STEPS, 2: "ALTER TABLE missing ADD COLUMN y INTEGER"},
                **kw)  # type: ignore[arg-type]
    assert schema_version(con) == 1
