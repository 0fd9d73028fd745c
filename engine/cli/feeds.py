"""``vigil feeds``: ingest and sync vulnerability feeds, and show their status."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from engine.cli import output
from engine.cli.common import DbOption, JsonOption, settings
from engine.errors import EXIT_INPUT, ConfigError, NotFoundError
from engine.pvdb import IngestReport, Pvdb

app = typer.Typer(help="Ingest vulnerability feeds into the PVDB.", no_args_is_help=True)


def _run_ingest(db: Pvdb, sources: list[str], as_json: bool) -> IngestReport:
    with Progress(
        TextColumn("[bold]ingest"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("{task.description}"), console=output.stderr(), transient=True,
        disable=as_json or not output.stderr().is_terminal,
    ) as progress:
        task = progress.add_task("", total=None)

        def advance(origin: str, done: int, total: int) -> None:
            progress.update(task, completed=done, total=total, description=origin[-60:])

        return db.ingest(sources, progress=advance)


def _print_report(report: IngestReport, as_json: bool) -> None:
    if as_json:
        output.emit_json({
            "run_id": report.run_id,
            "documents": report.documents,
            "seconds": round(report.seconds, 3),
            "changed": report.changed,
            "counts": {k: {**vars_of(v), "changed": v.changed} for k, v in report.counts.items()},
            "problems": [vars_of(p) for p in report.problems],
            "warnings": [vars_of(w) for w in report.warnings],
            "skipped": [{"origin": o, "reason": r} for o, r in report.skipped],
            "not_modified": report.not_modified,
        })
    else:
        output.table(
            f"Ingested {report.documents} documents in {report.seconds:.2f} s",
            ["source", "added", "updated", "unchanged", "stale", "problems"],
            [(s, c.added, c.updated, c.unchanged, c.stale, c.problems)
             for s, c in sorted(report.counts.items())],
        )
        output.stdout().print(f"records changed: {report.changed}")
        if report.not_modified:
            output.stdout().print(f"not modified (HTTP 304): {', '.join(report.not_modified)}")
        if report.skipped:
            output.stdout().print(f"skipped {len(report.skipped)} files that are not feeds:")
            for origin, reason in report.skipped:
                output.stdout().print(f"  {origin}: {reason}")
        if report.warnings:
            output.stdout().print(f"{len(report.warnings)} warnings (parts of loaded records "
                                "not used or corrected; see --json)")
        for problem in report.problems[:50]:
            output.stderr().print(f"rejected: {problem}", markup=False, highlight=False)
        if len(report.problems) > 50:
            output.stderr().print(f"… and {len(report.problems) - 50} more (see --json)")
    if report.problems:
        output.stderr().print(
            f"{len(report.problems)} documents or records were rejected; everything else "
            "was loaded.", markup=False)
        raise typer.Exit(EXIT_INPUT)


def vars_of(obj: Any) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in obj.__slots__}


@app.command()
def ingest(
    sources: Annotated[list[str], typer.Argument(help="Files, folders or http(s) URLs.")],
    offline: Annotated[bool, typer.Option("--offline", help="Refuse to touch the network.")]
    = False,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Ingest feed files, folders (recursively) or URLs. Idempotent: ingesting the same
    input again changes nothing. Exit code 4 when any document or record was rejected."""
    cfg = settings(db, offline=True if offline else None)
    with Pvdb.open(settings=cfg) as pvdb:
        report = _run_ingest(pvdb, sources, as_json)
    _print_report(report, as_json)


@app.command()
def sync(db: DbOption = None, as_json: JsonOption = False) -> None:
    """Pull every feed URL configured in ``feed_urls`` (conditional GET: unchanged feeds
    answer 304 and are not read again)."""
    cfg = settings(db)
    if not cfg.feed_urls:
        raise ConfigError(
            "no feed URLs are configured",
            tip="set feed_urls in the configuration file, e.g. "
            '[feed_urls] kev = "https://…/known_exploited_vulnerabilities.json"',
        )
    with Pvdb.open(settings=cfg) as pvdb:
        report = _run_ingest(pvdb, list(cfg.feed_urls.values()), as_json)
    _print_report(report, as_json)


@app.command()
def status(db: DbOption = None, as_json: JsonOption = False) -> None:
    """Per source: records stored, last change, last sync, schema version; and coverage
    per ecosystem (packages, per release) and product: which sources state versions of
    it, as of when. A component under none of these is uncovered."""
    cfg = settings(db)
    with Pvdb.open(settings=cfg, read_only=True) as pvdb:
        rows = pvdb.status()
        covered = pvdb.coverage()
    if as_json:
        output.emit_json({"db": str(cfg.db), "sources": rows, "coverage": covered})
        return
    output.table(
        f"PVDB {cfg.db}",
        ["source", "records", "last change", "last sync", "schema"],
        [(r["source"], r["records"], _when(r["last_change"]), _when(r["last_sync"]),
          r["schema_version"]) for r in rows],
    )
    output.table(
        "coverage per ecosystem and product",
        ["kind", "ecosystem / product", "sources", "packages", "records", "as of"],
        [(c["kind"], c["scope"], ", ".join(c["sources"]),
          "" if c["packages"] is None else c["packages"], c["records"], _when(c["as_of"]))
         for c in covered],
    )


@app.command()
def problems(db: DbOption = None, as_json: JsonOption = False) -> None:
    """The problems (documents or records rejected) and warnings (parts of loaded records
    not used, or corrected) of the last ingest, as it reported them."""
    cfg = settings(db)
    with Pvdb.open(settings=cfg, read_only=True) as pvdb:
        last = pvdb.last_problems()
    if last is None:
        raise NotFoundError(f"no ingest has run into {cfg.db}",
                            tip="run `vigil feeds ingest PATH` or `vigil feeds sync`")
    if as_json:
        output.emit_json(last)
        return
    output.table(
        f"Last ingest {last['run_id']} ({_when(last['finished_at'])}): "
        f"{len(last['problems'])} problems, {len(last['warnings'])} warnings",
        ["kind", "origin", "record", "at", "reason"],
        [(f["kind"], f["origin"], f["record_id"] or "", f["pointer"], f["reason"])
         for f in [*last["problems"], *last["warnings"]]],
    )


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%SZ") if value is not None else "never"
