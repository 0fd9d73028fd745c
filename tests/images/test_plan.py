"""Patch plans: minimal, ordered, and explicit about what stays open; held to a
brute-force search on random small graphs."""

from __future__ import annotations

import datetime as dt
import itertools
import random
from pathlib import Path

import pytest

from engine.images import (
    MissingRequirementError,
    Patch,
    PatchCatalogueError,
    PatchCycleError,
    PatchGraph,
    Plan,
    Requirement,
    from_findings,
    load_catalogue,
    make_plan,
    parse_catalogue,
    version_key,
)
from engine.model import Component
from engine.pvdb import AvailabilityBasis, FixStatus
from tests.images.helpers import finding

FIRMWARE = Component(kind="firmware", vendor="tianocore", product="edk2", version="2024.02")
UCODE = Component(kind="microcode", vendor="intel", product="microcode", version="20240312")
KERNEL = Component(kind="kernel", vendor="linux", product="linux_kernel", version="6.1.76",
                   cpe="cpe:2.3:o:linux:linux_kernel:6.1.76:*:*:*:*:*:*:*")
QEMU = Component(kind="hypervisor", vendor="qemu", product="qemu", version="8.2.2",
                 purl="pkg:deb/debian/qemu-system-x86@8.2.2?arch=amd64")
IMAGE = [FIRMWARE, UCODE, KERNEL, QEMU]


def test_versions_order_numbers_then_suffixes() -> None:
    ordered = ["6.1", "6.1.0", "6.1.9", "6.1.76", "6.1.76+lp1", "6.1.77", "6.1.100", "6.2~rc1",
               "6.2"]
    assert sorted(ordered, key=version_key) == ordered


def test_a_kernel_supersedence_chain_takes_the_lowest_version_closing_everything() -> None:
    findings = [
        finding("CVE-A", 2, fixed=["6.1.80", "6.6.20"]),
        finding("CVE-B", 2, fixed=["6.1.85"]),
        finding("CVE-C", 2, fixed=["6.1.90", "6.6.30"]),
        finding("CVE-D", 2, fixed=["6.6.31"], closing="6.6.31",
                date=dt.date(2026, 7, 1), basis=AvailabilityBasis.ESTIMATED),
        finding("CVE-E", 2, status=FixStatus.NO_FIX, date=dt.date(2026, 8, 1),
                basis=AvailabilityBasis.ESTIMATED),
    ]
    graph, facts = from_findings(IMAGE, findings)
    kernel = graph.of_component("linux/linux_kernel")
    assert [p.version for p in kernel] == ["6.1.80", "6.1.85", "6.1.90"]  # this line only
    assert kernel[2].supersedes == (kernel[1].id,)
    assert graph.fixes[kernel[2].id] == {"CVE-A", "CVE-B", "CVE-C"}
    plan = make_plan(graph, IMAGE, ["CVE-B", "CVE-A", "CVE-D", "CVE-E", "CVE-Z"], facts)
    assert plan.patches == ["linux/linux_kernel@6.1.85"]
    assert plan.closed == ["CVE-A", "CVE-B"]
    assert plan.version_jump == 2 and plan.reboots == 1
    reasons = {o.vuln_id: o for o in plan.open}
    assert reasons["CVE-D"].reason == "other_line" and "6.6.31" in reasons["CVE-D"].detail
    assert reasons["CVE-D"].expected == dt.date(2026, 7, 1)
    assert reasons["CVE-E"].reason == "no_fix" and reasons["CVE-E"].expected == \
        dt.date(2026, 8, 1) and "expected 2026-08-01 (estimated)" in reasons["CVE-E"].detail
    assert reasons["CVE-Z"].reason == "not_affecting"
    kernel_after = next(c for c in plan.components if c.kind == "kernel")
    assert kernel_after.version == "6.1.85"
    assert kernel_after.cpe == "cpe:2.3:o:linux:linux_kernel:6.1.85:*:*:*:*:*:*:*"


CATALOGUE = """
schema: vigil.patch-catalogue/1
components:
  qemu/qemu: {reboot: false}
patches:
  - component: linux/linux_kernel
    version: 6.1.76+lp1
    live_patch: true
    fixes: [CVE-K1]
  - component: intel/microcode
    version: "20240813"
    fixes: [CVE-U1]
    requires: [{component: tianocore/edk2, min: "2024.05"}]
  - component: tianocore/edk2
    version: "2024.05"
    released: 2024-06-01
  - component: qemu/qemu
    version: 9.0.0
    fixes: [CVE-Q1, CVE-Q2]
    requires: [{component: linux/linux_kernel, min: "6.1.90"}]
    conflicts: [linux/linux_kernel@6.1.76+lp1]
  - component: qemu/qemu
    version: 8.2.3
    fixes: [CVE-Q1]
"""


def catalogue_graph(tmp_path: Path, text: str = CATALOGUE) -> tuple[PatchGraph, list]:
    path = tmp_path / "patches.yaml"
    path.write_text(text)
    return from_findings(IMAGE, [finding("CVE-K1", 2, fixed=["6.1.90"]),
                                 finding("CVE-Q1", 3, fixed=["8.2.3"])], load_catalogue(path))


def test_cross_component_requirement_orders_the_install(tmp_path: Path) -> None:
    graph, facts = catalogue_graph(tmp_path)
    plan = make_plan(graph, IMAGE, ["CVE-U1"], facts)
    assert plan.patches == ["tianocore/edk2@2024.05", "intel/microcode@20240813"]
    assert plan.steps[0].required_by == ["intel/microcode@20240813"]
    assert {c.product: c.version for c in plan.components}["edk2"] == "2024.05"


def test_a_live_patch_beats_a_reboot_and_a_conflict_is_named(tmp_path: Path) -> None:
    graph, facts = catalogue_graph(tmp_path)
    assert graph.patches["linux/linux_kernel@6.1.76+lp1"].reboot is False
    plan = make_plan(graph, IMAGE, ["CVE-K1"], facts)
    assert plan.patches == ["linux/linux_kernel@6.1.76+lp1"] and plan.reboots == 0
    # qemu 9.0.0 needs kernel 6.1.90 (a reboot) and conflicts with the live patch: closing
    # all three takes the reboot; qemu moves without one
    plan = make_plan(graph, IMAGE, ["CVE-K1", "CVE-Q1", "CVE-Q2"], facts)
    assert plan.patches == ["linux/linux_kernel@6.1.90", "qemu/qemu@9.0.0"]
    assert plan.closed == ["CVE-K1", "CVE-Q1", "CVE-Q2"] and plan.reboots == 1


def test_a_conflict_that_excludes_a_fix_says_so(tmp_path: Path) -> None:
    text = CATALOGUE + """
  - component: tianocore/edk2
    version: "2024.08"
    fixes: [CVE-F1]
    conflicts: [intel/microcode@20240813]
"""
    graph, facts = catalogue_graph(tmp_path, text)
    plan = make_plan(graph, IMAGE, ["CVE-U1", "CVE-F1"], facts)
    # either closes one; the microcode needs a firmware patch too (two patches), so the
    # firmware fix alone wins and the microcode one is open, with the conflict named
    assert plan.patches == ["tianocore/edk2@2024.08"]
    (item,) = plan.open
    assert item.vuln_id == "CVE-U1" and item.reason == "conflict"
    assert item.conflicts == [("intel/microcode@20240813", "tianocore/edk2@2024.08")]
    assert "excluded by a conflict" in item.detail


def test_a_missing_requirement_is_an_error_naming_the_patch(tmp_path: Path) -> None:
    text = CATALOGUE.replace('min: "2024.05"', 'min: "2025.01"')
    graph, facts = catalogue_graph(tmp_path, text)
    with pytest.raises(MissingRequirementError, match=r"intel/microcode@20240813 requires "
                       r"tianocore/edk2 >= 2025.01.*has tianocore/edk2 2024.02") as caught:
        make_plan(graph, IMAGE, ["CVE-U1"], facts)
    assert caught.value.nodes == ("intel/microcode@20240813",)


def test_a_requirement_cycle_is_an_error_naming_the_cycle(tmp_path: Path) -> None:
    text = CATALOGUE.replace('''    version: "2024.05"
    released: 2024-06-01''', '''    version: "2024.05"
    requires: [{component: intel/microcode, min: "20240813"}]''')
    graph, facts = catalogue_graph(tmp_path, text)
    with pytest.raises(PatchCycleError, match="requirement cycle") as caught:
        make_plan(graph, IMAGE, ["CVE-U1"], facts)
    assert set(caught.value.nodes) == {"intel/microcode@20240813", "tianocore/edk2@2024.05"}


def test_bad_catalogues_are_refused() -> None:
    with pytest.raises(PatchCatalogueError, match="supersedence cycle"):
        PatchGraph([Patch(id="a", component="x", version="1", supersedes=("b",)),
                    Patch(id="b", component="x", version="2", supersedes=("a",))])
    with pytest.raises(PatchCatalogueError, match="not a known patch"):
        PatchGraph([Patch(id="a", component="x", version="1", conflicts=("zz",))])
    with pytest.raises(PatchCatalogueError, match="only patches of its own component"):
        PatchGraph([Patch(id="a", component="x", version="1"),
                    Patch(id="b", component="y", version="2", supersedes=("a",))])
    with pytest.raises(PatchCatalogueError, match="not a valid patch catalogue"):
        parse_catalogue({"patches": [{"component": "x"}]})
    with pytest.raises(PatchCatalogueError, match="twice"):
        parse_catalogue({"patches": [{"component": "x", "version": "1"}] * 2})


# -- against a brute-force search -----------------------------------------------------------


def random_graph(rng: random.Random) -> tuple[PatchGraph, list[Component], list[str]]:
    n_components = rng.randint(1, 4)
    vulns = [f"V{i}" for i in range(rng.randint(1, 6))]
    components = [Component(kind="firmware", vendor="v", product=f"c{i}", version="1")
                  for i in range(n_components)]
    patches: list[dict] = []
    for i in range(n_components):
        previous = None
        for version in range(2, 2 + rng.randint(0, 3)):
            patches.append({"id": f"c{i}@{version}", "component": f"v/c{i}",
                            "version": str(version), "reboot": rng.random() < 0.6,
                            "fixes": set(rng.sample(vulns, rng.randint(0, min(2, len(vulns))))),
                            "supersedes": (previous,) if previous and rng.random() < 0.7
                            else (), "requires": [], "conflicts": set()})
            previous = f"c{i}@{version}"
    for p in patches:
        own = int(p["component"].removeprefix("v/c"))
        if rng.random() < 0.45:
            # n_components: a component nobody has
            other = rng.choice([i for i in range(n_components + 1) if i != own])
            p["requires"].append(Requirement(component=f"v/c{other}",
                                             min=str(rng.randint(1, 4))))
        if rng.random() < 0.3 and len(patches) > 1:
            other = rng.choice(patches)
            if other["component"] != p["component"]:
                p["conflicts"].add(other["id"])
    graph = PatchGraph(Patch(id=p["id"], component=p["component"], version=p["version"],
                             reboot=p["reboot"], fixes=frozenset(p["fixes"]),
                             supersedes=p["supersedes"], requires=tuple(p["requires"]),
                             conflicts=tuple(sorted(p["conflicts"])))
                       for p in patches)
    return graph, components, rng.sample(vulns, rng.randint(1, len(vulns)))


def brute_force(graph: PatchGraph, components: list[Component], wanted: set[str], *,
                missing: bool = True, cycles: bool = True, conflicts: bool = True
                ) -> tuple[int, int, int, int] | None:
    """The best (-closed, reboots, patches, jump) over every selection, checked naively."""
    base = {f"{c.vendor}/{c.product}": c.version for c in components}
    by_component: dict[str, list[Patch]] = {}
    for p in graph.patches.values():
        by_component.setdefault(p.component, []).append(p)
    keys = sorted(by_component)
    known = {k: sorted({p.version for p in by_component[k]}, key=version_key) for k in keys}
    best = None
    for pick in itertools.product(*[[None, *by_component[k]] for k in keys]):
        chosen = {k: p for k, p in zip(keys, pick, strict=True) if p is not None}
        if any(k in base and version_key(p.version) <= version_key(base[k])
               for k, p in chosen.items()):
            continue
        final = {**base, **{k: p.version for k, p in chosen.items()}}
        ok = True
        edges = set()
        for p in chosen.values():
            for r in p.requires:
                possible = [base.get(r.component)] + [q.version for q in
                                                      by_component.get(r.component, [])]
                if not missing and not any(r.satisfied_by(v) for v in possible):
                    continue
                if not r.satisfied_by(final.get(r.component)):
                    ok = False
                if r.component in chosen and not r.satisfied_by(base.get(r.component)):
                    edges.add((chosen[r.component].id, p.id))
            if conflicts and any(c in {q.id for q in chosen.values()}
                                 for c in graph.conflicts[p.id]):
                ok = False
        if cycles and has_cycle(edges):
            ok = False
        if not ok:
            continue
        closed = set().union(*[graph.fixes[p.id] for p in chosen.values()]) & wanted
        jump = sum(len([v for v in known[k] if version_key(base.get(k, "0")) <
                        version_key(v) <= version_key(p.version)]) for k, p in chosen.items())
        score = (-len(closed), sum(p.reboot for p in chosen.values()), len(chosen), jump)
        best = score if best is None or score < best else best
    return best


def has_cycle(edges: set[tuple[str, str]]) -> bool:
    nodes = {n for e in edges for n in e}
    while nodes:
        sinks = {n for n in nodes if not any(a == n and b in nodes for a, b in edges)}
        if not sinks:
            return True
        nodes -= sinks
    return False


def check_plan(plan: Plan, graph: PatchGraph, components: list[Component]) -> None:
    base = {f"{c.vendor}/{c.product}": c.version for c in components}
    final = {f"{c.vendor}/{c.product}": c.version for c in plan.components}
    position = {s.patch: s.order for s in plan.steps}
    for step in plan.steps:
        patch = graph.patches[step.patch]
        assert final[patch.component] == patch.version
        for r in patch.requires:
            assert r.satisfied_by(final.get(r.component)), (patch.id, r)
            if not r.satisfied_by(base.get(r.component)):
                provider = next(s for s in plan.steps if graph.patches[s.patch].component ==
                                r.component)
                assert position[provider.patch] < step.order  # installed before
        assert not graph.conflicts[patch.id] & set(position)


@pytest.mark.parametrize("seed", range(400))
def test_plans_are_minimal_against_brute_force(seed: int) -> None:
    rng = random.Random(seed)
    graph, components, wanted = random_graph(rng)
    strict = brute_force(graph, components, set(wanted))
    ideal = brute_force(graph, components, set(wanted), missing=False, cycles=False,
                        conflicts=False)
    assert strict is not None and ideal is not None
    expected_error: type[Exception] | None = None
    either = False
    if ideal[0] < strict[0]:
        relaxed = brute_force(graph, components, set(wanted), missing=False)
        cyclic = brute_force(graph, components, set(wanted), missing=False, cycles=False)
        assert relaxed is not None and cyclic is not None
        if relaxed[0] < strict[0]:
            expected_error = MissingRequirementError
        elif cyclic[0] < relaxed[0]:
            expected_error = PatchCycleError
        else:
            either = True  # excluded by a conflict, or by a conflict and a missing requirement
    if expected_error is not None:
        with pytest.raises(expected_error):
            make_plan(graph, components, wanted)
        return
    if either:
        try:
            plan = make_plan(graph, components, wanted)
        except MissingRequirementError as exc:
            base = {f"{c.vendor}/{c.product}": c.version for c in components}
            for node in exc.nodes:  # each named patch has a requirement nothing meets
                assert any(not r.satisfied_by(base.get(r.component)) and not any(
                    r.satisfied_by(q.version) for q in graph.patches.values()
                    if q.component == r.component) for r in graph.patches[node].requires)
            assert exc.nodes
            return
    else:
        plan = make_plan(graph, components, wanted)
    score = (-len(plan.closed), plan.reboots, len(plan.steps), plan.version_jump)
    assert score == strict
    check_plan(plan, graph, components)
    assert set(plan.closed) | {o.vuln_id for o in plan.open} == set(wanted)
    conflicted = {o.vuln_id for o in plan.open if o.reason == "conflict"}
    if ideal[0] < strict[0]:
        assert conflicted  # what the rules exclude is named, never silently dropped
