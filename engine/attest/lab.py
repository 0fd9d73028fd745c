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

Nothing here is used in production: it needs ``swtpm`` and ``tpm2-pytss`` (the site) or
the shared data (the quotes).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from engine.attest.agent import activate, collect_evidence, enroll
from engine.attest.ak import AkRegistry, load_certificates
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
from engine.attest.swtpm import Swtpm, manufacture
from engine.attest.verify import Verifier, manifest_from_evidence
from engine.model import Component, ImageRef

__all__ = [
    "AK_HANDLE",
    "COMPONENTS",
    "HOST",
    "IMAGE",
    "INVENTORY",
    "QUOTE_CASES",
    "LoadedQuote",
    "QuoteCase",
    "Site",
    "ec_key_pem",
    "enroll_host",
    "key_pair",
    "load_quote_case",
    "make_site",
    "prepare_appraisals",
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
