"""Attestation before use: boot a new image version on a staging host and verify its
fresh evidence against the version's own signed reference manifest.

The staging host here is a software TPM (Debian's ``swtpm``, manufactured with EK
certificates from a throw-away local CA), enrolled at a verifier of its own by
MakeCredential/ActivateCredential exactly as a fleet host is. :func:`attest_on_swtpm`
powers it on, measures the image's boot into its PCRs while writing the event log (as
firmware would; ``vigil agent simulate boot`` does the same), collects evidence over a
fresh nonce and appraises it with a verifier whose only reference is the new version's
manifest, read through its signature. Only an affirming result that matched *that*
version passes; otherwise the result says which measurement differed (the PCR, the
event, what it measures, the expected and actual digests).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from engine.attest import (
    AkRegistry,
    AttestationResult,
    Boot,
    Inventory,
    NonceStore,
    ReferenceSet,
    SigningKey,
    Swtpm,
    VerificationKey,
    Verifier,
    activate,
    collect_evidence,
    enroll,
    hypervisor_boot,
    load_certificates,
    load_manifest,
    load_signing_key,
    manufacture,
)
from engine.images.errors import BuildError
from engine.model import ImageRef

__all__ = ["StagingHost", "StagingResult", "SwtpmStaging", "attest_on_swtpm"]

STAGING_HOST = "staging-0"
AK_HANDLE = 0x81018000


@dataclass(frozen=True)
class StagingResult:
    """The outcome of booting an image on the staging host."""

    image: ImageRef
    passed: bool
    status: str
    """The attestation result's status (``affirming`` when passed)."""
    differences: list[str] = field(default_factory=list)
    """Each measurement that differs from the manifest, or each failed step."""
    result: AttestationResult | None = None
    token: str | None = None
    """The signed attestation result (EAR JWT)."""

    def summary(self) -> str:
        if self.passed:
            return f"{self.image} attested on the staging host ({self.status})"
        first = "; ".join(self.differences[:3]) or self.status
        more = f" (+{len(self.differences) - 3} more)" if len(self.differences) > 3 else ""
        return f"{self.image} failed attestation on the staging host: {first}{more}"


class StagingHost(Protocol):
    """Boots an artifact and attests it against a signed manifest."""

    def attest(self, image: ImageRef, boot: Boot, manifest_token: str,
               keys: Sequence[VerificationKey]) -> StagingResult: ...


class SwtpmStaging:
    """A software-TPM staging host in ``workdir`` (a temporary folder by default)."""

    def __init__(self, workdir: Path | None = None) -> None:
        self.workdir = workdir

    def attest(self, image: ImageRef, boot: Boot, manifest_token: str,
               keys: Sequence[VerificationKey]) -> StagingResult:
        if self.workdir is not None:
            self.workdir.mkdir(parents=True, exist_ok=True)
            return attest_on_swtpm(image, boot, manifest_token, keys,
                                   Path(tempfile.mkdtemp(dir=self.workdir)))
        with tempfile.TemporaryDirectory(prefix="vigil-staging-") as folder:
            return attest_on_swtpm(image, boot, manifest_token, keys, Path(folder))


def attest_on_swtpm(image: ImageRef, boot: Boot, manifest_token: str,
                    keys: Sequence[VerificationKey], folder: Path, *,
                    host: str = STAGING_HOST, signing_key: SigningKey | None = None,
                    verifier_id: str = "vigil-staging") -> StagingResult:
    """Boot ``boot`` on a fresh software TPM in ``folder`` and verify it against the
    signed manifest of ``image``.

    ``host`` is the id the evidence and the result name (the staging host by default;
    a rollout re-attesting a fleet host passes that host's id). The result is signed
    with ``signing_key`` when given, so whoever holds its public key can verify it
    later; otherwise with a throw-away key (the staging result is evidence for the
    catalog's history, not a credential)."""
    manifest = load_manifest(manifest_token, keys)  # the signature first
    if manifest.image != image:
        raise BuildError(f"the signed manifest is of {manifest.image}, not of {image}")
    try:
        (folder / "template").mkdir(parents=True)
        template = manufacture(folder / "template")
    except (OSError, RuntimeError) as exc:
        raise BuildError(f"cannot make the staging software TPM: {exc}",
                         tip="scripts/setup.sh installs swtpm and swtpm-tools") from None
    tpm = Swtpm(template.state, template, folder / "swtpm.log")
    try:
        tpm.start()
    except (OSError, RuntimeError) as exc:
        raise BuildError(f"the staging software TPM did not start: {exc}") from None
    registry = AkRegistry(folder / "attest.sqlite3",
                          ek_roots=load_certificates([template.ek_root,
                                                      template.ek_intermediate]))
    nonces = NonceStore(folder / "attest.sqlite3")
    try:
        if signing_key is None:
            from cryptography.hazmat.primitives import serialization
            from cryptography.hazmat.primitives.asymmetric import ec

            pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption())
            signing_key = load_signing_key(pem)
        verifier = Verifier(nonces=nonces, aks=registry, references=ReferenceSet([manifest]),
                            signing_key=signing_key, verifier_id=verifier_id)
        request = enroll(host, tcti=tpm.tcti, ak_handle=AK_HANDLE)
        challenge = registry.begin_enrollment(request)
        registry.complete_enrollment(activate(challenge, tcti=tpm.tcti, ak_handle=AK_HANDLE))
        tpm.reboot()  # power on: PCRs at their initial values
        log = hypervisor_boot(boot)
        tpm.extend(log.extends)
        eventlog = folder / "eventlog.bin"
        eventlog.write_bytes(log.encode())
        nonce = verifier.issue_nonce(host)
        evidence = collect_evidence(host, nonce.value, tcti=tpm.tcti,
                                    ak_handle=AK_HANDLE, eventlog=eventlog,
                                    inventory=Inventory(hypervisor="kvm"))
        appraisal = verifier.appraise(evidence)
    finally:
        tpm.stop()
        registry.close()
        nonces.close()
    result = appraisal.result
    matched = appraisal.match.matched.image if appraisal.match and appraisal.match.matched \
        else None
    passed = result.status == "affirming" and matched == image
    differences = [d.reason() for d in appraisal.match.differences] if appraisal.match \
        else []
    if not passed and not differences:
        differences = [f"{f.step}: {f.reason}" for f in result.failures]
    return StagingResult(image=image, passed=passed, status=result.status,
                         differences=differences, result=result, token=appraisal.token)
