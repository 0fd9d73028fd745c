"""prepare_image's bookkeeping with stand-in builders and staging hosts (no TPM)."""

from __future__ import annotations

import pytest

from engine.images import (
    BuildError,
    Catalog,
    DefaultBuilder,
    ImageRecord,
    ImageStateError,
    StagingResult,
    from_findings,
    make_plan,
    prepare_image,
)
from engine.model import ImageRef
from tests.images.conftest import Pipeline
from tests.images.helpers import finding


class NoStaging:
    def attest(self, image: ImageRef, *_: object) -> StagingResult:
        raise BuildError("the staging software TPM did not start")


class BrokenBuilder(DefaultBuilder):
    def build(self, *_: object) -> object:  # type: ignore[override]
        raise BuildError("the kernel package is not in the mirror")


def plan_for(base: ImageRecord):  # type: ignore[no-untyped-def]
    graph, facts = from_findings(base.components, [finding("CVE-1", 2, fixed=["6.1.90"])])
    return make_plan(graph, base.components, ["CVE-1"], facts)


@pytest.mark.parametrize(("builder", "staging", "reason"), [
    (BrokenBuilder(), NoStaging(), "build failed: the kernel package is not in the mirror"),
    (DefaultBuilder(), NoStaging(), "staging attestation could not run: the staging "
     "software TPM did not start"),
])
def test_a_failure_leaves_a_failed_version_and_the_base_in_service(
        catalog: Catalog, base: ImageRecord, pipeline: Pipeline, builder: DefaultBuilder,
        staging: NoStaging, reason: str) -> None:
    catalog.set_target("rack-a", base.name, base.version, actor="op")
    prepared = prepare_image(catalog, base, plan_for(base), builder=builder,
                             staging=staging, signing_key=pipeline.key,
                             keys=[pipeline.public], actor="test")
    assert prepared.image.status == "failed" and prepared.reason == reason
    assert catalog.history(name="hv", version=prepared.image.version)[-1].reason == reason
    target = catalog.target("rack-a")
    assert target is not None and target.image.version == base.version
    assert catalog.check() == []


def test_only_an_approved_base_with_a_plan_is_built(catalog: Catalog, base: ImageRecord,
                                                     pipeline: Pipeline) -> None:
    empty = make_plan(*from_findings(base.components, [])[:1], base.components, [])
    with pytest.raises(BuildError, match="no patch"):
        prepare_image(catalog, base, empty, builder=DefaultBuilder(), staging=NoStaging(),
                      signing_key=pipeline.key, keys=[pipeline.public], actor="t")
    catalog.set_status(base.name, base.version, "retired", actor="op")
    with pytest.raises(ImageStateError, match="only from an approved image"):
        prepare_image(catalog, catalog.get(base.name, base.version), plan_for(base),
                      builder=DefaultBuilder(), staging=NoStaging(),
                      signing_key=pipeline.key, keys=[pipeline.public], actor="t")
