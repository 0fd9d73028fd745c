"""Decisions in two stages (input schema version 2): the host's posture judged once,
each request on a small decision document, the verdict composed of both.

Held against the version 1 decision of the same facts on the parity corpus, with every
in-process evaluator; the posture cache is exact (every fact it is keyed on changes the
decision when it changes, and a kept posture is the one judged again); decisions are
logged once per posture and replay whole; version 1 records still replay."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import threading
from pathlib import Path
from typing import Any

import pytest

from engine.attest import AttestationResult, TrustVector, VerifierId
from engine.decide import (
    Decider,
    DecisionLog,
    PatchedConfiguration,
    Replayer,
    RequestFacts,
    VmShape,
    compose,
    embedded_evaluator,
    load_directory,
    split_document,
    validate,
)
from engine.decide.decider import posture_of
from engine.decide.errors import InputDocumentError
from engine.decide.evaluators import DECISION_PATH, POSTURE_PATH, Evaluator
from engine.decide.verdict import Decision
from engine.model import Component, ImageRef
from engine.provision import decide_placement
from engine.pvdb import Pvdb
from tests.decide.conftest import POLICIES, document
from tests.decide.evaluators.test_parity import DOCUMENTS, _normal
from tests.pvdb.records import cve5_record, kernel_affected, write_json

HIGH = "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H"
KERNEL = Component(kind="kernel", vendor="linux", product="linux_kernel", version="6.6.30")
NOW = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


def two_stages(evaluator: Evaluator, doc: dict[str, Any]) -> dict[str, Any]:
    """The decision of a version 1 document, taken in two stages and composed."""
    posture_doc, decision_doc = split_document(doc)
    validate(posture_doc)
    judged = evaluator.evaluate(posture_doc, POSTURE_PATH)
    assert judged.defined
    posture = posture_of(judged.value, digest="sha256:test")
    decision_doc["posture"] = posture.summary()
    validate(decision_doc)
    stage = evaluator.evaluate(decision_doc, DECISION_PATH)
    assert stage.defined
    return compose(Decision.parse(stage.value), posture).to_json()


@pytest.fixture(scope="module", params=[["vigil"], ["vigil", "site"]], ids=["default", "site"])
def evaluators(request: pytest.FixtureRequest) -> Any:
    policy = load_directory(POLICIES, request.param)
    made = {name: embedded_evaluator(name, policy, timeout=None)
            for name in ("opa", "regorus", "regopy")}
    yield made
    for evaluator in made.values():
        evaluator.close()


@pytest.mark.parametrize(("label", "doc"), DOCUMENTS, ids=[d[0] for d in DOCUMENTS])
def test_two_stages_decide_as_the_whole_document(evaluators: dict[str, Evaluator],
                                                 label: str, doc: dict[str, Any]) -> None:
    whole = Decision.parse(evaluators["opa"].evaluate(doc).value).to_json()
    for name, evaluator in evaluators.items():
        assert _normal(two_stages(evaluator, doc)) == _normal(whole), f"{name}: {label}"


def test_the_documents_validate_and_name_what_is_wrong() -> None:
    posture_doc, decision_doc = split_document(document())
    validate(posture_doc)
    with pytest.raises(InputDocumentError, match=r"\$\.posture"):
        validate(decision_doc)  # a decision document needs its posture
    bad = {**posture_doc, "vulnerabilities": [{"id": "CVE-1"}]}
    with pytest.raises(InputDocumentError, match=r"\$\.vulnerabilities\[0\]"):
        validate(bad)


# --- placements on a real PVDB --------------------------------------------------------


def _result(*, status_failures: bool = False, issued: dt.datetime | None = None
            ) -> AttestationResult:
    from engine.attest import Failure

    return AttestationResult.build(
        host_id="hv-042", verifier=VerifierId(developer="vigil"),
        trust_vector=TrustVector(instance_identity=2, hardware=2, executables=2,
                                 configuration=2),
        failures=[Failure(step="pcr_replay", reason="PCR 4 differs")] if status_failures
        else [], nonce=b"\x01" * 32, image=ImageRef(name="hv-base", version="2026.05.1"),
        components=[KERNEL], ak_name=None, inventory=None,
        issued_at=issued or NOW - dt.timedelta(minutes=5))


def _feed(folder: Path, cve: str, *, fixed: str = "6.6.31", kev: bool = False) -> None:
    write_json(folder / f"{cve}.json", cve5_record(
        cve, affected=kernel_affected("6.1", [fixed], mainline="6.7"),
        metrics=[{"cvssV3_1": {"vectorString": HIGH}}]))
    if kev:
        write_json(folder / "kev.json", {
            "title": "CISA Catalog of Known Exploited Vulnerabilities",
            "catalogVersion": "2026.01.01", "dateReleased": "2026-01-01T00:00:00.000Z",
            "count": 1, "vulnerabilities": [{
                "cveID": cve, "vendorProject": "Linux", "product": "Kernel",
                "vulnerabilityName": "n", "dateAdded": "2025-12-01",
                "shortDescription": "d", "requiredAction": "a", "dueDate": "2025-12-22",
                "knownRansomwareCampaignUse": "Unknown", "notes": ""}]})


@pytest.fixture()
def pvdb(tmp_path: Path) -> Path:
    _feed(tmp_path / "feed", "CVE-2099-0001")
    path = tmp_path / "pvdb.duckdb"
    with Pvdb.open(path) as db:
        db.ingest([str(tmp_path / "feed")])
    return path


def _decider(log: DecisionLog | None = None, revision: str = "r1") -> Decider:
    policy = dataclasses.replace(load_directory(POLICIES, ["vigil"]), revision=revision)
    return Decider(embedded_evaluator("regorus", policy, timeout=None), log)


REQUEST = RequestFacts(tenant="acme", vm=VmShape(name="web-1", vcpus=2, memory_mib=4096))


def _rules(verdict: Any) -> list[str]:
    return sorted(r.rule for r in [*verdict.reasons, *verdict.warnings])


def test_a_kept_posture_decides_as_a_fresh_one(pvdb: Path) -> None:
    result = _result()
    with Pvdb.open(pvdb, read_only=True) as db, _decider() as kept, _decider() as fresh:
        first = decide_placement(kept, db, REQUEST, result, now=NOW)
        again = decide_placement(kept, db, REQUEST, result, now=NOW + dt.timedelta(hours=1))
        assert kept.postures.hits == 1 and kept.postures.misses >= 1
        cold = decide_placement(fresh, db, REQUEST, result, now=NOW + dt.timedelta(hours=1))
    assert first.verdict.verdict == "admit"
    assert again.verdict.decision == cold.verdict.decision
    # the version 1 document of the same facts decides the same
    assert _decider().decide(again.document).decision == cold.verdict.decision


def test_every_fact_of_the_key_changes_the_decision_when_it_changes(
        pvdb: Path, tmp_path: Path) -> None:
    result = _result()
    with _decider() as decider:
        with Pvdb.open(pvdb, read_only=True) as db:
            base = decide_placement(decider, db, REQUEST, result, now=NOW)
            assert base.verdict.verdict == "admit"
            # attestation result: a contraindicated one is rejected
            bad = decide_placement(decider, db, REQUEST, _result(status_failures=True), now=NOW)
            assert bad.verdict.verdict == "reject"
            # patched configuration: a ready one turns the relevant finding into patch
            ready = PatchedConfiguration.model_validate({
                "state": "ready", "image": {"name": "hv-base", "version": "2026.06.1"},
                "attested": True, "attestation_status": "affirming"})
            patched = decide_placement(decider, db, REQUEST, result, patched=ready, now=NOW)
            assert patched.verdict.verdict == "patch"
            generation = db.generation_id
        # PVDB generation: a new KEV-listed vulnerability rejects
        _feed(tmp_path / "more", "CVE-2099-0002", kev=True)
        with Pvdb.open(pvdb) as db:
            db.ingest([str(tmp_path / "more")])
        with Pvdb.open(pvdb, read_only=True) as db:
            assert db.generation_id != generation
            newer = decide_placement(decider, db, REQUEST, result, now=NOW)
            assert newer.verdict.verdict == "reject"
            assert "kev_without_patched_configuration" in _rules(newer.verdict)
            # the day: the posture of another day is judged on that day (its day counts)
            misses = decider.postures.misses
            later = NOW + dt.timedelta(days=400)
            decide_placement(decider, db, REQUEST, _result(issued=later - dt.timedelta(
                minutes=5)), now=later)
            assert decider.postures.misses == misses + 1
        # bundle revision: another revision's decider judges its own posture
        with Pvdb.open(pvdb, read_only=True) as db, _decider(revision="r2") as other:
            decide_placement(other, db, REQUEST, result, now=NOW)
            assert other.postures.hits == 0


def test_postures_are_logged_once_and_decisions_replay_whole(pvdb: Path,
                                                            tmp_path: Path) -> None:
    log = DecisionLog(tmp_path / "decisions.duckdb")
    result = _result()
    with Pvdb.open(pvdb, read_only=True) as db, _decider(log) as decider:
        verdicts = [decide_placement(decider, db, REQUEST, result,
                                     now=NOW + dt.timedelta(seconds=i)).verdict
                    for i in range(3)]
    with DecisionLog(tmp_path / "decisions.duckdb") as reopened:
        records = reopened.since()
        assert [r.path for r in records] == [POSTURE_PATH, *[DECISION_PATH] * 3]
        assert {r.input["posture"]["decision_id"] for r in records[1:]} == {
            records[0].decision_id}
        assert [r.decision_id for r in records[1:]] == [v.decision_id for v in verdicts]
        assert reopened.verify_chain() == []
        replayer = Replayer(reopened)
        try:
            replayed = [replayer.replay(r) for r in records]
        finally:
            replayer.close()
    assert all(not r.diverged for r in replayed), [r.differences for r in replayed]
    assert replayed[1].replayed_verdict == "admit"


def test_replay_with_another_policy_judges_the_posture_again(pvdb: Path,
                                                              tmp_path: Path) -> None:
    log = DecisionLog(tmp_path / "decisions.duckdb")
    with Pvdb.open(pvdb, read_only=True) as db, _decider(log) as decider:
        decide_placement(decider, db, REQUEST, _result(), now=NOW)
    strict = tmp_path / "policies"
    import shutil

    shutil.copytree(POLICIES, strict)
    config = strict / "vigil" / "config" / "data.json"
    data = json.loads(config.read_text())
    data["relevance"]["min_cvss"] = 9.5  # the finding is no longer relevant
    config.write_text(json.dumps(data))
    with DecisionLog(tmp_path / "decisions.duckdb") as reopened:
        record = reopened.since()[-1]
        replayer = Replayer(reopened, load_directory(strict, ["vigil"]))
        try:
            replayed = replayer.replay(record)
        finally:
            replayer.close()
    assert replayed.diverged
    assert "warnings: no_fix_within_window CVE-2099-0001 no longer produced" in \
        replayed.differences


def test_version_1_records_still_replay(tmp_path: Path) -> None:
    log = DecisionLog(tmp_path / "decisions.duckdb")
    with _decider(log) as decider:
        verdict = decider.decide(document())
    with DecisionLog(tmp_path / "decisions.duckdb") as reopened:
        (record,) = reopened.since()
        assert record.input["schema_version"] == 1
        replayer = Replayer(reopened)
        try:
            replayed = replayer.replay(record)
        finally:
            replayer.close()
    assert not replayed.diverged and replayed.replayed_verdict == verdict.verdict


def test_concurrent_decisions_are_all_logged_in_one_chain(tmp_path: Path) -> None:
    log = DecisionLog(tmp_path / "decisions.duckdb")
    ids: list[str] = []
    with _decider(log) as decider:
        def decide() -> None:
            for _ in range(10):
                ids.append(decider.decide(document()).decision_id)

        threads = [threading.Thread(target=decide) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    with DecisionLog(tmp_path / "decisions.duckdb") as reopened:
        assert sorted(r.decision_id for r in reopened.since()) == sorted(ids)
        assert len(ids) == 60
        assert reopened.verify_chain() == []
