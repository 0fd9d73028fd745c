"""``vigil lab demo``: the whole provisioning story on one machine, with the embedded
defaults, from the product's own commands.

1. the PVDB from the offline snapshot (``vigil feeds ingest --offline feeds/snapshot``);
2. an image catalog: each host image's signed reference manifest imported as approved
   (``vigil images import --approved``), and a patched version of one of them built,
   attested on a staging software TPM and approved (``vigil images prepare --image``,
   ``vigil images approve``);
3. a fleet of five hosts, each its own software TPM (swtpm, its own EKs) booting its
   image and its own host agent on a free loopback port
   (:func:`engine.attest.start_fleet`), their AKs enrolled; the fleet inventory names
   each host's image version and agent;
4. the service (``vigil serve`` on 127.0.0.1) with API tokens (admin, tenant, service);
5. one provisioning request per host (``vigil provision request``): the service picks the
   host, challenges its agent with a fresh nonce, asks the PVDB, the catalog and the
   default policy, and signs the tenant's report; each report is fetched
   (``vigil provision report``), verified offline (``vigil report verify``) and rendered
   (``vigil report show --html``).

The hosts are chosen so that the snapshot's facts give each verdict: ``admit`` (a 6.12
kernel past every fix), ``delay`` (CVE-2025-38236, CVSS 7.8 and not KEV-listed, fixed on
the host's 6.12 line, no patched version of its image), ``patch`` (a KEV-listed
vulnerability on a 6.12.0 kernel whose image has the attested patched version, which a
fifth host runs) and ``reject`` (KEV-listed vulnerabilities on 6.1.90, no patched
version). The command checks that each came (exit 1 when one did not); it does not make
them. Then the service keeps running, with the reports in the dashboard at ``/ui``,
until interrupted (``--once``: it stops at once); stopping ends the service, the agents
and the software TPMs. Everything lands under ``--state`` (emptied on each run).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from engine.cli import output
from engine.errors import NotFoundError, VigilError
from engine.model import Component, ImageRef

app = typer.Typer(
    help="A lab on one machine: software-TPM hosts, the service, the story.", no_args_is_help=True
)

ROOT = Path(__file__).resolve().parents[2]
XEN = Component(kind="hypervisor", vendor="xen", product="xen", version="4.17.3")
TENANT = "acme"


def _kernel(version: str) -> Component:
    return Component(
        kind="kernel",
        vendor="linux",
        product="linux_kernel",
        version=version,
        cpe=f"cpe:2.3:o:linux:linux_kernel:{version}:*:*:*:*:*:*:*",
    )


@dataclass(frozen=True)
class DemoHost:
    host_id: str
    image: ImageRef
    kernel: str
    expect: str | None
    """The verdict a request on this host should get (None: the patched host)."""
    vm: str = ""

    @property
    def components(self) -> list[Component]:
        return [_kernel(self.kernel), XEN]


PATCH_BASE = ImageRef(name="hv-xen", version="2024.12.1")
HOSTS = (
    DemoHost("hv-001", ImageRef(name="hv-xen", version="2025.08.1"), "6.12.40", "admit", "web-1"),
    DemoHost("hv-002", ImageRef(name="hv-xen", version="2025.06.1"), "6.12.30", "delay", "web-2"),
    DemoHost("hv-003", PATCH_BASE, "6.12.0", "patch", "web-3"),
    DemoHost("hv-004", ImageRef(name="hv-lts", version="2024.06.1"), "6.1.90", "reject", "web-4"),
)
PATCHED_HOST = "hv-005"


class DemoError(VigilError):
    """A step of the demo failed."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _write_key(path: Path) -> Path:
    """A fresh P-256 key at ``path`` (0600) and its public key beside it; the public
    key's path."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    _write_secret(
        path,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    public = path.with_suffix(".pub.pem")
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return public


def _write_secret(path: Path, data: bytes) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as stream:
        stream.write(data)


class Lab:
    """The demo's files, settings and processes."""

    def __init__(self, state: Path, feeds: Path, port: int) -> None:
        self.state = state
        self.feeds = feeds
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.fleet: Any = None
        self.service: subprocess.Popen[bytes] | None = None
        self.env: dict[str, str] = {}
        self.patched: ImageRef | None = None

    # -- the command line, as a user types it ----------------------------------------------

    def vigil(
        self, *args: str, check: bool = True, show: bool = True, ok: tuple[int, ...] = (0,)
    ) -> subprocess.CompletedProcess[str]:
        if show:
            output.stdout().print(
                f"$ vigil {' '.join(args)}", markup=False, highlight=False, style="dim"
            )
        done = subprocess.run(
            [sys.executable, "-m", "engine.cli.main", *args],
            env=self.env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if show and done.stdout.strip() and "--json" not in args:
            typer.echo(done.stdout.rstrip())
        if check and done.returncode not in ok:
            raise DemoError(
                f"`vigil {' '.join(args)}` exited {done.returncode}: "
                + (done.stderr.strip().splitlines() or ["no message"])[-1]
            )
        return done

    # -- the world -----------------------------------------------------------------------

    def prepare_folder(self) -> None:
        if self.state.exists():
            shutil.rmtree(self.state)
        for sub in ("keys", "tokens", "manifests", "references", "results", "reports"):
            (self.state / sub).mkdir(parents=True)
        (self.state / "vigil.toml").write_text("")
        s = self.state
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")},
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            "VIGIL_CONFIG": str(s / "vigil.toml"),
            "VIGIL_DB": str(s / "pvdb.duckdb"),
            "VIGIL_DECISION_LOG": str(s / "decisions.duckdb"),
            "VIGIL_FLEET_DB": str(s / "fleet.duckdb"),
            "VIGIL_IMAGES_DB": str(s / "images.duckdb"),
            "VIGIL_PREDICT_DB": str(s / "predict.duckdb"),
            "VIGIL_REQUESTS_DB": str(s / "requests.duckdb"),
            "VIGIL_ROLLOUT_DB": str(s / "rollouts.duckdb"),
            "VIGIL_TOKENS_DB": str(s / "tokens.sqlite3"),
            "VIGIL_ATTEST_DB": str(s / "fleet" / "attest.sqlite3"),
            "VIGIL_ATTEST_RESULTS": str(s / "results"),
            "VIGIL_ATTEST_RESULT_KEY": str(s / "keys" / "verifier.pem"),
            "VIGIL_ATTEST_RESULT_VERIFICATION_KEY": str(s / "keys" / "verifier.pub.pem"),
            "VIGIL_ATTEST_REFERENCES": str(s / "references"),
            "VIGIL_ATTEST_REFERENCE_KEYS": json.dumps([str(s / "keys" / "images.pub.pem")]),
            "VIGIL_ATTEST_AGENT_TOKEN_FILE": str(s / "tokens" / "agents.token"),
            "VIGIL_IMAGES_SIGNING_KEY": str(s / "keys" / "images.pem"),
            "VIGIL_REPORT_SIGNING_KEY": str(s / "keys" / "report.pem"),
            "VIGIL_REPORT_VERIFICATION_KEY": str(s / "keys" / "report.pub.pem"),
            "VIGIL_SERVICE_URL": self.url,
        }
        for name in ("verifier", "images", "report"):
            _write_key(s / "keys" / f"{name}.pem")
        _write_secret(s / "tokens" / "agents.token", secrets.token_urlsafe(32).encode())

    def pvdb(self) -> None:
        from engine.pvdb import Pvdb

        with Pvdb.open(Path(self.env["VIGIL_DB"])) as db:
            report = db.ingest([str(self.feeds)])
        if report.problems:
            raise DemoError(
                f"the feeds in {self.feeds} did not ingest cleanly: "
                f"{len(report.problems)} problem(s) (try `vigil feeds ingest`)"
            )
        typer.echo(
            f"ingested {self.feeds} into {self.env['VIGIL_DB']}: {report.documents} "
            f"documents, {report.changed} records, in {report.seconds:.1f} s"
        )

    def catalog(self) -> None:
        """Each host image recorded approved with its signed manifest (as ``vigil images
        import --approved`` does); the patched version of :data:`PATCH_BASE` prepared,
        attested on a staging swtpm and approved with the commands."""
        from engine.attest import (
            load_manifest,
            load_signing_key,
            load_verification_key,
            sign_manifest,
        )
        from engine.images import Catalog, boot_for, manifest_for

        key = load_signing_key(self.state / "keys" / "images.pem")
        public = load_verification_key(self.state / "keys" / "images.pub.pem")
        with Catalog(Path(self.env["VIGIL_IMAGES_DB"])) as catalog:
            for host in HOSTS:
                image = host.image
                token = sign_manifest(
                    manifest_for(
                        image,
                        host.components,
                        boot_for(host.components),
                        description=f"{image.name} {image.version}",
                    ),
                    key,
                )
                parsed = load_manifest(token, [public])
                catalog.create(
                    image.name,
                    image.version,
                    components=parsed.components,
                    actor="vigil lab demo",
                    manifest=token,
                    status="approved",
                    reason="the image the host runs",
                )
                # the verifier accepts hosts booting an approved image
                name = f"{image.name}-{image.version}.jws"
                (self.state / "references" / name).write_text(token + "\n")
                typer.echo(
                    f"approved {image.name}@{image.version} ("
                    + ", ".join(c.label for c in parsed.components)
                    + ")"
                )
        base = f"{PATCH_BASE.name}@{PATCH_BASE.version}"
        self.vigil(
            "images",
            "prepare",
            "--image",
            base,
            "--staging",
            str(self.state / "staging"),
            "--actor",
            "lab",
        )
        self.patched = self._child(PATCH_BASE)
        self.vigil(
            "images",
            "approve",
            f"{self.patched.name}@{self.patched.version}",
            "--actor",
            "lab",
            "--reason",
            "attested on staging",
        )

    def _child(self, base: ImageRef) -> ImageRef:
        from engine.images import Catalog

        with Catalog(Path(self.env["VIGIL_IMAGES_DB"]), read_only=True) as catalog:
            children = catalog.children(base.name, base.version)
        if not children:
            raise DemoError(f"no patched version of {base.name} {base.version} was built")
        return children[-1].ref

    def patched_components(self) -> list[Component]:
        from engine.images import Catalog

        assert self.patched is not None
        with Catalog(Path(self.env["VIGIL_IMAGES_DB"]), read_only=True) as catalog:
            return list(catalog.get(self.patched.name, self.patched.version).components)

    def start_fleet(self) -> None:
        from engine.attest import LabHost, start_fleet
        from engine.images import boot_for

        assert self.patched is not None
        patched = self.patched_components()
        specs = [
            LabHost(h.host_id, boot_for(h.components), image=None, components=h.components)
            for h in HOSTS
        ]
        specs.append(LabHost(PATCHED_HOST, boot_for(patched), image=None, components=patched))
        token = (self.state / "tokens" / "agents.token").read_text().strip()
        self.fleet = start_fleet(self.state / "fleet", specs, token=token)
        versions = {h.host_id: h.image.version for h in HOSTS}
        versions[PATCHED_HOST] = self.patched.version
        self.inventory(versions)
        for host_id, endpoint in self.fleet.endpoints.items():
            typer.echo(
                f"  {host_id}: swtpm {self.fleet.hosts[host_id].tpm.tcti}, agent "
                f"{endpoint}, image version {versions[host_id]}"
            )

    def inventory(self, versions: dict[str, str]) -> None:
        from engine.fleet import Fleet, FleetSnapshot, Host

        hosts = tuple(
            Host(
                id=host_id,
                group="rack-a",
                vcpus=32,
                memory_mib=131072,
                image_version=versions[host_id],
                agent_endpoint=endpoint,
                labels={"zone": "a"},
            )
            for host_id, endpoint in sorted(self.fleet.endpoints.items())
        )
        with Fleet.open(Path(self.env["VIGIL_FLEET_DB"])) as fleet:
            fleet.replace(FleetSnapshot(hosts=hosts, vms=()), source="vigil lab demo")

    def tokens(self) -> None:
        from engine.api import TokenStore

        with TokenStore(Path(self.env["VIGIL_TOKENS_DB"])) as store:
            for name, role, tenant in (
                ("ops", "admin", None),
                (TENANT, "tenant", TENANT),
                ("kube-apiserver", "service", None),
            ):
                token, _ = store.create(name, role, tenant=tenant)
                _write_secret(self.state / "tokens" / f"{name}.token", token.encode() + b"\n")

    def serve(self) -> None:
        log = (self.state / "service.log").open("wb")
        self.service = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "engine.cli.main",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            env=self.env,
            cwd=ROOT,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        import httpx

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.service.poll() is not None:
                raise DemoError(
                    f"the service exited {self.service.returncode} (see "
                    f"{self.state / 'service.log'})"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            time.sleep(0.2)
        raise DemoError(
            f"the service at {self.url} was not ready within 60 s (see "
            f"{self.state / 'service.log'})"
        )

    # -- the story -----------------------------------------------------------------------

    def provision(self, host: DemoHost) -> tuple[dict[str, Any], list[str]]:
        """Ask for ``host.vm`` (on ``host``; the patch request may also land on the
        patched host), fetch its signed report, verify and render it. The request's body
        and the lines to print."""
        tenant = str(self.state / "tokens" / f"{TENANT}.token")
        allowed = ["--host", host.host_id]
        if host.expect == "patch":
            allowed += ["--host", PATCHED_HOST]
        args = [
            "provision",
            "request",
            "--vm",
            host.vm,
            "--vcpus",
            "2",
            "--memory-mib",
            "4096",
            *allowed,
            "--token-file",
            tenant,
            "--json",
        ]
        body: dict[str, Any] = json.loads(self.vigil(*args, show=False, ok=(0, 1)).stdout)
        out = self.state / "reports" / f"{host.vm}.jws"
        html = self.state / "reports" / f"{host.vm}.html"
        shown = self.vigil(
            "provision",
            "report",
            body["request_id"],
            "--out",
            str(out),
            "--html",
            str(html),
            "--token-file",
            tenant,
            show=False,
        )
        problem = self.verify(out, host.host_id)
        body["report_verified"] = problem is None
        lines = [
            f"$ vigil {' '.join(args[:-3])}",
            f"{host.vm} on {host.host_id}: {str(body.get('verdict')).upper()} "
            f"({body['status']}), request {body['request_id']}",
        ]
        if body.get("target_host"):
            lines.append(
                f"  placed on {body['target_host']}"
                + (f" ({body['target_image_version']})" if body.get("target_image_version") else "")
                + (" once patched" if body.get("patch_host_first") else "")
            )
        if body.get("recheck_at"):
            lines.append(f"  re-checked at {body['recheck_at']}")
        lines += [f"  reason: {reason}" for reason in body.get("reasons") or []]
        if body.get("preparation"):
            lines.append(
                f"  patched configuration asked for: {len(body['preparation'])} preparation "
                "request(s) queued"
            )
        lines += [f"  | {line}" for line in shown.stdout.rstrip().splitlines()]
        lines.append(
            "  signature and attestation result verified"
            if problem is None
            else f"  NOT VERIFIED: {problem}"
        )
        return body, lines

    def verify(self, path: Path, host_id: str) -> str | None:
        """What ``vigil report verify --ear-key`` checks: the report's signature, the
        attestation result it carries and the host that result attests (None: all good)."""
        from engine.attest import ResultError, load_verification_key, verify_result
        from engine.provision import ReportError, verify_report

        try:
            report = verify_report(
                path.read_text(),
                [load_verification_key(Path(self.env["VIGIL_REPORT_VERIFICATION_KEY"]))],
            )
            if report.attestation.ear is None:
                return "the report carries no attestation result"
            result = verify_result(
                report.attestation.ear,
                load_verification_key(Path(self.env["VIGIL_ATTEST_RESULT_VERIFICATION_KEY"])),
            )
        except (ReportError, ResultError) as exc:
            return exc.summary
        return (
            None
            if result.host_id == report.host == host_id
            else f"the report is about {report.host}, its attestation result about {result.host_id}"
        )

    def check(self, host: DemoHost, body: dict[str, Any]) -> list[str]:
        problems = []
        if body.get("verdict") != host.expect:
            problems.append(
                f"{host.vm} on {host.host_id}: expected {host.expect}, got "
                f"{body.get('verdict')} ({'; '.join(body.get('reasons') or [])})"
            )
        if (
            host.expect == "patch"
            and self.patched is not None
            and body.get("target_image_version") != self.patched.version
        ):
            problems.append(f"{host.vm}: not placed on the patched version {self.patched.version}")
        if host.expect == "delay" and not body.get("recheck_at"):
            problems.append(f"{host.vm}: a delay without a re-check date")
        if not body.get("report_verified"):
            problems.append(f"{host.vm}: its signed report does not verify")
        return problems

    def stop(self) -> None:
        if self.service is not None and self.service.poll() is None:
            self.service.send_signal(signal.SIGINT)
            try:
                self.service.wait(15)
            except subprocess.TimeoutExpired:
                self.service.kill()
                self.service.wait(5)
        self.service = None
        if self.fleet is not None:
            self.fleet.stop()
            self.fleet = None


_T0 = [time.monotonic()]


def _step(text: str) -> None:
    output.stdout().print(
        f"\n== {text}  [{time.monotonic() - _T0[0]:.1f} s]",
        markup=False,
        highlight=False,
        style="bold",
    )


@contextlib.contextmanager
def _interruptible() -> Iterator[threading.Event]:
    """SIGINT and SIGTERM set the event (instead of raising mid-step)."""
    stop = threading.Event()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum: int, frame: object) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        raise KeyboardInterrupt

    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@app.command()
def demo(
    once: Annotated[
        bool,
        typer.Option(
            "--once",
            help="Stop once the story is told (for scripts); by default the service "
            "keeps running until interrupted.",
        ),
    ] = False,
    state: Annotated[
        Path, typer.Option("--state", help="Folder for everything the demo writes (emptied first).")
    ] = Path(".vigil/demo"),
    port: Annotated[
        int, typer.Option(min=0, max=65535, help="The service's port on 127.0.0.1 (0: a free one).")
    ] = 0,
    feeds: Annotated[Path, typer.Option(help="The feeds to build the PVDB from.")] = ROOT
    / "feeds"
    / "snapshot",
) -> None:
    """The whole story on one machine: PVDB, image catalog with an attested patched
    version, five software-TPM hosts with their agents, the service, and four
    provisioning requests that are admitted, delayed, patched and rejected. Exit 0 when
    every expected verdict came and every report verifies, 1 otherwise."""
    if shutil.which("swtpm") is None or shutil.which("swtpm_setup") is None:
        raise NotFoundError(
            "swtpm is not installed: the demo's hosts are software TPMs",
            tip="install swtpm and swtpm-tools (scripts/setup.sh does)",
        )
    if not feeds.exists():
        raise NotFoundError(f"no feeds at {feeds}")
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(line_buffering=True)  # each step shows as it starts
    started = _T0[0] = time.monotonic()
    lab = Lab(state.resolve(), feeds.resolve(), port or _free_port())
    problems: list[str] = []
    with _interruptible() as stop:
        try:
            _step("1. PVDB: the offline snapshot")
            lab.prepare_folder()
            lab.pvdb()
            _step(
                "2. Image catalog: host images approved, a patched version attested on a "
                "staging software TPM"
            )
            lab.catalog()
            _step("3. Fleet: five hosts, each its own software TPM and agent")
            lab.start_fleet()
            _step(f"4. Service on {lab.url} with tokens in {lab.state / 'tokens'}")
            lab.tokens()
            lab.serve()
            typer.echo(f"serving at {lab.url} (log {lab.state / 'service.log'})")
            _step(f"5. Provisioning: tenant {TENANT} asks for a VM on each host")
            with ThreadPoolExecutor(max_workers=len(HOSTS)) as pool:
                asked = list(pool.map(lab.provision, HOSTS))
            results = []
            for host, (body, lines) in zip(HOSTS, asked, strict=True):
                typer.echo("\n".join(lines) + "\n")
                results.append((host, body))
                problems += lab.check(host, body)
            _step("Summary")
            for host, body in results:
                typer.echo(
                    f"  {host.vm:6} {host.host_id}  {body.get('verdict')!s:7} "
                    f"(expected {host.expect})  {body.get('advice') or ''}"
                )
            typer.echo(
                f"  {len(results)} requests in {time.monotonic() - started:.1f} s; "
                f"reports in {lab.state / 'reports'}"
            )
            for problem in problems:
                output.stderr().print(f"error: {problem}", markup=False)
            if not once and not problems:
                typer.echo(
                    f"\nDashboard: {lab.url}/ui (sign in with the admin token in "
                    f"{lab.state / 'tokens' / 'ops.token'}).\n"
                    "Press Ctrl-C to stop the service, the agents and the software "
                    "TPMs."
                )
                while not stop.wait(3600):
                    pass
        except KeyboardInterrupt:
            typer.echo("\ninterrupted: stopping")
        except VigilError:
            raise
        finally:
            lab.stop()
            typer.echo("stopped: service, agents, software TPMs")
    if problems:
        raise typer.Exit(1)
