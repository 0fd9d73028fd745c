"""The PVDB schema, versioned with forward-only migrations.

Every fact table carries the provenance key ``(source, record_id)`` that points at the
``records`` row holding the record's content hash, its own modified time, where it came
from and when it was ingested. Replacing a record replaces all its facts in one
transaction.

One table is a log rather than facts of the current records: ``epss_history`` (version 3)
keeps every dated EPSS score ever read, one row per (source, CVE, score date) with the
file it came from, so that an answer as of a past date uses the score of that date. A
newer score replaces the ``epss`` fact of its record, never a row of the log; a file of
an older date adds its scores to the log (its records are stale). Migrating a version 2
file seeds the log with the scores it holds (only each CVE's latest survived there).
"""

from __future__ import annotations

import datetime as dt

import duckdb

SCHEMA_VERSION = 4

FACT_TABLES = (
    "vulnerabilities",
    "aliases",
    "severities",
    "affected",
    "fixes",
    "refs",
    "kev",
    "epss",
    "releases",
)

_MIGRATIONS: dict[int, str] = {
    1: """
    CREATE TABLE meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL);
    CREATE TABLE records (
        source VARCHAR NOT NULL,
        record_id VARCHAR NOT NULL,
        content_hash VARCHAR NOT NULL,
        modified TIMESTAMPTZ,
        ingested_at TIMESTAMPTZ NOT NULL,
        origin VARCHAR NOT NULL,
        PRIMARY KEY (source, record_id)
    );
    CREATE TABLE vulnerabilities (
        source VARCHAR NOT NULL, record_id VARCHAR NOT NULL, vuln_id VARCHAR NOT NULL,
        title VARCHAR, description VARCHAR, published TIMESTAMPTZ, modified TIMESTAMPTZ,
        state VARCHAR NOT NULL, assigner VARCHAR
    );
    CREATE TABLE aliases (
        source VARCHAR NOT NULL, record_id VARCHAR NOT NULL, vuln_id VARCHAR NOT NULL,
        alias VARCHAR NOT NULL
    );
    CREATE TABLE severities (
        source VARCHAR NOT NULL, record_id VARCHAR NOT NULL, vuln_id VARCHAR NOT NULL,
        provider VARCHAR NOT NULL, cvss_version VARCHAR NOT NULL, vector VARCHAR NOT NULL,
        base_score DOUBLE NOT NULL, base_severity VARCHAR NOT NULL
    );
    CREATE TABLE affected (
        source VARCHAR NOT NULL, record_id VARCHAR NOT NULL, vuln_id VARCHAR NOT NULL,
        grp INTEGER NOT NULL, match_kind VARCHAR NOT NULL, scheme VARCHAR NOT NULL,
        status VARCHAR NOT NULL, default_status VARCHAR NOT NULL,
        vendor VARCHAR, product VARCHAR, cpe VARCHAR, ecosystem VARCHAR, package VARCHAR,
        release VARCHAR, start_v VARCHAR, start_inclusive BOOLEAN NOT NULL, end_v VARCHAR,
        end_inclusive BOOLEAN NOT NULL, exact VARCHAR, fixed VARCHAR, condition VARCHAR
    );
    CREATE TABLE fixes (
        source VARCHAR NOT NULL, record_id VARCHAR NOT NULL, vuln_id VARCHAR NOT NULL,
        vendor VARCHAR, product VARCHAR, package VARCHAR, fixed_version VARCHAR,
        patch_id VARCHAR, advisory_id VARCHAR, fix_date DATE, url VARCHAR
    );
    CREATE TABLE refs (
        source VARCHAR NOT NULL, record_id VARCHAR NOT NULL, vuln_id VARCHAR NOT NULL,
        url VARCHAR NOT NULL, tags VARCHAR[] NOT NULL
    );
    CREATE TABLE kev (
        source VARCHAR NOT NULL, record_id VARCHAR NOT NULL, vuln_id VARCHAR NOT NULL,
        date_added DATE NOT NULL, due_date DATE, ransomware VARCHAR NOT NULL,
        vendor VARCHAR, product VARCHAR, name VARCHAR, required_action VARCHAR
    );
    CREATE TABLE epss (
        source VARCHAR NOT NULL, record_id VARCHAR NOT NULL, vuln_id VARCHAR NOT NULL,
        score DOUBLE NOT NULL, percentile DOUBLE, score_date DATE
    );
    CREATE TABLE releases (
        source VARCHAR NOT NULL, record_id VARCHAR NOT NULL,
        product VARCHAR NOT NULL, version VARCHAR NOT NULL, release_date DATE NOT NULL
    );
    CREATE TABLE ingest_runs (
        run_id VARCHAR PRIMARY KEY, started_at TIMESTAMPTZ NOT NULL,
        finished_at TIMESTAMPTZ, origins VARCHAR[] NOT NULL,
        added INTEGER NOT NULL, updated INTEGER NOT NULL, unchanged INTEGER NOT NULL,
        stale INTEGER NOT NULL, problems INTEGER NOT NULL, sources VARCHAR[] NOT NULL
    );
    CREATE TABLE ingest_problems (
        run_id VARCHAR NOT NULL, origin VARCHAR NOT NULL, record_id VARCHAR,
        pointer VARCHAR NOT NULL, reason VARCHAR NOT NULL
    );
    CREATE TABLE http_state (
        url VARCHAR PRIMARY KEY, etag VARCHAR, last_modified VARCHAR,
        fetched_at TIMESTAMPTZ NOT NULL, body_path VARCHAR NOT NULL, body_sha256 VARCHAR NOT NULL
    );
    """,
    # The per-line fix history derived from the facts (engine.pvdb.history), stored so
    # that no query derives it again; meta 'history_generation' says which generation.
    2: """
    CREATE TABLE line_fixes (
        seq INTEGER NOT NULL, vuln_id VARCHAR NOT NULL, vendor VARCHAR NOT NULL,
        product VARCHAR NOT NULL, line VARCHAR NOT NULL, stratum VARCHAR NOT NULL,
        reference DATE NOT NULL, reference_what VARCHAR NOT NULL, fixed DATE,
        fixed_version VARCHAR
    );
    """,
    # Every dated EPSS score, not only each CVE's latest (engine.pvdb.asof reads it).
    3: """
    CREATE TABLE epss_history (
        source VARCHAR NOT NULL, vuln_id VARCHAR NOT NULL, score_date DATE NOT NULL,
        score DOUBLE NOT NULL, percentile DOUBLE, record_id VARCHAR NOT NULL,
        origin VARCHAR NOT NULL,
        PRIMARY KEY (source, vuln_id, score_date)
    );
    INSERT OR IGNORE INTO epss_history
        SELECT e.source, e.vuln_id, e.score_date, e.score, e.percentile, e.record_id, r.origin
        FROM epss e JOIN records r USING (source, record_id)
        WHERE e.score_date IS NOT NULL;
    """,
    # An ingest keeps its warnings (parts of loaded records not used, or corrected) beside
    # its problems, so that `vigil feeds problems` can list both again.
    4: """
    ALTER TABLE ingest_problems ADD COLUMN kind VARCHAR DEFAULT 'problem';
    """,
}


def current_version(con: duckdb.DuckDBPyConnection) -> int:
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_migrations'"
    ).fetchall()
    if not exists[0][0]:
        return 0
    row = con.execute("SELECT max(version) FROM schema_migrations").fetchall()
    return int(row[0][0]) if row[0][0] is not None else 0


def migrate(con: duckdb.DuckDBPyConnection) -> int:
    """Bring the database to :data:`SCHEMA_VERSION`, each migration in one transaction.

    Returns the version before migrating.
    """
    before = current_version(con)
    if before > SCHEMA_VERSION:
        from engine.errors import DatabaseError

        raise DatabaseError(
            f"the PVDB has schema version {before}, newer than this Vigil ({SCHEMA_VERSION})",
            tip="upgrade Vigil, or point VIGIL_DB at another file",
        )
    for version in range(before + 1, SCHEMA_VERSION + 1):
        con.execute("BEGIN TRANSACTION")
        try:
            if version == 1:
                con.execute(
                    "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY,"
                    " applied_at TIMESTAMPTZ NOT NULL)"
                )
            con.execute(_MIGRATIONS[version])
            con.execute(
                "INSERT INTO schema_migrations VALUES (?, ?)",
                [version, dt.datetime.now(dt.UTC)],
            )
            if version == 1:
                con.execute("INSERT INTO meta VALUES ('generation', '0')")
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
    return before
