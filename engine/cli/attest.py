"""``vigil attest``: the verifier's commands.

* ``vigil attest eventlog LOG [--json] [--bank NAME]`` parses a TCG event log, lists its
  events and the PCR values it replays to;
* ``vigil attest nonce HOST`` issues a nonce for a host;
* ``vigil attest verify EVIDENCE`` appraises evidence (steps 1-6), prints and saves the
  signed result; exit 1 unless it is affirming;
* ``vigil attest verify-result TOKEN`` checks a signed result offline;
* ``vigil attest keygen`` makes a key pair for results or manifests;
* ``vigil attest reference create|show`` makes and signs / inspects a reference manifest;
* ``vigil attest ak challenge|complete|trust-cert|list``: AK trust.

The host's side is ``vigil agent`` (:mod:`engine.cli.agent`). Errors are raised as the
engine's :class:`~engine.errors.VigilError` subclasses; the main CLI prints them.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from engine.attest import (
    PCR_INDEX_NOT_EXTENDED,
    ActivationResponse,
    AkRegistry,
    AttestationResult,
    EnrollmentRequest,
    Event,
    EventLog,
    Evidence,
    ImageRef,
    NonceStore,
    PcrValues,
    Verifier,
    load_certificates,
    load_eventlog,
    load_manifest,
    load_signing_key,
    load_verification_key,
    manifest_from_evidence,
    sign_manifest,
    tier,
    verify_result,
)
from engine.cli import common as _common
from engine.cli import output as _output
from engine.errors import UsageError

app = typer.Typer(help="Verify hosts: nonces, evidence, event logs, reference manifests, results.",
                  no_args_is_help=True)
reference_app = typer.Typer(help="Create, sign and inspect reference manifests of approved "
                            "host images.", no_args_is_help=True)
ak_app = typer.Typer(help="Attestation-key trust: enroll hosts' AKs.", no_args_is_help=True)
app.add_typer(reference_app, name="reference")
app.add_typer(ak_app, name="ak")

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
    parsed = load_eventlog(log)
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


# -- verifier ----------------------------------------------------------------------------


@app.command("nonce")
def nonce(
    host_id: Annotated[str, typer.Argument(help="The host that is to quote over it.")],
    as_json: _common.JsonOption = False,
) -> None:
    """Issue a single-use nonce for HOST_ID (base64) from the verifier's state file."""
    settings = _common.settings()
    store = NonceStore(settings.attest_db,
                               ttl=dt.timedelta(seconds=settings.attest_nonce_ttl))
    issued = store.issue(host_id)
    store.close()
    value = base64.b64encode(issued.value).decode()
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
    document = Evidence.load(evidence)
    verifier = Verifier.from_settings(_common.settings())
    for name, reason in verifier.references.refused:  # never matched; said, not silent
        _output.stderr().print(f"warning: reference manifest {name} refused: {reason}",
                               markup=False)
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


def _print_result(result: AttestationResult) -> None:
    image = f"{result.image.name} {result.image.version}" if result.image else "none"
    typer.echo(f"{result.host_id}: {result.status} (image {image}, issued "
               f"{result.issued_at.isoformat()})")
    vector = result.trust_vector.model_dump(by_alias=True)
    _output.table("Trustworthiness vector (AR4SI)", ["claim", "value", "tier"],
                  [(k, v, tier(v)) for k, v in vector.items()])
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
    result = verify_result(
        _common.read_file(token, "result"), load_verification_key(key),
        max_age=None if max_age is None else dt.timedelta(seconds=max_age))
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
    out: _common.OutOption = None,
) -> None:
    """Create and sign a reference manifest from a known-good evidence capture."""
    from engine.cli.pvdb import load_components

    listed = load_components(components) if components is not None else []
    manifest = manifest_from_evidence(
        Evidence.load(evidence),
        ImageRef(name=name, version=version), pcrs=_common.pcr_list(pcrs),
        components=listed, include_pcr_values=not events_only)
    _common.write(sign_manifest(manifest, load_signing_key(key)), out)


@reference_app.command("show")
def reference_show(
    manifest: Annotated[Path, typer.Argument(help="A signed manifest (.jws).",
                                             show_default=False)],
    key: Annotated[list[Path] | None, typer.Option(
        "--key", help="Trusted public key (PEM); default VIGIL_ATTEST_REFERENCE_KEYS.")] = None,
) -> None:
    """Verify a signed manifest's signature and print it as JSON."""
    paths = key or _common.settings().attest_reference_keys
    keys = [load_verification_key(path) for path in paths]
    raw = _common.read_file(manifest, "manifest")
    _common.write(_common.model_json(load_manifest(raw, keys)), None)


# -- AK trust --------------------------------------------------------------------------------


def _registry() -> AkRegistry:
    settings = _common.settings()
    return AkRegistry(
        settings.attest_db, ek_roots=load_certificates(settings.attest_ek_ca),
        ak_roots=load_certificates(settings.attest_ak_ca),
        unsafe_trust_ek_without_certificate=settings.attest_unsafe_trust_ek_without_certificate)


@ak_app.command("challenge")
def ak_challenge(
    request: Annotated[Path, typer.Argument(help="Enrollment request from vigil agent enroll.",
                                            show_default=False)],
    out: _common.OutOption = None,
) -> None:
    """Check a host's EK and AK and write the credential challenge for its TPM."""
    parsed = _common.parse_model(EnrollmentRequest, request, "enrollment request")
    with _registry() as registry:
        _common.write(_common.model_json(registry.begin_enrollment(parsed)), out)


@ak_app.command("complete")
def ak_complete(
    response: Annotated[Path, typer.Argument(help="Activation response from vigil agent "
                                             "activate.", show_default=False)],
) -> None:
    """Trust the AK if the host's TPM activated the credential."""
    parsed = _common.parse_model(ActivationResponse, response, "activation response")
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
