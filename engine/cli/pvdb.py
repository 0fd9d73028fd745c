"""``vigil pvdb``: ask the PVDB what affects a host, or everything about one CVE."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from pydantic import TypeAdapter, ValidationError

from engine.cli import output
from engine.cli.common import DbOption, JsonOption, settings
from engine.errors import NotFoundError, UsageError
from engine.predict import estimator_for
from engine.pvdb import AffectingReport, Component, Pvdb

app = typer.Typer(help="Query the PVDB.", no_args_is_help=True)

_SEVERITY_FLOORS = {"none": 0.0, "low": 0.1, "medium": 4.0, "high": 7.0, "critical": 9.0}
_SPEC = re.compile(r"^(?:(?P<kind>[\w-]+)=)?(?P<vendor>[^/@]+)/(?P<product>[^@]+)@(?P<version>.+)$")
_COMPONENTS = TypeAdapter(list[Component])


def load_components(path: Path) -> list[Component]:
    """Components from a JSON file: a list, or an object with a ``components`` list."""
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise NotFoundError(f"{path}: no such components file") from None
    except orjson.JSONDecodeError as exc:
        raise UsageError(f"{path}: not valid JSON: {exc}") from exc
    if isinstance(data, dict):
        data = data.get("components")
    if not isinstance(data, list):
        raise UsageError(f"{path}: expected a JSON list of components or {{\"components\": […]}}")
    try:
        return _COMPONENTS.validate_python(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = "components[" + "].".join(str(p) for p in first["loc"]) if first["loc"] else ""
        raise UsageError(f"{path}: {where}: {first['msg']}") from exc


def parse_component(spec: str) -> Component:
    """``[kind=]vendor/product@version``, e.g. ``kernel=linux/linux_kernel@6.6.30``."""
    m = _SPEC.match(spec.strip())
    if not m:
        raise UsageError(
            f"cannot read component {spec!r}",
            tip="write it as [kind=]vendor/product@version, e.g. kernel=linux/linux_kernel@6.6.30",
        )
    return Component(kind=m["kind"] or "unknown", vendor=m["vendor"], product=m["product"],
                     version=m["version"])


def parse_purl(purl: str) -> Component:
    version = purl.split("@", 1)[1].split("?", 1)[0] if "@" in purl else ""
    if not version:
        raise UsageError(f"purl {purl!r} has no version (pkg:type/ns/name@version)")
    return Component(kind="os-package", purl=purl, version=version)


def gather_components(components_file: Path | None, component: list[str] | None,
                      purl: list[str] | None) -> list[Component]:
    """The components named by ``--components``, ``--component`` and ``--purl``."""
    comps: list[Component] = []
    if components_file is not None:
        comps.extend(load_components(components_file))
    comps.extend(parse_component(s) for s in component or [])
    comps.extend(parse_purl(p) for p in purl or [])
    if not comps:
        raise UsageError("no components given",
                         tip="use --components FILE, --component or --purl")
    return comps


def severity_floor(value: str | None) -> float | None:
    if value is None:
        return None
    named = _SEVERITY_FLOORS.get(value.strip().lower())
    if named is not None:
        return named
    try:
        score = float(value)
    except ValueError:
        raise UsageError(
            f"--min-severity {value!r} is neither a CVSS score nor a rating",
            tip="use a number from 0 to 10 or one of low, medium, high, critical",
        ) from None
    if not 0.0 <= score <= 10.0:
        raise UsageError(f"--min-severity {score} is outside 0–10")
    return score


@app.command()
def affecting(
    components_file: Annotated[
        Path | None, typer.Option("--components", "-c", help="JSON file of components.")
    ] = None,
    component: Annotated[
        list[str] | None,
        typer.Option("--component", help="[kind=]vendor/product@version (repeatable)."),
    ] = None,
    purl: Annotated[list[str] | None, typer.Option("--purl", help="A package URL (repeatable).")]
    = None,
    within_days: Annotated[
        int | None,
        typer.Option("--within-days", help="Only fixes available or expected within N days."),
    ] = None,
    min_severity: Annotated[
        str | None,
        typer.Option("--min-severity", help="Minimum CVSS base score or rating (e.g. 7, high)."),
    ] = None,
    kev_only: Annotated[bool, typer.Option("--kev-only", help="Only CISA KEV entries.")] = False,
    as_of: Annotated[
        dt.datetime | None, typer.Option("--as-of", help="Reference time (default: now).")
    ] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Vulnerabilities affecting a host's components, with severity, KEV/EPSS, fixed
    versions, patch ids and when the fix is (or is expected to be) available."""
    comps = gather_components(components_file, component, purl)
    when = as_of.replace(tzinfo=as_of.tzinfo or dt.UTC) if as_of else None
    with Pvdb.open(settings=settings(db), read_only=True) as pvdb:
        report = pvdb.affecting(comps, within_days=within_days,
                                min_score=severity_floor(min_severity), kev_only=kev_only,
                                as_of=when, estimator=estimator_for(pvdb, when))
    if as_json:
        output.emit_json(report)
        return
    _print_affecting(report)


def _print_affecting(report: AffectingReport) -> None:
    output.table(
        f"{len(report.findings)} vulnerabilities affect {len(report.components)} components"
        f" (as of {report.as_of:%Y-%m-%d})",
        ["vulnerability", "component", "CVSS", "KEV", "EPSS", "fix", "available"],
        [
            (
                f.vuln_id,
                f.component_label,
                f"{f.max_base_score:.1f}" if f.max_base_score is not None else "-",
                f.kev.date_added.isoformat() if f.kev else "",
                f"{f.epss.score:.3f}" if f.epss else "",
                _fix_text(f.fix),
                _available(f.fix.availability),
            )
            for f in report.findings
        ],
    )
    _print_coverage(report)
    if report.past is not None:
        for line in report.past.limits:
            output.stdout().print(line, markup=False, highlight=False, soft_wrap=True)
    if report.undetermined:
        output.stdout().print(
            f"{len(report.undetermined)} vulnerabilities name these components but their "
            "versions cannot be compared (see --json for each reason)."
        )


def _print_coverage(report: AffectingReport) -> None:
    rows = []
    for c in report.coverage:
        sources = sorted({s.source for s in c.sources})
        newest = max((s.as_of for s in c.sources if s.as_of is not None), default=None)
        rows.append((
            c.component_label, c.status.value,
            ", ".join(sorted({f"{s.source}: {s.scope}" for s in c.sources})) if sources
            else "no loaded source",
            f"{newest:%Y-%m-%d}" if newest else "",
            "; ".join(c.notes),
        ))
    output.table("coverage", ["component", "coverage", "sources", "as of", "note"], rows)
    uncovered = [c for c in report.coverage if c.status.value != "covered"]
    if uncovered:
        output.stdout().print(
            f"{len(uncovered)} components are not covered by any loaded source (or their"
            " versions cannot be read): no finding for them means nothing was known.",
            markup=False, highlight=False)


def _fix_text(fix: Any) -> str:
    """The closing version and whether it patches the host's own line or is an upgrade
    to another line."""
    if fix.closing_version is None:
        return str(fix.status.value)
    if fix.line is not None and fix.line.value == "other":
        return f"{fix.closing_version} (upgrade, other line)"
    return f"{fix.closing_version} (patch)"


def _available(availability: Any) -> str:
    if availability.date is None:
        return ""
    return f"{availability.date:%Y-%m-%d} ({availability.basis.value})"


@app.command()
def show(
    vuln_id: Annotated[str, typer.Argument(help="CVE id (or an advisory id / alias).")],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Every fact the PVDB holds about one vulnerability, per source, with provenance."""
    with Pvdb.open(settings=settings(db), read_only=True) as pvdb:
        detail = pvdb.show(vuln_id)
    if as_json:
        output.emit_json(detail)
        return
    details = [detail] if "vuln_id" in detail else [
        v for k, v in detail.items() if k != "aliases_of"]
    for d in details:
        _print_detail(d)


def _print_detail(d: dict[str, Any]) -> None:
    out = output.stdout()
    out.print(f"[bold]{d['vuln_id']}[/bold]")
    for v in d["vulnerabilities"]:
        out.print(f"  [{v['source']}] {v['state']}: {v['title'] or ''}",
                  markup=False, highlight=False)
    if d["severities"]:
        output.table("severity (per provider)", ["source", "provider", "CVSS", "score", "vector"],
                     [(s["source"], s["provider"], s["cvss_version"], s["base_score"],
                       s["vector"]) for s in d["severities"]])
    if d["kev"]:
        k = d["kev"][0]
        out.print(f"  CISA KEV: added {k['date_added']}, due {k['due_date']}, "
                  f"ransomware {k['ransomware']}", highlight=False)
    if d["epss"]:
        e = max(d["epss"], key=lambda r: r["score_date"] or dt.date.min)
        out.print(f"  EPSS {e['score']} (percentile {e['percentile']}) on {e['score_date']}",
                  highlight=False)
    if d["affected"]:
        output.table("affected statements",
                     ["source", "kind", "product / package", "scheme", "status", "from", "to",
                      "fixed"],
                     [(a["source"], a["match_kind"],
                       a["package"] or f"{a['vendor']}/{a['product']}", a["scheme"], a["status"],
                       a["exact"] or a["start_v"], a["end_v"], a["fixed"])
                      for a in d["affected"]])
    if d["fixes"]:
        output.table("fixes", ["source", "fixed version", "patch", "advisory", "date"],
                     [(f["source"], f["fixed_version"], f["patch_id"], f["advisory_id"],
                       f["fix_date"]) for f in d["fixes"]])
    output.table("provenance", ["source", "record", "modified", "ingested", "origin"],
                 [(p["source"], p["record_id"], p["modified"], p["ingested_at"], p["origin"])
                  for p in d.get("provenance", [])])
