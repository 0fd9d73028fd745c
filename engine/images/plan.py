"""Patch plans: the fewest patches that close a set of vulnerabilities on an image.

:func:`make_plan` chooses, for each component of the image, at most one patch of the
graph (a component ends at one version; supersedence makes patches cumulative), such
that every chosen patch's requirements hold on the resulting versions, no two chosen
patches conflict, and an install order exists (a patch whose requirement the image does
not already meet comes after the patch that meets it). Among those selections it takes,
in this order:

1. the most requested vulnerabilities closed;
2. the fewest reboots (patches that are not live-patchable);
3. the fewest patches;
4. the smallest version jump (per patch, the number of known versions of its component
   it moves past, itself included);
5. then the patch ids in sorted order, so that the answer is deterministic.

The search is exact (a branch and bound over the components concerned, with patches that
another one dominates set aside first); the tests hold it to a brute-force search.

What stays open says why: ``no_fix`` (no fix yet; the PVDB's expected date and its basis
when it has one), ``other_line`` (fixed only on another line: unfixable on this one),
``conflict`` (every patch that closes it conflicts with the plan: the pairs are named),
``not_affecting`` (the PVDB does not list it for the image) or ``no_patch`` (the PVDB
says it is fixed but no patch of the graph fixes it).

A requested vulnerability that only a patch with a missing requirement (no version of
the image or of the graph satisfies it) would close raises
:class:`MissingRequirementError`; one that only a cycle of requirements would close
raises :class:`PatchCycleError`. Both name the patches: never a silent partial plan.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import networkx as nx
from pydantic import BaseModel, ConfigDict

from engine.images.errors import MissingRequirementError, PatchCycleError, PlanError
from engine.images.graph import (
    Patch,
    PatchGraph,
    Requirement,
    VulnFacts,
    component_key,
    kind_rank,
)
from engine.images.versions import version_key
from engine.model import Component

__all__ = ["OpenVulnerability", "Plan", "PlanStep", "make_plan", "resulting_components"]

MAX_NODES = 2_000_000
"""Search nodes after which a plan is refused as too large to be proven minimal."""


class PlanStep(BaseModel):
    """One patch of a plan, in install order."""

    model_config = ConfigDict(frozen=True)

    order: int
    patch: str
    component: str
    from_version: str | None
    to_version: str
    reboot: bool
    closes: list[str]
    """The requested vulnerabilities this patch closes."""
    required_by: list[str] = []
    """Patches of the plan that need this one installed first."""


class OpenVulnerability(BaseModel):
    """A requested vulnerability the plan does not close, and why."""

    model_config = ConfigDict(frozen=True)

    vuln_id: str
    component: str | None
    reason: Literal["no_fix", "other_line", "conflict", "not_affecting", "no_patch"]
    detail: str
    expected: dt.date | None = None
    basis: str | None = None
    conflicts: list[tuple[str, str]] = []
    """For ``conflict``: (patch that would close it, patch of the plan it conflicts with)."""


class Plan(BaseModel):
    """A minimal patch plan for one image."""

    model_config = ConfigDict(frozen=True)

    requested: list[str]
    steps: list[PlanStep]
    components: list[Component]
    """The image's components after the plan."""
    closed: list[str]
    open: list[OpenVulnerability]
    reboots: int
    version_jump: int

    @property
    def patches(self) -> list[str]:
        return [s.patch for s in self.steps]


# -- the search --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Rules:
    missing: bool = True
    """Refuse a requirement nothing can satisfy (False: treat it as met)."""
    cycles: bool = True
    conflicts: bool = True


@dataclass(slots=True)
class _Best:
    score: tuple[int, int, int, int, tuple[str, ...]] | None = None
    choice: dict[str, str] | None = None


class _Problem:
    """The components and patches one plan is about."""

    def __init__(self, graph: PatchGraph, base: Mapping[str, str],
                 requested: frozenset[str]) -> None:
        self.graph = graph
        self.base = dict(base)
        self.requested = requested
        # patches concerned: those that close a requested vulnerability, and every
        # patch of a component one of those (transitively) requires
        fixing = {pid for pid, fixed in graph.fixes.items() if fixed & requested}
        components = {graph.patches[pid].component for pid in fixing}
        queue = list(components)
        while queue:
            key = queue.pop()
            for patch in graph.of_component(key):
                for req in patch.requires:
                    if req.component not in components:
                        components.add(req.component)
                        queue.append(req.component)
        self.components = sorted(components)
        self.options: dict[str, list[Patch]] = {}
        for key in self.components:
            low = self.base.get(key)
            self.options[key] = [p for p in graph.of_component(key)
                                 if low is None or version_key(p.version) > version_key(low)]
        self.closes = {p.id: graph.fixes[p.id] & requested
                       for opts in self.options.values() for p in opts}
        self.jump: dict[str, int] = {}
        for opts in self.options.values():
            for step, patch in enumerate(opts, start=1):
                self.jump[patch.id] = step
        self.unsatisfiable: dict[str, list[Requirement]] = {}
        for opts in self.options.values():
            for patch in opts:
                bad = [r for r in patch.requires if not self._satisfiable(r)]
                if bad:
                    self.unsatisfiable[patch.id] = bad

    def _satisfiable(self, req: Requirement) -> bool:
        if req.satisfied_by(self.base.get(req.component)):
            return True
        return any(req.satisfied_by(p.version) for p in self.options.get(req.component, ()))

    # -- feasibility of one complete choice ------------------------------------------------

    def order_graph(self, chosen: Mapping[str, Patch]) -> nx.DiGraph[str]:
        """provider -> dependent, for every requirement the image does not meet."""
        order: nx.DiGraph[str] = nx.DiGraph()
        order.add_nodes_from(p.id for p in chosen.values())
        for patch in chosen.values():
            for req in patch.requires:
                provider = chosen.get(req.component)
                if provider is not None and provider.id != patch.id and \
                        not req.satisfied_by(self.base.get(req.component)):
                    order.add_edge(provider.id, patch.id)
        return order

    def violation(self, chosen: Mapping[str, Patch], rules: _Rules) -> str | None:
        """Why the choice is infeasible under ``rules``, or None."""
        for patch in chosen.values():
            for req in patch.requires:
                if not rules.missing and patch.id in self.unsatisfiable and \
                        req in self.unsatisfiable[patch.id]:
                    continue
                have = chosen[req.component].version if req.component in chosen else \
                    self.base.get(req.component)
                if not req.satisfied_by(have):
                    return f"{patch.id} requires {req}"
        if rules.conflicts:
            ids = {p.id for p in chosen.values()}
            for patch in chosen.values():
                clash = self.graph.conflicts[patch.id] & ids
                if clash:
                    return f"{patch.id} conflicts with {min(clash)}"
        if rules.cycles and not nx.is_directed_acyclic_graph(self.order_graph(chosen)):
            return "cycle"
        return None

    # -- branch and bound -----------------------------------------------------------------

    def dominated(self) -> set[str]:
        """Patches another patch of the same component beats in every respect, whatever
        else is chosen: it closes as much, reboots no more, jumps no further, satisfies
        every requirement on the component the other does, and has no requirements or
        conflicts of its own."""
        requirements = [r for opts in self.options.values() for p in opts for r in p.requires]
        out: set[str] = set()
        for key, opts in self.options.items():
            on_key = [r for r in requirements if r.component == key]
            meets = {p.id: {i for i, r in enumerate(on_key) if r.satisfied_by(p.version)}
                     for p in opts}
            for p in opts:
                for q in opts:
                    if q.id == p.id or q.requires or self.graph.conflicts[q.id]:
                        continue
                    better = (self.closes[q.id] >= self.closes[p.id]
                              and q.reboot <= p.reboot and self.jump[q.id] <= self.jump[p.id]
                              and meets[q.id] >= meets[p.id])
                    strictly = (self.closes[q.id] > self.closes[p.id] or q.reboot < p.reboot
                                or self.jump[q.id] < self.jump[p.id]
                                or meets[q.id] > meets[p.id] or q.id < p.id)
                    if better and strictly and q.id not in out:
                        out.add(p.id)
                        break
        return out

    def solve(self, rules: _Rules) -> dict[str, str]:
        """The best choice under ``rules``: component -> patch id."""
        pruned = self.dominated()
        options = {key: [p for p in opts if p.id not in pruned]
                   for key, opts in self.options.items()}
        # most promising first: patches that close the most, then cheapest
        for key in options:
            options[key].sort(key=lambda p: (-len(self.closes[p.id]), p.reboot,
                                              self.jump[p.id], p.id))
        order = sorted(self.components, key=lambda k: -max(
            (len(self.closes[p.id]) for p in options[k]), default=0))
        reach: list[frozenset[str]] = []
        for i in range(len(order)):
            acc: set[str] = set()
            for key in order[i:]:
                for p in options[key]:
                    acc |= self.closes[p.id]
            reach.append(frozenset(acc))
        reach.append(frozenset())
        best = _Best()
        chosen: dict[str, Patch] = {}
        nodes = 0

        def visit(depth: int, closed: frozenset[str], reboots: int, count: int,
                  jump: int) -> None:
            nonlocal nodes
            nodes += 1
            if nodes > MAX_NODES:
                raise PlanError(f"the plan concerns {len(self.components)} components and "
                                f"{sum(len(o) for o in options.values())} patches: too many "
                                "to prove a plan minimal",
                                tip="plan fewer vulnerabilities at a time (--cve)")
            if best.score is not None:
                bound = (-len(closed | reach[depth]), reboots, count, jump)
                if bound > best.score[:4]:
                    return
            if depth == len(order):
                if self.violation(chosen, rules) is not None:
                    return
                score = (-len(closed), reboots, count, jump,
                         tuple(sorted(p.id for p in chosen.values())))
                if best.score is None or score < best.score:
                    best.score = score
                    best.choice = {k: p.id for k, p in chosen.items()}
                return
            key = order[depth]
            for patch in options[key]:
                chosen[key] = patch
                if self._partial_ok(chosen, rules):
                    visit(depth + 1, closed | self.closes[patch.id], reboots + patch.reboot,
                          count + 1, jump + self.jump[patch.id])
                del chosen[key]
            visit(depth + 1, closed, reboots, count, jump)

        visit(0, frozenset(), 0, 0, 0)
        assert best.choice is not None  # choosing nothing is always feasible
        return best.choice

    def _partial_ok(self, chosen: Mapping[str, Patch], rules: _Rules) -> bool:
        """Cheap early rejection: conflicts among the patches chosen so far."""
        if not rules.conflicts:
            return True
        ids = {p.id for p in chosen.values()}
        return all(not (self.graph.conflicts[p.id] & ids) for p in chosen.values())


# -- the plan -------------------------------------------------------------------------------


def make_plan(graph: PatchGraph, components: Sequence[Component],
              vulnerabilities: Iterable[str], facts: Sequence[VulnFacts] = ()) -> Plan:
    """The minimal plan closing ``vulnerabilities`` (ids or aliases) on an image with
    ``components``; ``facts`` (from :func:`engine.images.graph.from_findings`) explain
    what stays open."""
    alias = {a: f.vuln_id for f in facts for a in f.aliases}
    requested = frozenset(alias.get(v, v) for v in vulnerabilities)
    base = {component_key(c): c.version for c in components}
    problem = _Problem(graph, base, requested)
    strict = problem.solve(_Rules())
    closed = _closed(problem, strict)
    ideal = problem.solve(_Rules(missing=False, cycles=False, conflicts=False))
    conflict_pairs: dict[str, list[tuple[str, str]]] = {}
    if len(_closed(problem, ideal)) > len(closed):
        _explain(problem, strict, closed, conflict_pairs)
    chosen = {k: graph.patches[p] for k, p in strict.items()}
    order = problem.order_graph(chosen)
    install = list(nx.lexicographical_topological_sort(
        order, key=lambda pid: f"{kind_rank(graph.patches[pid].kind):02d} {pid}"))
    steps = [PlanStep(order=i, patch=pid, component=graph.patches[pid].component,
                      from_version=base.get(graph.patches[pid].component),
                      to_version=graph.patches[pid].version, reboot=graph.patches[pid].reboot,
                      closes=sorted(problem.closes[pid]),
                      required_by=sorted(order.successors(pid)))
             for i, pid in enumerate(install, start=1)]
    open_items = [_open(vuln, graph, facts, conflict_pairs) for vuln in sorted(requested - closed)]
    return Plan(requested=sorted(requested), steps=steps,
                components=resulting_components(components, [chosen[k] for k in chosen]),
                closed=sorted(closed), open=open_items,
                reboots=sum(s.reboot for s in steps),
                version_jump=sum(problem.jump[s.patch] for s in steps))


def _closed(problem: _Problem, choice: Mapping[str, str]) -> frozenset[str]:
    out: set[str] = set()
    for pid in choice.values():
        out |= problem.closes[pid]
    return frozenset(out)


def _explain(problem: _Problem, strict: Mapping[str, str], closed: frozenset[str],
             conflict_pairs: dict[str, list[tuple[str, str]]]) -> None:
    """The ideal plan (no rule applied) closes more than the strict one: say why, or
    raise. Rules are relaxed one at a time: missing requirements, then cycles, then
    conflicts."""
    graph = problem.graph
    relaxed = problem.solve(_Rules(missing=False))
    if len(_closed(problem, relaxed)) > len(closed):
        _missing(problem, relaxed, _closed(problem, relaxed) - closed)
    cyclic = problem.solve(_Rules(missing=False, cycles=False))
    if len(_closed(problem, cyclic)) > len(_closed(problem, relaxed)):
        chosen = {k: graph.patches[p] for k, p in cyclic.items()}
        cycle = [u for u, _v in nx.find_cycle(problem.order_graph(chosen))]
        needed = ", ".join(sorted(_closed(problem, cyclic) - closed))
        raise PatchCycleError(
            f"requirement cycle: {' -> '.join([*cycle, cycle[0]])} (each must be installed "
            f"before the next; needed to close {needed})", nodes=cycle,
            tip="fix the requirements in the patch catalogue")
    ideal = problem.solve(_Rules(missing=False, cycles=False, conflicts=False))
    gained = _closed(problem, ideal) - closed
    if any(pid in problem.unsatisfiable for pid in ideal.values()):
        _missing(problem, ideal, gained)
    strict_ids = set(strict.values())
    for vuln in gained:
        pairs = []
        for pid in sorted(p for p, fixed in problem.closes.items() if vuln in fixed):
            for other in sorted(graph.conflicts[pid] & strict_ids):
                pairs.append((pid, other))
            for other in sorted(graph.conflicts[pid]):
                if other not in strict_ids and (pid, other) not in pairs:
                    # the conflict is with a patch needed alongside it
                    pairs.append((pid, other))
        conflict_pairs[vuln] = pairs


def _missing(problem: _Problem, choice: Mapping[str, str], gained: Iterable[str]) -> None:
    lacking = sorted(pid for pid in choice.values() if pid in problem.unsatisfiable)
    detail = "; ".join(
        f"{pid} requires {r}, which neither the image ({_have(problem, r.component)}) "
        "nor any patch of the graph provides"
        for pid in lacking for r in problem.unsatisfiable[pid])
    raise MissingRequirementError(
        f"missing requirement: {detail} (needed to close {', '.join(sorted(gained))})",
        nodes=lacking, tip="add a patch that provides it to the patch catalogue")


def _have(problem: _Problem, key: str) -> str:
    version = problem.base.get(key)
    return f"has {key} {version}" if version else f"has no {key}"


def _open(vuln: str, graph: PatchGraph, facts: Sequence[VulnFacts],
          conflict_pairs: Mapping[str, list[tuple[str, str]]]) -> OpenVulnerability:
    mine = [f for f in facts if f.vuln_id == vuln]
    fact = mine[0] if mine else None
    component = fact.component if fact else None
    if vuln in conflict_pairs:
        pairs = conflict_pairs[vuln]
        text = "; ".join(f"{a} conflicts with {b}" for a, b in pairs) or "conflicts"
        return OpenVulnerability(vuln_id=vuln, component=component, reason="conflict",
                                 detail=f"excluded by a conflict: {text}", conflicts=pairs)
    if fact is None:
        return OpenVulnerability(vuln_id=vuln, component=None, reason="not_affecting",
                                 detail="the PVDB does not list it as affecting this image")
    when = f"expected {fact.expected} ({fact.basis})" if fact.expected else \
        "no date predicted"
    if fact.status == "no_fix":
        return OpenVulnerability(vuln_id=vuln, component=component, reason="no_fix",
                                 detail=f"no fix yet for {component}; {when}",
                                 expected=fact.expected, basis=fact.basis)
    if fact.status == "fixed" and fact.closing_version and \
            not graph.fixing([vuln]).get(vuln):
        elsewhere = ", ".join(fact.fixed_versions) or fact.closing_version
        return OpenVulnerability(
            vuln_id=vuln, component=component, reason="other_line",
            detail=f"unfixable on this line of {component}: fixed only in {elsewhere} "
                   f"(another line); a fix on this line is {when}",
            expected=fact.expected if fact.basis == "estimated" else None,
            basis=fact.basis if fact.basis == "estimated" else None)
    return OpenVulnerability(vuln_id=vuln, component=component, reason="no_patch",
                             detail=f"the PVDB's fix status is {fact.status} but no patch of "
                                    "the graph closes it on this image")


def resulting_components(components: Sequence[Component], patches: Sequence[Patch]
                         ) -> list[Component]:
    """``components`` with each patched one at its new version (purl and CPE versions
    follow unless the patch names its own); a patch of a component the image lacks adds
    it."""
    by_key = {p.component: p for p in patches}
    out: list[Component] = []
    for component in components:
        patch = by_key.pop(component_key(component), None)
        if patch is None:
            out.append(component)
            continue
        out.append(component.model_copy(update={
            "version": patch.version,
            "purl": patch.purl or _purl_version(component.purl, patch.version),
            "cpe": patch.cpe or _cpe_version(component.cpe, patch.version)}))
    for patch in by_key.values():
        vendor, _, product = patch.component.partition("/")
        out.append(Component(kind=patch.kind, vendor=vendor or None, product=product or None,
                             version=patch.version, purl=patch.purl, cpe=patch.cpe))
    return out


def _purl_version(purl: str | None, version: str) -> str | None:
    if purl is None or "@" not in purl:
        return purl
    head, _, tail = purl.partition("@")
    rest = ""
    for mark in ("?", "#"):
        if mark in tail:
            rest = tail[tail.index(mark):]
            break
    return f"{head}@{version}{rest}"


def _cpe_version(cpe: str | None, version: str) -> str | None:
    if cpe is None or not cpe.startswith("cpe:2.3:"):
        return cpe
    parts = cpe.split(":")
    if len(parts) > 5:
        parts[5] = version
    return ":".join(parts)
