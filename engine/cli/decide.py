"""``vigil decide``: decide one placement from a signed attestation result."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from engine.cli import output
from engine.cli.common import JsonOption, LogOption, read_file
from engine.config import load_settings
from engine.errors import ConfigError, UsageError

if TYPE_CHECKING:
    from engine.attest import AttestationResult
    from engine.config import Settings
    from engine.decide import Image, PatchedConfiguration, Verdict


def _image(text: str | None) -> Image | None:
    from engine.decide import Image

    if text is None:
        return None
    name, sep, version = text.partition("@")
    if not sep or not name or not version:
        raise UsageError(f"--requested-image {text!r}: expected NAME@VERSION")
    return Image(name=name, version=version)


def decide(
    result: Annotated[Path | None, typer.Option(
        help="Signed attestation result of the host (EAR JWT, from `vigil attest verify "
             "--out`).")] = None,
    host_id: Annotated[str | None, typer.Option(
        help="Host id when there is no attestation result (decided as unattested).")]
    = None,
    key: Annotated[Path | None, typer.Option(
        help="The verifier's public key (default: VIGIL_ATTEST_RESULT_VERIFICATION_KEY).")]
    = None,
    tenant: Annotated[str, typer.Option(help="Tenant asking for the placement.")] = "default",
    vm: Annotated[str, typer.Option(help="VM name.")] = "vm",
    vcpus: Annotated[int, typer.Option(min=1, help="Virtual CPUs.")] = 1,
    memory_mib: Annotated[int, typer.Option(min=1, help="Memory in MiB.")] = 1024,
    requested_patch_level: Annotated[str | None, typer.Option(
        help="Minimum host image version the tenant requires.")] = None,
    requested_image: Annotated[str | None, typer.Option(
        help="Exact host image the tenant requires, NAME@VERSION.")] = None,
    patched: Annotated[Path | None, typer.Option(
        help="Refused: a patched configuration is read from the image catalog "
             "(VIGIL_IMAGES_DB), where only attested versions are ready, never from a "
             "file.")] = None,
    policies: Annotated[Path | None, typer.Option(help="Policy folder (default: "
                                                  "VIGIL_POLICY_DIR).")] = None,
    bundle: Annotated[Path | None, typer.Option(help="Bundle to evaluate (default: "
                                                "VIGIL_BUNDLE).")] = None,
    log: LogOption = None,
    no_log: Annotated[bool, typer.Option("--no-log", help="Do not record the decision.")]
    = False,
    show_input: Annotated[bool, typer.Option(
        "--show-input", help="Print the input document that was decided, too (JSON; with "
                             "--json, one document {input, verdict}).")]
    = False,
    as_json: JsonOption = False,
) -> None:
    """Decide placing a VM on a host: verify the host's attestation result, ask the PVDB
    what affects the attested image's components, evaluate the policy, log the decision.
    Exit code 1 unless the verdict is admit."""
    from engine.attest import load_verification_key, verify_result
    from engine.decide import Decider, RequestFacts, VmShape
    from engine.provision import decide_placement
    from engine.pvdb import Pvdb

    if (result is None) == (host_id is None):
        raise UsageError("name the host by --result (attested) or --host-id (unattested)")
    if policies is not None and bundle is not None:
        raise UsageError("--policies and --bundle both name the policy: give one")
    chosen = {"decision_log": log, "policy_dir": policies, "bundle": bundle}
    cfg = load_settings(**{k: v for k, v in chosen.items() if v is not None})
    attested = None
    token: str | None = None
    if result is not None:
        key = key or cfg.attest_result_verification_key
        if key is None:
            raise ConfigError("no key to verify the attestation result",
                              tip="pass --key verifier.pub.pem or set "
                                  "VIGIL_ATTEST_RESULT_VERIFICATION_KEY")
        token = read_file(result, "attestation result").decode("ascii", "replace").strip()
        attested = verify_result(token, load_verification_key(key.read_bytes()))
    if patched is not None:
        # a file anyone can write would turn a reject into "patch": not verified, not used
        raise UsageError(
            f"--patched {patched}: a patched configuration given as a file is not verified",
            tip="the host's patched configuration comes from the image catalog "
                "(`vigil images list`): a version is ready only once attested on a staging "
                "host")
    state = _patched_from_catalog(cfg, attested)
    request = RequestFacts(tenant=tenant, vm=VmShape(name=vm, vcpus=vcpus,
                                                     memory_mib=memory_mib),
                           requested_patch_level=requested_patch_level,
                           requested_image=_image(requested_image))
    with Pvdb.open(cfg.db, read_only=True, settings=cfg) as pvdb, \
            Decider.from_settings(cfg, log=not no_log) as decider:
        placement = decide_placement(decider, pvdb, request, attested, host_id=host_id,
                                     now=dt.datetime.now(dt.UTC), patched=state,
                                     attestation_token=token)
    if show_input and as_json:  # one JSON document: what was decided, and the verdict
        output.emit_json({"input": placement.document.to_json(),
                          "verdict": placement.verdict.model_dump(mode="json",
                                                                  exclude_none=True)})
    else:
        if show_input:
            typer.echo(json.dumps(placement.document.to_json(), indent=2))
        print_verdict(placement.verdict, as_json=as_json)
    if placement.verdict.verdict != "admit":
        raise typer.Exit(1)


def print_verdict(verdict: Verdict, *, as_json: bool) -> None:
    """A verdict as JSON, or its verdict line, reasons, warnings and obligations."""
    if as_json:
        output.emit_json(verdict.model_dump(mode="json", exclude_none=True))
        return
    output.stdout().print(f"{verdict.verdict.upper()}  (decision {verdict.decision_id}, "
                        f"bundle {verdict.bundle_revision}, {verdict.evaluator})",
                        markup=False, highlight=False, soft_wrap=True)
    for title, items in (("reasons", verdict.reasons), ("warnings", verdict.warnings)):
        for reason in items:
            output.stdout().print(f"  {title[:-1]}: [{reason.rule}] {reason.message}",
                                markup=False, highlight=False, soft_wrap=True)
    for obligation in verdict.obligations:
        output.stdout().print(f"  obligation: {obligation.model_dump_json(exclude_none=True)}",
                            markup=False, highlight=False, soft_wrap=True)


def _patched_from_catalog(cfg: Settings, attested: AttestationResult | None
                          ) -> PatchedConfiguration:
    """The patched configuration of the attested image, from the image catalog (none when
    there is no catalog, no attested image, or no patched version of it)."""
    from engine.decide import PatchedConfiguration

    if attested is None or attested.image is None or not cfg.images_db.exists():
        return PatchedConfiguration(state="none")
    from engine.images import Catalog, patched_configuration

    with Catalog(cfg.images_db, read_only=True) as catalog:
        return patched_configuration(catalog, attested.image)
