"""``vigil images``: the image catalog (``VIGIL_IMAGES_DB``).

``list``, ``show`` and ``history`` read it; ``import`` adds an image version from its
signed reference manifest; ``approve`` puts an attested version in service (and writes
its manifest into ``VIGIL_ATTEST_REFERENCES`` when set); ``target`` and ``rollback``
set a host group's target version; ``prepare`` builds and attests what the predictor's
preparation queue asks for (or, with ``--image`` and ``--cve``, one patched version).
"""

from __future__ import annotations

import datetime as dt
import getpass
from pathlib import Path
from typing import Annotated, Any

import typer

from engine.attest import load_manifest, load_signing_key, load_verification_key
from engine.cli import output
from engine.cli.common import DbOption, JsonOption, read_file, settings
from engine.config import Settings
from engine.errors import ConfigError, UsageError
from engine.images import (
    Catalog,
    DefaultBuilder,
    ImageRecord,
    PatchCatalogue,
    SwtpmStaging,
    consume_queue,
    from_findings,
    load_catalogue,
    make_plan,
    prepare_image,
)

app = typer.Typer(help="The image catalog: host image versions, history, group targets.",
                  no_args_is_help=True)

ImagesDbOption = Annotated[Path | None, typer.Option(
    "--images-db", help="Image catalog file (default: VIGIL_IMAGES_DB).")]
ActorOption = Annotated[str | None, typer.Option(
    "--actor", help="Who makes the change, for the history (default: the user name).")]
ReasonOption = Annotated[str | None, typer.Option("--reason", help="Why, for the history.")]
CatalogueOption = Annotated[Path | None, typer.Option(
    "--catalogue", help="Operator patch catalogue, YAML or JSON (default: "
    "VIGIL_PATCH_CATALOGUE).")]


def split_ref(text: str) -> tuple[str, str]:
    """``NAME@VERSION`` -> (name, version)."""
    name, sep, version = text.rpartition("@")
    if not sep or not name or not version:
        raise UsageError(f"{text!r} is not NAME@VERSION, e.g. hv-base@2026.05.1")
    return name, version


def actor_of(actor: str | None) -> str:
    if actor:
        return actor
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "vigil"


def open_catalog(cfg: Settings, *, read_only: bool = False) -> Catalog:
    return Catalog.from_settings(cfg, read_only=read_only)


def patch_catalogue(cfg: Settings, path: Path | None) -> PatchCatalogue | None:
    path = path or cfg.patch_catalogue
    return None if path is None else load_catalogue(path)


def _record_json(record: ImageRecord, *, manifest: bool = False) -> dict[str, Any]:
    data = record.model_dump(mode="json")
    if not manifest:
        data["manifest"] = record.manifest is not None
    return data


def _when(value: dt.datetime) -> str:
    return f"{value.astimezone(dt.UTC):%Y-%m-%d %H:%M:%S}Z"


@app.command("list")
def list_images(
    name: Annotated[str | None, typer.Option("--name", help="Only this image.")] = None,
    status: Annotated[str | None, typer.Option("--status", help="Only this status.")] = None,
    images_db: ImagesDbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Image versions, with each host group's target."""
    cfg = settings(images_db=images_db)
    with open_catalog(cfg, read_only=True) as catalog:
        records = catalog.images(name, status)
        targets = catalog.targets()
    if as_json:
        output.emit_json({"images": [_record_json(r) for r in records],
                          "targets": [t.model_dump(mode="json") for t in targets]})
        return
    groups: dict[tuple[str, str], list[str]] = {}
    for t in targets:
        groups.setdefault((t.image.name, t.image.version), []).append(t.group)
    output.table(f"{len(records)} image versions ({cfg.images_db})",
                 ["image", "version", "parent", "status", "patches", "target of", "made by",
                  "made at"],
                 [(r.name, r.version, r.parent_version or "", r.status, len(r.patches),
                   ", ".join(groups.get((r.name, r.version), [])), r.made_by,
                   _when(r.made_at)) for r in records])


@app.command()
def show(
    image: Annotated[str, typer.Argument(help="NAME@VERSION", show_default=False)],
    images_db: ImagesDbOption = None,
    as_json: JsonOption = False,
) -> None:
    """One image version: components, patches, manifest, history."""
    cfg = settings(images_db=images_db)
    name, version = split_ref(image)
    with open_catalog(cfg, read_only=True) as catalog:
        record = catalog.get(name, version)
        history = catalog.history(name=name, version=version)
    if as_json:
        output.emit_json({"image": _record_json(record, manifest=True),
                          "history": [h.model_dump(mode="json") for h in history]})
        return
    typer.echo(f"{record.label}: {record.status} (parent {record.parent_version or 'none'}; "
               f"made by {record.made_by} at {_when(record.made_at)}; signed manifest "
               f"{'yes' if record.manifest else 'no'})")
    output.table("components", ["kind", "component", "version"],
                 [(c.kind, c.label, c.version) for c in record.components])
    if record.patches:
        output.table("patches applied", ["patch", "from", "to", "reboot", "fixes"],
                     [(p.id, p.from_version or "", p.to_version, "yes" if p.reboot else "no",
                       ", ".join(p.fixes)) for p in record.patches])
    _history_table(history)


def _history_table(history: list[Any]) -> None:
    output.table(f"{len(history)} changes", ["#", "at", "actor", "action", "image", "group",
                                             "before", "after", "reason"],
                 [(h.seq, _when(h.at), h.actor, h.action,
                   f"{h.image_name}@{h.image_version}" if h.image_name else "",
                   h.group_name or "", h.before or "", h.after or "", h.reason or "")
                  for h in history])


@app.command()
def history(
    image: Annotated[str | None, typer.Argument(help="NAME or NAME@VERSION (default: all).",
                                                show_default=False)] = None,
    group: Annotated[str | None, typer.Option("--group", help="Only this host group's "
                                              "target changes.")] = None,
    images_db: ImagesDbOption = None,
    as_json: JsonOption = False,
) -> None:
    """The append-only history of changes, oldest first."""
    cfg = settings(images_db=images_db)
    name = version = None
    if image:
        name, version = split_ref(image) if "@" in image else (image, None)
    with open_catalog(cfg, read_only=True) as catalog:
        rows = catalog.history(name=name, version=version, group=group)
    if as_json:
        output.emit_json({"history": [h.model_dump(mode="json") for h in rows]})
        return
    _history_table(rows)


@app.command("import")
def import_image(
    manifest: Annotated[Path, typer.Argument(help="Signed reference manifest (.jws).",
                                             show_default=False)],
    approved: Annotated[bool, typer.Option("--approved", help="The version is already in "
                                           "service: record it approved.")] = False,
    key: Annotated[list[Path] | None, typer.Option(
        "--key", help="PEM public key of the image pipeline (default: "
        "VIGIL_ATTEST_REFERENCE_KEYS).")] = None,
    parent: Annotated[str | None, typer.Option("--parent", help="Parent version.")] = None,
    images_db: ImagesDbOption = None,
    actor: ActorOption = None,
    reason: ReasonOption = None,
    as_json: JsonOption = False,
) -> None:
    """Add an image version from its signed reference manifest (signature verified)."""
    cfg = settings(images_db=images_db)
    paths = key or cfg.attest_reference_keys
    if not paths:
        raise ConfigError("no key to verify the manifest with",
                          tip="pass --key or set VIGIL_ATTEST_REFERENCE_KEYS")
    token = read_file(manifest, "manifest").decode().strip()
    parsed = load_manifest(token, [load_verification_key(p) for p in paths])
    with open_catalog(cfg) as catalog:
        record = catalog.create(parsed.image.name, parsed.image.version,
                                components=parsed.components, actor=actor_of(actor),
                                parent_version=parent, manifest=token,
                                status="approved" if approved else "built",
                                reason=reason or f"imported from {manifest.name}")
    if as_json:
        output.emit_json({"image": _record_json(record)})
        return
    typer.echo(f"imported {record.label} ({record.status}, {len(record.components)} "
               "components)")


@app.command()
def approve(
    image: Annotated[str, typer.Argument(help="NAME@VERSION", show_default=False)],
    images_db: ImagesDbOption = None,
    actor: ActorOption = None,
    reason: ReasonOption = None,
    as_json: JsonOption = False,
) -> None:
    """Approve an attested version: it may now be a group's target; its manifest joins
    VIGIL_ATTEST_REFERENCES (when set), so the verifier accepts hosts booting it."""
    cfg = settings(images_db=images_db)
    name, version = split_ref(image)
    with open_catalog(cfg) as catalog:
        record = catalog.set_status(name, version, "approved", actor=actor_of(actor),
                                    reason=reason or "approved")
    written = None
    if cfg.attest_references is not None and record.manifest:
        cfg.attest_references.mkdir(parents=True, exist_ok=True)
        written = cfg.attest_references / f"{name}-{version}.jws"
        written.write_text(record.manifest + "\n")
    if as_json:
        output.emit_json({"image": _record_json(record),
                          "reference": None if written is None else str(written)})
        return
    typer.echo(f"approved {record.label}" + (f"; reference manifest {written}" if written
                                               else ""))


@app.command()
def target(
    group: Annotated[str, typer.Argument(help="Host group.", show_default=False)],
    image: Annotated[str, typer.Argument(help="NAME@VERSION (approved)", show_default=False)],
    images_db: ImagesDbOption = None,
    actor: ActorOption = None,
    reason: ReasonOption = None,
    as_json: JsonOption = False,
) -> None:
    """Make an approved version the target of a host group."""
    cfg = settings(images_db=images_db)
    name, version = split_ref(image)
    with open_catalog(cfg) as catalog:
        before = catalog.target(group)
        now = catalog.set_target(group, name, version, actor=actor_of(actor), reason=reason)
    if as_json:
        output.emit_json({"group": group, "before": before, "target": now})
        return
    was = f" (was {before.image.version})" if before else ""
    typer.echo(f"{group} now targets {name}@{version}{was}")


@app.command()
def rollback(
    group: Annotated[str, typer.Argument(help="Host group.", show_default=False)],
    to: Annotated[str, typer.Option("--to", help="The approved version to return to.")],
    images_db: ImagesDbOption = None,
    actor: ActorOption = None,
    reason: ReasonOption = None,
    as_json: JsonOption = False,
) -> None:
    """Make a previous approved version the group's target again."""
    cfg = settings(images_db=images_db)
    with open_catalog(cfg) as catalog:
        before, after = catalog.rollback(group, to, actor=actor_of(actor), reason=reason)
    if as_json:
        output.emit_json({"group": group, "before": before, "target": after})
        return
    was = before.image.version if before else "none"
    typer.echo(f"{group} rolled back to {after.image.name}@{after.image.version} (was {was});"
               " hosts of the group move back at the next rollout")


@app.command()
def prepare(
    image: Annotated[str | None, typer.Option(
        "--image", help="Build one patched version of this approved NAME@VERSION instead "
        "of consuming the preparation queue.")] = None,
    cve: Annotated[list[str] | None, typer.Option(
        "--cve", help="With --image: a vulnerability to close (repeatable; default: all "
        "that affect it).")] = None,
    version: Annotated[str | None, typer.Option("--version", help="With --image: the new "
                                                "version (default: <base>-p<n>).")] = None,
    catalogue: CatalogueOption = None,
    staging: Annotated[Path | None, typer.Option(
        "--staging", help="Folder for the staging software TPM (default: a temporary "
        "one).")] = None,
    db: DbOption = None,
    images_db: ImagesDbOption = None,
    actor: ActorOption = None,
    as_json: JsonOption = False,
) -> None:
    """Build, sign and attest on a staging software TPM the patched versions the
    preparation queue asks for; mark each request done or failed with the reason."""
    from engine import predict
    from engine.pvdb import Pvdb

    cfg = settings(db, images_db=images_db)
    if cfg.images_signing_key is None:
        raise ConfigError("no key to sign reference manifests with",
                          tip="set VIGIL_IMAGES_SIGNING_KEY to the image pipeline's PEM "
                          "private key (vigil attest keygen makes one)")
    signing_key = load_signing_key(cfg.images_signing_key)
    keys = [load_verification_key(cfg.images_signing_key)]
    who = actor_of(actor)
    patches = patch_catalogue(cfg, catalogue)
    if cve and image is None:
        raise UsageError("--cve needs --image")
    stager = SwtpmStaging(staging)
    with Pvdb.open(settings=cfg, read_only=True) as pvdb, open_catalog(cfg) as catalog:
        estimator = predict.estimator_for(pvdb)

        def findings_for(components: Any) -> Any:
            return pvdb.affecting(list(components), estimator=estimator).findings

        if image is not None:
            name, base_version = split_ref(image)
            base = catalog.get(name, base_version)
            findings = findings_for(base.components)
            graph, facts = from_findings(base.components, findings, patches)
            wanted = cve or sorted({f.vuln_id for f in findings})
            plan = make_plan(graph, base.components, wanted, facts)
            done = prepare_image(catalog, base, plan, builder=DefaultBuilder(), staging=stager,
                                 signing_key=signing_key, keys=keys, actor=who,
                                 version=version)
            if as_json:
                output.emit_json({"image": _record_json(done.image), "plan": done.plan,
                                  "reason": done.reason,
                                  "differences": done.staging.differences
                                  if done.staging else []})
            else:
                typer.echo(done.reason)
            if not done.attested:
                raise typer.Exit(1)
            return
        with predict.Queue(cfg.predict_db) as queue:
            outcomes = consume_queue(queue, catalog, findings_for, builder=DefaultBuilder(),
                                     staging=stager, signing_key=signing_key, keys=keys,
                                     actor=who, catalogue=patches)
    if as_json:
        output.emit_json({"queue": str(cfg.predict_db), "outcomes": [
            {"request_id": o.request_id, "image": o.image, "vuln_id": o.vuln_id,
             "component": o.component, "outcome": o.outcome, "reason": o.reason,
             "version": o.version} for o in outcomes]})
    else:
        output.table(f"{len(outcomes)} preparation requests ({cfg.predict_db})",
                     ["image", "vulnerability", "outcome", "version", "reason"],
                     [(o.image, o.vuln_id, o.outcome, o.version or "", o.reason)
                      for o in outcomes])
    if any(o.outcome == "failed" for o in outcomes):
        raise typer.Exit(1)
