"""``vigil agent simulate``: a software-TPM host to try Vigil on without hardware.

``start`` manufactures a TPM (EKs with certificates from a local CA) in a state folder
the first time and runs ``swtpm`` in the background; ``boot`` plays the firmware's part:
it measures a simulated UEFI Secure Boot of a KVM host into the PCRs and writes the
matching event log; ``stop`` ends the ``swtpm`` process.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
from pathlib import Path
from typing import Annotated

import typer

from engine.cli import common as _common
from engine.cli import output as _output
from engine.errors import NotFoundError, UsageError

simulate_app = typer.Typer(help="A software-TPM host (swtpm): start it, boot it, stop it.",
                           no_args_is_help=True)

_StateOption = Annotated[Path, typer.Option("--state", help="Folder of the software TPM.")]
_RUNNING = "swtpm.json"


def _running(state: Path) -> dict[str, object]:
    path = state / _RUNNING
    try:
        info: dict[str, object] = json.loads(path.read_text())
    except (OSError, ValueError):
        raise NotFoundError(f"no software TPM is running from {state}",
                            tip="start one with `vigil agent simulate start`") from None
    return info


@simulate_app.command("start")
def start(state: _StateOption = Path(".vigil/swtpm"),
          as_json: _common.JsonOption = False) -> None:
    """Start a software TPM (manufactured on first use); print its TCTI and EK CA."""
    from engine.attest.swtpm import Swtpm, SwtpmTemplate, manufacture

    state = state.resolve()
    template_file = state / "template.json"
    if (state / _RUNNING).exists():
        raise UsageError(f"a software TPM already runs from {state}",
                         tip="stop it first: `vigil agent simulate stop`")
    if template_file.exists():
        saved = json.loads(template_file.read_text())
        template = SwtpmTemplate(Path(saved["state"]), Path(saved["ek_root"]),
                                 Path(saved["ek_intermediate"]))
    else:
        state.mkdir(parents=True, exist_ok=True)
        try:
            template = manufacture(state)
        except (RuntimeError, FileNotFoundError) as exc:
            raise NotFoundError(f"cannot manufacture a software TPM: {exc}",
                                tip="scripts/setup.sh installs swtpm and swtpm-tools") from None
        template_file.write_text(json.dumps({
            "state": str(template.state), "ek_root": str(template.ek_root),
            "ek_intermediate": str(template.ek_intermediate)}))
    # every start runs a fresh copy of the manufactured TPM: the same EKs, no state
    # (keys, counters) left over from an earlier run
    run = state / "run"
    shutil.rmtree(run, ignore_errors=True)
    shutil.copytree(template.state, run)
    tpm = Swtpm(run, template, state / "swtpm.log")
    tpm.start()
    if tpm.process is None:
        raise NotFoundError(f"swtpm did not start; see {state / 'swtpm.log'}")
    info = {"pid": tpm.process.pid, "tcti": tpm.tcti, "port": tpm.port,
            "ek_ca": [str(template.ek_root), str(template.ek_intermediate)]}
    (state / _RUNNING).write_text(json.dumps(info))
    if as_json:
        _output.emit_json(info)
    else:
        typer.echo(f"software TPM running (pid {info['pid']}): VIGIL_TCTI={info['tcti']}")


@simulate_app.command("boot")
def boot(
    eventlog: Annotated[Path, typer.Option("--eventlog", help="Where to write the event log.")],
    state: _StateOption = Path(".vigil/swtpm"),
    kernel: Annotated[str | None, typer.Option(
        help="Boot another kernel than the approved one (its bytes are this text).")] = None,
) -> None:
    """Power-cycle the software TPM and measure a UEFI Secure Boot of a KVM host into
    it, writing the event log the firmware would."""
    from engine.attest.simboot import DEFAULT_BOOT, hypervisor_boot
    from engine.attest.swtpm import Swtpm

    state = state.resolve()
    tpm = Swtpm.attach(int(str(_running(state)["port"])), state)
    tpm.reboot()
    log = hypervisor_boot(DEFAULT_BOOT if kernel is None else
                          DEFAULT_BOOT.but(kernel=kernel.encode()))
    tpm.extend(log.extends)
    eventlog.parent.mkdir(parents=True, exist_ok=True)
    eventlog.write_bytes(log.encode())
    typer.echo(f"booted: {len(log.extends)} measurements; event log {eventlog}")


@simulate_app.command("stop")
def stop(state: _StateOption = Path(".vigil/swtpm")) -> None:
    """Stop the software TPM started from ``--state``."""
    state = state.resolve()
    info = _running(state)
    from engine.attest.swtpm import Swtpm

    with contextlib.suppress(Exception):  # best effort: an orderly TPM2_Shutdown first
        Swtpm.attach(int(str(info["port"])), state).shutdown()
    with contextlib.suppress(ProcessLookupError):
        os.kill(int(str(info["pid"])), signal.SIGTERM)
    (state / _RUNNING).unlink(missing_ok=True)
    typer.echo("software TPM stopped")
