"""Shared test material for the attestation tests: keys, an enrolled swtpm host, and a
verifier wired to temp files."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from engine.attest.agent import activate, collect_evidence, enroll
from engine.attest.ak import AkRegistry, load_certificates
from engine.attest.evidence import Evidence, Inventory
from engine.attest.manifests import load_manifest, sign_manifest
from engine.attest.matching import ReferenceSet
from engine.attest.nonce import NonceStore
from engine.attest.signing_keys import (
    SigningKey,
    VerificationKey,
    load_signing_key,
    load_verification_key,
)
from engine.attest.simboot import DEFAULT_BOOT, Boot, hypervisor_boot
from engine.attest.verify import Verifier, manifest_from_evidence
from engine.model import Component, ImageRef
from tests.attest.conftest import Swtpm

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
    key = ec.generate_private_key(curve or ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def ed25519_key_pem() -> bytes:
    return ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())


def key_pair(pem: bytes | None = None) -> tuple[SigningKey, VerificationKey]:
    pem = pem or ec_key_pem()
    return load_signing_key(pem), load_verification_key(pem)


class FakeClock:
    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


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
    import time

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
