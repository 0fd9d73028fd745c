"""`vigil audit verify` on the database: each kind of tampering is found and the first
broken record named; checkpoints catch a rewrite that recomputed every hash; keys rotate."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.audit import verify_log
from engine.decide import GENESIS, DecisionLog, StoredRow
from engine.decide.decision_log import _body, body_text, canonical
from engine.keys import load_signing_key, load_verification_key, sign_compact
from tests.audit.conftest import decide_n, tamper
from tests.clirun import vigil

COLUMNS = ["decision_id", "ts", "path", "input", "result", "bundle_revision", "evaluator",
           "metrics", "error", "labels"]


def _keys(*paths: Path) -> list:  # type: ignore[type-arg]
    return [load_verification_key(p) for p in paths]


def _verify(path: Path, *pubs: Path, every: int | None = 3):  # type: ignore[no-untyped-def]
    with DecisionLog(path, read_only=True) as log:
        return verify_log(log, _keys(*pubs), expect_every=every if pubs else None)


@pytest.fixture()
def signed_log(tmp_path: Path, evaluator, audit_keys) -> Path:  # type: ignore[no-untyped-def]
    """7 decisions, checkpoints at records 3 and 6."""
    path = tmp_path / "d.duckdb"
    decide_n(path, evaluator, 7, key=audit_keys[0])
    return path


def test_an_intact_signed_log_verifies(signed_log: Path, audit_keys) -> None:  # type: ignore[no-untyped-def]
    found = _verify(signed_log, audit_keys[1])
    assert found.ok, found.problems
    assert found.records == 7 and [c.size for c in found.checkpoints] == [3, 6]
    assert found.covered_to == 6
    assert any("record 7 is not under a signed checkpoint" in n for n in found.notes)


_EDITS = {
    "decision_id": "decision_id = decision_id || 'x'",
    "ts": "ts = ts + INTERVAL 1 SECOND",
    "path": "path = 'vigil/other'",
    "input": "input = replace(input, 'acme', 'evil')",
    "result": "result = replace(result, '\"verdict\":\"', '\"verdict\":\"x')",
    "bundle_revision": "bundle_revision = 'forged'",
    "evaluator": "evaluator = 'opa'",
    "metrics": "metrics = '{}'",
    "error": "error = 'forged'",
    "labels": "labels = '{}'",
    "bundles": "bundles = '{\"vigil\":\"x\"}'",
    "attestation_sha256": "attestation_sha256 = repeat('a', 64)",
}


@pytest.mark.parametrize("column", sorted(_EDITS))
def test_an_edit_of_any_field_names_the_record(signed_log: Path, audit_keys, column: str
                                               ) -> None:  # type: ignore[no-untyped-def]
    tamper(signed_log, f"UPDATE decision_log SET {_EDITS[column]} WHERE seq = 2")
    found = _verify(signed_log, audit_keys[1])
    first = found.first_broken
    assert first is not None and first.seq == 2, found.problems
    assert "content does not match" in first.what


def test_a_deleted_record_is_named(signed_log: Path, audit_keys) -> None:  # type: ignore[no-untyped-def]
    tamper(signed_log, "DELETE FROM decision_log WHERE seq = 4")
    found = _verify(signed_log, audit_keys[1])
    assert found.first_broken is not None and found.first_broken.seq == 4
    assert "missing" in found.first_broken.what


def test_the_last_record_deleted_under_a_checkpoint(signed_log: Path, audit_keys) -> None:  # type: ignore[no-untyped-def]
    tamper(signed_log, "DELETE FROM decision_log WHERE seq >= 6")
    found = _verify(signed_log, audit_keys[1])
    assert found.first_broken is not None and found.first_broken.seq == 6
    assert "ends at record 5" in found.first_broken.what


def test_reordered_records_are_named(signed_log: Path, audit_keys) -> None:  # type: ignore[no-untyped-def]
    tamper(signed_log, "UPDATE decision_log SET seq = -1 WHERE seq = 2",
         "UPDATE decision_log SET seq = 2 WHERE seq = 3",
         "UPDATE decision_log SET seq = 3 WHERE seq = -1")
    found = _verify(signed_log, audit_keys[1])
    assert found.first_broken is not None and found.first_broken.seq == 2
    assert "does not follow record 1" in found.first_broken.what


def _rows(path: Path) -> list[StoredRow]:
    with DecisionLog(path, read_only=True) as log:
        return list(log.rows())


def _rewrite(path: Path, rows: list[StoredRow]) -> None:
    """Write ``rows`` back with every hash recomputed, as someone without the signing
    key but with write access would."""
    prev = GENESIS
    con = duckdb.connect(str(path))
    con.execute("DELETE FROM decision_log")
    for seq, row in enumerate(rows, start=1):
        fixed = StoredRow(**{**{f: getattr(row, f) for f in row.__slots__},
                             "seq": seq, "prev_hash": prev, "record_hash": ""})
        digest = fixed.computed_hash(prev)
        con.execute(
            "INSERT INTO decision_log (seq, decision_id, ts, path, input, result,"
            " bundle_revision, evaluator, metrics, error, labels, prev_hash, record_hash,"
            " bundles, attestation_sha256) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [seq, row.decision_id, row.timestamp, row.path, row.input_text, row.result_text,
             row.bundle_revision, row.evaluator, row.metrics_text, row.error,
             row.labels_text, prev, digest, row.bundles_text, row.attestation_sha256])
        prev = digest
    con.close()


def test_an_inserted_record_is_named(signed_log: Path, audit_keys) -> None:  # type: ignore[no-untyped-def]
    rows = _rows(signed_log)
    # a record made to follow record 3, with its hash computed the log's way, put at 4
    forged = StoredRow(**{**{f: getattr(rows[1], f) for f in rows[1].__slots__},
                          "decision_id": "forged", "seq": 4, "prev_hash": rows[2].record_hash})
    forged = StoredRow(**{**{f: getattr(forged, f) for f in forged.__slots__},
                          "record_hash": forged.computed_hash(rows[2].record_hash)})
    tamper(signed_log, "UPDATE decision_log SET seq = seq + 100 WHERE seq >= 4",
         "UPDATE decision_log SET seq = seq - 99 WHERE seq >= 104")
    con = duckdb.connect(str(signed_log))
    con.execute("INSERT INTO decision_log (seq, decision_id, ts, path, input, result,"
                " bundle_revision, evaluator, metrics, error, labels, prev_hash, record_hash,"
                " bundles, attestation_sha256) SELECT 4, 'forged', ts, path, input, result,"
                " bundle_revision, evaluator, metrics, error, labels, ?, ?, bundles,"
                " attestation_sha256 FROM decision_log WHERE seq = 2",
                [forged.prev_hash, forged.record_hash])
    con.close()
    found = _verify(signed_log, audit_keys[1])
    assert found.first_broken is not None and found.first_broken.seq == 5
    assert "does not follow record 4" in found.first_broken.what


def test_an_edit_with_every_hash_recomputed_is_caught_by_a_checkpoint(
        signed_log: Path, audit_keys) -> None:  # type: ignore[no-untyped-def]
    rows = _rows(signed_log)
    edited = rows[4]  # record 5: between the checkpoints at 3 and 6
    rows[4] = StoredRow(**{**{f: getattr(edited, f) for f in edited.__slots__},
                           "result_text": edited.result_text.replace("admit", "reject")})
    assert rows[4].result_text != edited.result_text
    _rewrite(signed_log, rows)
    with DecisionLog(signed_log, read_only=True) as log:
        assert log.verify_chain() == []  # the unkeyed chain alone does not see it
    found = _verify(signed_log, audit_keys[1])
    first = found.first_broken
    assert first is not None and (first.seq, first.last_seq) == (4, 6), found.problems
    assert "rewritten" in first.what and "recomputed" in first.what
    assert [c.size for c in found.checkpoints] == [3]  # the one before still holds


def test_a_deleted_record_with_hashes_recomputed(signed_log: Path, audit_keys) -> None:  # type: ignore[no-untyped-def]
    rows = _rows(signed_log)
    del rows[1]
    _rewrite(signed_log, rows)
    found = _verify(signed_log, audit_keys[1])
    assert found.first_broken is not None and found.first_broken.seq == 1
    assert "rewritten" in found.first_broken.what


def test_checkpoints_removed_with_the_rewrite(signed_log: Path, audit_keys) -> None:  # type: ignore[no-untyped-def]
    rows = _rows(signed_log)
    _rewrite(signed_log, rows[:1] + rows[2:])
    tamper(signed_log, "DELETE FROM decision_checkpoints")
    found = _verify(signed_log, audit_keys[1])
    assert not found.ok
    assert "no signed checkpoint in 6 records" in found.first_broken.what  # type: ignore[union-attr]


def test_the_last_checkpoint_removed(signed_log: Path, audit_keys) -> None:  # type: ignore[no-untyped-def]
    tamper(signed_log, "DELETE FROM decision_checkpoints WHERE size = 6")
    found = _verify(signed_log, audit_keys[1])
    assert found.first_broken is not None and found.first_broken.seq == 6
    assert "promised one every 3 records" in found.first_broken.what


def test_a_checkpoint_re_signed_by_an_unknown_key(signed_log: Path, audit_keys, rotated_keys
                                                  ) -> None:  # type: ignore[no-untyped-def]
    con = duckdb.connect(str(signed_log))
    token = con.execute("SELECT token FROM decision_checkpoints WHERE number = 2").fetchone()[0]
    payload = json.loads(_payload(token))
    stranger = load_signing_key(rotated_keys[0])
    payload["kid"] = stranger.kid
    forged = sign_compact(json.dumps(payload).encode(), stranger, "vigil-checkpoint+jws")
    con.execute("UPDATE decision_checkpoints SET token = ?, key_id = ? WHERE number = 2",
                [forged, stranger.kid])
    con.close()
    found = _verify(signed_log, audit_keys[1])
    assert found.first_broken is not None and found.first_broken.seq == 6
    assert f"key id {stranger.kid!r}" in found.first_broken.what
    assert "not among the audit verification keys" in found.first_broken.what


def _payload(token: str) -> bytes:
    import base64

    part = token.split(".")[1]
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def test_keys_rotate_and_old_checkpoints_still_verify(tmp_path: Path, evaluator, audit_keys,
                                                      rotated_keys) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "d.duckdb"
    decide_n(path, evaluator, 4, key=audit_keys[0])        # checkpoint 1 by the old key
    decide_n(path, evaluator, 3, key=rotated_keys[0])      # checkpoint 2 (record 6), new key
    found = _verify(path, audit_keys[1], rotated_keys[1])
    assert found.ok, found.problems
    assert [c.kid for c in found.checkpoints] == [load_signing_key(audit_keys[0]).kid,
                                                  load_signing_key(rotated_keys[0]).kid]
    only_new = _verify(path, rotated_keys[1])
    assert only_new.first_broken is not None and only_new.first_broken.seq == 3
    assert "not among the audit verification keys" in only_new.first_broken.what


def test_the_cli_names_the_first_broken_record(signed_log: Path, audit_keys, capsys,
                                               monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("VIGIL_AUDIT_VERIFICATION_KEYS", json.dumps([str(audit_keys[1])]))
    monkeypatch.setenv("VIGIL_AUDIT_CHECKPOINT_EVERY", "3")
    code, out, err = vigil(capsys, monkeypatch, "audit", "verify", "--log", str(signed_log))
    assert code == 0, err
    assert "verified:" in out and "7 records" in out
    ids = [r.decision_id for r in _rows(signed_log)]
    tamper(signed_log, "UPDATE decision_log SET input = replace(input, 'acme', 'evil')"
                     " WHERE seq = 5")
    code, out, err = vigil(capsys, monkeypatch, "audit", "verify", "--log", str(signed_log))
    assert code == 1
    assert err.startswith("error: ") and f"record 5 (decision {ids[4]})" in err
    assert "Traceback" not in err
    code, out, err = vigil(capsys, monkeypatch, "audit", "verify", "--log", str(signed_log),
                           "--json")
    assert code == 1 and json.loads(out)["first_broken"]["seq"] == 5
    # replay refuses, both ways in
    code, out, err = vigil(capsys, monkeypatch, "audit", "replay", "--log", str(signed_log),
                           "--from", "2000-01-01")
    assert code == 1 and "record 5" in err and "replayed" not in out
    code, out, err = vigil(capsys, monkeypatch, "decisions", "replay", "--since",
                           "2000-01-01", "--log", str(signed_log))
    assert code == 1 and "record 5" in err and "replayed" not in out


def test_a_signed_log_without_verification_keys_is_a_configuration_error(
        signed_log: Path, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    for name in ("VIGIL_AUDIT_VERIFICATION_KEYS", "VIGIL_AUDIT_SIGNING_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("VIGIL_CONFIG", str(_empty_config(signed_log.parent)))
    code, _out, err = vigil(capsys, monkeypatch, "audit", "verify", "--log", str(signed_log))
    assert code == 3 and "2 signed checkpoint(s)" in err


def _empty_config(folder: Path) -> Path:
    path = folder / "none.toml"
    path.write_text("")
    return path


_json = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=12)
_opt = st.none() | st.text()


@settings(max_examples=300, deadline=None)
@given(doc=st.dictionaries(st.text(), _json, max_size=4), result=_json,
       labels=st.dictionaries(st.text(), st.text(), max_size=3),
       metrics=st.dictionaries(st.text(), st.integers(), max_size=3),
       bundles=st.none() | st.dictionaries(st.text(), st.text(), max_size=2),
       decision_id=st.text(), revision=_opt, error=_opt, evaluator=st.text(), path=st.text(),
       attestation=st.none() | st.text(alphabet="0123456789abcdef", min_size=64,
                                        max_size=64))
def test_body_text_is_the_canonical_json_of_the_body(
        doc, result, labels, metrics, bundles, decision_id, revision, error, evaluator, path,
        attestation) -> None:  # type: ignore[no-untyped-def]
    """The hash is defined on the body's canonical JSON; the assembly from the stored
    text gives the same characters (rows written before it keep their hashes)."""
    when = "2026-01-01T00:00:00.123456+00:00"
    expected = canonical(_body(decision_id, when, path, doc, result, revision, evaluator,
                               metrics, error, labels, bundles, attestation))
    assembled = body_text(
        attestation_sha256=attestation, bundle_revision=revision,
        bundles_text=None if bundles is None else canonical(bundles),
        decision_id=decision_id, error=error, evaluator=evaluator,
        input_text=canonical(doc), labels_text=canonical(labels),
        metrics_text=canonical(metrics), path=path, result_text=canonical(result),
        timestamp_text=when)
    assert assembled == expected
