"""``vigil patch plan``: the minimal patch plan for an image in the catalog.

The patch graph comes from the PVDB's findings for the image's components (fixed
versions per line, vendor dates; predicted dates for fixes not out yet) and the
operator's patch catalogue (``--catalogue`` or ``VIGIL_PATCH_CATALOGUE``). The plan
lists the patches in install order, the resulting component versions, and what stays
open and why. A missing requirement or a requirement cycle is an error naming the
patches.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from engine.cli import output
from engine.cli.common import DbOption, JsonOption, settings
from engine.cli.images import (
    CatalogueOption,
    ImagesDbOption,
    open_catalog,
    patch_catalogue,
    split_ref,
)
from engine.images import from_findings, make_plan

app = typer.Typer(help="Patch plans: which patches close which vulnerabilities, in what "
                  "order.", no_args_is_help=True)


@app.command()
def plan(
    image: Annotated[str, typer.Option("--image", help="Image version NAME@VERSION.")],
    cve: Annotated[list[str] | None, typer.Option(
        "--cve", help="A vulnerability to close (repeatable; default: every one that "
        "affects the image).")] = None,
    catalogue: CatalogueOption = None,
    graph_out: Annotated[Path | None, typer.Option(
        "--graph", help="Also write the patch graph (JSON) to this file.")] = None,
    db: DbOption = None,
    images_db: ImagesDbOption = None,
    as_json: JsonOption = False,
) -> None:
    """The fewest patches closing the vulnerabilities (fewest reboots, then fewest
    patches, then the smallest version jump), in install order."""
    from engine import predict
    from engine.pvdb import Pvdb

    cfg = settings(db, images_db=images_db)
    name, version = split_ref(image)
    patches = patch_catalogue(cfg, catalogue)
    with open_catalog(cfg, read_only=True) as catalog:
        base = catalog.get(name, version)
    with Pvdb.open(settings=cfg, read_only=True) as pvdb:
        report = pvdb.affecting(base.components, estimator=predict.estimator_for(pvdb))
    graph, facts = from_findings(base.components, report.findings, patches)
    wanted = cve or sorted({f.vuln_id for f in report.findings})
    result = make_plan(graph, base.components, wanted, facts)
    if graph_out is not None:
        output_bytes = output_json(graph.to_json())
        graph_out.write_bytes(output_bytes)
    if as_json:
        output.emit_json({"image": base.label, "plan": result})
        return
    typer.echo(f"{base.label}: {len(result.steps)} patches, {result.reboots} reboots, "
               f"{len(result.closed)} of {len(result.requested)} vulnerabilities closed")
    output.table("install order", ["#", "patch", "from", "to", "reboot", "closes",
                                   "needed by"],
                 [(s.order, s.patch, s.from_version or "", s.to_version,
                   "yes" if s.reboot else "live", ", ".join(s.closes),
                   ", ".join(s.required_by)) for s in result.steps])
    if result.open:
        output.table("stays open", ["vulnerability", "component", "reason", "why"],
                     [(o.vuln_id, o.component or "", o.reason, o.detail)
                      for o in result.open])


def output_json(data: object) -> bytes:
    import orjson

    return orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n"
