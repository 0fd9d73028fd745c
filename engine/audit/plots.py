"""The report's plots as SVG text, drawn on the server by matplotlib (already the
predictor's plotting library; no display, no browser script). Text is drawn as paths, so
the SVG needs no font; the ids are salted with a fixed value, so the same report gives
the same bytes."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Sequence
from typing import Any


def _svg(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buffer = io.StringIO()
    no_metadata = {"Date": None, "Creator": None, "Format": None, "Type": None}
    fig.savefig(buffer, format="svg", bbox_inches="tight", metadata=no_metadata)
    plt.close(fig)
    text = buffer.getvalue()
    return text[text.index("<svg"):]  # inline: no XML declaration or doctype


def _figure(width: float = 7.5, height: float = 2.8) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.hashsalt"] = "vigil-audit"
    plt.rcParams["svg.fonttype"] = "path"
    fig, ax = plt.subplots(figsize=(width, height))
    ax.spines[["top", "right"]].set_visible(False)
    return fig, ax


def exposure_over_time(daily: Sequence[dict[str, Any]]) -> str | None:
    """Hosts exposed per day to a vulnerability unknown when their VMs were placed."""
    if not daily:
        return None
    fig, ax = _figure()
    days = [d["date"] for d in daily]
    counts = [d["hosts_exposed"] for d in daily]
    ax.step(days, counts, where="post", color="#b03a2e")
    ax.fill_between(days, counts, step="post", alpha=0.2, color="#b03a2e")
    ax.set_ylabel("hosts exposed")
    ax.set_title("Exposure discovered after the fact, per day", fontsize=10)
    ax.set_ylim(bottom=0)
    fig.autofmt_xdate()
    return _svg(fig)


def predicted_vs_shipped(delays: Sequence[dict[str, Any]]) -> str | None:
    """Each delay's predicted fix date against the date the fix shipped (the diagonal:
    on the day predicted)."""
    points: list[tuple[dt.date, dt.date, str]] = []
    for d in delays:
        if d.get("predicted") and d.get("shipped"):
            predicted = dt.date.fromisoformat(str(d["predicted"]))
            shipped = d["shipped"] if isinstance(d["shipped"], dt.date) else \
                dt.date.fromisoformat(str(d["shipped"]))
            points.append((predicted, shipped, str(d.get("basis"))))
    if not points:
        return None
    fig, ax = _figure(5.0, 4.0)
    for basis, colour in (("estimated", "#1f77b4"), ("vendor", "#2ca02c")):
        chosen = [(p, s) for p, s, b in points if b == basis]
        if chosen:
            ax.scatter([p for p, _ in chosen], [s for _, s in chosen], s=18, color=colour,
                       label=f"{basis} date")
    import matplotlib.dates as mdates

    low = min(min(p, s) for p, s, _ in points) - dt.timedelta(days=2)
    high = max(max(p, s) for p, s, _ in points) + dt.timedelta(days=2)
    ax.plot([low, high], [low, high], color="#888888", linewidth=0.8, linestyle="--",
            label="on the day predicted")
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(mdates.AutoDateLocator(  # type: ignore[no-untyped-call]
            minticks=3, maxticks=8))
        axis.set_major_formatter(
            mdates.DateFormatter("%Y-%m-%d"))  # type: ignore[no-untyped-call]
    ax.set_xlim(low, high)
    ax.set_ylim(low, high)
    ax.set_xlabel("predicted fix date")
    ax.set_ylabel("fix shipped")
    ax.set_title("Predicted against shipped fix dates", fontsize=10)
    ax.legend(fontsize=8, frameon=False)
    fig.autofmt_xdate()
    return _svg(fig)
