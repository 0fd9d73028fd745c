"""``vigil rollout``: plan, run (on the fleet simulator), follow, pause, resume and abort
the move of a host group to a target image version; check a rollout's trace.

Where the image catalog exists (``VIGIL_IMAGES_DB``), the group's target and approved
versions come from it and hosts are re-attested for real, on software TPMs against each
version's signed reference manifest (:class:`engine.rollout.CatalogTargets`,
:class:`engine.rollout.SwtpmAttestor`). Without a catalog the command says so and falls
back to ``--to``, ``--approved`` and the in-memory attestor."""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from engine.attest import VerificationKey, load_verification_key
from engine.cli import output
from engine.cli.common import JsonOption, settings
from engine.cli.fleet import FleetDbOption, fleet_path
from engine.config import Settings
from engine.errors import UsageError
from engine.fleet import Fleet, FleetSnapshot
from engine.rollout import (
    Attestor,
    CatalogTargets,
    Failures,
    MemoryAttestor,
    NonMigratableAction,
    Plan,
    RolloutOptions,
    RolloutPolicy,
    RolloutRefused,
    RolloutStateError,
    Runner,
    StaticTargets,
    Summary,
    SwtpmAttestor,
    TargetSource,
    Window,
    abort_rollout,
    attestor_for,
    check_trace,
    pause_rollout,
    plan,
    request_resume,
    resume_rollout,
    rollout_status,
    start_rollout,
)

app = typer.Typer(help="Roll a host group out to a target image version, host by host.",
                  no_args_is_help=True)

Group = Annotated[str, typer.Argument(help="The host group.")]
To = Annotated[str | None, typer.Option(
    "--to", help="The target image version (default: the group's target in the image"
    " catalog; needed without one).")]
MaxUnavailable = Annotated[str, typer.Option(
    "--max-unavailable", help="Hosts out of service at once: a count or a percentage.")]
Canary = Annotated[int, typer.Option("--canary", min=0, help="Hosts in the first wave.")]
Threshold = Annotated[str, typer.Option(
    "--failure-threshold", help="Failed hosts a wave tolerates before the rollout halts.")]
Windows = Annotated[list[str] | None, typer.Option(
    "--window", help="Maintenance window in UTC, HH:MM-HH:MM, optionally after days"
    " (sat,sun 22:00-04:00); repeatable.")]
NonMigratable = Annotated[NonMigratableAction, typer.Option(
    "--non-migratable", help="For VMs that cannot be live-migrated, unless their"
    " vigil.disruption label says otherwise.")]
Approved = Annotated[list[str] | None, typer.Option(
    "--approved", help="Without an image catalog: a version that may take VMs (default:"
    " every version); repeatable.")]
AttestCurrent = Annotated[bool, typer.Option(
    "--attest-current", help="With the image catalog: first attest, on software TPMs, each"
    " host of the group that has no valid attestation result, on the version it runs.")]
Untrusted = Annotated[list[str] | None, typer.Option(
    "--untrusted", help="A host whose attestation is not valid now; repeatable.")]
FailMigration = Annotated[list[str] | None, typer.Option(
    "--fail-migration", help="Simulator: VM[:N], its first N (1) migrations fail.")]
FailAttest = Annotated[list[str] | None, typer.Option(
    "--fail-attest", help="Simulator: a host whose attestation on the target fails (with"
    " the image catalog: it boots a kernel its image does not name).")]
NoBoot = Annotated[list[str] | None, typer.Option(
    "--no-boot", help="Simulator: a host that does not come back after its reimage.")]
RolloutDb = Annotated[Path | None, typer.Option(
    "--rollout-db", help="Rollout state file (default: VIGIL_ROLLOUT_DB).")]
Pace = Annotated[float, typer.Option(
    "--pace", min=0, help="Simulator: real seconds to wait at each step.")]
Id = Annotated[str, typer.Argument(metavar="ID", help="The rollout id.")]


def _policy(max_unavailable: str, canary: int, threshold: str, windows: list[str] | None,
            non_migratable: NonMigratableAction) -> RolloutPolicy:
    return RolloutPolicy(max_unavailable=max_unavailable, canary=canary,
                         failure_threshold=int(threshold) if threshold.isdigit() else threshold,
                         windows=tuple(Window.parse(w) for w in windows or []),
                         non_migratable=non_migratable)


def _failures(fail_migration: list[str] | None, fail_attest: list[str] | None,
              no_boot: list[str] | None) -> Failures:
    migrations: dict[str, int] = {}
    for spec in fail_migration or []:
        vm, _, n = spec.partition(":")
        if n and not n.isdigit():
            raise UsageError(f"--fail-migration {spec}: use VM or VM:N")
        migrations[vm] = int(n or 1)
    return Failures(migrations=migrations, attestation=list(fail_attest or []),
                    no_boot=list(no_boot or []))


class _Ports:
    """Where the rollout's target, approved versions and attestations come from."""

    def __init__(self, targets: TargetSource, attestor: Attestor, spec: dict[str, Any],
                 untrusted: list[str], note: str | None) -> None:
        self.targets, self.attestor, self.spec = targets, attestor, spec
        self.untrusted, self.note = untrusted, note

    def json(self) -> dict[str, Any]:
        return {"targets": "catalog" if isinstance(self.targets, CatalogTargets) else "static",
                "attestor": self.spec, "untrusted": self.untrusted}


def _reference_keys(cfg: Settings) -> list[VerificationKey]:
    paths = [*cfg.attest_reference_keys,
             *([cfg.images_signing_key] if cfg.images_signing_key is not None else [])]
    return [load_verification_key(p) for p in paths]


def _ports(cfg: Settings, group: str, to: str | None, approved: list[str] | None,
           untrusted: list[str] | None, failures: Failures, snapshot: FleetSnapshot,
           attest_current: bool) -> _Ports:
    hosts = [h for h in snapshot.hosts if h.group == group]
    if not cfg.images_db.exists():
        if to is None:
            raise UsageError(f"there is no image catalog at {cfg.images_db}: give the target"
                             " version with --to",
                             tip="or point VIGIL_IMAGES_DB at the image catalog")
        if attest_current:
            raise UsageError("--attest-current needs the image catalog (VIGIL_IMAGES_DB):"
                             " its signed manifests are what hosts are attested against")
        note = (f"no image catalog at {cfg.images_db}: the target is --to {to}, "
                + ("the versions --approved names" if approved else "every version")
                + " may take VMs, and re-attestation is simulated in memory (every host"
                  " passes but those --fail-attest names)")
        targets = StaticTargets({group: to}, approved={group: approved} if approved else None)
        attestor = MemoryAttestor(untrusted=untrusted or [],
                                  fail={(h, to) for h in failures.attestation})
        return _Ports(targets, attestor, {"kind": "memory"}, list(untrusted or []), note)
    if approved:
        raise UsageError(f"--approved: with the image catalog ({cfg.images_db}), the approved"
                         " versions are the ones it approves",
                         tip="vigil images approve NAME@VERSION")
    catalog = CatalogTargets.load(cfg.images_db, _reference_keys(cfg))
    image = catalog.image(group)
    if to is not None and to != image.version:
        raise RolloutRefused(f"--to {to}: the target of {group} in the image catalog is"
                             f" {image.name}@{image.version}",
                             tip=f"vigil images target {group} {image.name}@{to} makes it the"
                                 " target (it must be approved)")
    results_key = (load_verification_key(cfg.attest_result_verification_key)
                   if cfg.attest_result_verification_key is not None else None)
    swtpm = SwtpmAttestor.for_group(
        catalog, group, hosts, results=cfg.attest_results, results_key=results_key,
        ttl_s=cfg.attest_result_ttl, untrusted=untrusted or [],
        tamper={(h, image.version) for h in failures.attestation})
    if attest_current:
        for host, outcome in swtpm.attest_current(hosts).items():
            if not outcome.ok:
                output.stderr().print(f"warning: {host} failed attestation on its current"
                                      f" version: {outcome.reason}", markup=False,
                                      highlight=False)
    distrusted = [h.id for h in hosts if not swtpm.trusted(h.id)]
    if distrusted:
        shown = "; ".join(f"{h} ({swtpm.why_untrusted(h)})" for h in distrusted[:5])
        more = f" and {len(distrusted) - 5} more" if len(distrusted) > 5 else ""
        output.stderr().print(f"warning: {len(distrusted)} of {len(hosts)} hosts of {group}"
                              f" are not trusted and take no VMs: {shown}{more}",
                              markup=False, highlight=False)
    return _Ports(catalog, swtpm, {"kind": "swtpm", "image": image.name}, distrusted, None)


def _plan(cfg: Settings, group: str, to: str | None, policy: RolloutPolicy,
          approved: list[str] | None, untrusted: list[str] | None, failures: Failures,
          fleet_db: Path | None, attest_current: bool) -> tuple[Plan, FleetSnapshot, _Ports]:
    with Fleet.open(fleet_path(fleet_db), read_only=True) as fleet:
        snapshot = fleet.snapshot()
    ports = _ports(cfg, group, to, approved, untrusted, failures, snapshot, attest_current)
    if ports.note:
        output.stderr().print(f"note: {ports.note}", markup=False, highlight=False)
    return plan(snapshot, group, ports.targets, ports.attestor, policy), snapshot, ports


def _attestors(cfg: Settings, ready: Attestor | None = None
               ) -> Callable[[dict[str, Any], Plan, Failures], Attestor]:
    """The attestor a rollout recorded: ``ready`` (made while planning) or a new one."""

    def make(spec: dict[str, Any], p: Plan, failures: Failures) -> Attestor:
        if ready is not None:
            return ready
        kind = spec.get("kind", "memory")
        if kind == "memory":
            return attestor_for(failures, p.target)
        if kind != "swtpm":
            raise RolloutStateError(f"rollout of {p.group}: unknown attestor {kind!r}")
        if not cfg.images_db.exists():
            raise RolloutStateError(f"the rollout of {p.group} re-attests its hosts against"
                                    f" the image catalog, and there is none at"
                                    f" {cfg.images_db}",
                                    tip="point VIGIL_IMAGES_DB at the catalog it started"
                                        " from")
        catalog = CatalogTargets.load(cfg.images_db, _reference_keys(cfg))
        name = str(spec["image"])
        return SwtpmAttestor(name, catalog.versions(name), catalog.keys,
                             tamper={(h, p.target) for h in failures.attestation})

    return make


def _opts(rollout_db: Path | None, fleet_db: Path | None, pace: float = 0.0,
          progress: Any = None, attestor: Attestor | None = None) -> RolloutOptions:
    cfg = settings()
    db = rollout_db if rollout_db is not None else cfg.rollout_db
    return RolloutOptions(db=db, fleet_db=fleet_path(fleet_db), pace_s=pace, progress=progress,
                          attestor=_attestors(cfg, attestor))


def _plan_json(p: Plan, ports: _Ports) -> dict[str, Any]:
    return {**p.model_dump(mode="json", exclude={"waves"}),
            "waves": [{"wave": i + 1, "hosts": w} for i, w in enumerate(p.waves)],
            "ports": ports.json()}


@app.command("plan")
def plan_(group: Group, to: To = None, max_unavailable: MaxUnavailable = "10%",
          canary: Canary = 1, failure_threshold: Threshold = "1", window: Windows = None,
          non_migratable: NonMigratable = NonMigratableAction.WAIT, approved: Approved = None,
          untrusted: Untrusted = None, attest_current: AttestCurrent = False,
          fleet_db: FleetDbOption = None, as_json: JsonOption = False) -> None:
    """The waves, the hosts held for VMs that cannot be live-migrated, and the proof that
    every VM fits elsewhere while its host is out; exit 1 with the reason when not."""
    p, _, ports = _plan(settings(), group, to,
                        _policy(max_unavailable, canary, failure_threshold, window,
                                non_migratable), approved, untrusted, Failures(), fleet_db,
                        attest_current)
    if as_json:
        output.emit_json(_plan_json(p, ports))
        return
    _print_plan(p)


def _print_plan(p: Plan) -> None:
    output.table(
        f"rollout of {p.group} to {p.target}: {p.hosts_to_update()} hosts in {len(p.waves)}"
        f" waves, max-unavailable {p.max_unavailable} of {p.group_hosts}",
        ["wave", "hosts", "first hosts"],
        [(i + 1, len(w), ", ".join(w[:6]) + (" …" if len(w) > 6 else ""))
         for i, w in enumerate(p.waves[:20])])
    if len(p.waves) > 20:
        typer.echo(f"… and {len(p.waves) - 20} more waves")
    typer.echo(f"{p.vms_to_move} VMs to move ({p.migrations_planned} migrations in the"
               f" play-through); {len(p.up_to_date)} hosts already on {p.target}")
    if p.held:
        output.table("held: VMs that cannot be live-migrated", ["host", "action", "VMs"],
                     [(h.host, h.action.value, ", ".join(f"{v.vm} ({v.tenant})" for v in h.vms))
                      for h in p.held])
    if p.skipped:
        output.table("skipped", ["host", "reason"], [(s.host, s.reason) for s in p.skipped])
    for w in p.warnings[:20]:
        typer.echo(f"warning: {w}")


def _progress_bar(total: int, as_json: bool) -> tuple[Progress, Any]:
    bar = Progress(TextColumn("[bold]rollout"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TextColumn("{task.description}"),
                   console=output.stderr(), transient=True,
                   disable=as_json or not output.stderr().is_terminal)
    task = bar.add_task("", total=total)

    def advance(r: Runner) -> None:
        bar.update(task, completed=r.done_hosts(),
                   description=f"t={r.t / 3600:.1f} h, {r.migrations} migrations")

    return bar, advance


def _print_summary(rollout_id: str, s: Summary, as_json: bool,
                   ports: _Ports | None = None) -> None:
    attested = ports.attestor.runs if ports and isinstance(ports.attestor, SwtpmAttestor) \
        else None
    if as_json:
        output.emit_json({"id": rollout_id, **s.to_json(),
                          **({"ports": ports.json()} if ports else {}),
                          **({"swtpm_attestations": attested} if attested is not None
                             else {})})
    else:
        output.table(f"rollout {rollout_id}: {s.status}"
                     + (f" ({s.reason})" if s.reason else ""),
                     ["outcome", "hosts", "first hosts"],
                     [(k, len(v), ", ".join(v[:6]) + (" …" if len(v) > 6 else ""))
                      for k, v in s.hosts.items() if v])
        typer.echo(f"{s.t / 3600:.2f} h (simulated); {s.migrations} migrations,"
                   f" {s.failed_migrations} failed, {s.retried_migrations} retried;"
                   f" longest downtime {s.max_downtime_ms:g} ms; at most"
                   f" {s.max_unavailable_seen} of {s.max_unavailable} hosts out")
        for host, why in s.failure_reasons.items():
            typer.echo(f"{host}: {why}")
        if attested is not None:
            typer.echo(f"{attested} attestations on software TPMs against the image"
                       " catalog's signed manifests")
    if s.status == "halted":
        raise typer.Exit(1)


@app.command()
def start(group: Group, to: To = None, max_unavailable: MaxUnavailable = "10%",
          canary: Canary = 1, failure_threshold: Threshold = "1", window: Windows = None,
          non_migratable: NonMigratable = NonMigratableAction.WAIT, approved: Approved = None,
          untrusted: Untrusted = None, attest_current: AttestCurrent = False,
          fail_migration: FailMigration = None,
          fail_attest: FailAttest = None, no_boot: NoBoot = None,
          trace: Annotated[Path | None, typer.Option("--trace", help="Write the event trace"
                                                     " here.")] = None,
          pace: Pace = 0.0, fleet_db: FleetDbOption = None, rollout_db: RolloutDb = None,
          as_json: JsonOption = False) -> None:
    """Plan, then run the rollout on the fleet simulator, durable step by step; the
    outcome is written back to the inventory. Exit 1 if it halts."""
    failures = _failures(fail_migration, fail_attest, no_boot)
    p, snapshot, ports = _plan(settings(), group, to,
                               _policy(max_unavailable, canary, failure_threshold, window,
                                       non_migratable), approved, untrusted, failures,
                               fleet_db, attest_current)
    bar, advance = _progress_bar(p.hosts_to_update(), as_json)
    with bar:
        rollout_id, summary = start_rollout(
            _opts(rollout_db, fleet_db, pace, advance, ports.attestor), p, snapshot,
            untrusted=ports.untrusted, failures=failures, trace_path=trace,
            attestor=ports.spec)
    _print_summary(rollout_id, summary, as_json, ports)


@app.command()
def status(rollout_id: Annotated[str | None, typer.Argument(metavar="[ID]")] = None,
           rollout_db: RolloutDb = None, as_json: JsonOption = False) -> None:
    """Every rollout, or one: its status and steps (live while an executor runs it)."""
    rows = rollout_status(_opts(rollout_db, None), rollout_id)
    if as_json:
        output.emit_json({"rollouts": rows})
        return
    output.table("rollouts", ["id", "group", "target", "status", "steps", "updated"],
                 [(r["id"], r.get("group"), r.get("target"),
                   r["status"] + (" (interrupted: resume it)" if r.get("interrupted") else "")
                   + (" (live)" if r.get("live") else ""), r.get("steps"),
                   _when(r.get("updated_at"))) for r in rows])


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if isinstance(value, dt.datetime) else ""


@app.command()
def pause(rollout_id: Id, rollout_db: RolloutDb = None, as_json: JsonOption = False) -> None:
    """No new host starts; hosts in flight finish, then the executor stops."""
    what = pause_rollout(_opts(rollout_db, None), rollout_id)
    _said(rollout_id, what, as_json)


@app.command()
def resume(rollout_id: Id, pace: Pace = 0.0, fleet_db: FleetDbOption = None,
           rollout_db: RolloutDb = None, as_json: JsonOption = False) -> None:
    """Carry on a paused rollout, or one whose executor stopped (killed, crashed)."""
    opts = _opts(rollout_db, fleet_db, pace)
    if request_resume(opts, rollout_id):
        _said(rollout_id, "resume requested", as_json)
        return
    bar, advance = _progress_bar(0, as_json)
    with bar:
        summary = resume_rollout(_opts(rollout_db, fleet_db, pace, advance), rollout_id)
    _print_summary(rollout_id, summary, as_json)


@app.command()
def abort(rollout_id: Id, fleet_db: FleetDbOption = None, rollout_db: RolloutDb = None,
          as_json: JsonOption = False) -> None:
    """Stop: hosts in flight finish their step and return to service."""
    _, summary = abort_rollout(_opts(rollout_db, fleet_db), rollout_id)
    if summary is None:
        _said(rollout_id, "abort requested", as_json)
    else:
        _print_summary(rollout_id, summary, as_json)


def _said(rollout_id: str, what: str, as_json: bool) -> None:
    if as_json:
        output.emit_json({"id": rollout_id, "result": what})
    else:
        typer.echo(f"rollout {rollout_id}: {what}")


@app.command()
def check(path: Annotated[Path, typer.Argument(metavar="TRACE", help="An NDJSON trace.")],
          as_json: JsonOption = False) -> None:
    """Prove a rollout's promises from its trace alone; exit 1 listing each violation."""
    from engine.cli.common import read_file

    read_file(path, "trace")
    report = check_trace(path)
    if as_json:
        output.emit_json({"ok": report.ok, "events": report.events,
                          "migrations": report.migrations,
                          "max_unavailable_seen": report.max_unavailable_seen,
                          "violations": report.violations})
    else:
        for v in report.violations:
            print(v, file=sys.stderr)
        verdict = ("all promises hold" if report.ok
                   else f"{len(report.violations)} violations")
        typer.echo(f"{report.events} events, {report.migrations} migrations, at most"
                   f" {report.max_unavailable_seen} hosts out of service: {verdict}")
    if not report.ok:
        raise typer.Exit(1)
