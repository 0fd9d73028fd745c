"""The report as one readable, self-contained HTML page (no scripts, no external assets).

Rendered with Jinja2 with autoescaping on: every value of the report (titles, reasons,
component names come from feeds and policies) is text on the page, never markup.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import jinja2

    from engine.provision.report_model import TenantReport


@lru_cache(maxsize=1)
def _template() -> jinja2.Template:
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("engine.provision", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    return env.get_template("report.html.j2")


def render_html(report: TenantReport, *, verified: bool | None = None) -> str:
    """The report as HTML. ``verified`` says on the page whether its signature was
    checked (``True``), failed (``False``) or was not checked (``None``)."""
    from engine.provision.report_model import PATCH_STATUS_TEXT

    return _template().render(
        report=report, verified=verified, patch_text=PATCH_STATUS_TEXT,
        vex_json=json.dumps(report.vex, indent=2, sort_keys=True))
