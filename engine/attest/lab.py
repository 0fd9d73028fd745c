"""The verifier's lab: known inputs to exercise it with, for the tests and the benchmarks.

* **Real quotes** (:data:`QUOTE_CASES`, :func:`load_quote_case`): the TPM 2.0 quotes
  public projects ship (go-attestation, go-tpm-tools, Keylime), as laid out under
  ``tpm/quotes`` of the shared data folder (``VIGIL_SHARED_DATA``), each with its AK in
  every shipped form, its PCR values (tpm2-tools serialized) and its nonce.
* **A software-TPM site** (:func:`make_site`, :class:`Site`): a verifier wired to files
  in a folder and one host enrolled on a running :class:`~engine.attest.swtpm.Swtpm` by
  MakeCredential/ActivateCredential, which boots the simulated hypervisor
  (:mod:`engine.attest.simboot`), collects evidence and approves it as a signed
  reference manifest. :func:`prepare_appraisals` sets one up on a fresh swtpm with
  evidence to appraise.
* **A simulated fleet** (:func:`start_fleet`, :class:`Fleet`): N hosts, each its own
  software TPM (manufactured with its own EKs), booted (two image versions by default),
  enrolled with one verifier, and each with its own agent
  (:mod:`engine.attest.agent_service`) on a free loopback port; their boots approved as
  signed manifests. ``vigil agent simulate fleet`` runs one in the foreground; the demo
  and the service tests attest its hosts over HTTP.

Nothing here is used in production: it needs ``swtpm`` and ``tpm2-pytss`` (the site) or
the shared data (the quotes).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from engine.attest.agent import activate, collect_evidence, enroll
from engine.attest.agent_service import AgentConfig, RunningAgent, start_agent
from engine.attest.ak import AkRegistry, load_certificates
from engine.attest.challenge import DEFAULT_CHALLENGE_TIMEOUT, attest_host, challenge_agent
from engine.attest.evidence import Evidence, Inventory
from engine.attest.manifests import load_manifest, sign_manifest
from engine.attest.matching import ReferenceSet
from engine.attest.nonce import NonceStore
from engine.attest.pcrfile import load_tpm2_tools_pcrs
from engine.attest.quote import AkPublic, Attest, load_public_key, verify_quote
from engine.attest.signing_keys import (
    SigningKey,
    VerificationKey,
    load_signing_key,
    load_verification_key,
)
from engine.attest.simboot import DEFAULT_BOOT, Boot, hypervisor_boot
from engine.attest.swtpm import Swtpm, SwtpmTemplate, manufacture
from engine.attest.verify import Appraisal, Verifier, manifest_from_evidence
from engine.model import Component, ImageRef

__all__ = [
    "AK_HANDLE",
    "COMPONENTS",
    "HOST",
    "IMAGE",
    "INVENTORY",
    "NEXT_BOOT",
    "NEXT_COMPONENTS",
    "NEXT_IMAGE",
    "QUOTE_CASES",
    "Fleet",
    "FleetHost",
    "LabHost",
    "LoadedQuote",
    "QuoteCase",
    "Site",
    "ec_key_pem",
    "enroll_host",
    "key_pair",
    "load_quote_case",
    "make_site",
    "prepare_appraisals",
    "start_fleet",
]

# -- real quotes ---------------------------------------------------------------------------
# Each case names its files; nonce, PCR values and the independently parsed TPMS_ATTEST
# come from the case's own info.json / quotes.json / PCR files.


@dataclass(frozen=True)
class QuoteCase:
    id: str
    dir: str
    attest: str
    signature: str
    aks: tuple[str, ...]
    """AK files: TPM2B_PUBLIC, TPMT_PUBLIC or PEM."""
    pcr_file: str
    """PCR values in the tpm2-tools serialized format (``tpm2_quote -o``)."""
    info: str
    """JSON file with ``nonce_hex`` or ``qualifying_data_hex``, ``attest`` and
    ``signature`` (for go-tpm-tools, per quote under ``quotes[]``)."""
    bank: str | None = None
    """go-tpm-tools: which of the three quotes of ``quotes.json``."""


_GCE = [
    QuoteCase(f"go-tpm-tools/{name}/{bank}", f"go-tpm-tools/{name}", f"quote-{bank}.msg",
              f"quote-{bank}.sig", ("ak.pub", "ak.pem"),
              f"quote-{bank}.pcrs.tpm2-tools-serialized.bin", "quotes.json", bank)
    for name in ("gce-cos-85-no-nonce", "gce-cos-85-nonce9009")
    for bank in ("sha1", "sha256", "sha384")
]
QUOTE_CASES = [
    QuoteCase("go-attestation/windows_gcp_shielded_vm", "go-attestation/windows_gcp_shielded_vm",
              "quote.msg", "quote.sig", ("ak.pub", "ak.tpmt_public.bin", "ak.pem"),
              "pcrs.tpm2-tools-serialized.bin", "info.json"),
    *_GCE,
    QuoteCase("keylime/tpm_util_test-checkquote", "keylime/tpm_util_test-checkquote",
              "quote.msg", "quote.sig", ("ak.pem",), "quote.pcrs.tpm2-tools-serialized.bin",
              "info.json"),
    QuoteCase("keylime/test-data-files", "keylime/test-data-files", "quote.out",
              "quotesig.out", ("ak.pub", "akpub.pem"), "quotepcr.out", "info.json"),
]


@dataclass(frozen=True)
class LoadedQuote:
    case: QuoteCase
    attest: bytes
    signature: bytes
    aks: dict[str, bytes]
    pcrs: dict[str, dict[int, bytes]]
    nonce: bytes
    expected: dict[str, Any]
    """The upstream-independent parse of TPMS_ATTEST and TPMT_SIGNATURE."""

    @property
    def ak(self) -> AkPublic:
        return load_public_key(next(iter(self.aks.values())))

    def verify(self, **changes: Any) -> Attest:
        args: dict[str, Any] = {"attest_bytes": self.attest, "signature_bytes": self.signature,
                                "ak": self.ak, "pcrs": self.pcrs, "expected_nonce": self.nonce}
        args.update(changes)
        return verify_quote(**args)


def load_quote_case(root: Path, case: QuoteCase) -> LoadedQuote:
    """``case`` read from the shared data folder ``root``."""
    folder = root / "tpm" / "quotes" / case.dir
    info = json.loads((folder / case.info).read_text())
    nonce_hex = info.get("nonce_hex", info.get("qualifying_data_hex"))
    entry = info
    if case.bank is not None:
        entry = next(q for q in info["quotes"] if q["bank"] == case.bank)
    return LoadedQuote(
        case=case,
        attest=(folder / case.attest).read_bytes(),
        signature=(folder / case.signature).read_bytes(),
        aks={name: (folder / name).read_bytes() for name in case.aks},
        pcrs=load_tpm2_tools_pcrs((folder / case.pcr_file).read_bytes()),
        nonce=bytes.fromhex(nonce_hex),
        expected={"attest": entry["attest"], "signature": entry["signature"]},
    )


# -- a software-TPM site -------------------------------------------------------------------

AK_HANDLE = 0x81018000
HOST = "hv-042"
INVENTORY = Inventory(bios_vendor="EFI Development Kit II / OVMF", bios_version="2024.02",
                      microcode="0x5003604", kernel_release="6.1.0-18-amd64",
                      hypervisor="kvm", hypervisor_version="qemu 8.2.2")
IMAGE = ImageRef(name="hv-base", version="2026.05.1")
COMPONENTS = [
    Component(kind="firmware", vendor="tianocore", product="edk2", version="2024.02"),
    Component(kind="kernel", vendor="linux", product="linux_kernel", version="6.1.0-18",
              purl="pkg:deb/debian/linux-image-6.1.0-18-amd64@6.1.76-1"),
    Component(kind="hypervisor", vendor="qemu", product="qemu", version="8.2.2"),
]


def ec_key_pem(curve: ec.EllipticCurve | None = None) -> bytes:
    """A fresh EC private key (P-256 unless ``curve``), PKCS#8 PEM."""
    key = ec.generate_private_key(curve or ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def key_pair(pem: bytes | None = None) -> tuple[SigningKey, VerificationKey]:
    """The signing and verification keys of ``pem`` (a fresh P-256 key by default)."""
    pem = pem or ec_key_pem()
    return load_signing_key(pem), load_verification_key(pem)


@dataclass
class Site:
    """A verifier and one enrolled host on swtpm."""

    tpm: Swtpm
    verifier: Verifier
    registry: AkRegistry
    nonces: NonceStore
    image_key: SigningKey
    image_public: VerificationKey
    result_key: SigningKey
    result_public: VerificationKey
    folder: Path
    clock: Callable[[], float]

    def boot(self, boot: Boot = DEFAULT_BOOT, *, reboot: bool = False) -> Path:
        """Extend the TPM as firmware booting ``boot`` would and write its event log."""
        if reboot:
            self.tpm.reboot()
        log = hypervisor_boot(boot)
        self.tpm.extend(log.extends)
        path = self.folder / f"eventlog-{id(log)}.bin"
        path.write_bytes(log.encode())
        return path

    def evidence(self, eventlog: Path, *, host: str = HOST, nonce: bytes | None = None,
                 ak_handle: int = AK_HANDLE) -> Evidence:
        value = nonce if nonce is not None else self.verifier.issue_nonce(host).value
        return collect_evidence(host, value, tcti=self.tpm.tcti, ak_handle=ak_handle,
                                eventlog=eventlog, inventory=INVENTORY)

    def approve(self, evidence: Evidence, image: ImageRef = IMAGE) -> Path:
        """Sign a manifest from ``evidence`` and add it to the approved images."""
        manifest = manifest_from_evidence(evidence, image, components=COMPONENTS)
        path = self.folder / "references" / f"{image.name}-{image.version}.jws"
        path.parent.mkdir(exist_ok=True)
        path.write_text(sign_manifest(manifest, self.image_key))
        assert load_manifest(path.read_bytes(), [self.image_public]) == manifest
        self.verifier.references = ReferenceSet.load(path.parent, [self.image_public])
        return path


def enroll_host(tpm: Swtpm, registry: AkRegistry, *, host: str = HOST,
                ak_handle: int = AK_HANDLE, ek_type: str = "EK-RSA2048",
                ak_type: str = "rsa2048", replace: bool = False) -> None:
    """The MakeCredential/ActivateCredential enrollment, end to end."""
    request = enroll(host, tcti=tpm.tcti, ak_handle=ak_handle, ek_type=ek_type,
                     ak_type=ak_type, replace=replace)
    challenge = registry.begin_enrollment(request)
    response = activate(challenge, tcti=tpm.tcti, ak_handle=ak_handle, ek_type=ek_type)
    registry.complete_enrollment(response)


def make_site(tpm: Swtpm, folder: Path, *, clock: Callable[[], float] | None = None,
              ttl: dt.timedelta = dt.timedelta(minutes=5)) -> Site:
    """A verifier with its state in ``folder`` and :data:`HOST` enrolled on ``tpm``."""
    now = clock or time.time
    db = folder / "attest.sqlite3"
    registry = AkRegistry(db, ek_roots=load_certificates([tpm.template.ek_root]), now=now)
    # The local CA's issuing certificate is not on the TPM: the verifier gets it as a
    # second trust anchor (as an operator would install a manufacturer's intermediate).
    registry.ek_roots = (*registry.ek_roots, *load_certificates([tpm.template.ek_intermediate]))
    nonces = NonceStore(db, ttl=ttl, now=now)
    image_key, image_public = key_pair()
    result_key, result_public = key_pair()
    verifier = Verifier(nonces=nonces, aks=registry, references=ReferenceSet(()),
                        signing_key=result_key, verifier_id="vigil-test")
    enroll_host(tpm, registry)
    return Site(tpm, verifier, registry, nonces, image_key, image_public, result_key,
                result_public, folder, now)


def prepare_appraisals(base: Path, runs: int, events: int
                       ) -> tuple[Site, list[Evidence], Path]:
    """On a fresh swtpm in ``base``: enroll an AK, boot an ``events``-event log, approve
    that boot as a signed manifest, collect ``runs`` pieces of evidence (one nonce
    each). The TPM is stopped on return; the site's verifier stays usable."""
    (base / "template").mkdir()
    template = manufacture(base / "template")
    tpm = Swtpm(template.state, template, base / "swtpm.log")
    tpm.start()
    try:
        site = make_site(tpm, base)
        log = site.boot(Boot(grub_commands=max(0, events - 28)))
        site.approve(site.evidence(log))
        return site, [site.evidence(log) for _ in range(runs)], log
    finally:
        tpm.stop()


# -- a simulated fleet: one software TPM and one agent per host -------------------------------

NEXT_IMAGE = ImageRef(name="hv-base", version="2026.06.1")
"""The second image version of a simulated fleet: a newer kernel."""
NEXT_BOOT = DEFAULT_BOOT.but(
    kernel=b"vmlinuz-6.1.0-21-amd64", kernel_path="/boot/vmlinuz-6.1.0-21-amd64",
    initrd=b"initrd.img-6.1.0-21-amd64",
    cmdline="/boot/vmlinuz-6.1.0-21-amd64 root=/dev/vda1 ro intel_iommu=on")
NEXT_COMPONENTS = [
    COMPONENTS[0],
    Component(kind="kernel", vendor="linux", product="linux_kernel", version="6.1.0-21",
              purl="pkg:deb/debian/linux-image-6.1.0-21-amd64@6.1.90-1"),
    COMPONENTS[2],
]
_IMAGE_COMPONENTS = {IMAGE: COMPONENTS, NEXT_IMAGE: NEXT_COMPONENTS}


def inventory_of(components: Sequence[Component]) -> Inventory:
    """What a simulated host running ``components`` reports about itself: its firmware,
    kernel release and hypervisor (a Xen host says ``xen``; a QEMU one, ``kvm`` with the
    QEMU version), as a real host's agent reads them from DMI, ``uname`` and the
    hypervisor."""
    found: dict[str, str] = {}
    for c in components:
        if c.kind == "firmware":
            found.setdefault("bios_version", c.version)
            found.setdefault("bios_vendor", "EFI Development Kit II / OVMF"
                             if c.product == "edk2" else c.vendor or "unknown")
        elif c.kind == "microcode":
            found.setdefault("microcode", c.version)
        elif c.kind == "kernel":
            found.setdefault("kernel_release", c.version + ("-amd64" if c.purl and
                                                            "linux-image-" in c.purl else ""))
        elif c.kind == "hypervisor":
            if c.product == "qemu":
                found.setdefault("hypervisor", "kvm")
                found.setdefault("hypervisor_version", f"qemu {c.version}")
            else:
                found.setdefault("hypervisor", c.product or c.label)
                found.setdefault("hypervisor_version", c.version)
    if "microcode" not in found and INVENTORY.microcode:
        found["microcode"] = INVENTORY.microcode
    return Inventory.model_validate(found)


def _components(spec: LabHost) -> Sequence[Component]:
    if spec.components is not None:
        return spec.components
    return _IMAGE_COMPONENTS.get(spec.image, COMPONENTS) if spec.image else COMPONENTS


@dataclass(frozen=True)
class LabHost:
    """One host of a simulated fleet: what it boots and which image that boot is."""

    host_id: str
    boot: Boot = DEFAULT_BOOT
    image: ImageRef | None = IMAGE
    """The image version this boot is approved as (``None``: not approved)."""
    components: Sequence[Component] | None = None
    """The image's components (default: those of :data:`IMAGE` or :data:`NEXT_IMAGE`)."""
    enroll: bool = True
    """Enroll the host's AK with the verifier (``False``: an unknown AK)."""


@dataclass
class FleetHost:
    """A running simulated host."""

    spec: LabHost
    tpm: Swtpm
    eventlog: Path
    """The event log its agent sends (rewritten by :meth:`Fleet.reboot`)."""
    agent: RunningAgent

    @property
    def host_id(self) -> str:
        return self.spec.host_id

    @property
    def endpoint(self) -> str:
        return self.agent.endpoint


@dataclass
class Fleet:
    """A verifier and its simulated hosts. Stop it (or use it as a context manager)."""

    folder: Path
    verifier: Verifier
    registry: AkRegistry
    nonces: NonceStore
    image_key: SigningKey
    result_key: SigningKey
    result_public: VerificationKey
    token: str | None = field(repr=False)
    hosts: dict[str, FleetHost] = field(default_factory=dict)

    @property
    def endpoints(self) -> dict[str, str]:
        """Host id -> the base URL of its agent."""
        return {host_id: host.endpoint for host_id, host in self.hosts.items()}

    def settings(self) -> dict[str, str]:
        """The ``VIGIL_*`` settings of a verifier that attests these hosts (its state
        file, its result key, the approved manifests and the key they are signed with)."""
        return {
            "VIGIL_ATTEST_DB": str(self.nonces.path),
            "VIGIL_ATTEST_RESULT_KEY": str(self.folder / "result-key.pem"),
            "VIGIL_ATTEST_RESULT_VERIFICATION_KEY": str(self.folder / "result-key.pub.pem"),
            "VIGIL_ATTEST_REFERENCES": str(self.folder / "references"),
            "VIGIL_ATTEST_REFERENCE_KEYS": json.dumps([str(self.folder / "image-key.pub.pem")]),
        }

    def attest(self, host_id: str, *, timeout: float = DEFAULT_CHALLENGE_TIMEOUT
               ) -> Appraisal:
        """A fresh attestation of ``host_id`` over HTTP (:func:`attest_host`)."""
        return attest_host(self.verifier, host_id, self.hosts[host_id].endpoint,
                           timeout=timeout, token=self.token)

    def reboot(self, host_id: str, boot: Boot) -> None:
        """Reboot ``host_id`` into ``boot``: the TPM is reset and extended, the event log
        its agent sends rewritten."""
        host = self.hosts[host_id]
        host.tpm.reboot()
        log = hypervisor_boot(boot)
        host.tpm.extend(log.extends)
        _write_atomically(host.eventlog, log.encode())

    def stop(self) -> None:
        """Stop every agent and TPM and close the verifier."""
        for host in self.hosts.values():
            host.agent.stop()
            host.tpm.stop()
        self.verifier.close()

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def _default_hosts(count: int) -> list[LabHost]:
    """``count`` hosts ``hv-001``…, alternately on :data:`IMAGE` and :data:`NEXT_IMAGE`."""
    return [LabHost(f"hv-{n:03d}", *((DEFAULT_BOOT, IMAGE) if n % 2 else (NEXT_BOOT, NEXT_IMAGE)))
            for n in range(1, count + 1)]


def start_fleet(folder: Path, hosts: Sequence[LabHost] | int = 4, *,
                template: SwtpmTemplate | None = None, token: str | None = None,
                clock: Callable[[], float] | None = None,
                ttl: dt.timedelta = dt.timedelta(minutes=5)) -> Fleet:
    """Start a simulated fleet in ``folder`` (empty or new): for each host a software
    TPM, booted, its AK enrolled, its agent on a free port of 127.0.0.1 (``token``: the
    agents' bearer token); each image's boot approved as a signed manifest.

    Each TPM is manufactured with EKs of its own, unless ``template`` is given (then
    every host runs a copy of that one, which is quicker). ``hosts`` is a count (hosts
    ``hv-001``… on two image versions) or the hosts themselves.
    """
    specs = _default_hosts(hosts) if isinstance(hosts, int) else list(hosts)
    if len({spec.host_id for spec in specs}) != len(specs):
        raise ValueError("two hosts of a fleet have the same id")
    folder.mkdir(parents=True, exist_ok=True)
    now = clock or time.time
    db = folder / "attest.sqlite3"
    registry = AkRegistry(db, now=now)
    nonces = NonceStore(db, ttl=ttl, now=now)
    image_pem, result_pem = ec_key_pem(), ec_key_pem()
    for name, pem in (("image-key", image_pem), ("result-key", result_pem)):
        _write_private(folder / f"{name}.pem", pem)
        public = serialization.load_pem_private_key(pem, None).public_key()
        (folder / f"{name}.pub.pem").write_bytes(public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    image_key, image_public = key_pair(image_pem)
    result_key, result_public = key_pair(result_pem)
    verifier = Verifier(nonces=nonces, aks=registry, references=ReferenceSet(()),
                        signing_key=result_key, verifier_id="vigil-lab")
    fleet = Fleet(folder, verifier, registry, nonces, image_key, result_key, result_public,
                  token)
    try:
        for spec in specs:
            fleet.hosts[spec.host_id] = _start_host(fleet, spec, template)
        _approve(fleet, image_public)
    except BaseException:
        fleet.stop()
        raise
    return fleet


def _write_private(path: Path, pem: bytes) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as stream:
        stream.write(pem)


def _start_host(fleet: Fleet, spec: LabHost, template: SwtpmTemplate | None) -> FleetHost:
    base = fleet.folder / "hosts" / spec.host_id
    base.mkdir(parents=True, exist_ok=True)
    if template is None:
        template = manufacture(_fresh(base / "template"))
    state = base / "state"
    shutil.rmtree(state, ignore_errors=True)
    shutil.copytree(template.state, state)
    tpm = Swtpm(state, template, base / "swtpm.log")
    tpm.start()
    try:
        # each TPM's local CA, as an operator installs a manufacturer's CA certificates
        fleet.registry.ek_roots = (*fleet.registry.ek_roots, *load_certificates(
            [template.ek_root, template.ek_intermediate]))
        if spec.enroll:
            enroll_host(tpm, fleet.registry, host=spec.host_id)
        else:
            enroll(spec.host_id, tcti=tpm.tcti, ak_handle=AK_HANDLE)
        log = hypervisor_boot(spec.boot)
        tpm.extend(log.extends)
        reported = inventory_of(_components(spec))
        eventlog = base / "eventlog.bin"
        _write_atomically(eventlog, log.encode())
        agent = start_agent(AgentConfig(host_id=spec.host_id, tcti=tpm.tcti,
                                        ak_handle=AK_HANDLE, eventlog=eventlog,
                                        inventory=lambda: reported, token=fleet.token))
    except BaseException:
        tpm.stop()
        raise
    return FleetHost(spec, tpm, eventlog, agent)


def _fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def _approve(fleet: Fleet, image_public: VerificationKey) -> None:
    """Sign a manifest of each image's boot, from evidence its first host's agent sends."""
    references = fleet.folder / "references"
    references.mkdir(exist_ok=True)
    done: set[ImageRef] = set()
    for host in fleet.hosts.values():
        image = host.spec.image
        if image is None or image in done:
            continue
        nonce = fleet.verifier.issue_nonce(host.host_id)
        evidence = challenge_agent(host.endpoint, nonce.value, timeout=30.0,
                                   host_id=host.host_id, token=fleet.token)
        manifest = manifest_from_evidence(evidence, image, components=_components(host.spec))
        (references / f"{image.name}-{image.version}.jws").write_text(
            sign_manifest(manifest, fleet.image_key))
        done.add(image)
    fleet.verifier.references = ReferenceSet.load(references, [image_public])
