"""``vigil audit verify``: a decision log, or an export of one, checked end to end.

Beyond the chain and its checkpoints (:mod:`engine.audit.chain`), every record's bundle
revision must be in the log (or the export), every attestation result a record names must
be there and match its hash and, with the verifier's public key, verify and name the
record's host. A checkpoint that signed a record the log no longer has is a deletion at
the end of the log.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from engine.audit.bulk import At, Rows, Run, scan_chain
from engine.audit.chain import ChainVerifier, Problem, Verification
from engine.audit.errors import ChainBroken
from engine.audit.export import ExportReader
from engine.decide import ChainRow, Checkpoint, DecisionLog, StoredRow
from engine.errors import ConfigError
from engine.keys import KeyLoadError, VerificationKey, load_verification_key

if TYPE_CHECKING:
    from engine.config import Settings


def verification_keys(settings: Settings, extra: Sequence[Path] = ()) -> list[VerificationKey]:
    """The checkpoint verification keys: ``extra`` and ``audit_verification_keys``, else
    the public half of ``audit_signing_key``."""
    keys: list[VerificationKey] = []
    for path in [*extra, *settings.audit_verification_keys]:
        try:
            keys.append(load_verification_key(path))
        except KeyLoadError as exc:
            raise ConfigError(f"audit verification key: {exc.reason}",
                              tip="VIGIL_AUDIT_VERIFICATION_KEYS lists PEM public keys, "
                                  'e.g. \'["/etc/vigil/audit.pub.pem"]\'') from None
    if not keys and settings.audit_signing_key is not None:
        try:  # a private key stands for its public half
            keys.append(load_verification_key(settings.audit_signing_key))
        except KeyLoadError as exc:
            raise ConfigError(f"audit_signing_key: {exc.reason}") from None
    return keys


def _no_keys(count: int, where: str) -> ConfigError:
    return ConfigError(f"{where} holds {count} signed checkpoint(s), and no audit "
                       "verification key is configured to check them",
                       tip="set VIGIL_AUDIT_VERIFICATION_KEYS (the current and retired "
                           "public keys) or pass --key PUB.pem")


class _Attestations:
    """Step: the attestation results records rest on, checked again when a key is given."""

    def __init__(self, key: VerificationKey | None) -> None:
        self.key = key
        self.unchecked = 0

    def check(self, verifier: ChainVerifier, row: ChainRow | StoredRow, token: str | None,
              where: str, load: Callable[[], StoredRow]) -> None:
        """``load``: the whole stored row (read only when the result is verified again)."""
        if row.attestation_sha256 is None:
            return
        if token is None:
            verifier.result.problems.append(Problem(
                row.seq, "rests on an attestation result that is not there (SHA-256 "
                f"{row.attestation_sha256[:16]}…)", row.decision_id, where))
            return
        if self.key is None:
            self.unchecked += 1
            return
        from engine.attest import ResultError, verify_result

        stored = load()
        try:
            result = verify_result(token, self.key, now=stored.timestamp)
        except ResultError as exc:
            verifier.result.problems.append(Problem(
                row.seq, f"its attestation result does not verify: {exc.summary}",
                row.decision_id, where))
            return
        try:
            host = orjson.loads(stored.input_text)["host"]["id"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            host = None
        if host != result.host_id:
            verifier.result.problems.append(Problem(
                row.seq, f"its attestation result is of host {result.host_id!r}, the "
                f"decision of host {host!r}", row.decision_id, where))

    def note(self, verification: Verification) -> None:
        if self.unchecked:
            verification.notes.append(
                f"{self.unchecked} attestation result(s) are present and match their hashes"
                " but were not verified again: no verifier key (--attest-key or "
                "VIGIL_ATTEST_RESULT_VERIFICATION_KEY)")


def _bundle_missing(verifier: ChainVerifier, row: ChainRow | StoredRow, where: str,
                    place: str) -> None:
    verifier.result.problems.append(Problem(
        row.seq, f"rests on bundle revision {row.bundle_revision!r}, which {place} does not "
        "carry (it cannot be replayed)", row.decision_id, where))


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _whole(item: ChainRow, read: Callable[[int], StoredRow]) -> StoredRow:
    return item.row if item.row is not None else read(item.seq)


def _same(row: StoredRow) -> StoredRow:
    return row


OnRow = Callable[[StoredRow], None]
"""Called with every record as it is verified (a report built in the same pass)."""


def verify_log(log: DecisionLog, keys: Sequence[VerificationKey], *,
               expect_every: int | None = None,
               attest_key: VerificationKey | None = None,
               on_row: OnRow | None = None) -> Verification:
    """Verify a decision log in its database. ``expect_every``: the configured checkpoint
    cadence, when the log is meant to be signed (keys are configured)."""
    with log.held():
        return _verify_log(log, keys, expect_every, attest_key, on_row)


def _verify_log(log: DecisionLog, keys: Sequence[VerificationKey], expect_every: int | None,
                attest_key: VerificationKey | None, on_row: OnRow | None) -> Verification:
    checkpoints = log.checkpoints()
    if checkpoints and not keys:
        raise _no_keys(len(checkpoints), f"the decision log {log.path}")
    at: dict[int, list[Checkpoint]] = defaultdict(list)
    for cp in checkpoints:
        at[cp.size].append(cp)

    def stored(seq: int) -> StoredRow:
        (found,) = log.rows("seq = ?", [seq])
        return found

    def named(seq: int) -> str | None:
        found = list(log.rows("seq = ?", [seq]))
        return found[0].decision_id if found else None

    verifier = ChainVerifier(str(log.path), keys, log_id=log.log_id,
                             expect_every=expect_every if keys else None, lookup=named)
    bundles = log.bundle_revisions()
    attestations = _Attestations(attest_key)
    first_us = last_us = None

    def one(item: ChainRow) -> None:
        """Steps 1-3 and the record's bundle and attestation result, for one record."""
        where = f"row {item.seq}"
        verifier.link(item.seq, item.decision_id, item.prev_hash, item.record_hash,
                      item.computed, where, size=item.size)
        if item.bundle_revision and item.bundle_revision not in bundles:
            _bundle_missing(verifier, item, where, "the log")
        if item.attestation_sha256 is not None:
            attestations.check(verifier, item, log.attestation(item.attestation_sha256),
                               where, functools.partial(_whole, item, stored))

    def marks(seq: int) -> None:
        for cp in at.pop(seq, []):
            verifier.checkpoint(cp.token, where=f"checkpoint {cp.number}", stored={
                "number": cp.number, "size": cp.size, "head": cp.head, "kid": cp.key_id,
                "kind": cp.kind})

    if log.in_storage_order():
        for event in scan_chain(log, marks=set(at), bundles=bundles, full=on_row is not None,
                                stored=stored):
            if isinstance(event, Run):
                verifier.advance(event.count, event.size, event.last_seq, event.head)
                last_us = event.micros
            elif isinstance(event, At):
                marks(event.seq)
            elif isinstance(event, Rows):
                if on_row is not None:
                    for row in event.rows:
                        on_row(row)
            else:
                one(event)
                if first_us is None:
                    first_us = event.micros
                last_us = event.micros
    else:  # rows stored out of sequence order: read in ranges of sequence numbers
        for item in log.chain_rows(full=on_row is not None):
            one(item)
            if first_us is None:
                first_us = item.micros
            last_us = item.micros
            marks(item.seq)
            if on_row is not None and item.row is not None:
                on_row(item.row)
    if first_us is not None and last_us is not None:
        verifier.result.first_time = _EPOCH + dt.timedelta(microseconds=first_us)
        verifier.result.last_time = _EPOCH + dt.timedelta(microseconds=last_us)
    last = verifier.result.last_seq or 0
    for size, cps in sorted(at.items()):
        verifier.result.problems.append(Problem(
            last + 1, f"checkpoint {cps[0].number} signed record {size}, but the log ends at "
            f"record {last} (records were deleted)", where=f"checkpoint {cps[0].number}",
            last_seq=size))
    result = verifier.finish()
    attestations.note(result)
    if not keys and not checkpoints and result.records:
        result.notes.append("the log has no signed checkpoint and no key is configured: the "
                            "chain shows edits, but not a rewrite that recomputes every hash "
                            "after it (set VIGIL_AUDIT_SIGNING_KEY)")
    return result


def verify_export(reader: ExportReader, keys: Sequence[VerificationKey], *,
                  attest_key: VerificationKey | None = None,
                  on_row: OnRow | None = None) -> Verification:
    """Verify an export on its own (no database): it must end under its signed export
    checkpoint."""
    if not keys:
        raise ConfigError("no audit verification key is configured to check the export's "
                          "signed checkpoints",
                          tip="set VIGIL_AUDIT_VERIFICATION_KEYS (the current and retired "
                              "public keys) or pass --key PUB.pem")
    verifier = ChainVerifier(str(reader.path), keys, export=True)
    attestations = _Attestations(attest_key)
    for line in reader:
        where = f"line {line.line_no}"
        if line.row is None:
            verifier.result.problems.append(Problem(
                line.seq if line.seq is not None else verifier.next_seq(),
                line.problem or "unreadable", None, where))
            continue
        row = line.row
        verifier.record(row, where)
        if line.problem:
            verifier.result.problems.append(Problem(row.seq, line.problem, row.decision_id,
                                                    where))
        if row.bundle_revision and reader.bundle(row.bundle_revision) is None:
            _bundle_missing(verifier, row, where, "the export")
        if row.attestation_sha256 is not None:
            attestations.check(verifier, row, reader.attestations.get(row.attestation_sha256),
                               where, functools.partial(_same, row))
        for index, token in enumerate(line.checkpoints, start=1):
            verifier.checkpoint(token, where=f"{where}, checkpoint {index}")
        if on_row is not None:
            on_row(row)
    result = verifier.finish()
    attestations.note(result)
    if not result.records and not result.problems:
        result.problems.append(Problem(None, "the export holds no decision"))
    return result


def require_intact(result: Verification) -> None:
    """Raise :class:`ChainBroken` naming the first broken record unless ``result`` is
    intact."""
    first = result.first_broken
    if first is None:
        return
    more = len(result.problems) - 1
    raise ChainBroken(
        f"{result.source} does not verify: {first.describe()}"
        + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""),
        tip="`vigil audit verify` lists every problem; a decision log that does not verify "
            "is not replayed")
