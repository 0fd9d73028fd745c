"""Reading a decision-log export (``vigil decisions export``) without the database.

Each line is an OPA decision-log event with a ``vigil`` member (see
:mod:`engine.decide.decision_log`). A line is taken apart into the stored record it was
written from, and written again: the line must be byte for byte what the log writes for
that record (canonical JSON, its input's text in place), so that nothing outside the
hashed record (the event's own ``bundles``, ``error`` or ``timestamp`` members, say) can
be edited unseen. The record's input is never re-serialised: its text is cut from the
line and hashed as it stands.

The bundles and attestation results an export carries (on the first event that rests on
each) are checked against their SHA-256 and kept, so the reader is also the replay's
:class:`~engine.decide.BundleSource`.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from engine.audit.errors import ExportError
from engine.decide import (
    POSTURE_PATH,
    DecisionRecord,
    StoredRow,
    canonical_json,
    event_frame,
)

_HASH = re.compile(r"[0-9a-f]{64}")


def _is_hash(value: Any) -> bool:
    return isinstance(value, str) and _HASH.fullmatch(value) is not None


@dataclass(frozen=True)
class ExportLine:
    """One export line read: the record (None when the line cannot be read as one) and
    what it carries, or the reason it is not a record."""

    line_no: int
    row: StoredRow | None
    checkpoints: list[str] = field(default_factory=list)
    problem: str | None = None
    seq: int | None = None
    """The sequence number the line claims, when it can be read."""


def _parse(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)  # integers beyond 64 bits; raises ValueError when not JSON


class ExportReader:
    """An export file, read line by line (see the module)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.bundles: dict[str, bytes] = {}
        self.attestations: dict[str, str] = {}
        self.postures: dict[str, StoredRow] = {}
        """The host posture records read so far, by decision id (the two-stage decisions
        after them name them)."""
        self.lines = 0
        self._texts: dict[bytes, str] = {}
        if not path.exists():
            from engine.errors import NotFoundError

            raise NotFoundError(f"export {path} does not exist")
        if not path.is_file():
            raise ExportError(f"{path} is not a file")

    def bundle(self, revision: str) -> bytes | None:
        return self.bundles.get(revision)

    def get(self, decision_id: str) -> DecisionRecord | None:
        """A host posture record already read (a two-stage decision's replay reads its
        posture, which the export holds before it)."""
        row = self.postures.get(decision_id)
        return None if row is None else row.record()

    def __iter__(self) -> Iterator[ExportLine]:
        try:
            handle = self.path.open("rb", buffering=0)
        except OSError as exc:
            raise ExportError(f"cannot read the export {self.path}: {exc.strerror}") from None
        with handle:
            for number, raw in enumerate(_lines(handle), start=1):
                self.lines = number
                if not raw.strip():
                    continue
                yield self._line(number, raw)
        if self.lines == 0:
            raise ExportError(f"the export {self.path} is empty",
                              tip="write one with `vigil decisions export > FILE`")

    def _line(self, number: int, raw: bytes) -> ExportLine:
        try:
            event = _parse(raw)
        except ValueError:
            return ExportLine(number, None, problem="not JSON (the export is truncated or "
                              "the line was edited)")
        if not isinstance(event, dict):
            return ExportLine(number, None, problem="not a JSON object")
        ext = event.get("vigil")
        if not isinstance(ext, dict):
            return ExportLine(number, None, problem="an event without its record hash (not a"
                              " Vigil export, or written by a Vigil before exports carried "
                              "hashes)")
        seq = ext.get("seq")
        try:
            row = self._row(event, ext)
        except (KeyError, TypeError, ValueError) as exc:
            return ExportLine(number, None, problem=f"not a readable record: {exc}",
                              seq=seq if isinstance(seq, int) else None)
        text = raw.decode("utf-8", "replace")
        prefix, suffix = event_frame(row, ext)
        if len(text) < len(prefix) + len(suffix) or not text.startswith(prefix) or \
                not text.endswith(suffix):
            return ExportLine(number, None, seq=row.seq, problem=(
                "the event is not as the log wrote it for its record (a member outside the "
                "hashed record, such as bundles, error or timestamp, was edited, or the "
                "line was reformatted)"))
        row = StoredRow(row.seq, row.decision_id, row.timestamp, row.path,
                        text[len(prefix):len(text) - len(suffix)], row.result_text,
                        row.bundle_revision, row.evaluator, row.metrics_text, row.error,
                        row.labels_text, row.prev_hash, row.record_hash, row.bundles_text,
                        row.attestation_sha256)
        problem = self._carried(row, ext)
        checkpoints = ext.get("checkpoints") or []
        if not isinstance(checkpoints, list) or not all(isinstance(t, str)
                                                        for t in checkpoints):
            problem = problem or "its checkpoints are not a list of compact JWS"
            checkpoints = []
        if problem is None and row.path == POSTURE_PATH:
            self.postures[row.decision_id] = row
        return ExportLine(number, row, checkpoints, problem, row.seq)

    def _row(self, event: dict[str, Any], ext: dict[str, Any]) -> StoredRow:
        seq = ext["seq"]
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
            raise ValueError("vigil.seq is not a positive integer")
        for name in ("prev_hash", "record_hash"):
            if not _is_hash(ext.get(name)):
                raise ValueError(f"vigil.{name} is not a SHA-256 in hex")
        attestation = ext.get("attestation_sha256")
        if attestation is not None and not _is_hash(attestation):
            raise ValueError("vigil.attestation_sha256 is not a SHA-256 in hex")
        strings = {"decision_id": event["decision_id"], "path": event["path"],
                   "evaluator": ext["evaluator"], "timestamp": event["timestamp"]}
        for name, value in strings.items():
            if not isinstance(value, str):
                raise ValueError(f"{name} is not a string")
        for name in ("bundle_revision", "error"):
            if ext.get(name) is not None and not isinstance(ext[name], str):
                raise ValueError(f"vigil.{name} is not a string")
        bundles = ext.get("bundles")
        if bundles is not None and not isinstance(bundles, dict):
            raise ValueError("vigil.bundles is not an object")
        when = dt.datetime.fromisoformat(event["timestamp"])
        if when.tzinfo is None:
            raise ValueError("timestamp has no UTC offset")
        if "input" not in event or "result" not in event:
            raise ValueError("no input or result")
        return StoredRow(
            seq=seq, decision_id=event["decision_id"], timestamp=when, path=event["path"],
            input_text="", result_text=self._canonical(event["result"]),
            bundle_revision=ext.get("bundle_revision"), evaluator=ext["evaluator"],
            metrics_text=self._canonical(event["metrics"]), error=ext.get("error"),
            labels_text=self._canonical(event["labels"]), prev_hash=ext["prev_hash"],
            record_hash=ext["record_hash"],
            bundles_text=None if bundles is None else canonical_json(bundles),
            attestation_sha256=attestation)

    def _canonical(self, value: Any) -> str:
        """``canonical_json(value)``, remembered for the values lines repeat (results,
        labels): keyed by the value's JSON as parsed (orjson, keys in their order), which
        only equal values share, so the text is the one ``canonical_json`` gives."""
        try:
            key = orjson.dumps(value)
        except TypeError:  # an integer beyond 64 bits
            return canonical_json(value)
        text = self._texts.get(key)
        if text is None:
            if len(self._texts) >= 4096:
                self._texts.clear()
            text = self._texts[key] = canonical_json(value)
        return text

    def _carried(self, row: StoredRow, ext: dict[str, Any]) -> str | None:
        """Keep the bundle and attestation result a line carries, checked against their
        SHA-256; the reason when one does not match."""
        bundle = ext.get("bundle")
        if bundle is not None:
            try:
                archive = base64.b64decode(bundle["archive"], validate=True)
                sha, revision = bundle["sha256"], bundle["revision"]
            except (KeyError, TypeError, binascii.Error):
                return "its bundle is not readable"
            if hashlib.sha256(archive).hexdigest() != sha:
                return f"the bundle it carries (revision {revision}) does not match its SHA-256"
            self.bundles.setdefault(str(revision), archive)
        token = ext.get("attestation_result")
        if token is not None:
            if not isinstance(token, str) or \
                    hashlib.sha256(token.encode()).hexdigest() != row.attestation_sha256:
                return "the attestation result it carries does not match its SHA-256"
            self.attestations.setdefault(token_sha(token), token)
        return None


_CHUNK = 8 << 20
"""Bytes read at a time."""


def _lines(handle: Any) -> Iterator[bytes]:
    """The lines of a binary file without their newline, read in chunks of
    :data:`_CHUNK` (the last line may lack its newline)."""
    rest = b""
    while True:
        chunk = handle.read(_CHUNK)
        if not chunk:
            break
        lines = (rest + chunk).split(b"\n") if rest else chunk.split(b"\n")
        rest = lines.pop()
        yield from lines
    if rest:
        yield rest


def token_sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()

