"""``vigil report``: the tenant's signed attestation report, verified offline and shown.

``verify`` exits 0 when the report's signature verifies with the signer's public key and
1 (one ``error:`` line) when it does not; ``show`` prints or renders a report.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from engine.cli import output
from engine.cli.common import JsonOption, read_file
from engine.config import load_settings
from engine.errors import ConfigError, VigilError

if TYPE_CHECKING:
    from engine.provision import TenantReport

app = typer.Typer(help="Tenant attestation reports: verify them offline, show them, render "
                  "them as HTML.", no_args_is_help=True)

ReportArgument = Annotated[Path, typer.Argument(help="A signed report (compact JWS).")]
KeyOption = Annotated[Path | None, typer.Option(
    "--key", help="The report signer's PEM public key (default: "
    "VIGIL_REPORT_VERIFICATION_KEY).")]


class NotVerified(VigilError):
    """The report's signature (or the EAR it carries) does not verify."""

    exit_code = 1


def _verified(path: Path, key: Path | None, ear_key: Path | None) -> TenantReport:
    from engine.attest import ResultError, verify_result
    from engine.keys import load_verification_key
    from engine.provision import ReportError, verify_report

    key = key or load_settings().report_verification_key
    if key is None:
        raise ConfigError("no key to verify the report",
                          tip="pass --key report.pub.pem or set VIGIL_REPORT_VERIFICATION_KEY")
    trusted = load_verification_key(key)
    ear_trusted = load_verification_key(ear_key) if ear_key is not None else None
    token = read_file(path, "report")
    try:
        report = verify_report(token, [trusted])
    except ReportError as exc:
        raise NotVerified(f"report {path} is not verified: {exc.reason}", tip=exc.tip) from None
    if ear_trusted is not None:
        if report.attestation.ear is None:
            raise NotVerified(f"report {path} carries no attestation result to verify")
        try:
            result = verify_result(report.attestation.ear, ear_trusted)
        except ResultError as exc:
            raise NotVerified(f"report {path}: its attestation result is not verified: "
                              f"{exc.summary}") from None
        if result.host_id != report.host:
            raise NotVerified(f"report {path}: its attestation result attests "
                              f"{result.host_id}, not {report.host}")
    return report


def _summary(report: TenantReport) -> dict[str, object]:
    return {"report_id": report.report_id, "tenant": report.tenant, "vm": report.vm,
            "host": report.host, "verdict": report.verdict.verdict, "advice": report.advice,
            "vulnerabilities": len(report.vulnerabilities)}


@app.command()
def verify(
    report: ReportArgument,
    key: KeyOption = None,
    ear_key: Annotated[Path | None, typer.Option(
        "--ear-key", help="Also verify the attestation result (EAR) the report carries with "
        "the verifier's PEM public key.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Verify REPORT's signature offline; exit 0 verified, 1 not verified."""
    try:
        verified = _verified(report, key, ear_key)
    except NotVerified as exc:
        if as_json:
            output.emit_json({"verified": False, "error": exc.summary})
        raise
    if as_json:
        output.emit_json({"verified": True, "ear_verified": ear_key is not None,
                          **_summary(verified)})
        return
    typer.echo(f"verified: report {verified.report_id} for tenant {verified.tenant}, "
               f"VM {verified.vm} on {verified.host}: {verified.verdict.verdict.upper()}; "
               f"{verified.advice}")


@app.command()
def show(
    report: ReportArgument,
    key: Annotated[Path | None, typer.Option(
        "--key", help="Verify the signature with this PEM public key first (exit 1 when it "
        "does not verify); without it the report is shown unverified.")] = None,
    html: Annotated[Path | None, typer.Option(
        "--html", help="Write the report as a self-contained HTML page to this file.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Show REPORT: its verdict, advice, reasons and vulnerabilities (or all of it as JSON,
    or as HTML with --html)."""
    from engine.provision import read_report, render_html

    if key is not None:
        shown = _verified(report, key, None)
    else:
        shown = read_report(read_file(report, "report"))
    verified = True if key is not None else None
    if html is not None:
        try:
            html.write_text(render_html(shown, verified=verified), encoding="utf-8")
        except OSError as exc:
            raise VigilError(f"cannot write {html}: {exc.strerror or exc}") from None
    if as_json:
        output.emit_json(shown.to_json())
        return
    _print(shown, verified)
    if html is not None:
        typer.echo(f"HTML: {html}")


def _print(report: TenantReport, verified: bool | None) -> None:
    console = output.stdout()

    def line(text: str) -> None:
        console.print(text, markup=False, highlight=False, soft_wrap=True)

    line(f"{report.verdict.verdict.upper()}  {report.advice}")
    line(f"  tenant {report.tenant}, VM {report.vm} on host {report.host}, image "
         + (f"{report.image.name} {report.image.version}" if report.image else "none"))
    line(f"  attestation {report.attestation.status} at {report.attestation.issued_at}; "
         f"report {report.report_id} issued {report.issued_at}; signature "
         + ("verified" if verified else "not checked (vigil report verify)"))
    for title, reasons in (("reason", report.verdict.reasons),
                           ("warning", report.verdict.warnings)):
        for r in reasons:
            line(f"  {title}: [{r.rule}] {r.message}")
    rows = [(v.id, v.component_label,
             f"{v.severity} {v.max_cvss}" if v.max_cvss is not None else v.severity,
             "yes" if v.kev else "", f"{v.epss.score:.3f}" if v.epss else "",
             v.patch_status + (f" {v.closing_version}" if v.closing_version else ""),
             f"{v.fix_date.date or 'unknown'} ({v.fix_date.basis})"
             + (f" {v.fix_date.interval[0]}..{v.fix_date.interval[1]}"
                if v.fix_date.interval else ""))
            for v in report.vulnerabilities]
    if rows:
        output.table(None, ["vulnerability", "component", "severity", "KEV", "EPSS",
                            "patch status", "fix date"], rows)
