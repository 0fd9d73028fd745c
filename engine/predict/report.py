"""The backtest report: tables in Markdown and plots as PNG (matplotlib, no display)."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from pathlib import Path

from engine.predict import survival
from engine.predict.backtest import PRODUCT_NAMES, BacktestResult, Instance, Score
from engine.pvdb import history as hist


def _f(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.0f}%"


def _yes(value: bool | None) -> str:
    return "n/a" if value is None else ("met" if value else "**not met**")


def score_table(result: BacktestResult) -> str:
    rows = ["| product | instances (pairs) | fix seen | dated | MAE ours | MAE next release"
            " | MAE median lag | median AE ours / next / median | 80% interval coverage"
            " | Brier ours / next / median | Brier ours, fixed lines only"
            " | error target | coverage target |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    order = [*[PRODUCT_NAMES[p] for p in PRODUCT_NAMES], "overall"]
    for name in order:
        s = result.scores.get(name)
        if s is None:
            continue
        rows.append(
            f"| {name} | {s.instances} ({s.pairs}) | {s.with_truth} | {s.dated} | "
            f"{_f(s.mae)} | {_f(s.next_mae)} | {_f(s.median_mae)} | "
            f"{_f(s.median_ae, 0)} / {_f(s.next_median_ae, 0)} / {_f(s.median_median_ae, 0)} | "
            f"{_pct(s.coverage)} (n={s.covered_n}) | "
            f"{_f(s.brier, 3)} / {_f(s.next_brier, 3)} / {_f(s.median_brier, 3)} | "
            f"{_f(s.brier_fixed, 3)} | {_yes(s.error_target_met)} | "
            f"{_yes(s.coverage_target_met)} |")
    return "\n".join(rows)


def basis_table(result: BacktestResult) -> str:
    rows = ["| product | announced | calendar | history | unknown |", "|---|---|---|---|---|"]
    for name, s in result.scores.items():
        b = s.by_basis
        rows.append(f"| {name} | {b.get('announced', 0)} | {b.get('calendar', 0)} |"
                    f" {b.get('history', 0)} | {b.get('unknown', 0)} |")
    return "\n".join(rows)


def calendar_table(result: BacktestResult) -> str:
    rows = ["| calendar | as-of dates | exact next release | MAE (days) | first differences |",
            "|---|---|---|---|---|"]
    for c in result.calendar_checks:
        diffs = "; ".join(f"{a}: rule {p}, actual {t}" for a, p, t in c.misses[:3]) or "none"
        rows.append(f"| {c.name} | {c.n} | {_pct(c.exact_share)} | {_f(c.mae)} | {diffs} |")
    return "\n".join(rows)


def plots(result: BacktestResult, history: hist.History, folder: Path,
          prefix: str = "prediction") -> list[Path]:
    """Write the PNG plots; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    # 1. Kaplan-Meier curves of the lags, per stratum, with all the data.
    fig, ax = plt.subplots(figsize=(7, 4.2))
    end = history.end + dt.timedelta(days=1)
    for product, stratum in ((hist.KERNEL, "newest"), (hist.KERNEL, "superseded"),
                             (hist.KERNEL, "longterm"), (hist.QUBES, None),
                             (hist.INTEL_MICROCODE, None)):
        lags = survival.lags(history, end, product, stratum)
        if not lags.size:
            continue
        times, surv = lags.curve()
        label = f"{'/'.join(product)}{':' + stratum if stratum else ''} (n={lags.size})"
        ax.step([0.0, *times], [1.0, *surv], where="post", label=label)
    ax.set_xscale("symlog", linthresh=7)
    ax.set_xlabel("days after the first fix on another line (log beyond a week)")
    ax.set_ylabel("P(still no fix on this line)")
    ax.set_title("Time to fix a line, Kaplan-Meier with censoring")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    written.append(_save(fig, folder / f"{prefix}_survival.png"))

    # 2. Absolute error: ours vs the baselines, per product (same instances).
    fig, ax = plt.subplots(figsize=(7, 4.2))
    groups: dict[str, list[Instance]] = defaultdict(list)
    for i in result.instances:
        if i.truth is not None and i.estimate.date is not None:
            groups[PRODUCT_NAMES[i.fix.product]].append(i)
    data, labels = [], []
    for name, items in groups.items():
        assert all(i.truth for i in items)
        ours = [abs((i.estimate.date - i.truth).days) for i in items]  # type: ignore[operator]
        nxt = [abs((i.next_release - i.truth).days) for i in items  # type: ignore[operator]
               if i.next_release is not None]
        med = [abs((i.median_lag - i.truth).days) for i in items  # type: ignore[operator]
               if i.median_lag is not None]
        short = name.split(" (")[0]
        for series, tag in ((ours, "ours"), (nxt, "next"), (med, "median")):
            if series:
                data.append(series)
                labels.append(f"{short}\n{tag}")
    if data:
        ax.boxplot(data, showmeans=True)
        ax.set_xticks(range(1, len(labels) + 1), labels, fontsize=7)
    ax.set_yscale("symlog", linthresh=10)
    ax.set_ylabel("absolute error (days)")
    ax.set_title("Point-estimate error vs naive baselines (instances with a date)")
    ax.grid(alpha=0.3, axis="y")
    written.append(_save(fig, folder / f"{prefix}_errors.png"))

    # 3. Reliability of P(fix within 30 days).
    fig, ax = plt.subplots(figsize=(5, 5))
    bins: dict[int, list[tuple[float, int]]] = defaultdict(list)
    for i in result.instances:
        outcome = i.outcome30
        if outcome is None or i.estimate.p_within is None:
            continue
        bins[min(int(i.estimate.p_within * 10), 9)].append((i.estimate.p_within, outcome))
    xs = [sum(p for p, _ in v) / len(v) for _, v in sorted(bins.items())]
    ys = [sum(o for _, o in v) / len(v) for _, v in sorted(bins.items())]
    ns = [len(v) for _, v in sorted(bins.items())]
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect")
    ax.scatter(xs, ys, s=[10 + n / 5 for n in ns], label="ours (size: instances)")
    ax.set_xlabel("predicted P(fix within 30 days)")
    ax.set_ylabel("observed share fixed within 30 days")
    ax.set_title("Calibration of P(fix within 30 days)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    written.append(_save(fig, folder / f"{prefix}_calibration.png"))
    return written


def _save(fig: object, path: Path) -> Path:
    fig.tight_layout()  # type: ignore[attr-defined]
    fig.savefig(path, dpi=110)  # type: ignore[attr-defined]
    import matplotlib.pyplot as plt

    plt.close(fig)  # type: ignore[arg-type]
    return path


def markdown(result: BacktestResult, plot_paths: list[Path], relative_to: Path,
             command: str) -> str:
    """The results section of docs/prediction.md."""
    overall: Score | None = result.scores.get("overall")
    lines = [
        "## Backtest results",
        "",
        f"Command: `{command}`",
        "",
        f"As-of dates every {result.step} days from {result.start} to {result.end}; the data"
        f" runs to {result.data_end}. An *instance* is one (vulnerability, line) open at one"
        " as-of date; *pairs* counts distinct (vulnerability, line). MAE and median AE are"
        " over instances whose fix happened and which the predictor dated; the baselines are"
        " scored on those same instances. Coverage is of the 10th–90th percentile interval"
        " (nominal 80%) over the same instances. Brier is over every instance whose 30-day"
        " outcome is known, including lines never fixed (an unknown estimate without a"
        " probability counts as 0.5).",
        "",
        score_table(result),
        "",
        "Estimates by basis (instances):",
        "",
        basis_table(result),
        "",
        "Calendar rules against the releases that happened (next release after each as-of"
        " date):",
        "",
        calendar_table(result),
        "",
    ]
    if overall is not None:
        name, best = overall.better_baseline
        lines += [
            f"Overall: MAE {_f(overall.mae)} days against {_f(best)} for the better baseline"
            f" ({name}); interval coverage {_pct(overall.coverage)} against 80% nominal.",
            "",
        ]
    for path in plot_paths:
        rel = path.resolve().relative_to(relative_to.resolve())
        lines.append(f"![{path.stem}]({rel.as_posix()})")
        lines.append("")
    return "\n".join(lines)
