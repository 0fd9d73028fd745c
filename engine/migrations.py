"""Forward-only schema migrations of Vigil's DuckDB state files (the preparation queue,
the fleet inventory, the image catalog, the rollout state): table ``schema_migrations``
records each version applied, and each migration runs in its own transaction, so a kill
midway leaves the file at the last version fully applied."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

import duckdb

from engine.errors import VigilError


def schema_version(con: duckdb.DuckDBPyConnection) -> int:
    """The newest version applied; 0 for a file with no migrations table yet."""
    try:
        row = con.execute("SELECT max(version) FROM schema_migrations").fetchone()
    except duckdb.Error:
        return 0
    return int(row[0]) if row and row[0] is not None else 0


def migrate(con: duckdb.DuckDBPyConnection, migrations: Mapping[int, str], *, name: str,
            path: Path, setting: str, error: type[VigilError]) -> int:
    """Apply the ``migrations`` (version -> SQL) newer than the file's version; return the
    version it had. ``name`` says what the file is ("the image catalog") and ``setting``
    which variable points at it; failures raise ``error`` naming both."""
    newest = max(migrations)
    try:
        con.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY,"
                    " applied_at TIMESTAMPTZ NOT NULL)")
    except duckdb.Error as exc:
        raise error(f"cannot prepare {name} {path}: {exc}") from exc
    current = schema_version(con)
    if current > newest:
        raise error(f"{name} {path} has schema version {current}, newer than this Vigil "
                    f"({newest})", tip=f"upgrade Vigil, or point {setting} at another file")
    for version in range(current + 1, newest + 1):
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(migrations[version])
            con.execute("INSERT INTO schema_migrations VALUES (?, ?)",
                        [version, dt.datetime.now(dt.UTC)])
            con.execute("COMMIT")
        except duckdb.Error as exc:
            con.execute("ROLLBACK")
            raise error(f"migrating {name} {path} to schema version {version} failed: "
                        f"{exc}") from exc
    return current


class StateFile:
    """A Vigil DuckDB state file held on one connection (``_con``) at ``path``: closed on
    leaving a ``with`` block, migrated by :meth:`_migrate` with the class's
    ``MIGRATIONS``, and named in errors by ``NAME`` and ``SETTING``."""

    MIGRATIONS: ClassVar[Mapping[int, str]]
    NAME: ClassVar[str]
    """What the file is, for errors: "the image catalog"."""
    SETTING: ClassVar[str]
    """The variable that points at it: "VIGIL_IMAGES_DB"."""
    ERROR: ClassVar[type[VigilError]]

    path: Path
    _con: duckdb.DuckDBPyConnection

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        self._con.close()

    def _migrate(self) -> int:
        """Bring the file to the newest schema; the version it had."""
        return migrate(self._con, self.MIGRATIONS, name=self.NAME, path=self.path,
                       setting=self.SETTING, error=self.ERROR)
