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
* :mod:`engine.images.versions`: how component versions are ordered and split in lines.

This module is the part's face: other parts use the names in ``__all__``.
"""

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
from engine.images.plan import (
    OpenVulnerability,
    Plan,
    PlanStep,
    make_plan,
    resulting_components,
)
from engine.images.versions import branch, version_key

__all__ = [
    "CATALOGUE_SCHEMA",
    "STATUSES",
    "TRANSITIONS",
    "AppliedPatch",
    "BuildError",
    "Catalog",
    "CatalogError",
    "CatalogueEntry",
    "ComponentFacts",
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
    "Requirement",
    "Status",
    "Target",
    "VulnFacts",
    "branch",
    "component_key",
    "from_findings",
    "load_catalogue",
    "make_plan",
    "parse_catalogue",
    "resulting_components",
    "version_key",
]
