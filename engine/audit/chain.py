"""Checking a decision log's hash chain and its signed checkpoints, record by record.

The verifier is fed the records in the order they are stored (the database's sequence
order, or an export's lines) and the checkpoints at the record each covers. It checks,
in this order, for every record:

1. **sequence**: the sequence number follows the one before (a gap is a deleted record; a
   number that goes back is a reordered or inserted one);
2. **link**: its ``prev_hash`` is the record hash of the record before it (the first
   record of the log links to 64 zeros);
3. **content**: SHA-256 of ``prev_hash`` and its body is its ``record_hash`` (any edited
   field).

and for every checkpoint:

4. **key**: it names a key id among the verification keys;
5. **signature**: the compact JWS verifies with that key, ``typ``
   ``vigil-checkpoint+jws``;
6. **statement**: it names this log, the record it stands at, and that record's hash;
   its number follows the one before. A head that differs while steps 1–3 passed is a
   rewrite that recomputed the hashes: the records since the last checkpoint that
   matched are named.

At the end: 7. **coverage**: a checkpoint promised every N records is there (removed
checkpoints, or signing that stopped), and, for an export, the last record is under the
export's own checkpoint (a truncated export is not).

Every problem names the first record it concerns; :attr:`Verification.first_broken` is
the earliest.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.decide import CHECKPOINT_TYP, GENESIS, StoredRow
from engine.keys import SignatureError, VerificationKey, verify_compact


@dataclass(frozen=True)
class Problem:
    """One thing that does not verify, at the first record it concerns."""

    seq: int | None
    """The first record concerned (None: not tied to a record)."""
    what: str
    decision_id: str | None = None
    where: str | None = None
    """Where it was found: ``line 12`` of an export, ``checkpoint 3``."""
    last_seq: int | None = None
    """The last record concerned, when it is a range."""

    def describe(self) -> str:
        span = ""
        if self.seq is not None:
            span = (f"records {self.seq}–{self.last_seq}" if self.last_seq not in
                    (None, self.seq) else f"record {self.seq}")
            if self.decision_id:
                span += f" (decision {self.decision_id})"
        where = f" [{self.where}]" if self.where else ""
        return f"{span}: {self.what}{where}" if span else f"{self.what}{where}"

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "last_seq": self.last_seq, "decision_id": self.decision_id,
                "where": self.where, "what": self.what}


@dataclass(frozen=True)
class CheckpointSeen:
    """A checkpoint that verified."""

    number: int
    size: int
    head: str
    time: str
    kid: str
    kind: str
    every: int


@dataclass
class Verification:
    """What a verification found."""

    source: str
    records: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    head: str | None = None
    checkpoints: list[CheckpointSeen] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    bytes_hashed: int = 0
    first_time: dt.datetime | None = None
    last_time: dt.datetime | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_broken(self) -> Problem | None:
        if not self.problems:
            return None
        return min(self.problems, key=lambda p: (p.seq is None, p.seq or 0))

    @property
    def covered_to(self) -> int:
        """The last record under a signed checkpoint (0: none)."""
        return max((c.size for c in self.checkpoints), default=0)

    def to_json(self) -> dict[str, Any]:
        first = self.first_broken
        return {
            "source": self.source, "verified": self.ok, "records": self.records,
            "first_seq": self.first_seq, "last_seq": self.last_seq, "head": self.head,
            "covered_to": self.covered_to,
            "checkpoints": [vars(c) for c in self.checkpoints],
            "key_ids": sorted({c.kid for c in self.checkpoints}),
            "first_broken": None if first is None else first.to_json(),
            "problems": [p.to_json() for p in sorted(
                self.problems, key=lambda p: (p.seq is None, p.seq or 0))],
            "notes": self.notes,
        }


def _header(token: str) -> dict[str, Any]:
    try:
        part = token.split(".", 1)[0]
        value = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return {}
    return value if isinstance(value, dict) else {}


class ChainVerifier:
    """Steps 1–7 over a stream of records and checkpoints (see the module)."""

    def __init__(self, source: str, keys: Sequence[VerificationKey], *,
                 log_id: str | None = None, export: bool = False,
                 expect_every: int | None = None,
                 lookup: Callable[[int], str | None] | None = None) -> None:
        self.result = Verification(source)
        self.lookup = lookup
        """The decision id of a record by sequence number (a log in its database); without
        it, the ids of the records fed are kept to name problems."""
        self.keys = list(keys)
        self._kids = {k.kid for k in self.keys}
        self.log_id = log_id
        self.export = export
        self.expect_every = expect_every
        """The checkpoint cadence the operator configured (a log under signing), or None."""
        self._expected_seq: int | None = None
        self._prev: str | None = None
        self._last_good = 0
        """The record the last matching checkpoint stood at."""
        self._last_number: int | None = None
        self._last_kind: str | None = None
        self._ids: dict[int, str] = {}
        self._failed_at: list[int] = []
        """Records at which a checkpoint stood that did not verify."""

    def _problem(self, seq: int | None, what: str, *, decision_id: str | None = None,
                 where: str | None = None, last_seq: int | None = None) -> None:
        self.result.problems.append(Problem(seq, what, decision_id, where, last_seq))

    def next_seq(self) -> int:
        """The sequence number the next record should have."""
        return self._expected_seq or 1

    # steps 1-3 ------------------------------------------------------------------------

    def record(self, row: StoredRow, where: str | None = None) -> None:
        """Steps 1-3 for one record, its hash computed here."""
        self.link(row.seq, row.decision_id, row.prev_hash, row.record_hash,
                  row.computed_hash(row.prev_hash), where,
                  size=len(row.input_text) + len(row.result_text) + 200, when=row.timestamp)

    def link(self, seq: int, decision_id: str, prev_hash: str, record_hash: str,
             computed: str, where: str | None = None, *, size: int = 0,
             when: dt.datetime | None = None) -> None:
        """Steps 1-3 for one record whose hash (``computed``: SHA-256 of ``prev_hash`` and
        its body as stored) was computed by the caller, in bulk."""
        result = self.result
        result.records += 1
        result.bytes_hashed += size
        if when is not None:
            result.last_time = when
        if result.first_seq is None:
            result.first_seq = seq
            result.first_time = when
            if seq == 1 or not self.export:
                self._expected_seq, self._prev = 1, GENESIS
            else:  # a partial export: its first link is vouched for by a checkpoint
                self._expected_seq, self._prev = seq, prev_hash
                result.notes.append(f"the export starts at record {seq}, not at the "
                                    "log's first record")
                self._last_good = seq - 1
        expected = self._expected_seq or 1
        # (1) sequence
        if seq > expected:
            self._problem(expected, f"missing: the next record stored is {seq}"
                          " (records were deleted)", where=where, last_seq=seq - 1)
        elif seq < expected:
            self._problem(seq, f"out of place: it comes after record {expected - 1}"
                          " (records were reordered or inserted)",
                          decision_id=decision_id, where=where)
        # (2) link
        elif prev_hash != self._prev:
            self._problem(seq, f"does not follow record {seq - 1}: its prev_hash is "
                          "not that record's hash (a record before it was removed, inserted"
                          " or changed)", decision_id=decision_id, where=where)
        # (3) content
        if computed != record_hash:
            self._problem(seq, "its content does not match its record hash (a field "
                          "was edited)", decision_id=decision_id, where=where)
        if self.lookup is None:
            self._ids[seq] = decision_id
        self._prev = record_hash
        self._expected_seq = seq + 1
        result.last_seq = seq
        result.head = record_hash

    def advance(self, count: int, size: int, last_seq: int, head: str) -> None:
        """Steps 1-3 for ``count`` records after the last one fed, which the caller
        checked in bulk: each one's sequence number one more than the one before (the
        last ``last_seq``), each one's ``prev_hash`` the record hash before it (the last
        ``head``), each one's computed hash its record hash; ``size`` bytes hashed."""
        if count <= 0:
            return
        result = self.result
        if result.first_seq is None or self._expected_seq is None or \
                last_seq != self._expected_seq + count - 1:
            raise ValueError("advance() follows a record fed by link(), in sequence")
        if self.lookup is None:
            raise ValueError("advance() needs a lookup to name records")
        result.records += count
        result.bytes_hashed += size
        self._prev = head
        self._expected_seq = last_seq + 1
        result.last_seq = last_seq
        result.head = head

    # steps 4-6 ------------------------------------------------------------------------

    def checkpoint(self, token: str, *, where: str, stored: dict[str, Any] | None = None
                   ) -> None:
        """A checkpoint that stands at the record just fed (``stored``: what the log's
        own table says it signed, compared with the signed statement)."""
        before = len(self.result.problems)
        self._checkpoint(token, where, stored)
        if len(self.result.problems) > before:
            self._failed_at.append(self.result.last_seq or 0)

    def _checkpoint(self, token: str, where: str, stored: dict[str, Any] | None) -> None:
        at = self.result.last_seq
        header = _header(token)
        kid = header.get("kid")
        # (4) key
        if kid not in self._kids:
            self._problem(at, f"checkpoint signed by key id {kid!r}, which is not among the "
                          "audit verification keys (a retired key not configured, or a "
                          "stranger's)", where=where)
            return
        # (5) signature
        try:
            payload = json.loads(verify_compact(token, self.keys, CHECKPOINT_TYP,
                                                "checkpoint"))
        except SignatureError as exc:
            self._problem(at, exc.reason, where=where)
            return
        except ValueError:
            self._problem(at, "the checkpoint's signed payload is not JSON", where=where)
            return
        # (6) statement
        try:
            seen = CheckpointSeen(
                number=int(payload["number"]), size=int(payload["size"]),
                head=str(payload["head"]), time=str(payload["time"]),
                kid=str(payload["kid"]), kind=str(payload["kind"]),
                every=int(payload["every"]))
            log_id = str(payload["log_id"])
        except (KeyError, TypeError, ValueError):
            self._problem(at, "the checkpoint's signed statement lacks a field", where=where)
            return
        if self.log_id is None:
            self.log_id = log_id
        elif log_id != self.log_id:
            self._problem(at, f"checkpoint {seen.number} is of another log ({log_id})",
                          where=where)
            return
        if stored is not None:
            changed = [k for k in ("number", "size", "head", "kid", "kind")
                       if str(stored.get(k)) != str(getattr(seen, k))]
            if changed:
                self._problem(at, f"checkpoint {seen.number}'s stored {', '.join(changed)} "
                              "differ from what it signed (the checkpoint row was edited)",
                              where=where)
        if seen.size != at:
            self._problem(at, f"checkpoint {seen.number} signed record {seen.size} but stands"
                          f" at record {at}", where=where)
            return
        if self._last_number is not None and seen.number != self._last_number + 1:
            self._problem(at, f"checkpoints {self._last_number + 1}–{seen.number - 1} are "
                          "missing", where=where)
        self._last_number = seen.number
        if seen.head != self.result.head:
            if any(p.seq is not None and self._last_good < p.seq <= seen.size
                   for p in self.result.problems):
                return  # the break already named there is why the head differs
            self._problem(self._last_good + 1,
                          f"rewritten: checkpoint {seen.number} signed head {seen.head[:16]}…"
                          f" at record {seen.size}, the chain gives "
                          f"{(self.result.head or '')[:16]}… (the hashes were recomputed "
                          "after an edit, a deletion or an insertion)",
                          where=where, last_seq=seen.size)
            return
        self._last_good = seen.size
        self._last_kind = seen.kind
        self.result.checkpoints.append(seen)

    # step 7 ---------------------------------------------------------------------------

    def finish(self) -> Verification:
        result = self.result
        last = result.last_seq or 0
        seen = result.checkpoints
        if any(at > result.covered_to for at in self._failed_at):
            pass  # a checkpoint after the last good one failed: that is the answer
        elif seen:
            every = seen[-1].every
            due = (seen[-1].size // every + 1) * every
            if last >= due:
                self._problem(due, f"no checkpoint at record {due}, though checkpoint "
                              f"{seen[-1].number} promised one every {every} records "
                              "(checkpoints were removed, or signing stopped)")
        elif self.expect_every is not None and last >= self.expect_every:
            self._problem(self.expect_every, f"no signed checkpoint in {result.records} "
                          f"records, though one is due every {self.expect_every} (they "
                          "were removed, or the log predates its signing key: sign its head"
                          " once with `vigil audit checkpoint`)")
        if self.export and not any(at > result.covered_to for at in self._failed_at):
            if result.records and result.covered_to < last:
                self._problem(result.covered_to + 1,
                              "not under the export's signed checkpoint (the export is "
                              "truncated, or was written without a signing key)",
                              last_seq=last)
            elif result.records and self._last_kind != "export":
                # every record is under a checkpoint, but the export's own one is missing
                self._problem(last + 1, f"missing: the export ends after record {last} "
                              "without the signed checkpoint written at export time (it is "
                              "truncated, or was written without a signing key)")
        elif not self.export and result.records and result.covered_to < last:
            span = (f"record {last} is" if result.covered_to + 1 == last else
                    f"records {result.covered_to + 1}–{last} are")
            result.notes.append(
                f"{span} not under a signed checkpoint "
                "yet (the next one is written with the next export, the next periodic one, "
                "or `vigil audit checkpoint`)")
        for index, problem in enumerate(result.problems):
            if problem.decision_id is None and problem.seq is not None and \
                    problem.last_seq in (None, problem.seq):
                name = self._ids.get(problem.seq)
                if name is None and self.lookup is not None and \
                        (result.first_seq or 1) <= problem.seq <= last:
                    name = self.lookup(problem.seq)
                if name is not None:
                    result.problems[index] = Problem(problem.seq, problem.what, name,
                                                     problem.where, problem.last_seq)
        return result

