"""What the PVDB says happened: per (vulnerability, line), when a fix first appeared on any
line and when it reached this one; per product line, when it released.

Three kinds of line are read:

* **Linux kernel stable branches** (``6.6``, ``5.15``…): the kernel CNA records name the
  fixed version per branch; the ``releases`` table dates every version. For each CVE, the
  *reference* is the first release that carried the fix on any branch; every branch that
  was maintained then (a release within :data:`ALIVE_DAYS`) and whose version of that
  day the record says is affected is a line, fixed when the record's fix for that branch
  was released, or still open.
* **Qubes OS** fixes of Xen advisories: reference the XSA's public date, fixed by the QSB
  that names it (``xen_xsa`` feed adapter).
* **Intel microcode**: an INTEL-SA advisory first addressed in one microcode release and
  named again by later ones (more platforms fixed): each later release is a line fixed at
  its date (``vendor_releases`` feed adapter).

The per-line fixes are derived once per PVDB generation, at the end of the ingest that
made it, and stored with the data (table ``line_fixes``, stamped with the generation it was
derived from): a query reads them in one scan and never derives them again. Predictors ask
"as of" a date and use only what was released before it (``engine.predict``).
"""

from __future__ import annotations

import bisect
import datetime as dt
import hashlib
import itertools
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pyarrow as pa

from engine.errors import VersionSchemeError
from engine.pvdb import matching, versions

if TYPE_CHECKING:
    import duckdb

ALIVE_DAYS = 35
"""A line with no release for this many days (or four of its usual gaps, if longer) is
taken as no longer maintained."""

SUPERSEDED_DAYS = 120
"""A kernel branch still releasing this long after the next branch appeared is longterm."""

_EPOCH_JUNK = dt.date(1991, 1, 1)  # release-data dates the 1970 epoch for pre-git kernels

ProductKey = tuple[str, str]
KERNEL: ProductKey = ("linux", "linux_kernel")
QUBES: ProductKey = ("qubes", "qubes_os")
INTEL_MICROCODE: ProductKey = ("intel", "microcode")
MICROSOFT: ProductKey = ("microsoft", "security_update")

_RELEASE_PRODUCTS: dict[str, tuple[ProductKey, str | None]] = {
    "linux:linux_kernel": (KERNEL, None),  # line from the version
    "qubes:qsb": (QUBES, "qubes"),
    "intel:microcode": (INTEL_MICROCODE, "microcode"),
    "microsoft:security_update": (MICROSOFT, "monthly"),
}


def kernel_line(version: str) -> str:
    return ".".join(versions.branch_of("kernel", version, 2))


@dataclass(frozen=True, slots=True)
class LineFix:
    """One (vulnerability, line): the first fix anywhere and this line's fix."""

    vuln_id: str
    product: ProductKey
    line: str
    stratum: str
    """The kind of line, for pooling history (e.g. ``lts-older``)."""
    reference: dt.date
    reference_what: str
    fixed: dt.date | None
    fixed_version: str | None


@dataclass(slots=True)
class ReleaseLog:
    """Release dates per (product, line), sorted."""

    lines: dict[tuple[ProductKey, str], list[tuple[dt.date, str]]] = field(
        default_factory=dict)
    _dates: dict[tuple[ProductKey, str], list[dt.date]] = field(default_factory=dict)
    newest: dt.date | None = None
    """The newest date in the ``releases`` table."""

    def add(self, product: ProductKey, line: str, day: dt.date, version: str) -> None:
        self.lines.setdefault((product, line), []).append((day, version))

    def seal(self) -> None:
        for key, items in self.lines.items():
            items.sort()
            self._dates[key] = [d for d, _ in items]

    def dates(self, product: ProductKey, line: str) -> list[dt.date]:
        return self._dates.get((product, line), [])

    def product_lines(self, product: ProductKey) -> list[str]:
        return [line for (p, line) in self.lines if p == product]

    def last_before(self, product: ProductKey, line: str, day: dt.date) -> dt.date | None:
        """The line's last release strictly before ``day``."""
        dates = self.dates(product, line)
        i = bisect.bisect_left(dates, day)
        return dates[i - 1] if i > 0 else None

    def version_before(self, product: ProductKey, line: str, day: dt.date) -> str | None:
        items = self.lines.get((product, line), [])
        i = bisect.bisect_left(self.dates(product, line), day)
        return items[i - 1][1] if i > 0 else None

    def alive(self, product: ProductKey, line: str, day: dt.date) -> bool:
        """Whether the line still looked maintained on ``day``: its last release before
        then is no older than :data:`ALIVE_DAYS` or four of its usual gaps, whichever is
        longer (old longterm branches slow to a monthly cadence)."""
        last = self.last_before(product, line, day)
        if last is None:
            return False
        gap = self.median_gap(product, line, last + dt.timedelta(days=1)) or 0.0
        return (day - last).days <= max(ALIVE_DAYS, 4 * gap)

    def first_release(self, product: ProductKey, line: str) -> dt.date | None:
        dates = self.dates(product, line)
        return dates[0] if dates else None

    def next_on_or_after(self, product: ProductKey, line: str, day: dt.date) -> dt.date | None:
        """The line's first actual release on or after ``day`` (hindsight; for scoring)."""
        dates = self.dates(product, line)
        i = bisect.bisect_left(dates, day)
        return dates[i] if i < len(dates) else None

    def projected(self, product: ProductKey, line: str, as_of: dt.date, count: int,
                  lookback: int = 8) -> list[dt.date]:
        """The line's next ``count`` releases on or after ``as_of``, projected from its
        own cadence before ``as_of`` (median of its last ``lookback`` gaps)."""
        dates = self.dates(product, line)
        i = bisect.bisect_left(dates, as_of)
        past = dates[max(0, i - lookback - 1):i]
        if len(past) < 3:
            return []
        gaps = [(b - a).days for a, b in itertools.pairwise(past)]
        gap = max(1, round(statistics.median(gaps)))
        nxt = past[-1] + dt.timedelta(days=gap)
        while nxt < as_of:
            nxt += dt.timedelta(days=gap)
        return [nxt + dt.timedelta(days=gap * k) for k in range(count)]

    def median_gap(self, product: ProductKey, line: str, as_of: dt.date,
                   lookback: int = 8) -> float | None:
        dates = self.dates(product, line)
        i = bisect.bisect_left(dates, as_of)
        past = dates[max(0, i - lookback - 1):i]
        if len(past) < 3:
            return None
        return float(statistics.median((b - a).days for a, b in itertools.pairwise(past)))


@dataclass(slots=True)
class History:
    fixes: list[LineFix]
    releases: ReleaseLog
    end: dt.date
    """The newest release date in the data: outcomes after it are unknown."""

    def for_product(self, product: ProductKey) -> list[LineFix]:
        return [f for f in self.fixes if f.product == product]


def derive(con: duckdb.DuckDBPyConnection, index: matching.MatchIndex) -> History:
    """Work the history out from the PVDB's tables (see the module docstring); ``index`` is
    the match index of the current generation."""
    log = release_log(con)
    fixes: list[LineFix] = []
    fixes.extend(_kernel_fixes(con, log, index))
    fixes.extend(_qubes_fixes(con, log))
    fixes.extend(_intel_fixes(con))
    return History(fixes, log, _end(log))


def release_log(con: duckdb.DuckDBPyConnection) -> ReleaseLog:
    """Release dates per (product, line): the ``releases`` table, and the Intel microcode
    releases that address an advisory (line ``ipu``, from the ``fixes`` table)."""
    log = ReleaseLog()
    for product, version, day in con.execute(
        "SELECT product, version, release_date FROM releases WHERE product IN (SELECT unnest(?))",
        [sorted(_RELEASE_PRODUCTS)],
    ).fetchall():
        if day < _EPOCH_JUNK:
            continue
        key, line = _RELEASE_PRODUCTS[product]
        if line is None:
            if "-rc" in version:
                continue
            line = kernel_line(version)
        log.add(key, line, day, version)
        log.newest = day if log.newest is None else max(log.newest, day)
    for day, tag in con.execute(
        "SELECT DISTINCT fix_date, fixed_version FROM fixes WHERE vendor = 'intel'"
        " AND product = 'microcode' AND fix_date IS NOT NULL"
    ).fetchall():
        log.add(INTEL_MICROCODE, "ipu", day, tag)
    log.seal()
    return log


def _end(log: ReleaseLog) -> dt.date:
    return log.newest if log.newest is not None else dt.date.today()


_COLUMNS = ("vuln_id", "vendor", "product", "line", "stratum", "reference", "reference_what",
            "fixed", "fixed_version")


_INPUTS = (
    # the kernel statements _kernel_fixes and _kernel_affected read
    "SELECT count(*), bit_xor(h), sum(h::HUGEINT) FROM (SELECT hash(vuln_id, source,"
    " record_id, grp, match_kind, scheme, status, default_status, start_v, start_inclusive,"
    " end_v, end_inclusive, exact, fixed, condition, release, cpe) AS h FROM affected"
    " WHERE match_kind <> 'package' AND vendor = 'linux' AND product = 'linux_kernel')",
    "SELECT count(*), bit_xor(h), sum(h::HUGEINT) FROM (SELECT hash(vuln_id) AS h"
    " FROM vulnerabilities WHERE state = 'rejected')",
    "SELECT count(*), bit_xor(h), sum(h::HUGEINT) FROM (SELECT hash(product, version,"
    " release_date) AS h FROM releases WHERE product IN (SELECT unnest(?)))",
    "SELECT count(*), bit_xor(h), sum(h::HUGEINT) FROM (SELECT hash(vuln_id, source, vendor,"
    " product, fixed_version, advisory_id, fix_date) AS h FROM fixes"
    " WHERE vendor IN ('qubes', 'intel'))",
)


def inputs_fingerprint(con: duckdb.DuckDBPyConnection) -> str:
    """A digest of every row the history is derived from (kernel statements, rejected
    vulnerabilities, the releases and the Qubes and Intel fixes it reads): equal digests,
    equal history. An ingest that changed none of them (most of a feed's records are about
    other products) restamps the stored history instead of deriving it again."""
    products = sorted({*_RELEASE_PRODUCTS, "xen:xsa"})
    parts = [con.execute(sql, [products] if "?" in sql else []).fetchone() for sql in _INPUTS]
    return hashlib.sha256(repr(parts).encode()).hexdigest()


def restamp(con: duckdb.DuckDBPyConnection, generation: int, fingerprint: str) -> None:
    """Say the stored history is that of ``generation`` (its inputs did not change)."""
    con.execute("INSERT OR REPLACE INTO meta VALUES ('history_generation', ?),"
                " ('history_inputs', ?)", [str(generation), fingerprint])


def stored_fingerprint(con: duckdb.DuckDBPyConnection) -> str | None:
    rows = con.execute("SELECT value FROM meta WHERE key = 'history_inputs'").fetchall()
    return str(rows[0][0]) if rows else None


def store(con: duckdb.DuckDBPyConnection, generation: int, history: History,
          fingerprint: str | None = None) -> None:
    """Replace the stored line fixes with ``history``'s, stamped ``generation``, in one
    transaction (a kill midway leaves the previous ones, whose stamp then says they are
    stale)."""
    fixes = history.fixes
    table = pa.table({
        "seq": list(range(len(fixes))),
        "vuln_id": [f.vuln_id for f in fixes],
        "vendor": [f.product[0] for f in fixes],
        "product": [f.product[1] for f in fixes],
        "line": [f.line for f in fixes],
        "stratum": [f.stratum for f in fixes],
        "reference": pa.array([f.reference for f in fixes], pa.date32()),
        "reference_what": [f.reference_what for f in fixes],
        "fixed": pa.array([f.fixed for f in fixes], pa.date32()),
        "fixed_version": pa.array([f.fixed_version for f in fixes], pa.string()),
    })
    con.execute("BEGIN TRANSACTION")
    try:
        con.register("_line_fixes", table)
        con.execute("DELETE FROM line_fixes")
        con.execute("INSERT INTO line_fixes BY NAME SELECT * FROM _line_fixes")
        con.execute("INSERT OR REPLACE INTO meta VALUES ('history_generation', ?)",
                    [str(generation)])
        if fingerprint is not None:
            con.execute("INSERT OR REPLACE INTO meta VALUES ('history_inputs', ?)",
                        [fingerprint])
        else:
            con.execute("DELETE FROM meta WHERE key = 'history_inputs'")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    finally:
        con.unregister("_line_fixes")


def stored_generation(con: duckdb.DuckDBPyConnection) -> int | None:
    """The generation the stored line fixes were derived from, if any."""
    rows = con.execute("SELECT value FROM meta WHERE key = 'history_generation'").fetchall()
    return int(rows[0][0]) if rows else None


def read(con: duckdb.DuckDBPyConnection) -> History:
    """The stored history (callers check :func:`stored_generation` first)."""
    log = release_log(con)
    fixes = [
        LineFix(vuln_id=v, product=(vendor, product), line=line, stratum=stratum,
                reference=ref, reference_what=what, fixed=fixed, fixed_version=fv)
        for v, vendor, product, line, stratum, ref, what, fixed, fv in con.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM line_fixes"
            " ORDER BY seq").fetchall()
    ]
    return History(fixes, log, _end(log))


def kernel_stratum(log: ReleaseLog, line: str, alive_lines: Iterable[str],
                   day: dt.date) -> str:
    """What can be known on ``day`` about a maintained kernel branch:

    * ``newest``: the newest stable branch (it gets fixes together with mainline);
    * ``longterm``: still releasing :data:`SUPERSEDED_DAYS` after the next branch's first
      release (a longterm branch: backports arrive, often later);
    * ``superseded``: a newer branch appeared recently; this one may reach end of life
      before the fix is backported, or turn out to be longterm.
    """
    ranked = sorted(alive_lines, key=_line_key, reverse=True)
    if not ranked or line == ranked[0]:
        return "newest"
    newer = [ln for ln in log.product_lines(KERNEL) if _line_key(ln) > _line_key(line)]
    successor = min(newer, key=_line_key) if newer else None
    first = log.first_release(KERNEL, successor) if successor else None
    if first is not None and (day - first).days >= SUPERSEDED_DAYS:
        return "longterm"
    return "superseded"


def _line_key(line: str) -> tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else -1 for p in line.split("."))


def _kernel_fixes(con: duckdb.DuckDBPyConnection, log: ReleaseLog,
                  index: matching.MatchIndex) -> list[LineFix]:
    rejected = {r[0] for r in con.execute(
        "SELECT vuln_id FROM vulnerabilities WHERE state = 'rejected'").fetchall()}
    fixed_by_vuln: dict[str, set[str]] = defaultdict(set)
    for vuln_id, fixed in con.execute(
        "SELECT DISTINCT vuln_id, fixed FROM affected WHERE vendor = ? AND product = ?"
        " AND match_kind = 'product' AND scheme = 'kernel' AND fixed IS NOT NULL",
        list(KERNEL),
    ).fetchall():
        if vuln_id not in rejected:
            fixed_by_vuln[vuln_id].add(fixed)
    # A record that names no stable point release (only a mainline fix) says nothing about
    # backports: its other branches are not "still open", they are simply not described.
    fixed_by_vuln = {v: f for v, f in fixed_by_vuln.items()
                     if any(len(x.split(".")) >= 3 for x in f)}
    if not fixed_by_vuln:
        return []
    dated: dict[str, dt.date] = {}
    for (day, version) in (item for (p, _), items in log.lines.items() if p == KERNEL
                           for item in items):
        dated[version] = day
    all_lines = log.product_lines(KERNEL)
    by_day: dict[dt.date, list[tuple[str, str]]] = {}
    out: list[LineFix] = []
    for vuln_id, fixed_versions in sorted(fixed_by_vuln.items()):
        with_dates = sorted((dated[v], v) for v in fixed_versions if v in dated)
        if not with_dates:
            continue
        reference, first = with_dates[0]
        per_line: dict[str, tuple[dt.date | None, str | None]] = {}
        for v in fixed_versions:
            line = kernel_line(v)
            old = per_line.get(line)
            if old is None or old[1] is None or _vkey(v) < _vkey(old[1]):
                per_line[line] = (dated.get(v), v)
        day_lines = by_day.get(reference)
        if day_lines is None:
            # references are release days, shared by many CVEs: which lines were alive
            # then, and of what kind, is worked out once per day
            alive = [ln for ln in all_lines if log.alive(KERNEL, ln, reference)]
            day_lines = by_day[reference] = [
                (ln, kernel_stratum(log, ln, alive, reference)) for ln in alive]
        for line, stratum in day_lines:
            current = log.version_before(KERNEL, line, reference)
            if current is None or not _kernel_affected(index, vuln_id, current):
                continue
            fix_day, fix_version = per_line.get(line, (None, None))
            out.append(LineFix(
                vuln_id=vuln_id, product=KERNEL, line=line,
                stratum=stratum, reference=reference,
                reference_what=f"{first} ({kernel_line(first)})",
                fixed=fix_day, fixed_version=fix_version,
            ))
    return out


def _vkey(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in version.split("."))
    except ValueError:
        return (1 << 30,)


def _kernel_affected(index: matching.MatchIndex, vuln_id: str, version: str) -> bool:
    """Whether the kernel CNA's statements make ``version`` affected by ``vuln_id`` (only
    that vulnerability's statements are read: one dictionary lookup, not an index walk)."""
    key = matching.ComponentKey(("product", *KERNEL), version, None, None)
    pairs = index.statements([key], only=(vuln_id,)).get(vuln_id)
    if not pairs:
        return False
    try:
        return matching.evaluate(pairs).status == "affected"
    except VersionSchemeError:
        return False


def _qubes_fixes(con: duckdb.DuckDBPyConnection, log: ReleaseLog) -> list[LineFix]:
    qsb_dates = {v: d for d, v in log.lines.get((QUBES, "qubes"), [])}
    xsa_dates = dict(con.execute(
        "SELECT version, release_date FROM releases WHERE product = 'xen:xsa'").fetchall())
    out: list[LineFix] = []
    for vuln_id, advisory in con.execute(
        "SELECT vuln_id, advisory_id FROM fixes WHERE vendor = 'qubes' AND product = 'qubes_os'"
        " AND advisory_id LIKE 'QSB-%' ORDER BY vuln_id"
    ).fetchall():
        reference = xsa_dates.get(vuln_id)
        number = advisory.split("-", 1)[1]
        if reference is None:
            continue
        fixed = qsb_dates.get(number)
        out.append(LineFix(vuln_id, QUBES, "qubes", "qubes", reference, vuln_id, fixed,
                           advisory))
    return out


def _intel_fixes(con: duckdb.DuckDBPyConnection) -> list[LineFix]:
    """An INTEL-SA advisory first addressed in one microcode release and named again by
    later ones: each later release is a line fixed at its date."""
    by_sa: dict[str, list[tuple[dt.date, str]]] = defaultdict(list)
    for sa, tag, day in con.execute(
        "SELECT vuln_id, fixed_version, fix_date FROM fixes WHERE vendor = 'intel'"
        " AND product = 'microcode' AND fix_date IS NOT NULL"
    ).fetchall():
        by_sa[sa].append((day, tag))
    out: list[LineFix] = []
    for sa, items in sorted(by_sa.items()):
        items.sort()
        reference, first = items[0]
        for day, tag in items[1:]:
            if day > reference:
                out.append(LineFix(sa, INTEL_MICROCODE, f"platforms of {tag}", "intel",
                                   reference, first, day, tag))
    return out
