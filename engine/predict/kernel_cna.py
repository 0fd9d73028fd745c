"""The Linux kernel CNA's records with their history, as the honest backtest reads them.

Three inputs, read in place:

* a zip (or folder) of the CNA's CVE JSON 5 records (``cve/published/<year>/CVE-*.json``)
  with their ``.dyad`` files: per kernel branch, the version that brought the bug in and
  the version that fixed it (``0`` when none did);
* ``history.csv.gz``: each record's commit history (``cve_id, commit, commit_date_utc,
  change, fixed_versions``): when the CVE became public (its first commit) and which fixed
  versions the record named at every later date;
* the kernel release dates (endoflife.date's ``linux-kernel.json``, ``{"versions": {v:
  {"date": …}}}``).

A **pair** is one (CVE, stable branch): every branch maintained when the CVE became public
that the record says is affected (:func:`affected_lines`). Its fix is *known* from the day
the record first named a fixed version on that branch that had been released
(:attr:`Pair.fixed`): that is when a PVDB fed by the CNA could say the branch is fixed,
which can be later than the release itself (records gain branches over their first weeks).

What a record said on a day is :meth:`Record.fixed_as_of`; everything dated on or after an
as-of day is unknown on it. The final record's ``.dyad`` (which branches the bug reached) and
``programFiles`` are read from the zip: the commit history keeps only the fixed versions.
"""

from __future__ import annotations

import bisect
import csv
import datetime as dt
import gzip
import io
import re
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from engine.predict.errors import PredictError
from engine.pvdb import history as hist

KERNEL = hist.KERNEL
_VERSION = re.compile(r"^(\d+)\.(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:-rc(\d+))?$")
_RECORD = re.compile(r"(?:^|/)(CVE-\d{4}-\d+)\.(json|dyad)$")
HISTORY_NAME = "history.csv.gz"
FAR = dt.date(9999, 12, 31)


def vkey(version: str) -> tuple[int, ...]:
    """Numeric order of kernel versions; ``X.Y-rcN`` sorts before ``X.Y``."""
    m = _VERSION.match(version.strip())
    if not m:
        return (1 << 30,)
    a, b, c, d, rc = m.groups()
    base = (int(a), int(b), int(c or 0), int(d or 0))
    return (*base, int(rc) if rc else 1 << 20)


def line_of(version: str) -> str:
    """The stable branch of a version (``6.6.30`` and ``6.6`` are ``6.6``)."""
    parts = version.split("-", 1)[0].split(".")
    return ".".join(parts[:2])


def line_key(line: str) -> tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else -1 for p in line.split("."))


def is_stable(version: str) -> bool:
    """A stable point release (three numbers), not a mainline release or -rc."""
    if "-" in version:
        return False
    return version.count(".") >= (3 if version.startswith("2.") else 2)


@dataclass(frozen=True, slots=True)
class Record:
    cve: str
    published: dt.date
    """The day of the record's first commit: when the CVE became public."""
    days: tuple[dt.date, ...]
    """Commit days, oldest first."""
    fixed_sets: tuple[frozenset[str], ...]
    """The fixed versions the record named at each commit (empty once deleted)."""
    dyad: tuple[tuple[str, str | None], ...] = ()
    """(vulnerable version, fixed version or None) per branch, from the final record."""
    files: tuple[str, ...] = ()
    """``programFiles`` of the final record."""

    def fixed_as_of(self, day: dt.date) -> frozenset[str]:
        """The fixed versions the record named before ``day`` (nothing before it was
        public)."""
        i = bisect.bisect_left(self.days, day)
        return self.fixed_sets[i - 1] if i > 0 else frozenset()

    def public(self, day: dt.date) -> bool:
        return self.published < day


@dataclass(frozen=True, slots=True)
class Pair:
    """One (CVE, branch) open when the CVE became public."""

    cve: str
    line: str
    published: dt.date
    fixed_version: str | None
    """The branch's fixed version in the final record (None: never fixed)."""
    released: dt.date | None
    """Its release date."""
    fixed: dt.date | None
    """When the fix was known: named by the record and released (None: never)."""
    observable: dt.date
    """The last day an outcome can be seen: the data's end while the branch is maintained;
    :data:`FAR` once it has reached end of life (no fix can come after that)."""


@dataclass(slots=True)
class Corpus:
    records: dict[str, Record]
    releases: hist.ReleaseLog
    end: dt.date
    """The last day of the data (newest commit or release)."""
    dated: dict[str, dt.date] = field(default_factory=dict)
    """Release date of every kernel version."""

    def pairs(self) -> list[Pair]:
        return list(_pairs(self))


def load(cna: Path, releases: Path) -> Corpus:
    """Read the corpus: ``cna`` is the folder holding the records zip (or the zip itself,
    with ``history.csv.gz`` beside it); ``releases`` the kernel release dates file (or a
    folder holding ``linux-kernel.json``)."""
    zip_path, history_path = _locate(cna)
    log, dated = read_releases(releases)
    rows = read_history(history_path)
    extras = dict(read_records(zip_path))
    records: dict[str, Record] = {}
    for cve, items in rows.items():
        adds = [d for d, change, _ in items if change == "A"]
        if not adds:
            continue
        dyad, files = extras.get(cve, ((), ()))
        records[cve] = Record(
            cve, min(adds), tuple(d for d, _, _ in items),
            tuple(frozenset() if change == "D" else fixed for _, change, fixed in items),
            dyad, files)
    if not records:
        raise PredictError(f"{history_path}: no record history found")
    last_commit = max(r.days[-1] for r in records.values())
    end = max(last_commit, log.newest or last_commit)
    return Corpus(records, log, end, dated)


def _locate(cna: Path) -> tuple[Path, Path]:
    if cna.is_file():
        zip_path, history_path = cna, cna.parent / HISTORY_NAME
    elif cna.is_dir():
        zips = sorted(cna.glob("*.zip"))
        if not zips:
            raise PredictError(f"{cna}: no records zip in the folder",
                               tip="point --kernel-cna at the folder with the records zip"
                                   f" and {HISTORY_NAME}")
        zip_path, history_path = zips[-1], cna / HISTORY_NAME
    else:
        raise PredictError(f"{cna}: no such file or folder")
    if not history_path.is_file():
        raise PredictError(f"{history_path}: not found",
                           tip=f"the record history {HISTORY_NAME} must be beside the zip")
    return zip_path, history_path


def read_releases(path: Path) -> tuple[hist.ReleaseLog, dict[str, dt.date]]:
    """Kernel release dates per branch (mainline X.Y releases open their branch; -rc
    versions are not releases of a branch)."""
    if path.is_dir():
        found = sorted(path.rglob("linux-kernel.json"))
        if not found:
            raise PredictError(f"{path}: no linux-kernel.json in the folder")
        path = found[0]
    try:
        data = orjson.loads(path.read_bytes())
        versions = data["versions"]
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise PredictError(f"{path}: not a kernel release file ({exc})") from exc
    log = hist.ReleaseLog()
    dated: dict[str, dt.date] = {}
    for name, item in versions.items():
        try:
            day = dt.date.fromisoformat(str(item["date"])[:10])
        except (KeyError, ValueError, TypeError):
            continue
        if day.year < 1991 or "-rc" in name or not _VERSION.match(name):
            continue
        dated[name] = day
        log.add(KERNEL, line_of(name), day, name)
        log.newest = day if log.newest is None else max(log.newest, day)
    log.seal()
    return log, dated


def read_history(path: Path) -> dict[str, list[tuple[dt.date, str, frozenset[str]]]]:
    out: dict[str, list[tuple[dt.date, str, frozenset[str]]]] = {}
    try:
        with gzip.open(path, "rt", encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            for row in reader:
                day = dt.date.fromisoformat(row["commit_date_utc"][:10])
                fixed = frozenset(row["fixed_versions"].split())
                out.setdefault(row["cve_id"], []).append((day, row["change"], fixed))
    except (OSError, KeyError, ValueError, csv.Error, EOFError) as exc:
        raise PredictError(f"{path}: unreadable record history ({exc})") from exc
    for items in out.values():
        items.sort(key=lambda x: x[0])  # stable: first-parent order within a day
    return out


def read_records(path: Path) -> Iterator[tuple[str, tuple[tuple[tuple[str, str | None], ...],
                                                          tuple[str, ...]]]]:
    """(CVE, (dyad pairs, programFiles)) per record in the zip or folder."""
    dyads: dict[str, tuple[tuple[str, str | None], ...]] = {}
    files: dict[str, tuple[str, ...]] = {}
    for name, data in _members(path):
        m = _RECORD.search(name)
        if not m:
            continue
        cve, kind = m.groups()
        if kind == "dyad":
            dyads[cve] = tuple(parse_dyad(data.decode("utf-8", "replace")))
        else:
            try:
                doc = orjson.loads(data)
            except orjson.JSONDecodeError:
                continue
            files[cve] = tuple(sorted(program_files(doc)))
    for cve in sorted(set(dyads) | set(files)):
        yield cve, (dyads.get(cve, ()), files.get(cve, ()))


def _members(path: Path) -> Iterable[tuple[str, bytes]]:
    if path.is_dir():
        for p in sorted(path.rglob("CVE-*")):
            if p.is_file():
                yield p.as_posix(), p.read_bytes()
        return
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist():
                if not info.is_dir():
                    yield info.filename, zf.read(info)
    except (OSError, zipfile.BadZipFile) as exc:
        raise PredictError(f"{path}: not a readable zip ({exc})") from exc


def parse_dyad(text: str) -> Iterator[tuple[str, str | None]]:
    """``vulnerable:commit:fixed:commit`` lines; a fixed half ``0:0`` is no fix."""
    for raw in io.StringIO(text):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        if len(parts) != 4:
            continue
        vulnerable, _, fixed, _ = parts
        if vulnerable == "0" and fixed == "0":
            continue
        yield vulnerable, (None if fixed == "0" else fixed)


def program_files(doc: object) -> set[str]:
    out: set[str] = set()
    try:
        affected = doc["containers"]["cna"].get("affected", [])  # type: ignore[index]
    except (KeyError, TypeError, AttributeError):
        return out
    for item in affected if isinstance(affected, list) else []:
        for f in item.get("programFiles", []) if isinstance(item, dict) else []:
            if isinstance(f, str):
                out.add(f)
    return out


def subsystem(files: Iterable[str]) -> str:
    """The subsystem a fix touches: the first two path parts of its most common top
    folder (``drivers/net``, ``fs/btrfs``, ``net/ipv4``), or ``none``."""
    counts: dict[str, int] = {}
    for f in files:
        parts = f.split("/")
        key = "/".join(parts[:2]) if len(parts) > 2 else parts[0]
        counts[key] = counts.get(key, 0) + 1
    if not counts:
        return "none"
    return max(sorted(counts), key=lambda k: counts[k])


def affected_lines(record: Record, lines: Iterable[tuple[str, str]]) -> Iterator[str]:
    """Which of ``lines`` ((branch, its version on the day)) the final record says carry the
    bug on that day: the ``.dyad`` names the branch with a vulnerable version at or before
    it (a pair whose bug and fix came in the same version does not count), or the bug came
    in through mainline at or before the branch's own version, the branch was cut before
    mainline had the fix, and the dyad says nothing of the branch (a branch the fix never
    reached)."""
    named: dict[str, list[tuple[str, str | None]]] = {}
    mainline: list[tuple[int, ...]] = []
    for vulnerable, fixed in record.dyad:
        if fixed is not None and fixed == vulnerable:
            named.setdefault(line_of(fixed), []).append((vulnerable, fixed))
            continue
        line = line_of(fixed) if fixed is not None else line_of(vulnerable)
        if fixed is None or is_stable(fixed):
            # a mainline fix is no fix *on* a branch: the branch cut from it starts fixed
            named.setdefault(line, []).append((vulnerable, fixed))
        if not is_stable(vulnerable):
            mainline.append(vkey(vulnerable))
    first = min(mainline) if mainline else None
    fixed_in = [vkey(f) for _, f in record.dyad if f is not None and not is_stable(f)]
    mainline_fix = min(fixed_in) if fixed_in else None
    for line, version in lines:
        entries = named.get(line)
        if entries is not None:
            if any(f != v and vkey(v) <= vkey(version) for v, f in entries):
                yield line
            continue
        if mainline_fix is not None and vkey(line) >= mainline_fix:
            continue  # the branch was cut after mainline had the fix
        if first is not None and vkey(line)[:2] >= first[:2] and \
                (first[2] == 0 or vkey(version) >= first):
            yield line


def fix_on(record: Record, line: str) -> str | None:
    """The final record's fixed version on ``line`` (the dyad's, else the history's)."""
    found = [f for v, f in record.dyad if f is not None and f != v and line_of(f) == line]
    if not found and record.fixed_sets:
        found = [f for f in record.fixed_sets[-1] if line_of(f) == line]
    return min(found, key=vkey) if found else None


def known_fix(record: Record, line: str, dated: dict[str, dt.date]) -> dt.date | None:
    """The first day a fix on ``line`` was both named by the record and released."""
    best: dt.date | None = None
    for day, fixed in zip(record.days, record.fixed_sets, strict=True):
        if best is not None and day >= best:
            break
        for v in fixed:
            if line_of(v) != line or v not in dated:
                continue
            when = max(day, dated[v])
            if best is None or when < best:
                best = when
    return best


def _pairs(corpus: Corpus) -> Iterator[Pair]:
    log = corpus.releases
    lines = log.product_lines(KERNEL)
    alive_on: dict[dt.date, list[tuple[str, str]]] = {}
    final_day = corpus.end + dt.timedelta(days=1)
    observable = {ln: corpus.end if log.alive(KERNEL, ln, final_day) else FAR for ln in lines}
    for cve in sorted(corpus.records):
        record = corpus.records[cve]
        day = record.published + dt.timedelta(days=1)  # the record is known from the next day
        alive = alive_on.get(day)
        if alive is None:
            alive = alive_on[day] = [
                (ln, v) for ln in lines if log.alive(KERNEL, ln, day)
                and (v := log.version_before(KERNEL, ln, day) or "") != ""]
        for line in affected_lines(record, alive):
            fixed = known_fix(record, line, corpus.dated)
            if fixed is not None and fixed < day:
                continue  # fixed before anyone could ask
            version = fix_on(record, line)
            released = corpus.dated.get(version) if version else None
            if fixed is None and version is not None and released is not None:
                # the fix is given only as an affected range's end: known from publication
                fixed = max(released, record.published)
                if fixed < day:
                    continue
            yield Pair(cve, line, record.published, version, released, fixed,
                       observable[line])


def sample(corpus: Corpus, share: float, seed: int = 3) -> set[str] | None:
    """A seeded sample of ``share`` of the CVEs (None: all of them)."""
    if share >= 1.0:
        return None
    import random

    cves = sorted(corpus.records)
    return set(random.Random(seed).sample(cves, max(1, round(len(cves) * share))))
