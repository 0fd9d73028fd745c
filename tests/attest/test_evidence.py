"""The evidence document: its JSON, and what it refuses."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.attest.evidence import Evidence, EvidenceError
from engine.errors import NotFoundError


def document() -> dict[str, object]:
    b64 = base64.b64encode
    return {"schema": "vigil.evidence/1", "host_id": "hv-1",
            "collected_at": "2026-05-01T12:00:00Z", "nonce": b64(b"n" * 32).decode(),
            "ak_public": b64(b"ak").decode(),
            "quote": {"attest": b64(b"a").decode(), "signature": b64(b"s").decode()},
            "pcrs": {"sha256": {"0": "00" * 32}}, "eventlog": None, "inventory": {}}


def test_evidence_json_has_base64_blobs_and_hex_pcrs() -> None:
    evidence = Evidence.from_json(json.dumps(document()))
    assert evidence.nonce == b"n" * 32 and evidence.pcrs["sha256"][0] == bytes(32)
    again = json.loads(evidence.to_json())
    assert again["quote"]["attest"] == "YQ==" and again["pcrs"]["sha256"]["0"] == "00" * 32
    assert Evidence.from_json(evidence.to_json()) == evidence


@pytest.mark.parametrize(("change", "message"), [
    ({"schema": "vigil.evidence/2"}, "schema"),
    ({"nonce": "not base64!"}, "nonce"),
    ({"pcrs": {"sha256": {"0": "zz"}}}, "hex"),
    ({"pcrs": {"sha256": {"40": "00"}}}, "out of range"),
    ({"host_id": ""}, "host_id"),
    ({"surprise": 1}, "surprise"),
])
def test_bad_evidence_names_the_field(change: dict[str, object], message: str) -> None:
    with pytest.raises(EvidenceError, match=message):
        Evidence.from_json(json.dumps({**document(), **change}))


def test_evidence_files_missing_or_empty(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError):
        Evidence.load(tmp_path / "nope.json")
    (tmp_path / "empty.json").write_bytes(b"")
    with pytest.raises(EvidenceError, match="empty"):
        Evidence.load(tmp_path / "empty.json")


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.binary(max_size=512), st.text(max_size=512)))
def test_garbage_evidence_is_rejected_not_crashed_on(data: bytes | str) -> None:
    with pytest.raises(EvidenceError):
        Evidence.from_json(data)

