"""A stored version statement (one ``affected`` row) as the matcher reads it, with its
bounds compiled into sort keys where the scheme allows; and a group of them (one feed
entry). Shared by the match index (:mod:`engine.pvdb.matching`) and its prefilter
(:mod:`engine.pvdb.prefilter`).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from engine.pvdb import versions


class Statement(NamedTuple):
    vuln_id: str
    source: str
    record_id: str
    group: int
    match_kind: str
    scheme: str
    status: str
    default_status: str
    start: str | None
    start_inclusive: bool
    end: str | None
    end_inclusive: bool
    exact: str | None
    fixed: str | None
    condition: str | None
    release: str | None
    cpe: str | None
    lo_key: tuple[Any, ...] | None = None
    """``start`` as a :func:`versions.sort_key` (None: unbounded, or see ``keyed``)."""
    hi_key: tuple[Any, ...] | None = None
    """``end`` as a sort key; a wildcard end is turned into an exclusive bound."""
    hi_inclusive: bool = False
    exact_key: tuple[Any, ...] | None = None
    keyed: bool = False
    """Every bound has a sort key: the statement is checked with tuple comparisons."""

    def describe(self) -> str:
        """The statement in words, for evidence lists."""
        if self.exact is not None:
            span = f"= {self.exact}"
        else:
            lo = f"{'>=' if self.start_inclusive else '>'} {self.start}" if self.start else ""
            hi = f"{'<=' if self.end_inclusive else '<'} {self.end}" if self.end else ""
            span = ", ".join(p for p in (lo, hi) if p) or "all versions"
        text = f"{self.status} ({self.scheme}) {span}"
        if self.fixed:
            text += f"; fixed in {self.fixed}"
        if self.release:
            text += f"; release {self.release}"
        if self.condition:
            text += f"; {self.condition}"
        return text


Group = tuple[Statement, ...]
"""The statements of one feed entry (same source, record and group number)."""


_UNKEYED = (None, None, False, None, False)
"""The compiled-key fields of a statement checked through the library path."""


def compile_row(row: tuple[Any, ...]) -> Statement:
    """A statement (an ``affected`` row) with its bounds turned into sort keys where the
    scheme allows."""
    scheme, start, end, end_inclusive, exact = row[5], row[8], row[10], row[11], row[12]
    if scheme not in versions.KEYED:
        return Statement._make((*row, *_UNKEYED))
    sort_key = versions.sort_key
    lo = hi = exact_key = None
    hi_inclusive = end_inclusive
    keyed = True
    if exact is not None and exact not in ("*", ""):
        exact_key = sort_key(scheme, exact)
        keyed = exact_key is not None
    if start is not None and start not in ("0", "*", ""):
        lo = sort_key(scheme, start)
        keyed = keyed and lo is not None
    if end is not None and end.strip() != "*":
        if end.endswith(".*"):
            hi, hi_inclusive = versions.wildcard_end_key(scheme, end), False
        else:
            hi = sort_key(scheme, end)
        keyed = keyed and hi is not None
    if not keyed:
        return Statement._make((*row, *_UNKEYED))
    return Statement._make((*row, lo, hi, hi_inclusive, exact_key, True))
