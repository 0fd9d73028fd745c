"""``vigil agent``: what runs on a hypervisor host.

``vigil agent enroll|activate`` are the host's half of AK enrollment (the verifier's is
``vigil attest ak``); ``vigil agent evidence`` quotes the PCRs over the verifier's nonce
and writes the evidence JSON for ``vigil attest verify``.

``vigil agent simulate start|boot|stop`` is a software-TPM host to try Vigil on without
hardware: ``start`` manufactures a TPM (EKs with certificates from a local CA) in a
state folder the first time and runs ``swtpm`` in the background; ``boot`` plays the
firmware's part: it measures a simulated UEFI Secure Boot of a KVM host into the PCRs
and writes the matching event log; ``stop`` ends the ``swtpm`` process.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import shutil
import signal
from pathlib import Path
from typing import Annotated

import typer

from engine.attest import (
    DEFAULT_BOOT,
    CredentialChallenge,
    Swtpm,
    SwtpmTemplate,
    activate,
    collect_evidence,
    collect_inventory,
    enroll,
    hypervisor_boot,
    manufacture,
)
from engine.cli import common as _common
from engine.cli import output as _output
from engine.errors import NotFoundError, UsageError

app = typer.Typer(help="Host agent: enroll the TPM's AK and collect evidence.",
                  no_args_is_help=True)
simulate_app = typer.Typer(help="A software-TPM host (swtpm): start it, boot it, stop it.",
                           no_args_is_help=True)

_TctiOption = Annotated[str | None, typer.Option(
    "--tcti", help="TPM interface, e.g. device:/dev/tpmrm0 or swtpm:host=127.0.0.1,port=2321 "
    "(default: VIGIL_TCTI).")]
_AkHandleOption = Annotated[str | None, typer.Option(
    "--ak-handle", help="Persistent handle of the AK, e.g. 0x81018000 (default: "
    "VIGIL_ATTEST_AK_HANDLE).")]
_EkTypeOption = Annotated[str, typer.Option("--ek-type", help="EK template: EK-RSA2048 or "
                                            "EK-ECC256.")]


def _handle(value: str | None, default: int) -> int:
    if value is None:
        return default
    try:
        return int(value, 0)
    except ValueError:
        raise UsageError(f"--ak-handle {value} is not a number such as 0x81018000") from None


# -- enrollment and evidence -----------------------------------------------------------------


@app.command("enroll")
def agent_enroll(
    host_id: Annotated[str, typer.Option("--host-id", help="This host's id at the verifier.")],
    tcti: _TctiOption = None,
    ak_handle: _AkHandleOption = None,
    ek_type: _EkTypeOption = "EK-RSA2048",
    ak_type: Annotated[str, typer.Option("--ak-type", help="rsa2048 or ecc256.")] = "rsa2048",
    replace: Annotated[bool, typer.Option("--replace", help="Replace a key already at the "
                                          "AK handle.")] = False,
    out: _common.OutOption = None,
) -> None:
    """Create an AK under the EK, persist it, and write the enrollment request."""
    settings = _common.settings()
    request = enroll(host_id, tcti=tcti or settings.tcti,
                               ak_handle=_handle(ak_handle, settings.attest_ak_handle),
                               ek_type=ek_type, ak_type=ak_type, replace=replace)
    _common.write(_common.model_json(request), out)


@app.command("activate")
def agent_activate(
    challenge: Annotated[Path, typer.Argument(help="Challenge from vigil attest ak challenge.",
                                              show_default=False)],
    tcti: _TctiOption = None,
    ak_handle: _AkHandleOption = None,
    ek_type: _EkTypeOption = "EK-RSA2048",
    out: _common.OutOption = None,
) -> None:
    """Let the TPM activate the verifier's credential; write the proof."""
    settings = _common.settings()
    parsed = _common.parse_model(CredentialChallenge, challenge, "challenge")
    response = activate(parsed, tcti=tcti or settings.tcti,
                                  ak_handle=_handle(ak_handle, settings.attest_ak_handle),
                                  ek_type=ek_type)
    _common.write(_common.model_json(response), out)


@app.command("evidence")
def agent_evidence(
    host_id: Annotated[str, typer.Option("--host-id", help="This host's id at the verifier.")],
    nonce_b64: Annotated[str, typer.Option("--nonce", help="The verifier's nonce (base64), "
                                           "from vigil attest nonce.")],
    tcti: _TctiOption = None,
    ak_handle: _AkHandleOption = None,
    banks: Annotated[str, typer.Option("--banks", help="PCR banks to quote where allocated.")
                     ] = "sha1,sha256,sha384",
    pcrs: Annotated[str, typer.Option("--pcrs", help="PCRs to quote.")] = "0-23",
    eventlog_path: Annotated[Path | None, typer.Option(
        "--eventlog", help="Event log (default: VIGIL_ATTEST_EVENTLOG).")] = None,
    no_eventlog: Annotated[bool, typer.Option("--no-eventlog", help="Send no event log.")
                           ] = False,
    sys_root: Annotated[Path, typer.Option("--sys-root", help="Where sysfs is.")
                        ] = Path("/sys"),
    proc_root: Annotated[Path, typer.Option("--proc-root", help="Where procfs is.")
                         ] = Path("/proc"),
    inventory_set: Annotated[list[str] | None, typer.Option(
        "--set", metavar="FIELD=VALUE", help="Override an inventory field, e.g. "
        "hypervisor_version=8.2.2 (repeatable).")] = None,
    out: _common.OutOption = None,
) -> None:
    """Quote the PCRs over the verifier's nonce; write the evidence JSON."""
    settings = _common.settings()
    try:
        value = base64.b64decode(nonce_b64, validate=True)
    except binascii.Error:
        raise UsageError("--nonce is not base64") from None
    overrides: dict[str, str] = {}
    for item in inventory_set or []:
        field, sep, text = item.partition("=")
        if not sep or not field:
            raise UsageError(f"--set {item}: use FIELD=VALUE")
        overrides[field] = text
    inventory = collect_inventory(sys_root=sys_root, proc_root=proc_root,
                                            overrides=overrides)
    document = collect_evidence(
        host_id, value, tcti=tcti or settings.tcti,
        ak_handle=_handle(ak_handle, settings.attest_ak_handle),
        banks=[b.strip() for b in banks.split(",") if b.strip()], pcrs=_common.pcr_list(pcrs),
        eventlog=None if no_eventlog else (eventlog_path or settings.attest_eventlog),
        inventory=inventory)
    _common.write(document.to_json(), out)


# -- a software-TPM host ---------------------------------------------------------------------

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
    with contextlib.suppress(Exception):  # best effort: an orderly TPM2_Shutdown first
        Swtpm.attach(int(str(info["port"])), state).shutdown()
    with contextlib.suppress(ProcessLookupError):
        os.kill(int(str(info["pid"])), signal.SIGTERM)
    (state / _RUNNING).unlink(missing_ok=True)
    typer.echo("software TPM stopped")


app.add_typer(simulate_app, name="simulate")
