"""The compliance report written out: JSON (placements streamed), CSV (one table at a
time, for spreadsheets) or one self-contained HTML page with its plots inline as SVG.

The HTML is rendered by Jinja2 with autoescaping (every value — tenants, reasons, titles
— is text on the page, never markup); the only markup inserted as is, is the plots' SVG
that :mod:`engine.audit.plots` drew. The page loads nothing: no script, no stylesheet,
no font (its Content-Security-Policy says so).
"""

from __future__ import annotations

import csv
import datetime as dt
from functools import lru_cache
from typing import IO, TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    import jinja2

TABLES = ("placements", "exposure", "tenants", "discovered", "delays", "configurations",
          "rollouts", "revisions", "diverged")
"""The CSV tables ``--table`` chooses among."""

_JSON = orjson.OPT_NON_STR_KEYS | orjson.OPT_UTC_Z


def _default(value: Any) -> Any:
    if isinstance(value, (set, frozenset, tuple)):
        return sorted(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def _dumps(value: Any, *, indent: bool = False) -> bytes:
    return orjson.dumps(value, default=_default,
                        option=_JSON | (orjson.OPT_INDENT_2 if indent else 0))


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, (list, tuple, set)):
        return "; ".join(_cell(v) for v in value)
    return str(value)


def _known(p: dict[str, Any]) -> str:
    return "; ".join(f"{v['id']}{' (KEV)' if v.get('kev') else ''}" for v in p["known_then"])


PLACEMENT_COLUMNS = ("seq", "decision_id", "time", "tenant", "vm", "host", "image",
                     "verdict", "bundle_revision", "attestation", "reasons", "kev_known_then",
                     "known_then")


class ReportWriter:
    """Receives the placements as they are found, then the rest (:meth:`close`)."""

    def __init__(self, out: IO[bytes], fmt: str, *, table: str = "placements",
                 html_rows: int = 500, head: dict[str, Any] | None = None) -> None:
        self.out = out
        self.fmt = fmt
        self.table = table
        self.html_rows = html_rows
        self.head = head or {}
        self.count = 0
        self.kept: list[dict[str, Any]] = []
        self._csv: Any = None
        if fmt == "json":
            out.write(b'{"report":"vigil-audit"')
            for key, value in self.head.items():
                out.write(b',"' + key.encode() + b'":' + _dumps(value))
            out.write(b',"placements":[')
        elif fmt == "csv":
            self._text = _TextOut(out)
            self._csv = csv.writer(self._text, lineterminator="\n")
            if table == "placements":
                self._csv.writerow(PLACEMENT_COLUMNS)

    def placement(self, p: dict[str, Any]) -> None:
        self.count += 1
        if self.fmt == "json":
            self.out.write((b"\n" if self.count == 1 else b",\n") + _dumps(p))
        elif self.fmt == "csv":
            if self.table == "placements":
                self._csv.writerow([
                    p["seq"], p["decision_id"], _cell(p["time"]), p["tenant"], p["vm"],
                    p["host"], p["image"] or "", p["verdict"], p["bundle_revision"] or "",
                    p["attestation"] or "", "; ".join(p["reasons"]),
                    sum(1 for v in p["known_then"] if v.get("kev")), _known(p)])
        elif len(self.kept) < self.html_rows:
            self.kept.append(p)

    def close(self, rest: dict[str, Any]) -> None:
        if self.fmt == "json":
            self.out.write(b"\n]")
            for key, value in rest.items():
                self.out.write(b',"' + key.encode() + b'":' + _dumps(value))
            self.out.write(b"}\n")
        elif self.fmt == "csv":
            if self.table != "placements":
                header, rows = _table(self.table, rest)
                self._csv.writerow(header)
                self._csv.writerows(rows)
        else:
            self.out.write(render_html({**self.head, **rest}, self.kept, self.count).encode())


class _TextOut:
    """A text stream over a binary one (csv writes text)."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out

    def write(self, text: str) -> int:
        self.out.write(text.encode())
        return len(text)


def _table(name: str, rest: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    found = rest["discovered_after"] or {}
    rows: list[list[Any]]
    if name == "exposure":
        header = ["host", "exposure_days", "vulnerabilities"]
        rows = [[h["host"], h["exposure_days"], h["vulnerabilities"]]
                for h in found.get("hosts", [])]
    elif name == "tenants":
        header = ["tenant", "vm_days", "vms"]
        rows = [[t["tenant"], t["vm_days"], t["vms"]] for t in found.get("tenants", [])]
    elif name == "discovered":
        header = ["vulnerability", "published", "kev", "max_cvss", "hosts", "exposure_days"]
        rows = [[v["id"], v["published"], v["kev"], v["max_cvss"], v["hosts"],
                 v["exposure_days"]] for v in found.get("vulnerabilities", [])]
    elif name == "delays":
        header = ["seq", "decision_id", "time", "host", "tenant", "vm", "vulnerability",
                  "component", "predicted", "basis", "confidence", "shipped",
                  "shipped_source", "error_days", "status"]
        rows = [[d[k] for k in header] for d in rest["delays"]]
    elif name == "configurations":
        header = ["image", "parent", "made", "built", "attested", "approved", "failed",
                  "retired", "targets"]
        rows = [[c.get(k) for k in header[:-1]] +
                [[f"{t['group']} {t['action']} {_cell(t['at'])}" for t in c.get("targets", [])]]
                for c in rest["patched_configurations"]]
    elif name == "rollouts":
        header = ["id", "group", "target", "status", "created_at", "updated_at", "steps"]
        rows = [[r.get(k) for k in header] for r in rest["rollouts"]]
    elif name == "revisions":
        header = ["revision", "first", "last", "decisions", "verdicts"]
        rows = [[r["revision"], r["first"], r["last"], r["decisions"],
                 [f"{k}={v}" for k, v in r["verdicts"].items()]]
                for r in rest["policy"]["revisions"]]
    else:
        header = ["seq", "decision_id", "time", "host", "tenant", "recorded",
                  "recorded_revision", "replayed", "replayed_revision", "differences"]
        rows = [[d[k] for k in header] for d in rest["policy"]["diverged"]]
    return header, [[_cell(v) for v in row] for row in rows]


@lru_cache(maxsize=1)
def _template() -> jinja2.Template:
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("engine.audit", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters["when"] = _cell
    return env.get_template("report.html.j2")


def render_html(report: dict[str, Any], placements: list[dict[str, Any]], total: int) -> str:
    """The whole report as one page (the first placements only, ``total`` said)."""
    from engine.audit import plots

    found = report.get("discovered_after") or {}
    return _template().render(
        r=report, placements=placements, total=total,
        exposure_svg=plots.exposure_over_time(found.get("daily", [])),
        fixes_svg=plots.predicted_vs_shipped(report.get("delays", [])))
