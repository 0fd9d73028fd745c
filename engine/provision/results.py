"""The hosts' cached attestation results: verified once per file change, used while
younger than a TTL.

The verifier (``vigil attest verify --out``) writes each host's latest result as
``<host id>.jwt`` into the folder named by the ``attest_results`` setting; a result put
in process (:meth:`ResultCache.put`, after a fresh verification) counts too. A result is
used only after its signature verifies with the verifier's public key, and only while
younger than ``attest_result_ttl`` seconds. Each result is kept with the EAR (compact
JWT) it was read from, which the tenant's report carries.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from pathlib import Path

from engine.attest import AttestationResult, VerificationKey, read_result_file, stat_result_file


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


Entry = tuple[AttestationResult, str | None]
"""A verified result and the EAR it was read from (None when it was built in process)."""


class ResultCache:
    """Per host, the latest verified attestation result, or why there is none."""

    def __init__(self, folder: Path | None, key: VerificationKey | None, *, ttl: float,
                 clock: Callable[[], dt.datetime] = _utcnow) -> None:
        self.folder = folder
        self.key = key
        self.ttl = dt.timedelta(seconds=ttl)
        self.clock = clock
        self._lock = threading.Lock()
        self._files: dict[str, tuple[tuple[int, int], Entry | None, str | None]] = {}
        self._put: dict[str, Entry] = {}

    def put(self, result: AttestationResult, token: str | None = None) -> None:
        """Keep a result verified in this process, with its EAR (it counts until it is
        older than the TTL, or a newer file replaces it)."""
        with self._lock:
            self._put[result.host_id] = (result, token)

    def get(self, host_id: str) -> tuple[AttestationResult | None, str]:
        """The host's result when there is a fresh verified one, and otherwise None and
        why not (the second value is empty with a result)."""
        entry, why = self.entry(host_id)
        return (entry[0] if entry is not None else None), why

    def entry(self, host_id: str) -> tuple[Entry | None, str]:
        """Like :meth:`get`, with the EAR the result was read from."""
        candidates: list[Entry] = []
        why = "no attestation result is cached for it"
        with self._lock:
            kept = self._put.get(host_id)
        if kept is not None:
            candidates.append(kept)
        from_file, problem = self._from_file(host_id)
        if from_file is not None:
            candidates.append(from_file)
        elif problem:
            why = problem
        if not candidates:
            return None, why
        newest = max(candidates, key=lambda e: e[0].issued_at)
        if newest[0].host_id != host_id:
            return None, f"its cached result is for host {newest[0].host_id!r}"
        age = self.clock() - newest[0].issued_at
        if age > self.ttl:
            return None, (f"its attestation result is {int(age.total_seconds())} s old, "
                          f"over the {int(self.ttl.total_seconds())} s limit")
        return newest, ""

    def _from_file(self, host_id: str) -> tuple[Entry | None, str]:
        if self.folder is None:
            return None, ""
        stamp, problem = stat_result_file(self.folder, host_id)
        if stamp is None:
            return None, problem
        with self._lock:
            known = self._files.get(host_id)
        if known is not None and known[0] == stamp:
            return known[1], known[2] or ""
        read = read_result_file(self.folder, host_id, self.key)
        entry: Entry | None = None if read.result is None else (read.result, read.token)
        with self._lock:
            self._files[host_id] = (read.stamp or stamp, entry, read.problem or None)
        return entry, read.problem
