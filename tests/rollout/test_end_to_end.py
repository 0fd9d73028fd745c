"""From a vulnerability to hosts proven patched, end to end: the PVDB finds a kernel
vulnerability in an image; the patch plan closes it; the new version is built and
attested on a staging software TPM, approved and made the group's target; the rollout
moves the group in the fleet simulator with no VM downtime beyond the stop-and-copy of
live migration, each host re-attested on a software TPM against the new version's
signed manifest; and the placement policy, which said ``patch`` for every host before,
says ``admit`` on each re-attested host after. The same with one host whose
re-attestation fails: it is rolled back to the version it ran, re-attested there,
reported, and the policy still says ``patch`` for it.

The policy's part (``engine.provision``, above the rollout) is composed here, by the
test, as ``vigil decide`` does."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from engine import predict
from engine.decide import Decider, RequestFacts, VmShape, embedded_evaluator, load_directory
from engine.images import (
    Catalog,
    DefaultBuilder,
    ImageRecord,
    SwtpmStaging,
    from_findings,
    make_plan,
    patched_configuration,
    prepare_image,
)
from engine.provision import decide_placement
from engine.pvdb import Pvdb
from engine.rollout import (
    CatalogTargets,
    Failures,
    MemoryJournal,
    RolloutPolicy,
    Runner,
    Simulator,
    Summary,
    SwtpmAttestor,
    plan,
    trace,
)
from engine.rollout.tracecheck import check
from tests.conftest import ROOT
from tests.pvdb.records import cve5_record, kernel_affected, write_json
from tests.rollout.conftest import IMAGE, KERNEL, Pipeline, add_version
from tests.rollout.fleets import fleet
from tests.tools import HANG_GUARD

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("need_swtpm")]

CVE = "CVE-2099-0001"
HIGH = "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H"
BASE = "2024.05.1"
GROUP = "g"
START = dt.datetime(2024, 6, 3, 22, 0, tzinfo=dt.UTC)
REQUEST = RequestFacts(tenant="acme", vm=VmShape(name="web-1", vcpus=2, memory_mib=4096))


@pytest.fixture(scope="module")
def decider() -> Iterator[Decider]:
    policy = load_directory(ROOT / "engine" / "policies", ["vigil"])
    with Decider(embedded_evaluator("regopy", policy, timeout=HANG_GUARD)) as d:
        yield d


@dataclass
class World:
    pvdb: Path
    catalog: Catalog
    pipeline: Pipeline
    base: ImageRecord
    folder: Path


@pytest.fixture
def world(tmp_path: Path, catalog: Catalog, pipeline: Pipeline) -> World:
    """A PVDB with one high kernel vulnerability, fixed on the 6.6 branch in 6.6.31,
    and the catalog's approved image running 6.6.30, the group's target."""
    feed = tmp_path / "feed"
    write_json(feed / f"{CVE}.json", cve5_record(
        CVE, affected=kernel_affected("6.1", ["6.6.31"], mainline="6.7"),
        metrics=[{"cvssV3_1": {"vectorString": HIGH}}]))
    with Pvdb.open(tmp_path / "pvdb.duckdb") as db:
        db.ingest([str(feed)])
    base = add_version(catalog, pipeline, BASE, [KERNEL])
    catalog.set_target(GROUP, IMAGE, BASE, actor="operator")
    return World(tmp_path / "pvdb.duckdb", catalog, pipeline, base, tmp_path)


def _patched_version(w: World) -> str:
    """The vulnerability -> patch plan -> a new version, attested on a staging software
    TPM -> approved -> the group's target."""
    with Pvdb.open(w.pvdb, read_only=True) as pvdb:  # as `vigil patch plan` asks
        report = pvdb.affecting(w.base.components, estimator=predict.estimator_for(pvdb))
    assert [f.vuln_id for f in report.findings] == [CVE]
    graph, facts = from_findings(w.base.components, report.findings)
    patch_plan = make_plan(graph, w.base.components, [CVE], facts)
    assert patch_plan.closed == [CVE] and patch_plan.open == []
    assert [(s.component, s.from_version, s.to_version) for s in patch_plan.steps] == [
        ("linux/linux_kernel", "6.6.30", "6.6.31")]
    prepared = prepare_image(w.catalog, w.base, patch_plan, builder=DefaultBuilder(),
                             staging=SwtpmStaging(w.folder / "staging"),
                             signing_key=w.pipeline.key, keys=[w.pipeline.public],
                             actor="vigil images prepare")
    assert prepared.attested, prepared.reason
    version = prepared.image.version
    w.catalog.set_status(IMAGE, version, "approved", actor="operator")
    w.catalog.set_target(GROUP, IMAGE, version, actor="operator")
    return version


def _verdicts(w: World, decider: Decider, attestor: SwtpmAttestor,
              hosts: list[str]) -> dict[str, str]:
    """Per host, the policy's verdict on placing a VM there: its verified attestation
    result, the PVDB's findings for the attested components, the catalog's patched
    configuration of the attested image."""
    out = {}
    with Pvdb.open(w.pvdb, read_only=True) as pvdb:
        for host in hosts:
            result = attestor.result(host)
            assert result is not None and result.image is not None, host
            patched = patched_configuration(w.catalog, result.image)
            placement = decide_placement(decider, pvdb, REQUEST, result, patched=patched)
            out[host] = placement.verdict.verdict
    return out


def _rollout(w: World, decider: Decider, version: str, tamper: list[str]
             ) -> tuple[dict[str, str], Summary, list[dict[str, Any]], SwtpmAttestor, Any]:
    """The policy's verdicts before, and the rollout: its summary, trace, attestor and
    plan."""
    snap = fleet(4, {f"h{i}": [(2, 4096), (4, 8192)] for i in range(1, 5)}, version=BASE)
    hosts = [h.id for h in snap.hosts]
    targets = CatalogTargets.from_catalog(w.catalog, [w.pipeline.public])
    attestor = SwtpmAttestor.for_group(targets, GROUP, snap.hosts,
                                       tamper=[(h, version) for h in tamper])
    # the hosts as they are: attested on their version, trusted
    assert all(o.ok for o in attestor.attest_current(snap.hosts).values())
    assert all(attestor.trusted(h) for h in hosts)
    before = _verdicts(w, decider, attestor, hosts)
    p = plan(snap, GROUP, targets, attestor, RolloutPolicy(max_unavailable="25%"),
             start_at=START)
    assert p.target == version and p.approved_versions == sorted([BASE, version])
    assert [h for wave in p.waves for h in wave] == hosts
    sim = Simulator({v.id: v for v in snap.vms}, p.policy.migration, attestor,
                    failures=Failures(attestation=tamper))
    journal = MemoryJournal()
    summary = Runner(p, snap, sim, journal).run()
    return before, summary, [trace.header("e2e", p, snap), *journal.events], attestor, p


def _no_downtime_beyond_stop_and_copy(events: list[dict[str, Any]], summary: Summary,
                                      p: Any) -> None:
    report = check(events)
    assert report.ok, report.violations  # every VM on one host at every step, ...
    limit_ms = p.policy.migration.downtime_limit_ms
    ends = [e for e in events if e["type"] == "migrate_end"]
    # every VM moved live: the canary's two again, from the hosts not updated yet
    assert summary.migrations == len(ends) == p.migrations_planned == 10
    assert all(0 <= e["downtime_ms"] <= limit_ms for e in ends)
    assert summary.failed_migrations == 0
    assert summary.total_downtime_ms == pytest.approx(sum(e["downtime_ms"] for e in ends))


def test_a_vulnerability_is_patched_proven_and_rolled_out(world: World,
                                                          decider: Decider) -> None:
    version = _patched_version(world)
    before, summary, events, attestor, p = _rollout(world, decider, version, tamper=[])
    hosts = ["h1", "h2", "h3", "h4"]
    assert summary.status == "completed" and summary.hosts["done"] == hosts
    _no_downtime_beyond_stop_and_copy(events, summary, p)
    for host in hosts:  # re-attested for real on the new version
        ok = [e for e in events if e["type"] == "attest_ok" and e["host"] == host]
        assert [e["version"] for e in ok] == [version]
        result = attestor.result(host)
        assert result is not None and result.image is not None
        assert result.image.version == version and result.status == "affirming"
        assert [c.version for c in result.components] == ["6.6.31"]
    assert attestor.runs == 8  # 4 as the hosts were, 4 on the new version
    # the policy: before, every host was attested on 6.6.30, with a ready patched
    # configuration; now each is attested on the patched version, and nothing affects it
    assert before == dict.fromkeys(hosts, "patch")
    assert _verdicts(world, decider, attestor, hosts) == dict.fromkeys(hosts, "admit")


def test_a_host_failing_re_attestation_is_rolled_back_and_reported(world: World,
                                                                   decider: Decider) -> None:
    version = _patched_version(world)
    before, summary, events, attestor, p = _rollout(world, decider, version, tamper=["h2"])
    assert summary.status == "completed"
    assert summary.hosts["done"] == ["h1", "h3", "h4"]
    assert summary.hosts["rolled_back"] == ["h2"]
    reason = summary.failure_reasons["h2"]
    assert "PCR 4 boot application /boot/vmlinuz-6.6.31" in reason
    _no_downtime_beyond_stop_and_copy(events, summary, p)
    steps = [(e["type"], e.get("version")) for e in events if e.get("host") == "h2"
             and e["type"] in ("reimage_end", "attest_ok", "attest_failed", "rollback",
                               "uncordon")]
    assert steps == [("reimage_end", version), ("attest_failed", version),
                     ("rollback", BASE), ("attest_ok", BASE), ("uncordon", BASE)]
    # h2 is back on the version it ran, attested there, and still to be patched
    assert before == dict.fromkeys(["h1", "h2", "h3", "h4"], "patch")
    result = attestor.result("h2")
    assert result is not None and result.image is not None and result.image.version == BASE
    assert _verdicts(world, decider, attestor, ["h1", "h2", "h3", "h4"]) == {
        "h1": "admit", "h2": "patch", "h3": "admit", "h4": "admit"}
