"""``vigil predict``: when will fixes land, how good is that guess, and what to prepare."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Any

import typer

from engine import predict
from engine.cli import output
from engine.cli.common import DbOption, JsonOption, settings
from engine.cli.pvdb import gather_components
from engine.errors import UsageError
from engine.predict import estimator_for
from engine.pvdb import Pvdb

app = typer.Typer(help="Predict when fixes land, backtest the predictor, prepare ahead.",
                  no_args_is_help=True)

AsOfOption = Annotated[
    dt.datetime | None,
    typer.Option("--as-of", help="Reference time (default: now; no offset means UTC)."),
]


def _when(as_of: dt.datetime | None) -> dt.datetime:
    if as_of is None:
        return dt.datetime.now(dt.UTC)
    return as_of.replace(tzinfo=as_of.tzinfo or dt.UTC)


ComponentsFile = Annotated[
    Path | None, typer.Option("--components", "-c", help="JSON file of components.")]
ComponentSpec = Annotated[
    list[str] | None,
    typer.Option("--component", help="[kind=]vendor/product@version (repeatable).")]
PurlSpec = Annotated[list[str] | None, typer.Option("--purl", help="A package URL (repeatable).")]


@app.command()
def estimate(
    components_file: ComponentsFile = None,
    component: ComponentSpec = None,
    purl: PurlSpec = None,
    vuln: Annotated[list[str] | None, typer.Option("--vuln", help="Only these CVE ids.")] = None,
    as_of: AsOfOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Estimated fix dates for the vulnerabilities affecting these components that have
    no fix on their own line: date, basis, 10th–90th percentile interval, confidence."""
    comps = gather_components(components_file, component, purl)
    when = _when(as_of)
    with Pvdb.open(settings=settings(db), read_only=True) as pvdb:
        report = pvdb.affecting(comps, as_of=when, estimator=estimator_for(pvdb, when))
    wanted = {v.upper() for v in vuln or []}
    rows = [f for f in report.findings
            if f.fix.availability.basis.value != "vendor"
            and (not wanted or f.vuln_id.upper() in wanted)]
    if as_json:
        output.emit_json({"as_of": when, "estimates": [
            {"vuln_id": f.vuln_id, "component": f.component_label, "fix": f.fix} for f in rows]})
        return
    output.table(
        f"{len(rows)} vulnerabilities without a fix on their line (as of {when:%Y-%m-%d})",
        ["vulnerability", "component", "expected", "interval (10–90%)", "P(by date)", "why"],
        [(f.vuln_id, f.component_label, _date(f.fix.availability.date),
          _interval(f.fix.availability.interval), _f(f.fix.availability.confidence),
          f.fix.availability.source or "") for f in rows],
    )


def _date(value: Any) -> str:
    return "unknown" if value is None else f"{value:%Y-%m-%d}"


def _interval(value: Any) -> str:
    return "" if value is None else f"{value[0]:%Y-%m-%d} … {value[1]:%Y-%m-%d}"


def _f(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


@app.command()
def backtest(
    as_of_range: Annotated[
        tuple[dt.datetime, dt.datetime] | None,
        typer.Option("--as-of-range", help="First and last as-of date (START END); with"
                     " --kernel-cna, the questions scored (default: 2024-04-01 to the data's"
                     " end)."),
    ] = None,
    step: Annotated[int, typer.Option("--step", min=1, help="Days between as-of dates"
                                      " (the PVDB replay).")] = 3,
    kernel_cna: Annotated[
        Path | None, typer.Option("--kernel-cna", help="The kernel CNA's records zip with"
                                  " history.csv.gz beside it (or their folder): run the"
                                  " full protocol on them instead of the PVDB replay.")] = None,
    releases: Annotated[
        Path | None, typer.Option("--releases", help="Kernel release dates"
                                  " (linux-kernel.json, or a folder holding it); needed with"
                                  " --kernel-cna.")] = None,
    refit: Annotated[int, typer.Option("--refit", min=1, help="Days between refits of the"
                                       " models (--kernel-cna).")] = 28,
    sample: Annotated[float, typer.Option("--sample", min=0.0, max=1.0, help="Share of the"
                                          " CVEs used, a seeded sample (--kernel-cna).")] = 1.0,
    method: Annotated[list[str] | None, typer.Option("--method", help="Only these methods"
                                                     " (--kernel-cna; repeatable).")] = None,
    report: Annotated[
        Path | None, typer.Option("--report", help="Write the results section to this"
                                  " Markdown file (between the BACKTEST markers).")] = None,
    plots: Annotated[
        Path | None, typer.Option("--plots", help="Folder for the PNG plots"
                                  " (default: the report's folder).")] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Replay history: predict from what was known then, score against what happened,
    next to the baselines. With --kernel-cna, the honest protocol on the kernel CNA's full
    history (docs/prediction.md); else a replay of the PVDB's history every --step days."""

    if kernel_cna is not None:
        _backtest_cna(kernel_cna, releases, as_of_range, refit, sample, method, report, plots,
                      as_json)
        return
    if as_of_range is None:
        raise UsageError("--as-of-range START END is needed (or --kernel-cna)")
    start, end = (d.date() for d in as_of_range)
    if end < start:
        raise UsageError("--as-of-range: END is before START")
    cfg = settings(db)
    with Pvdb.open(settings=cfg, read_only=True) as pvdb:
        history = pvdb.history()
    result = predict.run_backtest(history, predict.default_calendars(cfg.calendars), start, end,
                              step=step)
    if report is not None:
        folder = plots or report.parent
        paths = predict.backtest_plots(result, history, folder)
        command = (f"vigil predict backtest --as-of-range {start} {end} --step {step}"
                   f" --report {report.name}")
        section = predict.backtest_markdown(result, paths, report.parent, command)
        _write_section(report, section)
    if as_json:
        output.emit_json({"start": start, "end": end, "step": step,
                          "scores": {k: _score(v) for k, v in result.scores.items()},
                          "calendar_checks": result.calendar_checks})
        return
    output.table(
        f"backtest {start} … {end} every {step} days",
        ["product", "instances", "dated", "MAE", "MAE next", "MAE median", "coverage",
         "Brier", "Brier next", "Brier median"],
        [(name, s.instances, s.dated, _n(s.mae), _n(s.next_mae), _n(s.median_mae),
          _n(s.coverage, 2), _n(s.brier, 3), _n(s.next_brier, 3), _n(s.median_brier, 3))
         for name, s in result.scores.items()],
    )


def _backtest_cna(cna: Path, releases: Path | None,
                  as_of_range: tuple[dt.datetime, dt.datetime] | None, refit: int,
                  sample: float, methods: list[str] | None, report: Path | None,
                  plots: Path | None, as_json: bool) -> None:
    import sys

    if releases is None:
        raise UsageError("--kernel-cna needs --releases (the kernel release dates)")
    wanted = methods or list(predict.PROTOCOL_METHODS)
    unknown = [m for m in wanted if m not in predict.PROTOCOL_METHODS]
    if unknown:
        raise UsageError(f"--method {unknown[0]}: not one of"
                         f" {', '.join(predict.PROTOCOL_METHODS)}")
    corpus = predict.load_kernel_cna(cna, releases)
    start, end = (dt.date(2024, 4, 1), corpus.end) if as_of_range is None else \
        tuple(d.date() for d in as_of_range)
    if end < start:
        raise UsageError("--as-of-range: END is before START")
    chosen = predict.choose_protocol_method(wanted)

    def say(what: str) -> None:
        if not as_json:
            print(f"backtest: {what}", file=sys.stderr, flush=True)
    result = predict.run_protocol(corpus, predict.default_calendars(settings(None).calendars),
                                  start, end, refit=refit, methods=wanted,
                                  sample=predict.sample_cves(corpus, sample), progress=say)
    if sample < 1:
        result.notes.append(f"The CVEs are a seeded sample of {sample:.0%} of the corpus"
                            " (`--sample`); every pair of a CVE drawn is in it.")
        result.notes.append("")
    if report is not None:
        folder = plots or report.parent
        paths = predict.protocol_plots(result, folder)
        command = (f"vigil predict backtest --kernel-cna {cna.name} --releases {releases.name}"
                   f" --as-of-range {start} {end} --refit {refit}"
                   + (f" --sample {sample}" if sample < 1 else "")
                   + "".join(f" --method {m}" for m in (methods or []))
                   + f" --report {report.name}")
        _write_section(report, predict.protocol_markdown(result, paths, report.parent, command,
                                                         chosen))
    if as_json:
        output.emit_json({
            "start": start, "end": end, "questions": int(result.scored.sum()),
            "pairs": len(result.questions.pairs),
            "scores": {k: _protocol_score(v) for k, v in result.overall.items()},
            "groups": {g: {k: _protocol_score(v) for k, v in s.items()}
                       for g, s in result.groups.items()},
            "ratios": {k: _stat(v) for k, v in result.ratios.items()},
            "targets": [{"target": t.what, "figure": t.figure, "met": t.met}
                        for t in predict.protocol_targets(result, chosen)]})
        return
    output.table(
        f"kernel CNA backtest {start} … {end}: {int(result.scored.sum())} questions",
        ["method", "skill 30 d", "skill a year", "error (days)", "MAE fixed", "coverage",
         "width", "fixed window"],
        [(k, str(v.bss30), str(v.bss_ever), str(v.error), str(v.mae_fixed), str(v.coverage),
          _n(v.width, 0), _n(v.fixed_window, 0)) for k, v in result.overall.items()],
    )
    output.table(f"targets ({chosen})", ["target", "figure", "met"],
                 [(t.what, t.figure, "n/a" if t.met is None else "yes" if t.met else "NO")
                  for t in predict.protocol_targets(result, chosen)])


def _stat(s: Any) -> dict[str, Any]:
    return {"value": s.value, "low": s.low, "high": s.high, "pairs": s.n_pairs}


def _protocol_score(s: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("brier30", "logloss30", "bss30", "bss30_pairs", "brier_ever",
                 "logloss_ever", "bss_ever", "error", "mae_fixed", "dated_share", "coverage"):
        out[name] = _stat(getattr(s, name))
    out.update(width=s.width, fixed_window=s.fixed_window, missing_p=s.missing_p,
               by_basis=s.by_basis)
    return out


def _n(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _score(s: Any) -> dict[str, Any]:
    from dataclasses import asdict

    out = asdict(s)
    out["error_target_met"] = s.error_target_met
    out["coverage_target_met"] = s.coverage_target_met
    return out


BEGIN, END = "<!-- BACKTEST:BEGIN -->", "<!-- BACKTEST:END -->"


def _write_section(path: Path, section: str) -> None:
    """Replace the text between the markers (or append them) so the prose around the
    results stays as written."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    block = f"{BEGIN}\n{section}\n{END}"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        text = head + block + tail
    else:
        text = (text.rstrip() + "\n\n" if text else "") + block + "\n"
    path.write_text(text, encoding="utf-8")


@app.command()
def prepare(
    image: Annotated[str, typer.Option("--image", help="Approved host image (name@version).")],
    components_file: ComponentsFile = None,
    component: ComponentSpec = None,
    purl: PurlSpec = None,
    window: Annotated[int | None, typer.Option("--window", min=0, help="Decision window in"
                                               " days (default VIGIL_PREDICT_WINDOW_DAYS).")]
    = None,
    as_of: AsOfOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Queue a patched configuration of IMAGE for every fix expected within the window,
    so it can be built and attested before the patch ships."""

    comps = gather_components(components_file, component, purl)
    cfg = settings(db)
    when = _when(as_of)
    with Pvdb.open(settings=cfg, read_only=True) as pvdb, predict.Queue(cfg.predict_db) as queue:
        done = predict.prepare(pvdb, queue, image, comps, as_of=when,
                           window_days=cfg.predict_window_days if window is None else window)
    if as_json:
        output.emit_json({"image": image, "queue": str(cfg.predict_db), "requests": done})
        return
    output.table(
        f"{len(done)} preparation requests for {image} (queue {cfg.predict_db})",
        ["vulnerability", "component", "expected patch", "expected", "needed by", "basis",
         "new"],
        [(p.vuln_id, p.component, p.expected_patch, _date(p.expected_date),
          _date(p.needed_by), p.basis, "yes" if p.created else "updated") for p in done],
    )


@app.command()
def recheck(
    as_of: AsOfOption = None,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Look again at queued requests whose expected date has passed: ready if the fix now
    exists, otherwise re-estimate and log the miss."""

    cfg = settings(db)
    when = _when(as_of)
    with Pvdb.open(settings=cfg, read_only=True) as pvdb, predict.Queue(cfg.predict_db) as queue:
        results = predict.recheck(pvdb, queue, as_of=when)
    if as_json:
        output.emit_json({"as_of": when, "results": [
            {"request_id": r.request.request_id, "vuln_id": r.request.vuln_id,
             "component": r.request.component, "outcome": r.outcome, "miss": r.miss}
            for r in results]})
        return
    output.table(
        f"{len(results)} pending requests rechecked (as of {when:%Y-%m-%d})",
        ["vulnerability", "component", "was expected", "outcome", "now expected"],
        [(r.request.vuln_id, r.request.component, _date(r.request.expected_date), r.outcome,
          _date(r.miss.new_date) if r.miss else "") for r in results],
    )
