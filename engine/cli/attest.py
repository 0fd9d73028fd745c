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

app = typer.Typer(help="Verify hosts: nonces, evidence, event logs, reference manifests, results.",
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


# ---------------------------------------------------------------------------------------
# Verification, reference manifests, AK enrollment (verifier side) and the host agent.
#
# ``vigil attest nonce HOST``           issue a nonce for a host
# ``vigil attest verify EVIDENCE``      appraise evidence (steps 1-6), print and save the
#                                       signed result; exit 1 unless it is affirming
# ``vigil attest verify-result TOKEN``  check a signed result offline
# ``vigil attest reference create|show``  make and sign / inspect a reference manifest
# ``vigil attest ak challenge|complete|trust-cert|list``  AK trust
# ``vigil attest keygen``               a key pair for results or manifests
# ``agent_app``: ``vigil agent enroll|activate|evidence`` on the host (register it in
# engine/cli/main.py as ``app.add_typer(attest.agent_app, name="agent")``).

import base64 as _base64  # noqa: E402
import binascii as _binascii  # noqa: E402
import datetime as _dt  # noqa: E402

from engine.attest import agent as _agent  # noqa: E402
from engine.attest import ak as _ak  # noqa: E402
from engine.attest import evidence as _evidence  # noqa: E402
from engine.attest import manifests as _manifests  # noqa: E402
from engine.attest import nonce as _nonce  # noqa: E402
from engine.attest import result as _result  # noqa: E402
from engine.attest import signing_keys as _signing_keys  # noqa: E402
from engine.attest import verify as _verify  # noqa: E402
from engine.cli import common as _common  # noqa: E402
from engine.cli import output as _output  # noqa: E402
from engine.model import ImageRef  # noqa: E402

reference_app = typer.Typer(help="Create, sign and inspect reference manifests of approved "
                            "host images.", no_args_is_help=True)
ak_app = typer.Typer(help="Attestation-key trust: enroll hosts' AKs.", no_args_is_help=True)
agent_app = typer.Typer(help="Host agent: enroll the TPM's AK and collect evidence.",
                        no_args_is_help=True)
app.add_typer(reference_app, name="reference")
app.add_typer(ak_app, name="ak")

_OutOption = Annotated[Path | None, typer.Option("--out", "-o", help="Write to this file "
                                                 "instead of stdout.")]
_TctiOption = Annotated[str | None, typer.Option(
    "--tcti", help="TPM interface, e.g. device:/dev/tpmrm0 or swtpm:host=127.0.0.1,port=2321 "
    "(default: VIGIL_TCTI).")]
_AkHandleOption = Annotated[str | None, typer.Option(
    "--ak-handle", help="Persistent handle of the AK, e.g. 0x81018000 (default: "
    "VIGIL_ATTEST_AK_HANDLE).")]
_EkTypeOption = Annotated[str, typer.Option("--ek-type", help="EK template: EK-RSA2048 or "
                                            "EK-ECC256.")]


def _write(data: bytes | str, out: Path | None) -> None:
    raw = data.encode() if isinstance(data, str) else data
    if out is None:
        typer.echo(raw.decode().rstrip("\n"))
    else:
        out.write_bytes(raw if raw.endswith(b"\n") else raw + b"\n")


def _handle(value: str | None, default: int) -> int:
    if value is None:
        return default
    try:
        return int(value, 0)
    except ValueError:
        raise UsageError(f"--ak-handle {value} is not a number such as 0x81018000") from None


def _pcr_list(value: str) -> list[int]:
    """``0-9``, ``0,2,4,7`` or a mix."""
    pcrs: set[int] = set()
    try:
        for part in value.split(","):
            low, _, high = part.strip().partition("-")
            pcrs.update(range(int(low), int(high or low) + 1))
    except ValueError:
        raise UsageError(f"--pcrs {value}: use indexes and ranges such as 0-9 or 0,2,4,7"
                         ) from None
    if not pcrs or min(pcrs) < 0 or max(pcrs) > 23:
        raise UsageError(f"--pcrs {value}: PCR indexes run from 0 to 23")
    return sorted(pcrs)


def _parse(model: Any, path: Path, what: str) -> Any:
    """Read ``path`` as the pydantic ``model``; an input error names what is wrong."""
    from pydantic import ValidationError

    from engine.attest.errors import AttestError

    try:
        return model.model_validate_json(_common.read_file(path, what))
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '$'}: {err['msg']}"
                             for err in exc.errors()[:3])
        raise AttestError("input", f"{path} is not a valid {what}: {problems}") from None


def _model_json(model: Any) -> str:
    return str(model.model_dump_json(by_alias=True, indent=2))


# -- verifier ----------------------------------------------------------------------------


@app.command("nonce")
def nonce(
    host_id: Annotated[str, typer.Argument(help="The host that is to quote over it.")],
    as_json: _common.JsonOption = False,
) -> None:
    """Issue a single-use nonce for HOST_ID (base64) from the verifier's state file."""
    settings = _common.settings()
    store = _nonce.NonceStore(settings.attest_db,
                               ttl=_dt.timedelta(seconds=settings.attest_nonce_ttl))
    issued = store.issue(host_id)
    store.close()
    value = _base64.b64encode(issued.value).decode()
    if as_json:
        _output.emit_json({"host_id": host_id, "nonce": value,
                           "expires_at": issued.expires_at})
    else:
        typer.echo(value)


@app.command("verify")
def verify(
    evidence: Annotated[Path, typer.Argument(help="Evidence JSON from vigil agent evidence.",
                                             show_default=False)],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write the signed result "
                                             "(EAR JWT) to this file.")] = None,
    as_json: _common.JsonOption = False,
) -> None:
    """Appraise EVIDENCE (steps 1-6) and print the result; exit 1 unless affirming."""
    document = _evidence.Evidence.load(evidence)
    verifier = _verify.Verifier.from_settings(_common.settings())
    try:
        appraisal = verifier.appraise(document)
    finally:
        verifier.close()
    if out is not None:
        out.write_text(appraisal.token + "\n")
    result = appraisal.result
    if as_json:
        _output.emit_json({"host_id": result.host_id, **result.summary().model_dump(
            mode="json"), "token": appraisal.token})
    else:
        _print_result(result)
    if result.status != "affirming":
        raise typer.Exit(1)


def _print_result(result: _result.AttestationResult) -> None:
    image = f"{result.image.name} {result.image.version}" if result.image else "none"
    typer.echo(f"{result.host_id}: {result.status} (image {image}, issued "
               f"{result.issued_at.isoformat()})")
    vector = result.trust_vector.model_dump(by_alias=True)
    _output.table("Trustworthiness vector (AR4SI)", ["claim", "value", "tier"],
                  [(k, v, _result.tier(v)) for k, v in vector.items()])
    if result.failures:
        _output.table("Failures", ["step", "reason"],
                      [(f.step, f.reason) for f in result.failures])
    if result.components:
        _output.table("Attested components", ["kind", "vendor", "product", "version"],
                      [(c.kind, c.vendor, c.product, c.version) for c in result.components])


@app.command("verify-result")
def verify_result_command(
    token: Annotated[Path, typer.Argument(help="File holding a signed result (EAR JWT).",
                                          show_default=False)],
    key: Annotated[Path, typer.Option("--key", help="The verifier's public key (PEM).")],
    max_age: Annotated[float | None, typer.Option(
        "--max-age", help="Refuse results older than this many seconds.")] = None,
    as_json: _common.JsonOption = False,
) -> None:
    """Check a signed attestation result offline with the verifier's public key."""
    result = _result.verify_result(
        _common.read_file(token, "result"), _signing_keys.load_verification_key(key),
        max_age=None if max_age is None else _dt.timedelta(seconds=max_age))
    if as_json:
        _output.emit_json({"host_id": result.host_id, "signature": "valid",
                           **result.summary().model_dump(mode="json")})
    else:
        typer.echo("signature: valid")
        _print_result(result)


@app.command("keygen")
def keygen(
    out: Annotated[Path, typer.Option("--out", "-o", help="Private key file (PEM) to write.")],
    public: Annotated[Path | None, typer.Option(
        "--public", help="Public key file (default: OUT with .pub.pem).")] = None,
    kind: Annotated[str, typer.Option("--type", help="ec-p256, ec-p384 or ed25519.")
                    ] = "ec-p256",
) -> None:
    """Make a key pair to sign attestation results or reference manifests."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519

    private: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    if kind == "ec-p256":
        private = ec.generate_private_key(ec.SECP256R1())
    elif kind == "ec-p384":
        private = ec.generate_private_key(ec.SECP384R1())
    elif kind == "ed25519":
        private = ed25519.Ed25519PrivateKey.generate()
    else:
        raise UsageError(f"--type {kind}: choose ec-p256, ec-p384 or ed25519")
    if out.exists():
        raise UsageError(f"{out} exists; refusing to overwrite a private key")
    out.touch(mode=0o600)
    out.write_bytes(private.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public_path = public or out.with_suffix(".pub.pem")
    public_path.write_bytes(private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    typer.echo(f"wrote {out} (private, mode 600) and {public_path}")


# -- reference manifests -------------------------------------------------------------------


@reference_app.command("create")
def reference_create(
    evidence: Annotated[Path, typer.Argument(help="Evidence of a known-good boot of the image.",
                                             show_default=False)],
    name: Annotated[str, typer.Option("--name", help="Image name.")],
    version: Annotated[str, typer.Option("--version", help="Image version.")],
    key: Annotated[Path, typer.Option("--key", help="The image pipeline's private key (PEM).")],
    components: Annotated[Path | None, typer.Option(
        "--components", help="JSON list of the image's components (kind, vendor, product, "
        "version, cpe, purl).")] = None,
    pcrs: Annotated[str, typer.Option("--pcrs", help="PCRs to pin.")] = "0-9",
    events_only: Annotated[bool, typer.Option(
        "--events-only", help="Pin event digests only, not PCR values.")] = False,
    out: _OutOption = None,
) -> None:
    """Create and sign a reference manifest from a known-good evidence capture."""
    from engine.cli.pvdb import load_components

    listed = load_components(components) if components is not None else []
    manifest = _verify.manifest_from_evidence(
        _evidence.Evidence.load(evidence),
        ImageRef(name=name, version=version), pcrs=_pcr_list(pcrs),
        components=listed, include_pcr_values=not events_only)
    _write(_manifests.sign_manifest(manifest, _signing_keys.load_signing_key(key)), out)


@reference_app.command("show")
def reference_show(
    manifest: Annotated[Path, typer.Argument(help="A signed manifest (.jws).",
                                             show_default=False)],
    key: Annotated[list[Path] | None, typer.Option(
        "--key", help="Trusted public key (PEM); default VIGIL_ATTEST_REFERENCE_KEYS.")] = None,
) -> None:
    """Verify a signed manifest's signature and print it as JSON."""
    paths = key or _common.settings().attest_reference_keys
    keys = [_signing_keys.load_verification_key(path) for path in paths]
    raw = _common.read_file(manifest, "manifest")
    _write(_model_json(_manifests.load_manifest(raw, keys)), None)


# -- AK trust --------------------------------------------------------------------------------


def _registry() -> _ak.AkRegistry:
    settings = _common.settings()
    return _ak.AkRegistry(
        settings.attest_db, ek_roots=_ak.load_certificates(settings.attest_ek_ca),
        ak_roots=_ak.load_certificates(settings.attest_ak_ca),
        unsafe_trust_ek_without_certificate=settings.attest_unsafe_trust_ek_without_certificate)


@ak_app.command("challenge")
def ak_challenge(
    request: Annotated[Path, typer.Argument(help="Enrollment request from vigil agent enroll.",
                                            show_default=False)],
    out: _OutOption = None,
) -> None:
    """Check a host's EK and AK and write the credential challenge for its TPM."""
    parsed = _parse(_ak.EnrollmentRequest, request, "enrollment request")
    with _registry() as registry:
        _write(_model_json(registry.begin_enrollment(parsed)), out)


@ak_app.command("complete")
def ak_complete(
    response: Annotated[Path, typer.Argument(help="Activation response from vigil agent "
                                             "activate.", show_default=False)],
) -> None:
    """Trust the AK if the host's TPM activated the credential."""
    parsed = _parse(_ak.ActivationResponse, response, "activation response")
    with _registry() as registry:
        trusted = registry.complete_enrollment(parsed)
    typer.echo(f"trusted AK {trusted.name.hex()} for {trusted.host_id} "
               f"({'EK certificate verified' if trusted.hardware_verified else 'EK UNVERIFIED'})")


@ak_app.command("trust-cert")
def ak_trust_certificate(
    host_id: Annotated[str, typer.Argument(help="The host the certificate names.")],
    ak_public: Annotated[Path, typer.Option("--ak-public", help="The AK's TPM2B_PUBLIC.")],
    certificate: Annotated[Path, typer.Option("--cert", help="AK certificate (PEM or DER).")],
) -> None:
    """Trust an AK certified by a provider CA (VIGIL_ATTEST_AK_CA)."""
    with _registry() as registry:
        trusted = registry.trust_ak_certificate(host_id, _common.read_file(ak_public, "AK public"),
                                                _common.read_file(certificate, "AK certificate"))
    typer.echo(f"trusted AK {trusted.name.hex()} for {host_id} (AK certificate verified)")


@ak_app.command("list")
def ak_list(
    host_id: Annotated[str, typer.Argument(help="The host.")],
    as_json: _common.JsonOption = False,
) -> None:
    """List the AKs trusted for HOST_ID."""
    with _registry() as registry:
        aks = registry.trusted_aks(host_id)
    rows = [(a.name.hex(), a.method, a.hardware_verified, a.trusted_at.isoformat())
            for a in aks]
    if as_json:
        _output.emit_json([dict(zip(("name", "method", "hardware_verified", "trusted_at"), row,
                                    strict=True)) for row in rows])
    else:
        _output.table(f"Trusted AKs of {host_id}",
                      ["AK name", "method", "hardware verified", "trusted at"], rows)


# -- host agent ------------------------------------------------------------------------------


@agent_app.command("enroll")
def agent_enroll(
    host_id: Annotated[str, typer.Option("--host-id", help="This host's id at the verifier.")],
    tcti: _TctiOption = None,
    ak_handle: _AkHandleOption = None,
    ek_type: _EkTypeOption = "EK-RSA2048",
    ak_type: Annotated[str, typer.Option("--ak-type", help="rsa2048 or ecc256.")] = "rsa2048",
    replace: Annotated[bool, typer.Option("--replace", help="Replace a key already at the "
                                          "AK handle.")] = False,
    out: _OutOption = None,
) -> None:
    """Create an AK under the EK, persist it, and write the enrollment request."""
    settings = _common.settings()
    request = _agent.enroll(host_id, tcti=tcti or settings.tcti,
                               ak_handle=_handle(ak_handle, settings.attest_ak_handle),
                               ek_type=ek_type, ak_type=ak_type, replace=replace)
    _write(_model_json(request), out)


@agent_app.command("activate")
def agent_activate(
    challenge: Annotated[Path, typer.Argument(help="Challenge from vigil attest ak challenge.",
                                              show_default=False)],
    tcti: _TctiOption = None,
    ak_handle: _AkHandleOption = None,
    ek_type: _EkTypeOption = "EK-RSA2048",
    out: _OutOption = None,
) -> None:
    """Let the TPM activate the verifier's credential; write the proof."""
    settings = _common.settings()
    parsed = _parse(_ak.CredentialChallenge, challenge, "challenge")
    response = _agent.activate(parsed, tcti=tcti or settings.tcti,
                                  ak_handle=_handle(ak_handle, settings.attest_ak_handle),
                                  ek_type=ek_type)
    _write(_model_json(response), out)


@agent_app.command("evidence")
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
    out: _OutOption = None,
) -> None:
    """Quote the PCRs over the verifier's nonce; write the evidence JSON."""
    settings = _common.settings()
    try:
        value = _base64.b64decode(nonce_b64, validate=True)
    except _binascii.Error:
        raise UsageError("--nonce is not base64") from None
    overrides: dict[str, str] = {}
    for item in inventory_set or []:
        field, sep, text = item.partition("=")
        if not sep or not field:
            raise UsageError(f"--set {item}: use FIELD=VALUE")
        overrides[field] = text
    inventory = _agent.collect_inventory(sys_root=sys_root, proc_root=proc_root,
                                            overrides=overrides)
    document = _agent.collect_evidence(
        host_id, value, tcti=tcti or settings.tcti,
        ak_handle=_handle(ak_handle, settings.attest_ak_handle),
        banks=[b.strip() for b in banks.split(",") if b.strip()], pcrs=_pcr_list(pcrs),
        eventlog=None if no_eventlog else (eventlog_path or settings.attest_eventlog),
        inventory=inventory)
    _write(document.to_json(), out)
