"""The rollout's :class:`~engine.rollout.ports.Attestor` for real: a host booted on an
image version is attested on a software TPM against that version's signed reference
manifest, and trusted only on a verified attestation result.

:meth:`SwtpmAttestor.attest` boots a fresh software TPM (``swtpm``, EK certificates from
a throw-away local CA, the AK enrolled by MakeCredential/ActivateCredential) whose
measured boot measures the version's components, as the staging attestation of a new
image does (:func:`engine.images.attest_on_swtpm`, the same code: the boot is
:func:`engine.images.boot_for` of the catalog's component list, what the default builder
makes), collects evidence over a fresh nonce and appraises it with
:class:`engine.attest.Verifier`, whose only reference is that version's manifest read
through its signature. The signed attestation result (EAR) is verified back; only an
``affirming`` result for that host and that version passes. A failure names the
measurement that differed (PCR, event, expected and actual digests).

:meth:`SwtpmAttestor.trusted` answers from a verified result: the one this attestor
made last for the host, or else the host's ``<host id>.jwt`` in the verifier's results
folder (setting ``attest_results``, verified with ``attest_result_verification_key``),
while younger than the TTL, ``affirming``, for that host, and of the version the
inventory says the host runs. No result, an expired one, a failed attestation: not
trusted (the host takes no VMs).

Injected attestation failures are real ones: a host named in ``tamper`` boots a kernel
that is not the one its image's manifest names, and the verifier finds it.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.attest import (
    AttestationResult,
    SigningKey,
    VerificationKey,
    load_signing_key,
    load_verification_key,
    read_result_file,
    verify_result,
)
from engine.errors import VigilError
from engine.fleet import Host, HostState
from engine.images import ImageRecord, attest_on_swtpm, boot_for
from engine.rollout.ports import AttestOutcome
from engine.rollout.targets import CatalogTargets

TAMPERED_KERNEL = b"vmlinuz not built by the image pipeline"
"""What a host named in ``tamper`` boots instead of its image's kernel."""


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _throwaway_keys() -> tuple[SigningKey, VerificationKey]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    return load_signing_key(pem), load_verification_key(pem)


@dataclass(frozen=True)
class Attested:
    """A host's verified attestation result and the signed token it was read from."""

    result: AttestationResult
    token: str


class SwtpmAttestor:
    """Attests hosts of one image (``image``, its versions in ``versions``) on software
    TPMs; manifests are verified with ``keys``.

    ``expected``: host -> the version the inventory says it runs (a result of another
    version is not trusted); ``results`` and ``results_key``: the verifier's folder of
    hosts' results and its public key; ``tamper``: hosts, or (host, version) pairs, that
    boot a kernel their image does not name; ``untrusted``: hosts never trusted."""

    kind = "swtpm"

    def __init__(self, image: str, versions: Mapping[str, ImageRecord],
                 keys: Sequence[VerificationKey], *, expected: Mapping[str, str] | None = None,
                 results: Path | None = None, results_key: VerificationKey | None = None,
                 ttl_s: float = 900.0, tamper: Collection[str | tuple[str, str]] = (),
                 untrusted: Collection[str] = (), workdir: Path | None = None,
                 clock: Callable[[], dt.datetime] = _utcnow) -> None:
        self.image = image
        self.versions = dict(versions)
        self.keys = list(keys)
        self.expected = dict(expected or {})
        self.results = results
        self.results_key = results_key
        self.ttl = dt.timedelta(seconds=ttl_s)
        self.tamper = frozenset(tamper)
        self.untrusted = frozenset(untrusted)
        self.workdir = workdir
        self.clock = clock
        self.runs = 0
        """Software-TPM attestations run."""
        self._sign, self._verify = _throwaway_keys()
        self._kept: dict[str, Attested] = {}
        self._failed: dict[str, str] = {}

    @classmethod
    def for_group(cls, targets: CatalogTargets, group: str, hosts: Iterable[Host], *,
                  results: Path | None = None, results_key: VerificationKey | None = None,
                  ttl_s: float = 900.0, tamper: Collection[str | tuple[str, str]] = (),
                  untrusted: Collection[str] = (), workdir: Path | None = None
                  ) -> SwtpmAttestor:
        """The attestor of ``group``'s target image (checked as the rollout checks it),
        expecting each host of the group on the version ``hosts`` (the inventory) says
        it runs."""
        name = targets.image(group).name
        expected = {h.id: h.image_version for h in hosts if h.group == group}
        return cls(name, targets.versions(name), targets.keys, expected=expected,
                   results=results, results_key=results_key, ttl_s=ttl_s, tamper=tamper,
                   untrusted=untrusted, workdir=workdir)

    # -- the port ------------------------------------------------------------------------

    def trusted(self, host: str) -> bool:
        return self.why_untrusted(host) is None

    def why_untrusted(self, host: str) -> str | None:
        """Why ``host`` is not trusted now; None when it is."""
        if host in self.untrusted:
            return "marked untrusted"
        if host in self._failed:
            return f"its last attestation failed: {self._failed[host]}"
        kept = self._kept.get(host)
        result = kept.result if kept is not None else None
        if result is None:
            result, problem = self._from_folder(host)
            if result is None:
                return problem or "no attestation result for it"
        return self._problem(host, result)

    def attest(self, host: str, version: str) -> AttestOutcome:
        record = self.versions.get(version)
        if record is None:
            return self._fail(host, f"version {version} of {self.image} is not in the image"
                                    " catalog: there is no manifest to attest it against")
        if record.manifest is None:
            return self._fail(host, f"{record.label} has no signed reference manifest")
        boot = boot_for(record.components)
        if host in self.tamper or (host, version) in self.tamper:
            boot = boot.but(kernel=TAMPERED_KERNEL)
        self.runs += 1
        try:
            with tempfile.TemporaryDirectory(prefix=f"vigil-attest-{host}-",
                                             dir=self.workdir) as folder:
                staged = attest_on_swtpm(record.ref, boot, record.manifest, self.keys,
                                         Path(folder), host=host,
                                         signing_key=self._sign,
                                         verifier_id="vigil-rollout")
        except VigilError as exc:
            return self._fail(host, f"the attestation of {record.label} could not run:"
                                    f" {exc.summary}")
        if not staged.passed or staged.token is None:
            differences = staged.differences
            shown = "; ".join(differences[:3]) + (f" (+{len(differences) - 3} more)"
                                                  if len(differences) > 3 else "")
            return self._fail(host, f"{record.label}: {shown or staged.status}")
        try:
            result = verify_result(staged.token, self._verify)
        except VigilError as exc:  # pragma: no cover - the token was signed just now
            return self._fail(host, f"its attestation result does not verify: {exc.summary}")
        self.expected[host] = version
        problem = self._problem(host, result)
        if problem is not None:
            return self._fail(host, problem)
        self._failed.pop(host, None)
        self._kept[host] = Attested(result, staged.token)
        return AttestOutcome(True)

    # -- results -------------------------------------------------------------------------

    def result(self, host: str) -> AttestationResult | None:
        """The verified result of the host's last passing attestation by this attestor
        (None after a failed one)."""
        kept = self._kept.get(host)
        return kept.result if kept is not None and host not in self._failed else None

    def token(self, host: str) -> str | None:
        kept = self._kept.get(host)
        return kept.token if kept is not None and host not in self._failed else None

    def attest_current(self, hosts: Iterable[Host]) -> dict[str, AttestOutcome]:
        """Attest every in-service host in ``hosts`` that is not trusted now on the
        version it runs."""
        out: dict[str, AttestOutcome] = {}
        for h in hosts:
            if h.state is HostState.IN_SERVICE and h.id not in self.untrusted \
                    and not self.trusted(h.id):
                out[h.id] = self.attest(h.id, h.image_version)
        return out

    def _fail(self, host: str, reason: str) -> AttestOutcome:
        self._kept.pop(host, None)
        self._failed[host] = reason
        return AttestOutcome(False, reason)

    def _problem(self, host: str, result: AttestationResult) -> str | None:
        if result.host_id != host:
            return f"its attestation result is for host {result.host_id!r}"
        if result.status != "affirming":
            return f"its attestation result is {result.status}, not affirming"
        age = self.clock() - result.issued_at
        if age > self.ttl:
            return (f"its attestation result is {int(age.total_seconds())} s old, over the"
                    f" {int(self.ttl.total_seconds())} s limit")
        if result.image is None or result.image.name != self.image:
            return f"its attestation result is not of image {self.image}"
        expected = self.expected.get(host)
        if expected is not None and result.image.version != expected:
            return (f"its attestation result is of version {result.image.version}, but it"
                    f" runs {expected}")
        return None

    def _from_folder(self, host: str) -> tuple[AttestationResult | None, str | None]:
        if self.results is None:
            return None, None
        read = read_result_file(self.results, host, self.results_key)
        return read.result, read.problem or None
