"""Patched configurations attested before use, end to end on a software TPM."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.attest import Boot
from engine.images import (
    Catalog,
    DefaultBuilder,
    ImageRecord,
    ImageStateError,
    SwtpmStaging,
    from_findings,
    make_plan,
    prepare_image,
)
from engine.model import Component
from tests.images.conftest import Pipeline
from tests.images.helpers import finding

pytestmark = pytest.mark.usefixtures("need_swtpm")


def kernel_plan(base: ImageRecord):  # type: ignore[no-untyped-def]
    graph, facts = from_findings(base.components, [finding("CVE-2024-1", 2, fixed=["6.1.90"])])
    return make_plan(graph, base.components, ["CVE-2024-1"], facts)


class WrongKernelBuilder(DefaultBuilder):
    """A pipeline that ships another kernel than the plan says."""

    def artifact(self, components: list[Component]) -> Boot:
        return super().artifact(components).but(kernel=b"vmlinuz from the wrong branch")


@pytest.mark.slow
def test_a_patched_version_is_attested_before_use(catalog: Catalog, base: ImageRecord,
                                                  pipeline: Pipeline, tmp_path: Path) -> None:
    catalog.set_target("rack-a", base.name, base.version, actor="op")
    plan = kernel_plan(base)
    prepared = prepare_image(catalog, base, plan, builder=DefaultBuilder(),
                             staging=SwtpmStaging(tmp_path / "staging"),
                             signing_key=pipeline.key, keys=[pipeline.public], actor="test")
    assert prepared.attested, prepared.reason
    record = prepared.image
    assert record.version == "2026.05.1-p1" and record.parent_version == "2026.05.1"
    assert {c.product: c.version for c in record.components}["linux_kernel"] == "6.1.90"
    assert [p.id for p in record.patches] == ["linux/linux_kernel@6.1.90"]
    assert record.manifest is not None
    steps = [(e.action, e.after) for e in catalog.history(name="hv", version=record.version)]
    assert steps == [("create", "building"), ("build", "built"), ("status", "attested")]
    last = catalog.history(name="hv", version=record.version)[-1]
    assert last.detail and last.detail["status"] == "affirming"
    # attested is not in service: only an approved version can be targeted
    with pytest.raises(ImageStateError, match="only an approved"):
        catalog.set_target("rack-a", "hv", record.version, actor="op")
    catalog.set_status("hv", record.version, "approved", actor="op")
    catalog.set_target("rack-a", "hv", record.version, actor="op")
    assert catalog.check() == []


@pytest.mark.slow
def test_a_failed_attestation_names_the_measurement_and_keeps_the_base(
        catalog: Catalog, base: ImageRecord, pipeline: Pipeline, tmp_path: Path) -> None:
    catalog.set_target("rack-a", base.name, base.version, actor="op")
    prepared = prepare_image(catalog, base, kernel_plan(base), builder=WrongKernelBuilder(),
                             staging=SwtpmStaging(tmp_path / "staging"),
                             signing_key=pipeline.key, keys=[pipeline.public], actor="test")
    assert not prepared.attested and prepared.image.status == "failed"
    assert prepared.staging is not None and prepared.staging.status == "contraindicated"
    differences = " | ".join(prepared.staging.differences)
    assert len(prepared.staging.differences) == 2  # the kernel, measured twice
    assert "PCR 4 boot application /boot/vmlinuz-6.1.90" in differences
    assert "PCR 9 file /boot/vmlinuz-6.1.90" in differences and "digest expected" in differences
    assert "failed attestation" in prepared.reason
    history = catalog.history(name="hv", version=prepared.image.version)
    assert history[-1].after == "failed" and history[-1].reason == prepared.reason
    # the previous version stays in service
    target = catalog.target("rack-a")
    assert target is not None and target.image.version == base.version
    assert catalog.get(base.name, base.version).status == "approved"
    with pytest.raises(ImageStateError):
        catalog.set_status("hv", prepared.image.version, "approved", actor="op")


@pytest.mark.slow
def test_the_preparation_queue_is_consumed(catalog: Catalog, base: ImageRecord,
                                           pipeline: Pipeline, tmp_path: Path) -> None:
    import datetime as dt

    from engine.images import consume_queue
    from engine.predict import Queue
    from engine.pvdb import AvailabilityBasis, FixStatus

    now = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    findings = [finding("CVE-2024-1", 2, fixed=["6.1.90"]),
                finding("CVE-2024-2", 2, status=FixStatus.NO_FIX, date=dt.date(2026, 7, 1),
                        basis=AvailabilityBasis.ESTIMATED)]
    with Queue(tmp_path / "predict.duckdb") as queue:
        ids = {}
        for vuln in ("CVE-2024-1", "CVE-2024-2", "CVE-2024-3"):
            ids[vuln], _ = queue.upsert(
                image="hv@2026.05.1", vuln_id=vuln, component="linux/linux_kernel@6.1.76",
                components=[], expected_patch="6.1.90", expected_date=dt.date(2026, 6, 20),
                interval=None, confidence=None, basis="estimated", source=None,
                needed_by=None, now=now)
        queue.upsert(image="other@1", vuln_id="CVE-2024-1", component="k", components=[],
                     expected_patch="x", expected_date=None, interval=None, confidence=None,
                     basis="none", source=None, needed_by=None, now=now)
        outcomes = consume_queue(queue, catalog, lambda _components: findings,
                                 builder=DefaultBuilder(),
                                 staging=SwtpmStaging(tmp_path / "staging"),
                                 signing_key=pipeline.key, keys=[pipeline.public],
                                 actor="queue", now=lambda: now)
        by = {(o.image, o.vuln_id): o for o in outcomes}
        assert by[("hv@2026.05.1", "CVE-2024-1")].outcome == "done"
        assert by[("hv@2026.05.1", "CVE-2024-1")].version == "2026.05.1-p1"
        assert by[("hv@2026.05.1", "CVE-2024-2")].outcome == "waiting"
        assert "expected 2026-07-01 (estimated)" in by[("hv@2026.05.1", "CVE-2024-2")].reason
        assert by[("hv@2026.05.1", "CVE-2024-3")].outcome == "withdrawn"
        assert by[("other@1", "CVE-2024-1")].outcome == "failed"
        assert "not in the image catalog" in by[("other@1", "CVE-2024-1")].reason
        stored = {r.vuln_id: r for r in queue.requests() if r.image == "hv@2026.05.1"}
        assert stored["CVE-2024-1"].status == "done"
        assert stored["CVE-2024-1"].reason == "built and attested hv@2026.05.1-p1"
        assert stored["CVE-2024-2"].status == "pending"
        # consumed once: a second pass builds nothing new
        again = consume_queue(queue, catalog, lambda _components: findings,
                              builder=DefaultBuilder(), staging=SwtpmStaging(),
                              signing_key=pipeline.key, keys=[pipeline.public],
                              actor="queue", now=lambda: now)
        assert [o.outcome for o in again] == ["waiting"]
    assert [r.version for r in catalog.images()] == ["2026.05.1", "2026.05.1-p1"]
