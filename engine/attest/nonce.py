"""Step 2: verifier-issued nonces and the per-host TPM counters.

A quote proves freshness only through its ``extraData``: the verifier issues a random
nonce for one host, the host's TPM signs it into the quote, and the verifier accepts the
quote once, while the nonce is unexpired. :class:`NonceStore` keeps that promise across
processes (several API workers, a CLI next to them) in a SQLite file of its own
(``Settings.attest_db``, never the PVDB):

* :meth:`NonceStore.issue` draws 32 bytes from :func:`secrets.token_bytes` and records
  them with the host and an expiry.
* :meth:`NonceStore.consume` marks a nonce used inside one ``BEGIN IMMEDIATE``
  transaction, so of two processes that present the same nonce exactly one wins. A
  nonce that was never issued, was issued for another host, has expired or was used
  already is rejected with a :class:`NonceError` that says which.
* :meth:`NonceStore.check_counters` compares the quote's TPMS_CLOCK_INFO with the last
  one accepted for the host. ``resetCount`` (TPM resets, i.e. reboots) never decreases;
  within one reset ``restartCount`` never decreases; within one reset and restart the
  ``clock`` never goes back; and a clock the TPM calls ``safe`` never goes back at all.
  A regression means a replayed or forged quote, or a TPM whose state was rolled back.

The counters are compared as the TPM reports them. An AK outside the endorsement and
platform hierarchies gets them *obfuscated*: the TPM adds a per-key constant modulo
2^32 (TPM 2.0 Part 1, "Privacy"), which keeps their order except across one wrap-around.
The AKs Vigil enrolls live under the EK (endorsement hierarchy) and are not obfuscated.

The file runs in WAL mode with ``synchronous=NORMAL``: a committed use survives the
verifier process crashing; after a power loss the last few uses may be lost, which
re-opens at most those nonces for the rest of their short lifetime.
"""

from __future__ import annotations

import datetime as dt
import hmac
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from engine.attest.errors import AttestError
from engine.attest.quote import ClockInfo
from engine.errors import DatabaseError

__all__ = [
    "NONCE_BYTES",
    "STEP_COUNTERS",
    "STEP_NONCE",
    "ClockRegressionError",
    "Nonce",
    "NonceError",
    "NonceStore",
    "connect_state",
]

STEP_NONCE = "2 nonce"
STEP_COUNTERS = "2 clock counters"

NONCE_BYTES = 32
"""Bytes per nonce: 256 bits, as much as a SHA-256 quote's qualifying data carries."""

_KEEP_USED = 86_400.0
"""Seconds an expired nonce stays on file, so that a late replay is reported as
expired or replayed rather than as unknown."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS attest_nonces (
    nonce BLOB PRIMARY KEY,
    host_id TEXT NOT NULL,
    issued_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    used_at REAL
);
CREATE INDEX IF NOT EXISTS attest_nonces_expiry ON attest_nonces (expires_at);
CREATE TABLE IF NOT EXISTS attest_host_counters (
    host_id TEXT PRIMARY KEY,
    clock INTEGER NOT NULL,
    reset_count INTEGER NOT NULL,
    restart_count INTEGER NOT NULL,
    safe INTEGER NOT NULL,
    seen_at REAL NOT NULL
);
"""


class NonceError(AttestError):
    """Step 2: the quote's nonce is not one this verifier issued to the host, has
    expired, or was used before."""

    def __init__(self, reason: str, *, tip: str | None = None) -> None:
        super().__init__(STEP_NONCE, reason, tip=tip)


class ClockRegressionError(AttestError):
    """Step 2: the quote's TPM clock or reset/restart counters went backwards."""

    def __init__(self, reason: str) -> None:
        super().__init__(STEP_COUNTERS, reason,
                         tip="A replayed quote, or a TPM whose state was restored from a "
                         "copy; investigate the host before trusting it again.")


@dataclass(frozen=True, slots=True)
class Nonce:
    """A nonce the verifier issued."""

    value: bytes
    """The random bytes the host passes to TPM2_Quote as qualifying data."""
    host_id: str
    """The only host that may use it."""
    issued_at: dt.datetime
    expires_at: dt.datetime


def connect_state(path: Path, schema: str) -> sqlite3.Connection:
    """Open (creating it if needed) the verifier's attestation state file, with the
    caller's tables (``schema``, idempotent ``CREATE … IF NOT EXISTS``) in place.

    Autocommit mode: callers open their own ``BEGIN IMMEDIATE`` transactions. WAL lets
    readers run beside one writer; a writer waits up to 10 s for another's lock.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(path, timeout=10.0, isolation_level=None,
                                     check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
    except (OSError, sqlite3.Error) as exc:
        raise DatabaseError(f"cannot open the attestation state file {path}: {exc}",
                            tip="check VIGIL_ATTEST_DB and the folder's permissions") from exc
    try:
        connection.executescript(schema)
    except sqlite3.Error as exc:
        connection.close()
        raise DatabaseError(f"cannot set up {path}: {exc}") from exc
    return connection


@contextmanager
def write_transaction(connection: sqlite3.Connection, path: Path) -> Iterator[sqlite3.Connection]:
    """One ``BEGIN IMMEDIATE`` … ``COMMIT`` (rolled back on any exception)."""
    try:
        connection.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as exc:
        raise DatabaseError(f"cannot lock the attestation state file {path}: {exc}") from exc
    try:
        yield connection
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    try:
        connection.execute("COMMIT")
    except sqlite3.Error as exc:
        raise DatabaseError(f"cannot write the attestation state file {path}: {exc}") from exc


def _utc(timestamp: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC)


class NonceStore:
    """Issues nonces and accepts each once; tracks each host's TPM counters.

    ``now`` returns the current POSIX time; tests pass a fake clock.
    """

    def __init__(self, path: Path, *, ttl: dt.timedelta = dt.timedelta(minutes=5),
                 now: Callable[[], float] = time.time) -> None:
        if ttl <= dt.timedelta(0):
            raise ValueError("a nonce's lifetime must be positive")
        self.path = path
        self.ttl = ttl
        self._now = now
        self._db = connect_state(path, _SCHEMA)
        self._lock = threading.Lock()
        """One transaction at a time on the connection: threads of one process (a
        service attesting hosts side by side) share it."""

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> NonceStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def issue(self, host_id: str) -> Nonce:
        """A fresh nonce for ``host_id``, valid for :attr:`ttl`."""
        if not host_id:
            raise NonceError("a nonce needs a host id")
        value = secrets.token_bytes(NONCE_BYTES)
        issued = self._now()
        expires = issued + self.ttl.total_seconds()
        with self._lock, write_transaction(self._db, self.path) as db:
            db.execute("DELETE FROM attest_nonces WHERE expires_at < ?", (issued - _KEEP_USED,))
            db.execute("INSERT INTO attest_nonces (nonce, host_id, issued_at, expires_at) "
                       "VALUES (?, ?, ?, ?)", (value, host_id, issued, expires))
        return Nonce(value, host_id, _utc(issued), _utc(expires))

    def consume(self, host_id: str, value: bytes) -> Nonce:
        """Accept ``value`` as ``host_id``'s nonce, once; raise :class:`NonceError`
        when it was not issued to that host, has expired or was used already."""
        now = self._now()
        with self._lock, write_transaction(self._db, self.path) as db:
            row = db.execute("SELECT host_id, issued_at, expires_at, used_at FROM attest_nonces "
                             "WHERE nonce = ?", (value,)).fetchone()
            if row is None:
                raise NonceError(f"nonce {_short(value)} was not issued by this verifier "
                                 "(or expired long ago)",
                                 tip="Request a nonce from the verifier and quote over it.")
            owner, issued, expires, used = row
            if not hmac.compare_digest(str(owner).encode(), host_id.encode()):
                raise NonceError(f"nonce {_short(value)} was issued to another host, not to "
                                 f"{host_id}")
            if used is not None:
                raise NonceError(f"nonce {_short(value)} was already used at "
                                 f"{_utc(used).isoformat()}: the quote is a replay",
                                 tip="Each quote needs a fresh nonce from the verifier.")
            if now >= expires:
                raise NonceError(f"nonce {_short(value)} expired at "
                                 f"{_utc(expires).isoformat()}, "
                                 f"{now - expires:.0f} s before it was presented",
                                 tip="Quote sooner after requesting the nonce, or raise "
                                 "VIGIL_ATTEST_NONCE_TTL.")
            db.execute("UPDATE attest_nonces SET used_at = ? WHERE nonce = ?", (now, value))
        return Nonce(value, host_id, _utc(issued), _utc(expires))

    def check_counters(self, host_id: str, info: ClockInfo) -> None:
        """Refuse a TPMS_CLOCK_INFO that goes back behind the host's last accepted one,
        then remember it."""
        now = self._now()
        with self._lock, write_transaction(self._db, self.path) as db:
            row = db.execute("SELECT clock, reset_count, restart_count, safe FROM "
                             "attest_host_counters WHERE host_id = ?", (host_id,)).fetchone()
            if row is not None:
                _check_regression(ClockInfo(row[0], row[1], row[2], bool(row[3])), info)
            db.execute("INSERT INTO attest_host_counters (host_id, clock, reset_count, "
                       "restart_count, safe, seen_at) VALUES (?, ?, ?, ?, ?, ?) "
                       "ON CONFLICT (host_id) DO UPDATE SET clock = excluded.clock, "
                       "reset_count = excluded.reset_count, "
                       "restart_count = excluded.restart_count, safe = excluded.safe, "
                       "seen_at = excluded.seen_at",
                       (host_id, info.clock, info.reset_count, info.restart_count,
                        int(info.safe), now))

    def last_counters(self, host_id: str) -> ClockInfo | None:
        """The host's last accepted TPMS_CLOCK_INFO."""
        row = self._db.execute("SELECT clock, reset_count, restart_count, safe FROM "
                               "attest_host_counters WHERE host_id = ?", (host_id,)).fetchone()
        return None if row is None else ClockInfo(row[0], row[1], row[2], bool(row[3]))


def _check_regression(last: ClockInfo, new: ClockInfo) -> None:
    if new.reset_count < last.reset_count:
        raise ClockRegressionError(f"resetCount went back from {last.reset_count} to "
                                   f"{new.reset_count}")
    same_reset = new.reset_count == last.reset_count
    if same_reset and new.restart_count < last.restart_count:
        raise ClockRegressionError(f"restartCount went back from {last.restart_count} to "
                                   f"{new.restart_count} within resetCount {new.reset_count}")
    same_boot = same_reset and new.restart_count == last.restart_count
    if new.clock < last.clock and (same_boot or new.safe):
        where = "within the same reset and restart" if same_boot else "while marked safe"
        raise ClockRegressionError(f"clock went back from {last.clock} ms to {new.clock} ms "
                                   f"{where}")


def _short(value: bytes) -> str:
    """Enough of a nonce to tell it apart in a message."""
    return value[:8].hex() + ("…" if len(value) > 8 else "") if value else "(empty)"
