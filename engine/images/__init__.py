"""Host images: the catalog of image versions, the patch dependency graph and its
plans, and the builder that makes a patched version and attests it before use.

Public surface::

    from engine.images import Catalog, from_findings, make_plan

    with Catalog.from_settings(settings) as catalog:
        base = catalog.get("hv-base", "2026.05.1")
        graph, facts = from_findings(base.components, report.findings, catalogue)
        plan = make_plan(graph, base.components, ["CVE-2024-1234"], facts)

* :mod:`engine.images.catalog`: image versions (status ``building`` -> ``built`` ->
  ``attested`` -> ``approved`` -> ``retired``, or ``failed``), an append-only history of
  every change, each host group's target version and rollback;
* :mod:`engine.images.graph`: patches as nodes of a ``networkx`` graph, from the PVDB's
  findings and the operator's patch catalogue file;
* :mod:`engine.images.plan`: the minimal set of patches closing a set of
  vulnerabilities, its install order, the resulting components and what stays open;
* :mod:`engine.images.builder`: the pluggable builder and its default, which derives a
  new version's components, measured boot and reference manifest from base + plan;
* :mod:`engine.images.staging`: attestation before use, on a software-TPM staging host;
* :mod:`engine.images.prepare`: plan -> build -> sign -> attest -> catalog, and the
  consumption of the predictor's preparation queue;
* :mod:`engine.images.patched`: the policy input's ``patched_configuration`` of a host
  running an image version (none / preparing / ready and attested);
* :mod:`engine.images.versions`: how component versions are ordered and split in lines.

This module is the part's face: other parts use the names in ``__all__``.
"""

from engine.images.builder import Builder, BuiltImage, DefaultBuilder, boot_for, manifest_for
from engine.images.catalog import (
    STATUSES,
    TRANSITIONS,
    AppliedPatch,
    Catalog,
    HistoryEntry,
    ImageRecord,
    Status,
    Target,
)
from engine.images.errors import (
    BuildError,
    CatalogError,
    ImageError,
    ImageNotFoundError,
    ImageStateError,
    MissingRequirementError,
    PatchCatalogueError,
    PatchCycleError,
    PlanError,
)
from engine.images.graph import (
    CATALOGUE_SCHEMA,
    CatalogueEntry,
    ComponentFacts,
    Patch,
    PatchCatalogue,
    PatchGraph,
    Requirement,
    VulnFacts,
    component_key,
    from_findings,
    load_catalogue,
    parse_catalogue,
)
from engine.images.patched import patched_configuration
from engine.images.plan import (
    OpenVulnerability,
    Plan,
    PlanStep,
    make_plan,
    resulting_components,
)
from engine.images.prepare import (
    Prepared,
    QueueOutcome,
    consume_queue,
    next_version,
    prepare_image,
)
from engine.images.staging import StagingHost, StagingResult, SwtpmStaging, attest_on_swtpm
from engine.images.versions import branch, version_key

__all__ = [
    "CATALOGUE_SCHEMA",
    "STATUSES",
    "TRANSITIONS",
    "AppliedPatch",
    "BuildError",
    "Builder",
    "BuiltImage",
    "Catalog",
    "CatalogError",
    "CatalogueEntry",
    "ComponentFacts",
    "DefaultBuilder",
    "HistoryEntry",
    "ImageError",
    "ImageNotFoundError",
    "ImageRecord",
    "ImageStateError",
    "MissingRequirementError",
    "OpenVulnerability",
    "Patch",
    "PatchCatalogue",
    "PatchCatalogueError",
    "PatchCycleError",
    "PatchGraph",
    "Plan",
    "PlanError",
    "PlanStep",
    "Prepared",
    "QueueOutcome",
    "Requirement",
    "StagingHost",
    "StagingResult",
    "Status",
    "SwtpmStaging",
    "Target",
    "VulnFacts",
    "attest_on_swtpm",
    "boot_for",
    "branch",
    "component_key",
    "consume_queue",
    "from_findings",
    "load_catalogue",
    "make_plan",
    "manifest_for",
    "next_version",
    "parse_catalogue",
    "patched_configuration",
    "prepare_image",
    "resulting_components",
    "version_key",
]
