"""``vigil attest``: look at host attestation evidence.

``vigil attest eventlog LOG [--json] [--bank NAME]`` parses a TCG event log (see
:mod:`engine.attest.eventlog`), lists its events and the PCR values it replays to.
Errors are raised as the engine's :class:`~engine.errors.VigilError` subclasses; the main
CLI prints them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from engine.attest.eventlog import PCR_INDEX_NOT_EXTENDED, Event, EventLog, PcrValues, load
from engine.errors import UsageError

app = typer.Typer(help="Look at host attestation evidence: TPM event logs.",
                  no_args_is_help=True)

_PREVIEW_CHARS = 40
_DIGEST_CHARS = 12


@app.callback()
def attest() -> None:
    """Look at host attestation evidence: TPM event logs."""


@app.command("eventlog")
def eventlog(
    log: Annotated[Path, typer.Argument(
        help="A TCG event log, e.g. /sys/kernel/security/tpm0/binary_bios_measurements.",
        show_default=False)],
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print JSON (digests and data in hex) instead of tables.")] = False,
    bank: Annotated[str | None, typer.Option(
        "--bank", metavar="NAME", help="Show one digest bank only, e.g. sha256.")] = None,
) -> None:
    """List the events of a TCG event log and the PCR values it replays to."""
    parsed = load(log)
    banks = _selected_banks(parsed, bank)
    pcrs = {name: parsed.replay_bank(name) for name in banks}
    if as_json:
        typer.echo(json.dumps(_to_json(parsed, banks, pcrs), indent=2))
    else:
        _print_tables(parsed, banks, pcrs)


def _selected_banks(log: EventLog, bank: str | None) -> Sequence[str]:
    if bank is None:
        return log.banks
    if bank not in {algorithm.name for algorithm in log.algorithms}:
        raise UsageError(f"--bank {bank}: the log has no such bank",
                         tip=f"choose one of: {', '.join(log.banks) or '(none)'}")
    return (bank,)


def _to_json(log: EventLog, banks: Sequence[str], pcrs: PcrValues) -> dict[str, Any]:
    spec_id = log.spec_id
    return {
        "format": log.format,
        "spec_id": None if spec_id is None else {
            "platform_class": spec_id.platform_class,
            "spec_version": "{}.{}".format(*spec_id.spec_version),
            "errata": spec_id.errata,
            "uintn_size": spec_id.uintn_size,
            "algorithms": [{"id": f"0x{a.alg_id:04x}", "name": a.name,
                            "digest_size": a.digest_size} for a in spec_id.algorithms],
            "vendor_info": spec_id.vendor_info.hex(),
        },
        "banks": list(banks),
        "startup_locality": log.startup_locality,
        "hcrtm": log.hcrtm,
        "pcr0_locality": log.pcr0_locality,
        "events": [{
            "index": event.index,
            "offset": event.offset,
            "pcr": event.pcr,
            "type": event.type,
            "type_name": event.type_name,
            "extended": event.extended,
            "digests": {name: digest.hex() for name, digest in event.digests.items()
                        if name in banks},
            "data": event.data.hex(),
        } for event in log.events],
        "pcrs": {name: {str(pcr): value.hex() for pcr, value in values.items()}
                 for name, values in pcrs.items()},
    }


def _print_tables(log: EventLog, banks: Sequence[str], pcrs: PcrValues) -> None:
    console = Console()
    console.print(f"{log.format} log, {len(log.events)} events, banks: "
                  f"{', '.join(banks) or '(none)'}, PCR 0 starts at locality "
                  f"{log.pcr0_locality}")
    events = Table(title="Events", caption="(PCR): not extended; --json has full digests")
    events.add_column("#", justify="right")
    events.add_column("PCR", justify="right")
    events.add_column("Type", overflow="fold")
    events.add_column("Digests", no_wrap=True)
    events.add_column("Data", overflow="fold", min_width=18)
    for event in log.events:
        events.add_row(str(event.index), _pcr_label(event), event.type_name,
                       "\n".join(f"{name} {event.digests[name].hex()[:_DIGEST_CHARS]}…"
                                 for name in banks if name in event.digests),
                       _preview(event.data))
    console.print(events)
    for name, values in pcrs.items():
        table = Table(title=f"Replayed PCRs ({name})")
        table.add_column("PCR", justify="right")
        table.add_column("Value", overflow="fold")
        for pcr, value in values.items():
            table.add_row(str(pcr), value.hex())
        console.print(table)


def _pcr_label(event: Event) -> str:
    label = "-" if event.pcr == PCR_INDEX_NOT_EXTENDED else str(event.pcr)
    return label if event.extended else f"({label})"


def _preview(data: bytes) -> str:
    """Printable text (ASCII or UTF-16LE) in quotes, or the size of binary data."""
    for encoding in ("ascii", "utf-16-le"):
        try:
            text = data.decode(encoding).rstrip("\x00")
        except UnicodeDecodeError:
            continue
        if text and text.isprintable():
            cut = text[:_PREVIEW_CHARS] + ("…" if len(text) > _PREVIEW_CHARS else "")
            return f'"{cut}"'
    return f"{len(data)} bytes"
