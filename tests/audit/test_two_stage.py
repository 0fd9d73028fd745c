"""Decision logs of two-stage decisions (input schema version 2) for auditors: records
appended in groups are exactly the records single appends write (same stored text, same
hashes, same checkpoints); a log of host postures and the decisions on them verifies
(their attestation results checked against their host), exports, and replays whole from
the log and from the export alone; the compliance report reads each placement with its
host's posture."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
from pathlib import Path
from typing import Any

import pytest

from engine.attest import AttestationResult, TrustVector, VerifierId, sign_result
from engine.audit import (
    ExportReader,
    Period,
    ReportBuilder,
    Selection,
    export_records,
    log_records,
    replay_records,
    verify_export,
    verify_log,
)
from engine.decide import (
    POSTURE_PATH,
    Decider,
    DecisionLog,
    build_bundle,
    embedded_evaluator,
    load_directory,
)
from engine.decide.errors import DecisionLogError
from engine.decide.evaluators import DECISION_PATH
from engine.keys import load_signing_key, load_verification_key
from engine.model import Component, ImageRef
from engine.provision import decide_placement
from engine.pvdb import Pvdb
from tests.audit.conftest import ticking
from tests.decide.conftest import POLICIES, VULN_IN_WINDOW, document
from tests.decide.test_staged import REQUEST, _feed
from tests.tools import HANG_GUARD

NOW = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)
KERNEL = Component(kind="kernel", vendor="linux", product="linux_kernel", version="6.6.30")


def _entries(tokens: list[str]) -> list[dict[str, Any]]:
    out = []
    for i in range(7):
        doc = document(vulnerabilities=[VULN_IN_WINDOW]) if i % 2 else document()
        out.append({
            "decision_id": f"d-{i}", "timestamp": NOW + dt.timedelta(seconds=i),
            "path": DECISION_PATH, "input_document": doc,
            "result": {"verdict": "admit", "reasons": [], "obligations": [], "warnings": []},
            "bundle_revision": "r1", "evaluator": "regorus",
            "metrics": {"timer_vigil_decision_ns": 1000 + i}, "error": None if i != 5
            else "evaluation timed out", "labels": {"app": "vigil", "id": "test"},
            "bundles": {"vigil": "r1"} if i == 2 else None,
            "attestation_result": tokens[i % len(tokens)] if i % 3 else None})
    return out


def _token(host: str, key: Path, issued: dt.datetime = NOW - dt.timedelta(minutes=5)) -> str:
    return sign_result(AttestationResult.build(
        host_id=host, verifier=VerifierId(developer="vigil"),
        trust_vector=TrustVector(instance_identity=2, hardware=2, executables=2,
                                 configuration=2),
        failures=[], nonce=b"\x01" * 32, image=ImageRef(name="hv-base", version="2026.05.1"),
        components=[KERNEL], ak_name=None, inventory=None, issued_at=issued),
        load_signing_key(key))


def test_group_appends_write_exactly_what_single_appends_write(
        tmp_path: Path, audit_keys: tuple[Path, Path], ec_keys: tuple[Path, Path]) -> None:
    tokens = [_token("hv-01", ec_keys[0]), _token("hv-02", ec_keys[0])]
    entries = _entries(tokens)
    signing = load_signing_key(audit_keys[0])
    policy = dataclasses.replace(load_directory(POLICIES, ["vigil"]), revision="r1")
    archive = build_bundle(policy)
    with DecisionLog(tmp_path / "one.duckdb", signing_key=signing,
                     checkpoint_every=3) as one:
        one.record_bundle("r1", archive, "test")
        for entry in entries:
            assert one.append(**entry)
        single = list(one.rows())
        single_checkpoints = one.checkpoints()
        single_attestations = {h: one.attestation(h) for h in one.attestation_hashes()}
    with DecisionLog(tmp_path / "many.duckdb", signing_key=signing,
                     checkpoint_every=3) as many:
        many.record_bundle("r1", archive, "test")
        many.append_many(entries[:2])
        many.append_many(entries[2:])  # a group across the checkpoints at 3 and 6
        grouped = list(many.rows())
        grouped_checkpoints = many.checkpoints()
        grouped_attestations = {h: many.attestation(h) for h in many.attestation_hashes()}
    assert len(single) == 7
    assert grouped == single  # every stored field: text, prev and record hashes
    assert grouped_attestations == single_attestations and len(single_attestations) == 2

    def seen(checkpoints: list[Any]) -> list[tuple[int, int, str, str]]:
        return [(c.number, c.size, c.head, c.kind) for c in checkpoints]

    assert seen(grouped_checkpoints) == seen(single_checkpoints)
    assert [c.size for c in grouped_checkpoints] == [3, 6]
    for name in ("one", "many"):
        with DecisionLog(tmp_path / f"{name}.duckdb", read_only=True) as log:
            found = verify_log(log, [load_verification_key(audit_keys[1])], expect_every=3)
        assert found.ok, (name, found.problems)
        assert found.records == 7 and found.covered_to == 6


def test_a_failed_group_writes_nothing(tmp_path: Path) -> None:
    entries = _entries(["t"])
    with DecisionLog(tmp_path / "d.duckdb") as log:
        log.append_many(entries[:2])
        with pytest.raises(DecisionLogError, match="cannot append"):
            log.append_many([entries[2], entries[1]])  # d-1 is logged already
        with pytest.raises(KeyError):
            log.append_many([entries[2], {k: v for k, v in entries[3].items() if k != "path"}])
        assert [r.decision_id for r in log.rows()] == ["d-0", "d-1"]
        log.append_many(entries[2:4])
        assert [r.decision_id for r in log.rows()] == ["d-0", "d-1", "d-2", "d-3"]
        assert log.verify_chain() == []


@pytest.fixture()
def staged_log(tmp_path: Path, audit_keys: tuple[Path, Path], ec_keys: tuple[Path, Path]
               ) -> tuple[Path, list[str]]:
    """A signed log of two-stage placements: two attestation results of one host (the
    second re-issued), two decisions on each."""
    _feed(tmp_path / "feed", "CVE-2099-0001")
    with Pvdb.open(tmp_path / "pvdb.duckdb") as db:
        db.ingest([str(tmp_path / "feed")])
    policy = dataclasses.replace(load_directory(POLICIES, ["vigil"]), revision="r1")
    path = tmp_path / "d.duckdb"
    first = _token("hv-042", ec_keys[0])
    second = _token("hv-042", ec_keys[0], NOW - dt.timedelta(minutes=1))
    from engine.attest import verify_result

    ids: list[str] = []
    with Pvdb.open(tmp_path / "pvdb.duckdb", read_only=True) as db, \
            DecisionLog(path, signing_key=load_signing_key(audit_keys[0]),
                        checkpoint_every=3) as log, \
            Decider(embedded_evaluator("regorus", policy, timeout=HANG_GUARD), log,
                    clock=ticking(NOW, dt.timedelta(seconds=1))) as decider:
        assert decider.staged
        for i, token in enumerate((first, first, second, second)):
            result = verify_result(token, load_verification_key(ec_keys[1]), now=NOW)
            placement = decide_placement(decider, db, REQUEST, result,
                                         now=NOW + dt.timedelta(seconds=i),
                                         attestation_token=token)
            ids.append(placement.verdict.decision_id)
    return path, ids


def test_a_two_stage_log_verifies_exports_and_replays(
        staged_log: tuple[Path, list[str]], tmp_path: Path, audit_keys: tuple[Path, Path],
        ec_keys: tuple[Path, Path]) -> None:
    path, ids = staged_log
    keys = [load_verification_key(audit_keys[1])]
    attest = load_verification_key(ec_keys[1])
    with DecisionLog(path, read_only=True) as log:
        rows = list(log.rows())
        # a posture per attestation result, each decision resting on the same result
        assert [r.path for r in rows] == [POSTURE_PATH, DECISION_PATH, DECISION_PATH,
                                          POSTURE_PATH, DECISION_PATH, DECISION_PATH]
        assert [r.decision_id for r in rows if r.path == DECISION_PATH] == ids
        assert rows[0].attestation_sha256 == rows[1].attestation_sha256 == \
            rows[2].attestation_sha256 != rows[3].attestation_sha256
        found = verify_log(log, keys, expect_every=3, attest_key=attest)
        assert found.ok, found.problems
        assert found.records == 6
        replayed = replay_records(found, log, log_records(log, Selection()), Selection())
        assert [r.diverged for r in replayed] == [False] * 6, [r.differences for r in replayed]
        # one decision alone replays with its posture
        (alone,) = replay_records(found, log, log_records(log, Selection(ids[3])),
                                  Selection(ids[3]))
        assert not alone.diverged and alone.replayed_verdict == "admit"
    out = io.BytesIO()
    with DecisionLog(path, signing_key=load_signing_key(audit_keys[0]),
                     checkpoint_every=3) as log:
        log.export_ndjson(out)
    export = tmp_path / "export.ndjson"
    export.write_bytes(out.getvalue())
    path.unlink()  # the export alone from here on
    reader = ExportReader(export)
    found = verify_export(reader, keys, attest_key=attest)
    assert found.ok, found.problems
    selection = Selection(ids[2])
    (alone,) = replay_records(found, reader, export_records(reader, selection), selection,
                              where=str(export))
    assert not alone.diverged and alone.replayed_verdict == "admit"


def test_the_report_reads_a_placement_with_its_hosts_posture(
        staged_log: tuple[Path, list[str]]) -> None:
    path, ids = staged_log
    builder = ReportBuilder(Period(NOW - dt.timedelta(days=1), NOW + dt.timedelta(days=1),
                                   NOW + dt.timedelta(days=1)))
    with DecisionLog(path, read_only=True) as log:
        placements = [builder.add(row) for row in log.rows()]
    decided = [p for p in placements if p is not None]
    assert [p["decision_id"] for p in decided] == ids  # postures are not placements
    assert builder.decisions == 4 and set(builder.verdicts) == {"admit"}
    for placement in decided:
        assert placement["host"] == "hv-042" and placement["tenant"] == "acme"
        assert [v["id"] for v in placement["known_then"]] == ["CVE-2099-0001"]
