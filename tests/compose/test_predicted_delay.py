"""PVDB, predictor and policy together: a fix that exists only on another kernel branch
gets an estimated date for the host's branch, and the default policy delays the
placement until then instead of rejecting it."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from engine.attest.result import ResultSummary
from engine.decide import (
    Decider,
    PatchedConfiguration,
    RequestFacts,
    build_input,
)
from engine.decide.bundle import load_directory
from engine.decide.evaluators.regopy_engine import EmbeddedEvaluator
from engine.decide.input_document import VmShape
from engine.model import ImageRef
from engine.predict import estimator_for
from engine.pvdb import AvailabilityBasis, Component, Pvdb
from tests.conftest import ROOT
from tests.pvdb.records import cve5_record, kernel_affected, write_json
from tests.tools import HANG_GUARD

pytestmark = [pytest.mark.shared_data, pytest.mark.slow]

AS_OF = dt.datetime(2024, 12, 16, 9, 0, tzinfo=dt.UTC)
HIGH = "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H"
KERNEL = Component(kind="kernel", vendor="linux", product="linux_kernel", version="6.6.60")


def test_delay_until_the_predicted_backport(feeds_dir: Path, tmp_path: Path) -> None:
    # A high-severity kernel bug fixed on 6.12 (6.12.5, released 2024-12-14) with no 6.6
    # backport yet; relevant to the default policy (CVSS >= 7).
    write_json(tmp_path / "feed" / "CVE-2099-0001.json",
               # published before the decision (a CVE-2099 record with no date of its
               # own would be taken as not public before 2099)
               cve5_record("CVE-2099-0001", updated="2024-12-15T00:00:00.000Z",
                           published="2024-12-15T00:00:00.000Z",
                           affected=kernel_affected("6.1", ["6.12.5"], mainline="6.13"),
                           metrics=[{"cvssV3_1": {"vectorString": HIGH}}]))
    with Pvdb.open(tmp_path / "pvdb.duckdb") as db:
        db.ingest([str(feeds_dir / "cve5_linux_cna"),
                   str(feeds_dir / "releases" / "endoflife_release_data"),
                   str(tmp_path / "feed")])
        report = db.affecting([KERNEL], as_of=AS_OF, estimator=estimator_for(db, AS_OF))
        plain = {f.vuln_id: f for f in db.affecting([KERNEL], as_of=AS_OF).findings}
    # without an estimator the PVDB says only what was released: the other line's fix
    unestimated = plain["CVE-2099-0001"].fix.availability
    assert (unestimated.basis, unestimated.source) == (AvailabilityBasis.VENDOR,
                                                       "release 6.12.5")
    report = report.model_copy(update={
        "findings": [f for f in report.findings if f.vuln_id == "CVE-2099-0001"]})
    (finding,) = report.findings
    availability = finding.fix.availability
    assert availability.basis is AvailabilityBasis.ESTIMATED
    assert availability.date is not None
    assert AS_OF.date() < availability.date <= AS_OF.date() + dt.timedelta(days=30)
    assert availability.interval is not None
    assert availability.window_days == 30
    assert availability.p_within_window is not None and 0 < availability.p_within_window <= 1

    document = build_input(
        RequestFacts(tenant="acme", vm=VmShape(name="web-1", vcpus=2, memory_mib=4096)),
        "hv-01",
        ResultSummary(status="affirming", issued_at=AS_OF - dt.timedelta(minutes=1),
                      verifier_id="vigil", image=ImageRef(name="hv-base", version="2024.11.0"),
                      trust_vector={}, failures=[], components=[KERNEL]),
        report,
        PatchedConfiguration(state="none", image=None, attested=False,
                             attestation_status=None),
        AS_OF,
    )
    carried = document.vulnerabilities[0].fix.availability
    assert (carried.basis, carried.window_days) == ("estimated", 30)
    assert carried.p_within_window == round(availability.p_within_window, 2)
    decider = Decider(EmbeddedEvaluator(load_directory(ROOT / "engine" / "policies", ["vigil"]),
                                        timeout=HANG_GUARD))
    verdict = decider.decide(document)
    assert verdict.verdict == "delay"
    assert [r.rule for r in verdict.reasons] == ["fix_expected_within_window"]
    recheck = {o.type: o for o in verdict.obligations}["recheck_at"]
    assert recheck.at is not None
    assert recheck.at.date() == availability.date
