"""Which vulnerabilities named under one index key can affect a given version.

A first-time question about a kernel walks ~50,000 statement groups, 95 % of which only
prove "not affected". This module answers that part for whole keys at once: the
statements whose bounds compile to sort keys (:func:`versions.sort_key`) are laid out
as numpy arrays once per key, every bound replaced by its rank among the key's bounds,
so checking a version is one binary search and a few vector comparisons.

It is a filter, never a judge: a vulnerability is dropped only when every one of its
groups is on this fast path and comes out "unaffected" exactly as
:func:`engine.pvdb.matching.evaluate` would decide it; everything else (groups with a
release, unkeyed bounds, schemes without sort keys, versions that do not parse) goes to
the exact evaluation.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.pvdb import versions

if TYPE_CHECKING:
    from engine.pvdb.statements import Group, Statement

_AFFECTED, _UNAFFECTED, _OTHER = 1, 2, 0


def _fast(group: Group) -> bool:
    scheme = group[0].scheme
    return (scheme in versions.KEYED and versions.is_comparable(scheme)
            and all(st.keyed and st.scheme == scheme and not st.release for st in group))


def _undecidable(group: Group) -> bool:
    """Every statement is in a scheme that cannot be compared, none names a release: the
    exact evaluation says "unknown" for every version."""
    return all(not versions.is_comparable(st.scheme) and not st.release for st in group)


class _SchemeTable:
    """The fast-path statements of one key in one scheme, as arrays."""

    def __init__(self, groups: Sequence[tuple[int, Group]]) -> None:
        statements: list[tuple[int, Statement]] = [
            (g, st) for g, (_, group) in enumerate(groups) for st in group]
        bounds = {k for _, st in statements for k in (st.lo_key, st.hi_key, st.exact_key)
                  if k is not None}
        self.bounds: list[tuple[Any, ...]] = sorted(bounds)
        rank = {k: 2 * i + 1 for i, k in enumerate(self.bounds)}
        top = 2 * len(self.bounds) + 2
        self.vuln_of_group = np.array([v for v, _ in groups], dtype=np.int64)
        self.default_unaffected = np.array(
            [group[0].default_status == "unaffected" for _, group in groups], dtype=bool)
        self.group = np.array([g for g, _ in statements], dtype=np.int64)
        self.is_exact = np.array([st.exact is not None for _, st in statements], dtype=bool)
        self.exact_any = np.array([st.exact is not None and st.exact_key is None
                                   for _, st in statements], dtype=bool)
        self.exact = np.array([rank.get(st.exact_key, -3) if st.exact_key is not None else -3
                               for _, st in statements], dtype=np.int64)
        self.lo = np.array([rank[st.lo_key] if st.lo_key is not None else -1
                            for _, st in statements], dtype=np.int64)
        self.lo_inclusive = np.array([st.start_inclusive for _, st in statements], dtype=bool)
        self.hi = np.array([rank[st.hi_key] if st.hi_key is not None else top
                            for _, st in statements], dtype=np.int64)
        self.hi_inclusive = np.array([st.hi_inclusive for _, st in statements], dtype=bool)
        status = [_AFFECTED if st.status == "affected" else
                  _UNAFFECTED if st.status == "unaffected" else _OTHER for _, st in statements]
        self.status = np.array(status, dtype=np.int8)

    def open_groups(self, vkey: tuple[Any, ...]) -> np.ndarray:
        """Vulnerability indices of the groups that are not surely unaffected."""
        i = bisect.bisect_left(self.bounds, vkey)
        p = 2 * i + 1 if i < len(self.bounds) and self.bounds[i] == vkey else 2 * i
        in_range = (((p > self.lo) | ((p == self.lo) & self.lo_inclusive))
                    & ((p < self.hi) | ((p == self.hi) & self.hi_inclusive)))
        contains = np.where(self.is_exact, self.exact_any | (self.exact == p), in_range)
        n = len(self.vuln_of_group)
        affected = np.bincount(self.group[contains & (self.status == _AFFECTED)],
                               minlength=n) > 0
        unaffected = np.bincount(self.group[contains & (self.status == _UNAFFECTED)],
                                 minlength=n) > 0
        surely = ~affected & (unaffected | self.default_unaffected)
        result: np.ndarray = self.vuln_of_group[~surely]
        return result


class KeyTable:
    """The statement groups of one index key, ready to be filtered by version."""

    def __init__(self, vulns: Mapping[str, Sequence[Group]]) -> None:
        self.vulns: list[str] = list(vulns)
        always: set[int] = set()
        by_scheme: dict[str, list[tuple[int, Group]]] = {}
        for v, groups in enumerate(vulns.values()):
            fast = [g for g in groups if _fast(g)]
            # a group stated only in schemes that cannot be compared is "unknown", which
            # counts only when no other group decides: with a decided fast group beside
            # it, it cannot make the vulnerability affect the version
            rest = [g for g in groups if not _fast(g) and not _undecidable(g)]
            if rest or not fast:
                always.add(v)
            for group in fast:
                by_scheme.setdefault(group[0].scheme, []).append((v, group))
        self.always = always
        """Vulnerabilities with a group outside the fast path: always evaluated."""
        self.tables: dict[str, _SchemeTable] = {}
        self.unsorted: dict[str, list[int]] = {}
        for scheme, members in by_scheme.items():
            try:
                self.tables[scheme] = _SchemeTable(members)
            except TypeError:  # bounds that do not order: leave them to the exact path
                self.unsorted[scheme] = [v for v, _ in members]

    def candidates(self, version: str) -> list[str]:
        """The vulnerabilities that may affect ``version`` (a superset; see the module)."""
        picked = set(self.always)
        for values in self.unsorted.values():
            picked.update(values)
        for scheme, table in self.tables.items():
            vkey = versions.sort_key(scheme, version)
            if vkey is None:
                picked.update(table.vuln_of_group.tolist())
                continue
            try:
                picked.update(table.open_groups(vkey).tolist())
            except TypeError:  # the version's key does not order against the bounds
                picked.update(table.vuln_of_group.tolist())
        return [self.vulns[v] for v in sorted(picked)]
