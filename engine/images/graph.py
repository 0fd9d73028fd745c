"""The patch dependency graph: patches as nodes of a ``networkx`` directed graph.

A :class:`Patch` takes one component (named by :func:`component_key`, e.g.
``linux/linux_kernel``) to one version. It fixes vulnerabilities; it may *supersede*
earlier patches of the same component (a cumulative update: a later kernel stable
release supersedes the earlier ones on its line, and fixes all they fix); it may
*require* versions of other components (a microcode update needing a minimum firmware,
a hypervisor update needing a newer kernel); it may *conflict* with other patches; and
it needs a reboot or is live-patchable.

Facts come from two places:

* **the PVDB** (:func:`from_findings`): for each component of an image, every fixed
  version the PVDB's findings name on the component's line (its branch, see
  :mod:`engine.images.versions`) above the image's version is a patch; it fixes each
  finding with a fixed version on that line at or below it; each supersedes the one
  before it on the line; a vendor-dated closing version gives its release date;
* **the operator's patch catalogue** (:func:`load_catalogue`, YAML or JSON), for what
  feeds do not say: requirements, conflicts, reboot or live patch, the line depth of a
  component, and patches of its own (live patches, a move to another line). An entry for
  the same component and version as a PVDB patch adds to it.

The graph holds ``supersedes`` edges (newer -> older) and ``conflicts`` edges (both
ways). A supersedence cycle, a supersedence across components, or a reference to a patch
that does not exist is refused with the patches named (:class:`PatchCatalogueError`).
Requirements become install-order edges only against an image (:mod:`engine.images.plan`).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import networkx as nx
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from engine.images.errors import PatchCatalogueError
from engine.images.versions import branch, version_key
from engine.model import Component

__all__ = [
    "CATALOGUE_SCHEMA",
    "CatalogueEntry",
    "ComponentFacts",
    "Patch",
    "PatchCatalogue",
    "PatchGraph",
    "Requirement",
    "VulnFacts",
    "component_key",
    "from_findings",
    "load_catalogue",
]

CATALOGUE_SCHEMA = "vigil.patch-catalogue/1"
KIND_ORDER = ("firmware", "bmc", "microcode", "hypervisor", "kernel")
"""Install order among patches no requirement orders: the platform first."""


def component_key(component: Component) -> str:
    """The name a patch uses for ``component``: ``vendor/product``, else the purl's
    ``type/namespace/name``, else the CPE's ``vendor/product``; lower case."""
    if component.vendor and component.product:
        return f"{component.vendor}/{component.product}".lower()
    if component.purl:
        head = component.purl.split("?", 1)[0].split("#", 1)[0]
        head = head.split("@", 1)[0]
        return head.removeprefix("pkg:").lower()
    assert component.cpe is not None
    parts = component.cpe.split(":")
    return f"{parts[3]}/{parts[4]}".lower() if len(parts) > 4 else component.cpe.lower()


def default_reboot(kind: str) -> bool:
    """Whether a patch of a component of this kind needs a reboot when nothing says."""
    return kind not in ("os-package", "package", "library")


def default_line_depth(kind: str) -> int:
    """How many leading numbers of a version name its line: 2 for a kernel (``6.1``),
    0 (one line) for everything else unless the catalogue says."""
    return 2 if kind == "kernel" else 0


class Requirement(BaseModel):
    """A version constraint on another component: ``min`` inclusive, ``below`` exclusive."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    component: str
    min: str | None = None
    below: str | None = None

    @field_validator("component")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.strip().lower()

    def satisfied_by(self, version: str | None) -> bool:
        if version is None:
            return False
        key = version_key(version)
        if self.min is not None and key < version_key(self.min):
            return False
        return not (self.below is not None and key >= version_key(self.below))

    def __str__(self) -> str:
        bounds = [f">= {self.min}" if self.min else "", f"< {self.below}" if self.below else ""]
        text = ", ".join(b for b in bounds if b)
        return f"{self.component} {text}".strip() if text else f"{self.component} (any)"


class Patch(BaseModel):
    """One node: a patch taking ``component`` to ``version``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    component: str
    version: str
    kind: str = "package"
    fixes: frozenset[str] = frozenset()
    supersedes: tuple[str, ...] = ()
    requires: tuple[Requirement, ...] = ()
    conflicts: tuple[str, ...] = ()
    reboot: bool = True
    released: dt.date | None = None
    source: Literal["pvdb", "catalogue", "pvdb+catalogue"] = "catalogue"
    purl: str | None = None
    cpe: str | None = None


class CatalogueEntry(BaseModel):
    """One patch in the operator's catalogue file."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    component: str
    version: str
    id: str | None = None
    kind: str | None = None
    fixes: list[str] = []
    supersedes: list[str] = []
    requires: list[Requirement] = []
    conflicts: list[str] = []
    reboot: bool | None = None
    live_patch: bool = Field(default=False, description="Applied without a reboot")
    released: dt.date | None = None
    purl: str | None = None
    cpe: str | None = None

    @field_validator("component")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.strip().lower()

    @property
    def patch_id(self) -> str:
        return self.id or f"{self.component}@{self.version}"


class ComponentFacts(BaseModel):
    """What the catalogue says of every patch of one component."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    line_depth: int | None = Field(default=None, ge=0, le=4)
    reboot: bool | None = None
    requires: list[Requirement] = []
    conflicts: list[str] = []


class PatchCatalogue(BaseModel):
    """The operator's patch catalogue (``schema: vigil.patch-catalogue/1``)."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    schema_: Literal["vigil.patch-catalogue/1"] = Field(
        default="vigil.patch-catalogue/1", alias="schema")
    components: dict[str, ComponentFacts] = {}
    patches: list[CatalogueEntry] = []

    def facts(self, key: str) -> ComponentFacts:
        return self.components.get(key) or self.components.get(key.lower()) or \
            ComponentFacts()


def load_catalogue(path: Path) -> PatchCatalogue:
    """Read a catalogue file: YAML (``.yaml``/``.yml``) or JSON."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PatchCatalogueError(f"patch catalogue {path} does not exist") from None
    except OSError as exc:
        raise PatchCatalogueError(f"cannot read patch catalogue {path}: "
                                  f"{exc.strerror or exc}") from None
    try:
        data: Any = yaml.safe_load(text) if path.suffix.lower() in (".yaml", ".yml") \
            else json.loads(text)
    except (yaml.YAMLError, ValueError) as exc:
        raise PatchCatalogueError(f"patch catalogue {path} does not parse: {exc}") from None
    return parse_catalogue(data, where=str(path))


def parse_catalogue(data: Any, *, where: str = "patch catalogue") -> PatchCatalogue:
    try:
        catalogue = PatchCatalogue.model_validate(data or {})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '$'}: {err['msg']}"
                             for err in exc.errors()[:5])
        raise PatchCatalogueError(f"{where} is not a valid patch catalogue: {problems}"
                                  ) from None
    ids = [e.patch_id for e in catalogue.patches]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise PatchCatalogueError(f"{where} lists patch(es) {', '.join(duplicates)} twice")
    return catalogue


class VulnFacts(BaseModel):
    """What the PVDB says of one vulnerability on one component of the image."""

    model_config = ConfigDict(frozen=True)

    vuln_id: str
    aliases: list[str] = []
    component: str
    status: str
    """``fixed``, ``no_fix`` or ``unknown`` (the PVDB's fix status)."""
    closing_version: str | None = None
    fixed_versions: list[str] = []
    expected: dt.date | None = None
    basis: str | None = None
    """``vendor``, ``estimated`` or ``none``: where ``expected`` comes from."""
    source: str | None = None


class PatchGraph:
    """The patches and their relations, validated."""

    def __init__(self, patches: Iterable[Patch]) -> None:
        self.patches: dict[str, Patch] = {}
        for patch in patches:
            if patch.id in self.patches:
                raise PatchCatalogueError(f"patch {patch.id} is defined twice")
            self.patches[patch.id] = patch
        self.graph: nx.DiGraph[str] = nx.DiGraph()
        for patch in self.patches.values():
            self.graph.add_node(patch.id, patch=patch)
        for patch in self.patches.values():
            for old in patch.supersedes:
                self._known(patch, old, "supersedes")
                if self.patches[old].component != patch.component:
                    raise PatchCatalogueError(
                        f"patch {patch.id} ({patch.component}) supersedes {old} "
                        f"({self.patches[old].component}): a patch supersedes only patches "
                        "of its own component")
                self.graph.add_edge(patch.id, old, relation="supersedes")
            for other in patch.conflicts:
                self._known(patch, other, "conflicts with")
        self.conflicts: dict[str, frozenset[str]] = {pid: frozenset() for pid in self.patches}
        pairs: dict[str, set[str]] = {pid: set() for pid in self.patches}
        for patch in self.patches.values():
            for other in patch.conflicts:
                pairs[patch.id].add(other)
                pairs[other].add(patch.id)
        self.conflicts = {pid: frozenset(others) for pid, others in pairs.items()}
        superseding = nx.DiGraph(((u, v) for u, v, d in self.graph.edges(data=True)
                                  if d["relation"] == "supersedes"))
        superseding.add_nodes_from(self.patches)
        try:
            cycle = nx.find_cycle(superseding)
        except nx.NetworkXNoCycle:
            cycle = None
        if cycle:
            names = [u for u, _v in cycle]
            raise PatchCatalogueError(
                f"supersedence cycle: {' -> '.join([*names, names[0]])}",
                tip="a patch can only supersede older patches of its component")
        self.fixes: dict[str, frozenset[str]] = {}
        for pid in self.patches:
            fixed = set(self.patches[pid].fixes)
            for older in nx.descendants(superseding, pid):
                fixed |= self.patches[older].fixes
            self.fixes[pid] = frozenset(fixed)

    def _known(self, patch: Patch, other: str, relation: str) -> None:
        if other not in self.patches:
            raise PatchCatalogueError(f"patch {patch.id} {relation} {other}, which is not a "
                                      "known patch",
                                      tip="name patches by their id (COMPONENT@VERSION)")

    def of_component(self, key: str) -> list[Patch]:
        """The component's patches, oldest version first."""
        return sorted((p for p in self.patches.values() if p.component == key),
                      key=lambda p: (version_key(p.version), p.id))

    def fixing(self, vuln_ids: Iterable[str]) -> dict[str, list[str]]:
        """Vulnerability -> the patches whose (cumulative) fixes include it."""
        wanted = set(vuln_ids)
        out: dict[str, list[str]] = {v: [] for v in wanted}
        for pid, fixed in self.fixes.items():
            for vuln in fixed & wanted:
                out[vuln].append(pid)
        return {v: sorted(p) for v, p in out.items()}

    def to_json(self) -> dict[str, Any]:
        return {"patches": [p.model_dump(mode="json") | {"fixes": sorted(self.fixes[p.id])}
                            for p in sorted(self.patches.values(), key=lambda p: p.id)]}


def from_findings(components: Sequence[Component], findings: Sequence[Any],
                  catalogue: PatchCatalogue | None = None
                  ) -> tuple[PatchGraph, list[VulnFacts]]:
    """The patch graph of an image from the PVDB's findings for its ``components``
    (:class:`engine.pvdb.Finding`, e.g. ``Pvdb.affecting(components).findings``) and
    the operator's catalogue; and the PVDB's facts per vulnerability, for what a plan
    leaves open."""
    catalogue = catalogue or PatchCatalogue()
    keys = [component_key(c) for c in components]
    kinds = {key: c.kind for key, c in zip(keys, components, strict=True)}
    for entry in catalogue.patches:
        kinds.setdefault(entry.component, entry.kind or "package")
    base = {key: c.version for key, c in zip(keys, components, strict=True)}
    facts: list[VulnFacts] = []
    fixed_on: dict[str, dict[str, list[str]]] = {key: {} for key in keys}
    """component -> vulnerability -> fixed versions."""
    for finding in findings:
        key = keys[finding.component]
        fix = finding.fix
        availability = fix.availability
        facts.append(VulnFacts(
            vuln_id=finding.vuln_id, aliases=list(finding.aliases), component=key,
            status=str(getattr(fix.status, "value", fix.status)),
            closing_version=fix.closing_version, fixed_versions=list(fix.fixed_versions),
            expected=availability.date,
            basis=str(getattr(availability.basis, "value", availability.basis)),
            source=availability.source))
        fixed_on[key].setdefault(finding.vuln_id, []).extend(fix.fixed_versions)

    def depth(key: str) -> int:
        stated = catalogue.facts(key).line_depth
        return stated if stated is not None else default_line_depth(kinds.get(key, ""))

    def computed_fixes(key: str, version: str) -> set[str]:
        """The findings of ``key`` that ``version`` fixes: a fixed version on its line
        above the image's version and at or below it."""
        if key not in fixed_on:
            return set()
        line = branch(version, depth(key))
        low = version_key(base[key])
        high = version_key(version)
        return {vuln for vuln, fixed in fixed_on[key].items()
                if any(branch(v, depth(key)) == line and low < version_key(v) <= high
                       for v in fixed)}

    released: dict[tuple[str, str], dt.date] = {}
    for finding in findings:
        a = finding.fix.availability
        if finding.fix.closing_version and a.date and \
                str(getattr(a.basis, "value", a.basis)) == "vendor":
            released.setdefault((keys[finding.component], finding.fix.closing_version), a.date)

    entries = {(e.component, e.version): e for e in catalogue.patches}
    patches: list[Patch] = []
    for key in dict.fromkeys(keys):
        line = branch(base[key], depth(key))
        candidates = sorted({v for vs in fixed_on[key].values() for v in vs
                             if branch(v, depth(key)) == line
                             and version_key(v) > version_key(base[key])}, key=version_key)
        previous: str | None = None
        for version in candidates:
            pid = f"{key}@{version}"
            found = entries.pop((key, version)) if (key, version) in entries else None
            patches.append(_patch(
                pid if found is None else found.patch_id, key, version, kinds[key],
                computed_fixes(key, version), catalogue,
                supersedes=[] if previous is None else [previous], entry=found,
                released=released.get((key, version))))
            previous = patches[-1].id
    for left in entries.values():
        key = left.component
        fixes = computed_fixes(key, left.version) if key in base else set()
        patches.append(_patch(left.patch_id, key, left.version, kinds.get(key, "package"),
                              fixes, catalogue, supersedes=[], entry=left, released=None,
                              source="catalogue"))
    return PatchGraph(patches), facts


def _patch(pid: str, key: str, version: str, kind: str, fixes: set[str],
           catalogue: PatchCatalogue, *, supersedes: list[str],
           entry: CatalogueEntry | None, released: dt.date | None,
           source: Literal["pvdb", "catalogue"] = "pvdb") -> Patch:
    facts = catalogue.facts(key)
    reboot = default_reboot(kind) if facts.reboot is None else facts.reboot
    requires = list(facts.requires)
    conflicts = list(facts.conflicts)
    purl = cpe = None
    if entry is not None:
        fixes = fixes | set(entry.fixes)
        supersedes = list(dict.fromkeys([*supersedes, *entry.supersedes]))
        requires += entry.requires
        conflicts += entry.conflicts
        if entry.live_patch:
            reboot = False
        elif entry.reboot is not None:
            reboot = entry.reboot
        released = entry.released or released
        purl, cpe = entry.purl, entry.cpe
        kind = entry.kind or kind
    return Patch(id=pid, component=key, version=version, kind=kind, fixes=frozenset(fixes),
                 supersedes=tuple(supersedes), requires=tuple(requires),
                 conflicts=tuple(c for c in dict.fromkeys(conflicts) if c != pid),
                 reboot=reboot, released=released,
                 source=source if entry is None else
                 ("pvdb+catalogue" if source == "pvdb" else "catalogue"),
                 purl=purl, cpe=cpe)


def kind_rank(kind: str) -> int:
    return KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER)


def base_versions(components: Sequence[Component]) -> Mapping[str, str]:
    return {component_key(c): c.version for c in components}
