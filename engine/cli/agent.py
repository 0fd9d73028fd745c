"""``vigil agent``: what runs on a hypervisor host.

``vigil agent enroll|activate`` are the host's half of AK enrollment (the verifier's is
``vigil attest ak``); ``vigil agent evidence`` quotes the PCRs over the verifier's nonce
and writes the evidence JSON for ``vigil attest verify``.

``vigil agent serve`` answers verifiers' challenges over HTTP with the same evidence
(:mod:`engine.attest.agent_protocol`); ``vigil agent challenge URL --host-id ID`` is the
verifier's side: a nonce, the challenge, the appraisal, the signed result.

``vigil agent simulate start|boot|stop`` is a software-TPM host to try Vigil on without
hardware: ``start`` manufactures a TPM (EKs with certificates from a local CA) in a
state folder the first time and runs ``swtpm`` in the background; ``boot`` plays the
firmware's part: it measures a simulated UEFI Secure Boot of a KVM host into the PCRs
and writes the matching event log; ``stop`` ends the ``swtpm`` process.
``vigil agent simulate fleet --hosts N`` runs N such hosts, each with its own agent,
enrolled with a lab verifier, in the foreground until interrupted
(:func:`engine.attest.start_fleet`).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import shutil
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from engine.attest import (
    DEFAULT_BOOT,
    DEFAULT_CHALLENGE_TIMEOUT,
    AgentConfig,
    CredentialChallenge,
    Swtpm,
    SwtpmTemplate,
    Verifier,
    activate,
    attest_host,
    cached_inventory,
    collect_evidence,
    collect_inventory,
    enroll,
    hypervisor_boot,
    manufacture,
    serve_agent,
    start_fleet,
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


_SetOption = Annotated[list[str] | None, typer.Option(
    "--set", metavar="FIELD=VALUE", help="Override an inventory field, e.g. "
    "hypervisor_version=8.2.2 (repeatable).")]
_MAX_COMPONENTS_BYTES = 64 * 1024
_MAX_TOKEN_BYTES = 4096


def _overrides(components: Path | None, items: list[str] | None) -> dict[str, str]:
    """Inventory overrides: the JSON object of ``--components`` (field -> text), then
    each ``--set FIELD=VALUE``."""
    overrides: dict[str, str] = {}
    if components is not None:
        raw = _common.read_file(components, "components file")
        if len(raw) > _MAX_COMPONENTS_BYTES:
            raise UsageError(f"components file {components} is larger than "
                             f"{_MAX_COMPONENTS_BYTES} bytes")
        try:
            parsed = json.loads(raw)
        except ValueError as exc:
            raise UsageError(f"components file {components} is not JSON: {exc}") from None
        if not isinstance(parsed, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in parsed.items()):
            raise UsageError(f"components file {components} must hold one JSON object of "
                             'text fields, e.g. {"bios_version": "2.19.0"}')
        overrides.update(parsed)
    for item in items or []:
        field, sep, text = item.partition("=")
        if not sep or not field:
            raise UsageError(f"--set {item}: use FIELD=VALUE")
        overrides[field] = text
    return overrides


def _token(path: Path | None) -> str | None:
    """The bearer token in ``path`` (one line; surrounding whitespace dropped)."""
    if path is None:
        return None
    raw = _common.read_file(path, "token file")
    token = raw[:_MAX_TOKEN_BYTES + 1].decode("ascii", "replace").strip()
    if not token:
        raise UsageError(f"token file {path} is empty")
    if len(token) > _MAX_TOKEN_BYTES or not all(33 <= ord(c) < 127 for c in token):
        raise UsageError(f"token file {path} must hold one line of at most "
                         f"{_MAX_TOKEN_BYTES} printable ASCII characters, no spaces")
    return token


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
    inventory_set: _SetOption = None,
    out: _common.OutOption = None,
) -> None:
    """Quote the PCRs over the verifier's nonce; write the evidence JSON."""
    settings = _common.settings()
    try:
        value = base64.b64decode(nonce_b64, validate=True)
    except binascii.Error:
        raise UsageError("--nonce is not base64") from None
    inventory = collect_inventory(sys_root=sys_root, proc_root=proc_root,
                                  overrides=_overrides(None, inventory_set))
    document = collect_evidence(
        host_id, value, tcti=tcti or settings.tcti,
        ak_handle=_handle(ak_handle, settings.attest_ak_handle),
        banks=[b.strip() for b in banks.split(",") if b.strip()], pcrs=_common.pcr_list(pcrs),
        eventlog=None if no_eventlog else (eventlog_path or settings.attest_eventlog),
        inventory=inventory)
    _common.write(document.to_json(), out)


# -- the agent over HTTP ----------------------------------------------------------------------

_TokenFileOption = Annotated[Path | None, typer.Option(
    "--token-file", envvar="VIGIL_AGENT_TOKEN_FILE",
    help="File holding the shared bearer token (never given on the command line).")]


@app.command("serve")
def agent_serve(
    host_id: Annotated[str, typer.Option("--host-id", help="This host's id at the verifier.")],
    tcti: Annotated[str | None, typer.Option(
        "--tcti", "--tpm", help="TPM interface, e.g. device:/dev/tpmrm0 or "
        "swtpm:host=127.0.0.1,port=2321 (default: VIGIL_TCTI).")] = None,
    ak_handle: _AkHandleOption = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535,
                                      help="Port to listen on (0: a free one).")] = 8445,
    banks: Annotated[str, typer.Option("--banks", help="PCR banks to quote where allocated.")
                     ] = "sha1,sha256,sha384",
    pcrs: Annotated[str, typer.Option("--pcrs", help="PCRs to quote.")] = "0-23",
    eventlog_path: Annotated[Path | None, typer.Option(
        "--eventlog", help="Event log, read for every challenge (default: "
        "VIGIL_ATTEST_EVENTLOG).")] = None,
    no_eventlog: Annotated[bool, typer.Option("--no-eventlog", help="Send no event log.")
                           ] = False,
    components: Annotated[Path | None, typer.Option(
        "--components", "--inventory", help="JSON object of inventory fields to report "
        'instead of what sysfs says, e.g. {"bios_version": "2.19.0"}.')] = None,
    inventory_set: _SetOption = None,
    sys_root: Annotated[Path, typer.Option("--sys-root", help="Where sysfs is.")
                        ] = Path("/sys"),
    proc_root: Annotated[Path, typer.Option("--proc-root", help="Where procfs is.")
                         ] = Path("/proc"),
    tls_cert: Annotated[Path | None, typer.Option(
        "--tls-cert", help="PEM certificate to serve HTTPS with.")] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="PEM key of --tls-cert.")
                       ] = None,
    token_file: _TokenFileOption = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Once listening, print {endpoint, host_id, pid} as JSON on stdout."
    )] = False,
) -> None:
    """Answer verifiers' challenges (POST /v1/challenge with a nonce) with evidence from
    this host's TPM, one quote at a time, until interrupted."""
    settings = _common.settings()
    overrides = _overrides(components, inventory_set)
    config = AgentConfig(
        host_id=host_id, tcti=tcti or settings.tcti,
        ak_handle=_handle(ak_handle, settings.attest_ak_handle),
        banks=tuple(b.strip() for b in banks.split(",") if b.strip()),
        pcrs=tuple(_common.pcr_list(pcrs)),
        eventlog=None if no_eventlog else (eventlog_path or settings.attest_eventlog),
        inventory=cached_inventory(lambda: collect_inventory(
            sys_root=sys_root, proc_root=proc_root, overrides=overrides)),
        token=_token(token_file))
    if host not in ("127.0.0.1", "::1", "localhost") and (tls_cert is None
                                                           or config.token is None):
        _output.stderr().print(f"warning: serving on {host} without "
                               f"{'TLS' if tls_cert is None else 'a bearer token'}: anyone "
                               "who reaches the port can make this TPM quote", markup=False)

    def ready(endpoint: str) -> None:
        if as_json:
            typer.echo(json.dumps({"endpoint": endpoint, "host_id": host_id,
                                   "pid": os.getpid()}))
        _output.stderr().print(f"agent of {host_id} serving at {endpoint} (challenges: POST "
                               "/v1/challenge)", markup=False)

    serve_agent(config, host=host, port=port, tls_cert=tls_cert, tls_key=tls_key,
                ready=ready)
    _output.stderr().print(f"agent of {host_id} stopped", markup=False)


@app.command("challenge")
def agent_challenge(
    endpoint: Annotated[str, typer.Argument(help="The agent's URL, e.g. "
                                            "http://127.0.0.1:8445.", show_default=False)],
    host_id: Annotated[str, typer.Option("--host-id", help="The host the agent is for.")],
    timeout: Annotated[float, typer.Option("--timeout", min=0.001, help="Seconds the whole "
                                           "challenge may take.")
                       ] = DEFAULT_CHALLENGE_TIMEOUT,
    token_file: _TokenFileOption = None,
    ca: Annotated[Path | None, typer.Option(
        "--ca", help="PEM CA certificates that vouch for the agent's TLS certificate "
        "(default: the system's).")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write the signed result "
                                             "(EAR JWT) to this file.")] = None,
    as_json: _common.JsonOption = False,
) -> None:
    """Attest HOST_ID now (the verifier's side): issue a nonce, challenge its agent,
    appraise the evidence (steps 1-6); print the signed result; exit 1 unless affirming.
    An agent that does not deliver in time gives a contraindicated result naming why."""
    token = _token(token_file)
    verifier = Verifier.from_settings(_common.settings())
    try:
        appraisal = attest_host(verifier, host_id, endpoint, timeout=timeout, token=token,
                                ca=ca)
    finally:
        verifier.close()
    if out is not None:
        out.write_text(appraisal.token + "\n")
    result = appraisal.result
    if as_json:
        _output.emit_json({"host_id": result.host_id, **result.summary().model_dump(
            mode="json"), "token": appraisal.token})
    else:
        image = f"{result.image.name} {result.image.version}" if result.image else "none"
        typer.echo(f"{result.host_id}: {result.status} (image {image})")
        for failure in result.failures:
            typer.echo(f"  {failure.step}: {failure.reason}")
    if result.status != "affirming":
        raise typer.Exit(1)


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
        # without template.json, what is there is a manufacture that did not finish
        for leftover in ("state", "ca"):
            shutil.rmtree(state / leftover, ignore_errors=True)
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


@simulate_app.command("fleet")
def fleet(
    hosts: Annotated[int, typer.Option("--hosts", min=1, max=64,
                                       help="How many hosts to simulate.")] = 4,
    state: Annotated[Path, typer.Option("--state", help="Folder of the fleet (TPMs, event "
                                        "logs, the lab verifier's state and keys).")
                     ] = Path(".vigil/fleet"),
    token_file: _TokenFileOption = None,
    as_json: _common.JsonOption = False,
) -> None:
    """Run HOSTS software-TPM hosts until interrupted: each with a TPM of its own,
    booted (alternately two image versions), its AK enrolled with a lab verifier in
    STATE, its boot approved, and its own agent on 127.0.0.1. Prints the agents'
    endpoints and the VIGIL_* settings of that verifier (for vigil agent challenge)."""
    token = _token(token_file)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set())
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            running = start_fleet(state.resolve(), hosts, token=token)
        except (RuntimeError, FileNotFoundError) as exc:
            raise NotFoundError(f"cannot start the simulated fleet: {exc}",
                                tip="scripts/setup.sh installs swtpm and swtpm-tools") from None
        with running:
            listed = [{"host_id": h.host_id, "endpoint": h.endpoint, "tcti": h.tpm.tcti,
                       "image": None if h.spec.image is None else
                       f"{h.spec.image.name} {h.spec.image.version}",
                       "eventlog": str(h.eventlog)} for h in running.hosts.values()]
            if as_json:
                typer.echo(json.dumps({"hosts": listed, "settings": running.settings()}))
            else:
                _output.table("Simulated hosts", ["host", "agent", "image", "TPM"],
                              [(h["host_id"], h["endpoint"], h["image"], h["tcti"])
                               for h in listed])
                typer.echo("The lab verifier's settings:")
                for name, value in running.settings().items():
                    typer.echo(f"  export {name}='{value}'")
                first = listed[0]
                typer.echo(f"then: vigil agent challenge {first['endpoint']} --host-id "
                           f"{first['host_id']}")
            _output.stderr().print("running until interrupted (Ctrl-C)", markup=False)
            while not stop.wait(0.5):
                pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    _output.stderr().print("simulated fleet stopped", markup=False)


app.add_typer(simulate_app, name="simulate")
