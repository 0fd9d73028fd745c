"""An export verified and replayed on its own (the database removed), and every way of
spoiling one: truncated, edited, reordered, a line removed, a bundle left out, a
stranger's checkpoint key, no signature at all."""

from __future__ import annotations

import datetime as dt
import io
import json
from pathlib import Path

import pytest

from engine.attest import AttestationResult, TrustVector, VerifierId, load_signing_key, sign_result
from engine.audit import ExportReader, verify_export
from engine.decide import Decider, DecisionLog
from engine.keys import load_verification_key
from engine.model import Component, ImageRef
from tests.audit.conftest import decide_n, ticking
from tests.clirun import vigil
from tests.decide.conftest import document


def _export(log: Path, key: Path | None) -> bytes:
    out = io.BytesIO()
    signing = load_signing_key(key) if key is not None else None
    with DecisionLog(log, signing_key=signing, checkpoint_every=3) as dlog:
        dlog.export_ndjson(out)
    return out.getvalue()


@pytest.fixture()
def export(tmp_path: Path, evaluator, audit_keys) -> Path:  # type: ignore[no-untyped-def]
    log = tmp_path / "d.duckdb"
    decide_n(log, evaluator, 5, key=audit_keys[0])
    path = tmp_path / "export.ndjson"
    path.write_bytes(_export(log, audit_keys[0]))
    log.unlink()  # nothing but the export from here on
    return path


def _verify(path: Path, *pubs: Path):  # type: ignore[no-untyped-def]
    return verify_export(ExportReader(path), [load_verification_key(p) for p in pubs])


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def test_an_export_verifies_on_its_own_and_is_still_opa_shaped(export: Path, audit_keys
                                                                ) -> None:  # type: ignore[no-untyped-def]
    found = _verify(export, audit_keys[1])
    assert found.ok, found.problems
    assert found.records == 5 and found.covered_to == 5
    assert [c.kind for c in found.checkpoints] == ["periodic", "export"]
    events = [json.loads(line) for line in _lines(export)]
    assert {"decision_id", "labels", "bundles", "path", "input", "result", "timestamp",
            "metrics"} <= set(events[0])
    assert "bundle" in events[0]["vigil"] and "bundle" not in events[1]["vigil"]
    assert events[2]["vigil"]["checkpoints"] and events[4]["vigil"]["checkpoints"]


def test_replay_from_the_export_alone(export: Path, audit_keys, capsys, monkeypatch
                                      ) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("VIGIL_DECISION_LOG", str(export.parent / "absent.duckdb"))
    code, out, err = vigil(capsys, monkeypatch, "audit", "replay", "--export", str(export),
                           "--key", str(audit_keys[1]), "--from", "2000-01-01", "--json")
    assert code == 0, err
    assert json.loads(out)["replayed"] == 5 and json.loads(out)["diverged"] == 0
    assert not (export.parent / "absent.duckdb").exists()


def test_a_truncated_export(export: Path, audit_keys) -> None:  # type: ignore[no-untyped-def]
    data = export.read_bytes()
    export.write_bytes(data[: len(data) - 300])
    found = _verify(export, audit_keys[1])
    assert found.first_broken is not None
    assert any("not JSON" in p.what for p in found.problems)
    assert any("not under the export's signed checkpoint" in p.what for p in found.problems)


def test_the_last_line_cut_off(export: Path, audit_keys) -> None:  # type: ignore[no-untyped-def]
    export.write_bytes(b"".join(_lines(export)[:-1]))
    found = _verify(export, audit_keys[1])
    assert found.first_broken is not None and found.first_broken.seq == 4
    assert "not under the export's signed checkpoint" in found.first_broken.what


def test_an_edited_input(export: Path, audit_keys) -> None:  # type: ignore[no-untyped-def]
    lines = _lines(export)
    lines[1] = lines[1].replace(b'"tenant":"acme"', b'"tenant":"evil"')
    export.write_bytes(b"".join(lines))
    found = _verify(export, audit_keys[1])
    assert found.first_broken is not None and found.first_broken.seq == 2
    assert "content does not match" in found.first_broken.what
    assert found.first_broken.where == "line 2"


def test_an_edited_event_member_outside_the_hash(export: Path, audit_keys) -> None:  # type: ignore[no-untyped-def]
    lines = _lines(export)
    event = json.loads(lines[2])
    event["bundles"]["vigil"]["revision"] = "forged"
    lines[2] = (json.dumps(event, sort_keys=True, separators=(",", ":"),
                           ensure_ascii=False) + "\n").encode()
    export.write_bytes(b"".join(lines))
    found = _verify(export, audit_keys[1])
    assert found.first_broken is not None and found.first_broken.seq == 3
    assert "not as the log wrote it" in found.first_broken.what


def test_a_removed_and_a_swapped_line(export: Path, audit_keys) -> None:  # type: ignore[no-untyped-def]
    lines = _lines(export)
    export.write_bytes(b"".join(lines[:1] + lines[2:]))
    found = _verify(export, audit_keys[1])
    assert found.first_broken is not None and found.first_broken.seq == 2
    assert "missing" in found.first_broken.what
    export.write_bytes(b"".join([lines[0], lines[2], lines[1], *lines[3:]]))
    found = _verify(export, audit_keys[1])
    assert found.first_broken is not None and found.first_broken.seq == 2


def test_a_record_whose_bundle_is_not_carried(export: Path, audit_keys) -> None:  # type: ignore[no-untyped-def]
    lines = _lines(export)
    event = json.loads(lines[0])
    revision = event["vigil"].pop("bundle")["revision"]
    lines[0] = (json.dumps(event, sort_keys=True, separators=(",", ":"),
                           ensure_ascii=False) + "\n").encode()
    export.write_bytes(b"".join(lines))
    found = _verify(export, audit_keys[1])
    assert found.first_broken is not None and found.first_broken.seq == 1
    assert f"bundle revision {revision!r}, which the export does not carry" in \
        found.first_broken.what
    assert len([p for p in found.problems if "does not carry" in p.what]) == 5


def test_a_checkpoint_by_an_unknown_key(export: Path, rotated_keys) -> None:  # type: ignore[no-untyped-def]
    found = _verify(export, rotated_keys[1])
    assert found.first_broken is not None and found.first_broken.seq == 3
    assert "not among the audit verification keys" in found.first_broken.what


def test_an_unsigned_export_does_not_pass(tmp_path: Path, evaluator, audit_keys) -> None:  # type: ignore[no-untyped-def]
    log = tmp_path / "d.duckdb"
    decide_n(log, evaluator, 2, key=None)
    path = tmp_path / "export.ndjson"
    path.write_bytes(_export(log, None))
    found = _verify(path, audit_keys[1])
    assert found.first_broken is not None and found.first_broken.seq == 1
    assert "written without a signing key" in found.first_broken.what


def test_bad_files_are_one_error_line_each(export: Path, tmp_path: Path, audit_keys, capsys,
                                           monkeypatch) -> None:  # type: ignore[no-untyped-def]
    key = ["--key", str(audit_keys[1])]
    empty = tmp_path / "empty.ndjson"
    empty.write_bytes(b"")
    for args, code_wanted, text in (
            (["--export", str(empty)], 4, "is empty"),
            (["--export", str(tmp_path / "none.ndjson")], 6, "does not exist"),
            (["--export", str(export)], 0, "verified:")):
        code, out, err = vigil(capsys, monkeypatch, "audit", "verify", *args, *key)
        assert code == code_wanted, err
        assert text in (err if code else out)
        assert "Traceback" not in err
    lines = _lines(export)
    export.write_bytes(b"".join(lines[:3]) + lines[3][:40])
    code, out, err = vigil(capsys, monkeypatch, "audit", "verify", "--export", str(export),
                           *key)
    assert code == 1 and err.count("\n") <= 2 and "record 4" in err
    found = _verify(export, audit_keys[1])
    # records 1-3 are under a periodic checkpoint; the export's own one was cut off
    assert any("the export ends after record 3 without the signed checkpoint" in p.what
               and p.seq == 4 for p in found.problems), [p.what for p in found.problems]
    code, out, err = vigil(capsys, monkeypatch, "audit", "replay", "--export", str(export),
                           *key, "--from", "2000-01-01")
    assert code == 1 and "record 4" in err and "replayed" not in out


def test_the_attestation_result_a_decision_rested_on(tmp_path: Path, evaluator, audit_keys,
                                                     ec_keys) -> None:  # type: ignore[no-untyped-def]
    """Kept once by hash in the log, carried by the export, verified again with the
    verifier's key; a result of another host than the decision's is named."""
    def token(host: str) -> str:
        return sign_result(AttestationResult.build(
            host_id=host, verifier=VerifierId(developer="vigil"),
            trust_vector=TrustVector(instance_identity=2), failures=[], nonce=None,
            image=ImageRef(name="hv-base", version="1.2.0"),
            components=[Component(kind="kernel", vendor="linux", product="linux_kernel",
                                  version="6.6.30")],
            ak_name=None, inventory=None,
            issued_at=dt.datetime(2026, 1, 1, tzinfo=dt.UTC)), load_signing_key(ec_keys[0]))

    log = tmp_path / "d.duckdb"
    good, other = token("hv-01"), token("hv-99")
    with DecisionLog(log, signing_key=load_signing_key(audit_keys[0])) as dlog:
        decider = Decider(evaluator, dlog, clock=ticking())
        for t in (good, good, other):
            decider.decide(document(), attestation_result=t)
        rows = list(dlog.rows())
        assert rows[0].attestation_sha256 == rows[1].attestation_sha256
        assert dlog.attestation(rows[0].attestation_sha256 or "") == good
    path = tmp_path / "export.ndjson"
    path.write_bytes(_export(log, audit_keys[0]))
    found = verify_export(ExportReader(path), [load_verification_key(audit_keys[1])],
                          attest_key=load_verification_key(ec_keys[1]))
    assert [p.seq for p in found.problems] == [3]
    assert "of host 'hv-99', the decision of host 'hv-01'" in found.problems[0].what
    unchecked = verify_export(ExportReader(path), [load_verification_key(audit_keys[1])])
    assert unchecked.ok and any("not verified again" in n for n in unchecked.notes)
