"""``vigil audit``: verify the decision log (or an export of it), replay it, sign its head,
and the compliance report."""

from __future__ import annotations

import datetime as dt
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from engine.cli import output
from engine.cli.common import JsonOption, LogOption
from engine.config import Settings, load_settings
from engine.errors import ConfigError, NotFoundError, UsageError

if TYPE_CHECKING:
    from engine.audit import Verification
    from engine.decide import PolicySet, Replayed
    from engine.keys import VerificationKey

app = typer.Typer(help="Verify, replay and report on the decision log, as an auditor.",
                  no_args_is_help=True)

ExportOption = Annotated[Path | None, typer.Option(
    "--export", help="An export (`vigil decisions export`) to read instead of the log: "
                     "nothing else is needed.")]
KeyOption = Annotated[list[Path] | None, typer.Option(
    "--key", help="A checkpoint verification key (PEM public key; repeat for retired "
                  "keys). Added to VIGIL_AUDIT_VERIFICATION_KEYS.")]
AttestKeyOption = Annotated[Path | None, typer.Option(
    "--attest-key", help="The verifier's public key, to verify again the attestation "
                         "results decisions rested on (default: "
                         "VIGIL_ATTEST_RESULT_VERIFICATION_KEY).")]


def _settings(log: Path | None) -> Settings:
    return load_settings(**({"decision_log": log} if log is not None else {}))


def parse_when(value: str | None, option: str, *, end: bool = False,
               inclusive: bool = False) -> dt.datetime | None:
    """An ISO date or date-time (UTC unless it says otherwise); a bare date given as the
    end of a period includes that whole day (``inclusive``: its last instant)."""
    if value is None:
        return None
    try:
        if len(value.strip()) == 10:
            day = dt.date.fromisoformat(value.strip())
            if inclusive:
                return dt.datetime.combine(day, dt.time.max, dt.UTC)
            when = dt.datetime.combine(day, dt.time(), dt.UTC)
            return when + dt.timedelta(days=1) if end else when
        when = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise UsageError(f"{option} {value!r} is not an ISO date or date-time "
                         "(2026-01-31 or 2026-01-31T12:00:00Z)") from None
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def _attest_key(cfg: Settings, given: Path | None) -> VerificationKey | None:
    from engine.keys import KeyLoadError, load_verification_key

    path = given or cfg.attest_result_verification_key
    if path is None:
        return None
    try:
        return load_verification_key(path)
    except KeyLoadError as exc:
        raise ConfigError(f"attestation result key: {exc.reason}") from None


def _open_log(cfg: Settings) -> Any:
    from engine.decide import DecisionLog

    if not cfg.decision_log.exists():
        raise NotFoundError(f"there is no decision log at {cfg.decision_log}",
                            tip="pass --log FILE, set VIGIL_DECISION_LOG, or verify an "
                                "export with --export FILE")
    return DecisionLog.from_settings(cfg, read_only=True, shared=True)


def open_source(cfg: Settings, export: Path | None) -> Any:
    """The export's reader, or the configured decision log (read only, shared)."""
    from engine.audit import ExportReader

    return ExportReader(export) if export is not None else _open_log(cfg)


def verify_opened(cfg: Settings, source: Any, keys: list[Path] | None,
                  attest_key: Path | None, on_row: Any = None) -> Verification:
    """Verify an opened source (``on_row`` sees every record as it is verified)."""
    from engine.audit import ExportReader, verification_keys, verify_export, verify_log

    trusted = verification_keys(cfg, keys or [])
    key = _attest_key(cfg, attest_key)
    if isinstance(source, ExportReader):
        return verify_export(source, trusted, attest_key=key, on_row=on_row)
    signed = bool(trusted) and (cfg.audit_signing_key is not None
                                or bool(cfg.audit_verification_keys))
    return verify_log(source, trusted, attest_key=key, on_row=on_row,
                      expect_every=cfg.audit_checkpoint_every if signed else None)


def verify_source(cfg: Settings, export: Path | None, keys: list[Path] | None,
                  attest_key: Path | None) -> tuple[Verification, Any]:
    """Verify the log (or the export); the verification and the source read."""
    source = open_source(cfg, export)
    try:
        return verify_opened(cfg, source, keys, attest_key), source
    except BaseException:
        _close(source)
        raise


def print_verification(found: Verification, *, as_json: bool) -> None:
    if as_json:
        output.emit_json(found.to_json())
        return
    console = output.stdout()
    for problem in sorted(found.problems, key=lambda p: (p.seq is None, p.seq or 0)):
        console.print(f"BROKEN  {problem.describe()}", markup=False, highlight=False,
                      soft_wrap=True)
    span = (f" (records {found.first_seq}–{found.last_seq})" if found.records else "")
    kids = sorted({c.kid for c in found.checkpoints})
    state = "verified" if found.ok else "NOT verified"
    console.print(f"{state}: {found.source}: {found.records} records{span}, "
                  f"{len(found.checkpoints)} signed checkpoints"
                  + (f" (key ids {', '.join(kids)}), signed to record {found.covered_to}"
                     if kids else ""), markup=False, highlight=False, soft_wrap=True)
    for note in found.notes:
        console.print(f"note: {note}", markup=False, highlight=False, soft_wrap=True)


@app.command("verify")
def verify(
    export: ExportOption = None,
    log: LogOption = None,
    key: KeyOption = None,
    attest_key: AttestKeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Check the whole chain (every record's hash, every link, no gap in the sequence)
    and every signed checkpoint; name the first broken record. Exit code 1 when it does
    not verify."""
    from engine.audit import require_intact

    found, source = verify_source(_settings(log), export, key, attest_key)
    try:
        print_verification(found, as_json=as_json)
        require_intact(found)
    finally:
        _close(source)


def _close(source: Any) -> None:
    close = getattr(source, "close", None)
    if close is not None:
        close()


def load_override(cfg: Settings, policy: Path | None) -> PolicySet | None:
    """``--policy``: a policy folder (roots from VIGIL_POLICY_ROOTS) or a bundle file."""
    from engine.decide import load_directory, read_bundle

    if policy is None:
        return None
    if not policy.exists():
        raise NotFoundError(f"--policy {policy} does not exist")
    if policy.is_dir():
        return load_directory(policy, cfg.policy_roots)
    return read_bundle(policy, verification_key=cfg.bundle_verification_key,
                       key_id=cfg.bundle_verification_key_id,
                       scope=cfg.bundle_verification_scope)


def print_replayed(results: list[Replayed], *, as_json: bool) -> None:
    diverged = [r for r in results if r.diverged]
    if as_json:
        output.emit_json({"replayed": len(results), "diverged": len(diverged),
                          "decisions": [{**r.__dict__, "diverged": r.diverged}
                                        for r in results]})
        return
    for r in results:
        state = "DIVERGED" if r.diverged else "same"
        output.stdout().print(f"{r.decision_id}: {state} (recorded {r.recorded_verdict} "
                              f"@ {r.recorded_revision}, replayed {r.replayed_verdict} @ "
                              f"{r.replayed_revision})", markup=False, highlight=False)
        for difference in r.differences:
            output.stdout().print(f"  {difference}", markup=False, highlight=False)
    output.stdout().print(f"{len(results)} replayed, {len(diverged)} diverged", markup=False)


@app.command("replay")
def replay(
    decision_id: Annotated[str | None, typer.Argument(help="One decision id.")] = None,
    export: ExportOption = None,
    log: LogOption = None,
    from_: Annotated[str | None, typer.Option("--from", help="Replay decisions from this "
                                              "ISO date/time.")] = None,
    to: Annotated[str | None, typer.Option("--to", help="… up to this date (inclusive) or "
                                           "time (exclusive).")] = None,
    policy: Annotated[Path | None, typer.Option(
        help="Evaluate with this policy folder or bundle instead of the recorded "
             "revisions.")] = None,
    key: KeyOption = None,
    as_json: JsonOption = False,
) -> None:
    """Verify the chain, then re-evaluate the decisions with their recorded input and
    bundle revision (read from the log or from the export). A chain that does not verify
    is refused (exit 1, the broken record named); exit 1 too when a decision diverges."""
    from engine.audit import Selection, export_records, log_records, replay_records

    if decision_id is not None and (from_ or to):
        raise UsageError("give a decision id or --from/--to, not both")
    cfg = _settings(log)
    selection = Selection(decision_id, parse_when(from_, "--from"),
                          parse_when(to, "--to", end=True))
    override = load_override(cfg, policy)
    found, source = verify_source(cfg, export, key, None)
    try:
        records = (export_records(source, selection) if export is not None
                   else log_records(source, selection))
        where = f"the export {export}" if export is not None else str(cfg.decision_log)
        results = replay_records(found, source, records, selection, policy=override,
                                 where=where)
    finally:
        _close(source)
    print_replayed(results, as_json=as_json)
    if any(r.diverged for r in results):
        raise typer.Exit(1)


@app.command("checkpoint")
def checkpoint(log: LogOption = None, as_json: JsonOption = False) -> None:
    """Sign the log's head now (a checkpoint with VIGIL_AUDIT_SIGNING_KEY): after the key
    is first set, or the cadence changed."""
    from engine.decide import DecisionLog

    cfg = _settings(log)
    if cfg.audit_signing_key is None:
        raise ConfigError("no audit signing key is configured",
                          tip="set VIGIL_AUDIT_SIGNING_KEY to a PEM private key "
                              "(`vigil attest keygen --out audit.pem` makes one)")
    with DecisionLog.from_settings(cfg, shared=True) as dlog:
        made = dlog.checkpoint("manual")
    if made is None:
        raise NotFoundError(f"the decision log {cfg.decision_log} is empty: nothing to sign")
    if as_json:
        output.emit_json({"number": made.number, "size": made.size, "head": made.head,
                          "signed_at": made.signed_at, "key_id": made.key_id,
                          "kind": made.kind})
        return
    output.stdout().print(f"checkpoint {made.number}: record {made.size}, head {made.head}, "
                          f"key id {made.key_id}", markup=False, highlight=False)


class Format(StrEnum):
    json = "json"
    html = "html"
    csv = "csv"


@app.command("report")
def report(
    from_: Annotated[str, typer.Option("--from", help="First day (ISO date or date-time).")],
    to: Annotated[str, typer.Option("--to", help="Last day, included (or a date-time, "
                                    "excluded).")],
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's decisions.")] = None,
    as_of: Annotated[str | None, typer.Option(
        "--as-of", help="What is known as of this date (default: now): facts published "
                        "later are left out, and stays end there.")] = None,
    fmt: Annotated[Format, typer.Option("--format", help="json, html (one self-contained "
                                        "page with plots) or csv.")] = Format.json,
    table: Annotated[str, typer.Option(help="The CSV table: placements, exposure, tenants, "
                                       "discovered, delays, configurations, rollouts, "
                                       "revisions, diverged.")] = "placements",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write to this file "
                                             "(default: stdout).")] = None,
    export: ExportOption = None,
    log: LogOption = None,
    db: Annotated[Path | None, typer.Option("--db", help="The PVDB asked what is known now "
                                            "(default: VIGIL_DB).")] = None,
    policy: Annotated[Path | None, typer.Option(
        help="Replay every decision of the period with this policy folder or bundle and "
             "list those it decides differently.")] = None,
    html_rows: Annotated[int, typer.Option(min=0, help="Placements listed in the HTML page "
                                           "(every one is in JSON and CSV).")] = 500,
    key: KeyOption = None,
) -> None:
    """The compliance report of a period, from the verified log (or an export) and the
    PVDB: placements with what was known at decision time, what is known now that was
    not then (exposure-days per host and tenant), each delay's predicted against real fix
    date, patched configurations and rollouts, policy revisions. A log that does not
    verify gives no report (exit 1); a period with no decision exits 6."""
    import shutil
    import tempfile

    from engine.audit import (
        TABLES,
        NoDecisions,
        Period,
        ReportBuilder,
        ReportWriter,
        require_intact,
    )
    from engine.decide import Replayer

    if table not in TABLES:
        raise UsageError(f"--table {table!r}: choose one of {', '.join(TABLES)}")
    cfg = load_settings(**{k: v for k, v in {"decision_log": log, "db": db}.items()
                           if v is not None})
    start = parse_when(from_, "--from")
    end = parse_when(to, "--to", end=True)
    known = parse_when(as_of, "--as-of", inclusive=True) or dt.datetime.now(dt.UTC)
    assert start is not None and end is not None
    if end <= start:
        raise UsageError(f"--to {to} is not after --from {from_}")
    if known < start:
        raise UsageError(f"--as-of {as_of} is before the period starts ({from_})")
    period = Period(start, end, known, tenant)
    override = load_override(cfg, policy)
    source_name = str(export) if export is not None else str(cfg.decision_log)
    source = open_source(cfg, export)
    replayer = None if override is None else Replayer(source, override, where=source_name)
    temp = tempfile.NamedTemporaryFile(  # noqa: SIM115  (moved into place on success)
        prefix=".vigil-report-", dir=out.parent if out else None, delete=False)
    try:
        with temp:
            writer = ReportWriter(temp, fmt.value, table=table, html_rows=html_rows,
                                  head={"period": period.to_json(), "source": source_name})
            builder = ReportBuilder(period, replay=None if replayer is None
                                    else replayer.replay)

            def on_row(row: Any) -> None:
                placement = builder.add(row)
                if placement is not None:
                    writer.placement(placement)

            found = verify_opened(cfg, source, key, None, on_row)
            require_intact(found)
            if builder.decisions == 0:
                held = (f" (it holds records {found.first_seq}–{found.last_seq}, "
                        f"{found.first_time:%Y-%m-%d %H:%M} to {found.last_time:%Y-%m-%d %H:%M})"
                        if found.records else " (it holds none)")
                raise NoDecisions(
                    f"no decision{' of tenant ' + tenant if tenant else ''} between "
                    f"{start:%Y-%m-%d %H:%M} and {end:%Y-%m-%d %H:%M} in "
                    f"{source_name}{held}")
            rest = _complete(cfg, builder, found)
            rest["policy"]["replayed_with"] = None if policy is None else str(policy)
            writer.close(rest)
        if out is None:
            with open(temp.name, "rb") as done:
                shutil.copyfileobj(done, sys.stdout.buffer)
            sys.stdout.flush()
        else:
            Path(temp.name).replace(out)
    finally:
        if replayer is not None:
            replayer.close()
        _close(source)
        Path(temp.name).unlink(missing_ok=True)


def _complete(cfg: Settings, builder: Any, found: Verification) -> dict[str, Any]:
    """The report beyond the placements, from the PVDB, the image catalog and the
    rollout state (each when it exists)."""
    from engine.pvdb import Pvdb

    images: list[dict[str, Any]] = []
    catalog_path: str | None = None
    if cfg.images_db.exists():
        from engine.images import Catalog

        with Catalog(cfg.images_db, read_only=True) as catalog:
            images = [e.model_dump() for e in catalog.history()]
        catalog_path = str(cfg.images_db)
    rollouts: list[dict[str, Any]] = []
    if cfg.rollout_db.exists():
        from engine.rollout import RolloutOptions, rollout_status

        rollouts = rollout_status(RolloutOptions(db=cfg.rollout_db), None)
    if cfg.db.exists():
        with Pvdb.open(cfg.db, read_only=True, settings=cfg) as pvdb:
            rest = builder.finish(pvdb, images=images, rollouts=rollouts)
    else:
        rest = builder.finish(None, images=images, rollouts=rollouts)
    verification = found.to_json()
    verification.pop("problems")
    return {**rest, "verification": verification, "catalog": catalog_path,
            "pvdb": str(cfg.db) if cfg.db.exists() else None}


def refuse_broken(cfg: Settings) -> None:
    """Raise ChainBroken (exit 1, the first broken record named) unless the configured
    decision log verifies: nothing is replayed from a log that does not."""
    from engine.audit import require_intact

    found, source = verify_source(cfg, None, None, None)
    _close(source)
    require_intact(found)


__all__ = ["app", "parse_when", "refuse_broken", "verify_source"]
