"""The kernel CNA backtest's report: Markdown tables and PNG plots (matplotlib, no display)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from engine.predict import protocol as pr

LABELS = {
    "next-release": "next release of the branch",
    "conditional-median": "conditional-median rule",
    "kind-median": "per-branch-kind conditional median",
    "base-rate": "base rate bucketed by days waited",
    "current": "current estimator (Kaplan-Meier, cure model)",
    "model-pvdb": "hazard model, PVDB features",
    "model-full": "hazard model, every record feature",
    "hazard": "hazard model, backport features",
    "hazard-cal": "calibrated hazard model",
}


def _yes(value: bool | None) -> str:
    return "n/a" if value is None else ("met" if value else "**missed**")


def _pct(stat: pr.Stat) -> str:
    if stat.value is None:
        return "–"
    if stat.low is None or stat.high is None:
        return f"{100 * stat.value:.0f}%"
    return f"{100 * stat.value:.1f}% [{100 * stat.low:.1f}, {100 * stat.high:.1f}]"


def _s(stat: pr.Stat, digits: int = 3) -> str:
    if stat.value is None:
        return "–"
    if stat.low is None or stat.high is None:
        return f"{stat.value:.{digits}f}"
    return f"{stat.value:.{digits}f} [{stat.low:.{digits}f}, {stat.high:.{digits}f}]"


def probability_table(scores: dict[str, pr.MethodScore]) -> str:
    rows = ["| method | Brier, 30 days | log-loss, 30 days | skill, 30 days | skill, 30 days,"
            " pair means | Brier, a year | log-loss, a year | skill, a year |",
            "|---|---|---|---|---|---|---|---|"]
    for name, s in scores.items():
        rows.append(f"| {LABELS.get(name, name)} | {_s(s.brier30)} | {_s(s.logloss30)} |"
                    f" {_s(s.bss30)} | {_s(s.bss30_pairs)} | {_s(s.brier_ever)} |"
                    f" {_s(s.logloss_ever)} | {_s(s.bss_ever)} |")
    return "\n".join(rows)


def date_table(result: pr.ProtocolResult) -> str:
    rows = ["| method | questions dated | censoring-aware error (days) | error / conditional"
            " median | MAE, fixes that came (days) | MAE / conditional median (both dated) |"
            " 80% interval coverage | median width | fixed window, same coverage |",
            "|---|---|---|---|---|---|---|---|---|"]
    for name, s in result.overall.items():
        if name == "base-rate":
            continue
        every = result.ratios.get(f"{name}: censoring-aware error, every question")
        both = result.ratios.get(f"{name}: MAE, fixes that came, both dated")
        rows.append(
            f"| {LABELS.get(name, name)} | {_pct(s.dated_share)} | {_s(s.error, 1)} |"
            f" {_s(every, 3) if every else '1'} | {_s(s.mae_fixed, 1)} |"
            f" {_s(both, 3) if both else '1'} | {_pct(s.coverage)} |"
            f" {pr.fmt_days(s.width)} | {pr.fmt_days(s.fixed_window)} |")
    return "\n".join(rows)


def group_table(result: pr.ProtocolResult, methods: list[str]) -> str:
    head = "| group | questions (pairs) | " + " | ".join(
        f"{m}: skill 30 d / skill a year / error" for m in methods) + " |"
    rows = [head, "|---|---|" + "---|" * len(methods)]
    for group, scores in result.groups.items():
        first = scores[methods[0]]
        n = sum(first.by_basis.values())
        cells = []
        for m in methods:
            s = scores.get(m)
            if s is None:
                cells.append("–")
                continue
            cells.append(f"{_s(s.bss30, 2)} / {_s(s.bss_ever, 2)} / {_s(s.error, 0)}")
        rows.append(f"| {group} | {n} ({first.error.n_pairs}) | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def calibration_table(result: pr.ProtocolResult, method: str) -> str:
    q, a = result.questions, result.answers[method]
    rows = ["| decile | P(30 days): predicted / observed (questions) |"
            " P(a year): predicted / observed (questions) |", "|---|---|---|"]
    m = result.scored
    r30 = {int(min(p * 10, 9)): (p, o, n) for p, o, n in pr.reliability(
        a.p30[m], result.y30[m], q.pair[m])}
    rev = {int(min(p * 10, 9)): (p, o, n) for p, o, n in pr.reliability(
        a.p_ever[m], result.y_ever[m], q.pair[m])}

    def cell(x: tuple[float, float, int] | None) -> str:
        if x is None:
            return "–"
        p, o, n = x
        flag = " **off**" if n >= 100 and abs(p - o) > 0.05 else ""
        return f"{p:.3f} / {o:.3f} ({n}){flag}"
    for k in range(10):
        rows.append(f"| {k / 10:.1f}–{(k + 1) / 10:.1f} | {cell(r30.get(k))} |"
                    f" {cell(rev.get(k))} |")
    return "\n".join(rows)


def target_table(result: pr.ProtocolResult, methods: list[str]) -> str:
    """The targets, one column per method (figure and met / missed)."""
    rows = ["| target | " + " | ".join(LABELS.get(m, m) for m in methods) + " |",
            "|---|" + "---|" * len(methods)]
    per = [pr.targets(result, m) for m in methods]
    for k, first in enumerate(per[0]):
        cells = [f"{ts[k].figure}: {_yes(ts[k].met)}" if k < len(ts) else "–" for ts in per]
        rows.append(f"| {first.what} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def plots(result: pr.ProtocolResult, folder: Path, prefix: str = "prediction") -> list[Path]:
    """Reliability diagrams, error by days waited, coverage by basis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    q, m = result.questions, result.scored
    shown: list[str] = [n for n in ("base-rate", "current", "model-pvdb", "model-full", "hazard",
                                    "hazard-cal") if n in result.answers]
    written: list[Path] = []

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.8))
    for ax, attr, y, title in ((axes[0], "p30", result.y30, "P(fix within 30 days)"),
                               (axes[1], "p_ever", result.y_ever, "P(fix within a year)")):
        ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect")
        ax.fill_between([0, 1], [-0.05, 0.95], [0.05, 1.05], color="grey", alpha=0.15,
                        label="±5 points")
        for name in shown:
            p = getattr(result.answers[name], attr)
            rows = pr.reliability(p[m], y[m], q.pair[m])
            if not rows:
                continue
            xs, ys, _ = zip(*rows, strict=True)
            ax.plot(xs, ys, "o-", ms=4, label=LABELS.get(name, name))
            for x, yy, n in rows:
                if name == shown[-1]:
                    ax.annotate(str(n), (x, yy), fontsize=6, xytext=(3, -8),
                                textcoords="offset points")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("predicted")
        ax.set_ylabel("observed share")
        ax.set_title(f"Reliability of {title}")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="upper left")
    written.append(_save(fig, folder / f"{prefix}_reliability.png"))

    fig, ax = plt.subplots(figsize=(7.5, 4.4))
    ages = np.asarray(sorted(set((q.day - q.published)[m].tolist())))
    waited = q.day - q.published
    for method, a in result.answers.items():
        if method == "base-rate":
            continue
        err = pr.date_error(q, a.date)
        means = [float(err[m & (waited == g)].mean()) for g in ages]
        ax.plot(ages, means, "o-", ms=4, label=LABELS.get(method, method))
    ax.set_xscale("log")
    ax.set_xticks(ages, [str(g) for g in ages])
    ax.set_xlabel("days since the CVE became public (question asked)")
    ax.set_ylabel("mean censoring-aware date error (days)")
    ax.set_title("Date error by days waited")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    written.append(_save(fig, folder / f"{prefix}_error_by_wait.png"))

    fig, ax = plt.subplots(figsize=(7.5, 4.4))
    labels, values, counts = [], [], []
    came = q.fixed < np.minimum(q.observable, q.day + pr.EVER) + 1
    for method, a in result.answers.items():
        has = m & came & ~np.isnan(a.low)
        basis = np.asarray(a.basis)
        for b in sorted(set(basis[has].tolist())):
            sel = has & (basis == b)
            inside = (q.fixed[sel] >= a.low[sel]) & (q.fixed[sel] <= a.high[sel])
            labels.append(f"{method}\n{b}")
            values.append(float(inside.mean()))
            counts.append(int(sel.sum()))
    if values:
        bars = ax.bar(range(len(values)), values)
        for bar, n in zip(bars, counts, strict=True):
            ax.annotate(f"n={n}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", fontsize=7, xytext=(0, 2), textcoords="offset points")
        ax.set_xticks(range(len(values)), labels, fontsize=7)
    ax.axhspan(0.75, 0.85, color="green", alpha=0.15, label="target 75–85%")
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of fixes that came inside the 80% interval")
    ax.set_title("Interval coverage by method and basis")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="y")
    written.append(_save(fig, folder / f"{prefix}_coverage.png"))
    return written


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def markdown(result: pr.ProtocolResult, plot_paths: list[Path], relative_to: Path,
             command: str, chosen: str) -> str:
    """The results section of docs/prediction.md."""
    q, m = result.questions, result.scored
    pairs = len({int(i) for i in q.pair[m]})
    fixed_pairs = len({int(i) for i in q.pair[m] if q.pairs[int(i)].fixed is not None})
    groups = [n for n in ("base-rate", "current", chosen) if n in result.answers]
    estimators = [n for n in ("current", "model-pvdb", "model-full", "hazard", "hazard-cal",
                              chosen)
                  if n in result.answers]
    estimators = list(dict.fromkeys(estimators))
    lines = [
        "## Backtest results (kernel CNA, full history)",
        "",
        f"Command: `{command}`",
        "",
        f"Questions asked from {result.start} to {result.end}; the data runs to"
        f" {result.data_end}. {len(q.pairs)} (CVE, branch) pairs were open when their CVE"
        f" became public; {pairs} of them were asked in that period ({fixed_pairs} later got"
        f" their fix, the others never did), in {int(m.sum())} questions (each pair at"
        f" {', '.join(str(a) for a in pr.AGES)} days after publication while open and"
        " maintained). Every question weighs the same and no pair has more than"
        f" {len(pr.AGES)}; intervals in brackets are 90% intervals from resampling whole"
        " pairs. *Skill* is the Brier skill score against the base rate bucketed by days"
        " waited. A probability a method does not give is scored as 0.5.",
        "",
        "### Probabilities",
        "",
        probability_table(result.overall),
        "",
        "### Dates",
        "",
        "The censoring-aware error cuts the prediction and the truth at the last observable"
        " day (at most a year after the question): no date counts as \"not within that\"."
        " *MAE, fixes that came* is over questions whose fix came and which the method"
        " dated; the ratios against the conditional-median rule are on the questions both"
        " dated. The fixed window is the width w for which [T, T+w] covers the same share"
        " of the same fixes as the method's intervals.",
        "",
        date_table(result),
        "",
        "### By branch kind and year (as of the question)",
        "",
        group_table(result, groups),
        "",
    ]
    for name in estimators:
        lines += [f"### Calibration of {LABELS.get(name, name)}", "",
                  calibration_table(result, name), ""]
    lines += ["### Targets", "", target_table(result, estimators), ""]
    lines += result.notes
    for path in plot_paths:
        rel = path.resolve().relative_to(relative_to.resolve())
        lines.append(f"![{path.stem}]({rel.as_posix()})")
        lines.append("")
    return "\n".join(lines)
