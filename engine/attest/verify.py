"""Appraise a host's evidence: the numbered verification steps, in order.

:meth:`Verifier.appraise` follows the steps of :mod:`engine.attest`; each fails with its
own :class:`~engine.attest.errors.AttestError` subclass, which the appraisal records as
a failure ``{step, reason}`` of a signed, ``contraindicated`` result instead of raising:

1. **AK and quote signature.** The AK must be one the verifier trusts for this host
   (:class:`~engine.attest.ak.AkRegistry`; the AK the evidence carries only names
   which one). The quote must be a well-formed TPMS_ATTEST of a quote, signed by that
   AK (:func:`~engine.attest.quote.verify_quote`). Fails with ``AkTrustError`` or
   ``QuoteError``.
2. **Nonce and counters.** The quote's ``extraData`` must be the evidence's nonce, one
   this verifier issued to this host, unexpired and unused; it is used up here. The
   TPM's clock, resetCount and restartCount must not go back
   (:class:`~engine.attest.nonce.NonceStore`). Fails with ``NonceError`` or
   ``ClockRegressionError``.
3. **PCR digest.** The reported PCR values must be exactly the quoted PCRs and hash to
   the quote's ``pcrDigest``. Fails with ``QuoteError``.
4. **Event log.** The log must parse, and in every bank both the log and the quote
   have, each PCR the log sets must replay to the quoted value. Fails with
   ``EventLogError`` or :class:`ReplayMismatchError`.
5. **Reference values.** The attested PCRs and events must match the signed manifest
   of an approved image version (:class:`~engine.attest.matching.ReferenceSet`);
   otherwise every difference from the closest manifest is a failure.
6. **Result.** An EAR attestation result (:mod:`engine.attest.result`) signed with the
   verifier's key.

Steps 1 to 4 stop the appraisal at the first failure (what follows would rest on
unproven data); step 5 reports every difference.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from engine.attest.ak import AkRegistry, AkTrustError, load_certificates
from engine.attest.errors import AttestError
from engine.attest.eventlog import EventLog, parse
from engine.attest.evidence import Evidence
from engine.attest.manifests import ReferenceManifest, manifest_from_log
from engine.attest.matching import STEP_REFERENCE, MatchReport, ReferenceSet
from engine.attest.nonce import Nonce, NonceError, NonceStore
from engine.attest.quote import Attest, load_public_key, verify_quote
from engine.attest.result import (
    AFFIRMING,
    APPROVED_BOOT,
    CONTRAINDICATED,
    CRYPTO_FAILED,
    NO_CLAIM,
    UNRECOGNIZED_INSTANCE,
    AttestationResult,
    Failure,
    TrustVector,
    VerifierId,
    sign_result,
)
from engine.attest.signing_keys import SigningKey, load_signing_key, load_verification_key
from engine.config import Settings
from engine.errors import ConfigError
from engine.model import Component, ImageRef

__all__ = ["Appraisal", "ReplayMismatchError", "Verifier", "check_replay", "manifest_from_evidence"]

STEP_EVENTLOG = "4 event log"


class ReplayMismatchError(AttestError):
    """Step 4: the event log does not replay to the quoted PCR values."""

    def __init__(self, reason: str) -> None:
        super().__init__(STEP_EVENTLOG, reason,
                         tip="The log was altered (an event changed, added or removed) or "
                         "belongs to another boot.")


@dataclass(frozen=True, slots=True)
class Appraisal:
    """The outcome of :meth:`Verifier.appraise`."""

    result: AttestationResult
    token: str
    """The result as a signed EAR JWT."""
    match: MatchReport | None
    """Step 5's comparison, when the appraisal got that far."""
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds spent per step."""


class Verifier:
    """Appraises evidence with the verifier's state, trusted keys and references."""

    def __init__(self, *, nonces: NonceStore, aks: AkRegistry, references: ReferenceSet,
                 signing_key: SigningKey | None, verifier_id: str = "vigil") -> None:
        self.nonces = nonces
        self.aks = aks
        self.references = references
        self.signing_key = signing_key
        self.verifier = VerifierId(developer=verifier_id)

    @classmethod
    def from_settings(cls, settings: Settings, *, need_references: bool = True) -> Verifier:
        """A verifier configured by ``VIGIL_ATTEST_*`` settings."""
        import datetime as dt

        nonces = NonceStore(settings.attest_db,
                            ttl=dt.timedelta(seconds=settings.attest_nonce_ttl))
        aks = AkRegistry(settings.attest_db,
                         ek_roots=load_certificates(settings.attest_ek_ca),
                         ak_roots=load_certificates(settings.attest_ak_ca),
                         unsafe_trust_ek_without_certificate=(
                             settings.attest_unsafe_trust_ek_without_certificate))
        references = ReferenceSet(())
        if need_references and settings.attest_references is not None:
            keys = [load_verification_key(path) for path in settings.attest_reference_keys]
            references = ReferenceSet.load(settings.attest_references, keys)
        key = None if settings.attest_result_key is None else \
            load_signing_key(settings.attest_result_key)
        return cls(nonces=nonces, aks=aks, references=references, signing_key=key,
                   verifier_id=settings.attest_verifier_id)

    def close(self) -> None:
        self.nonces.close()
        self.aks.close()

    def issue_nonce(self, host_id: str) -> Nonce:
        return self.nonces.issue(host_id)

    def appraise(self, evidence: Evidence) -> Appraisal:
        """Steps 1 to 6 over ``evidence``; always returns a signed result."""
        if self.signing_key is None:
            raise ConfigError("no key to sign attestation results with",
                              tip="Set VIGIL_ATTEST_RESULT_KEY to a PEM private key "
                              "(vigil attest keygen makes one).")
        timings: dict[str, float] = {}
        run = _Run(evidence)
        started = time.perf_counter()
        match = run.steps(self, timings)
        mark = time.perf_counter()
        result = AttestationResult.build(
            host_id=evidence.host_id, verifier=self.verifier,
            trust_vector=TrustVector(**run.vector), failures=run.failures,
            nonce=run.attest.extra_data if run.attest is not None else None,
            image=match.matched.image if match and match.matched else None,
            components=match.matched.components if match and match.matched else (),
            ak_name=run.ak_name, inventory=evidence.inventory)
        # (6): the signed result.
        token = sign_result(result, self.signing_key)
        timings["6 result"] = time.perf_counter() - mark
        timings["total"] = time.perf_counter() - started
        return Appraisal(result, token, match, timings)


class _Run:
    """The state of one appraisal as it goes through the steps."""

    def __init__(self, evidence: Evidence) -> None:
        self.evidence = evidence
        self.vector: dict[str, int] = {}
        self.failures: list[Failure] = []
        self.attest: Attest | None = None
        self.ak_name: bytes | None = None

    def fail(self, error: AttestError, **claims: int) -> None:
        self.failures.append(Failure(step=error.step, reason=error.reason))
        self.vector.update(claims)

    def steps(self, verifier: Verifier, timings: dict[str, float]) -> MatchReport | None:
        evidence = self.evidence
        quote = evidence.quote
        clock = time.perf_counter()

        def lap(step: str) -> None:
            nonlocal clock
            now = time.perf_counter()
            timings[step] = now - clock
            clock = now

        # (1): a trusted AK of this host signed a well-formed quote.
        try:
            self.ak_name = load_public_key(evidence.ak_public).name
            if self.ak_name is None:
                raise AkTrustError("1 AK trust", "the evidence names its AK by a "
                                   "SubjectPublicKeyInfo; a TPM2B_PUBLIC is needed")
            trusted = verifier.aks.trusted_ak(evidence.host_id, self.ak_name)
            attest = verify_quote(quote.attest, quote.signature, trusted.key())
        except AkTrustError as exc:
            self.fail(exc, instance_identity=UNRECOGNIZED_INSTANCE)
            return None
        except AttestError as exc:
            self.fail(exc, instance_identity=CRYPTO_FAILED)
            return None
        self.attest = attest
        lap("1 quote signature")

        # (2): the nonce is ours, fresh, for this host, and used once; counters go forward.
        try:
            if not hmac.compare_digest(attest.extra_data, evidence.nonce):
                raise NonceError("the quote's extraData is not the evidence's nonce")
            verifier.nonces.consume(evidence.host_id, attest.extra_data)
            verifier.nonces.check_counters(evidence.host_id, attest.clock_info)
        except AttestError as exc:
            self.fail(exc, instance_identity=CRYPTO_FAILED)
            return None
        self.vector["instance_identity"] = AFFIRMING
        self.vector["hardware"] = AFFIRMING if trusted.hardware_verified else NO_CLAIM
        lap("2 nonce")

        # (3): the reported PCR values are the quoted ones.
        try:
            verify_quote(quote.attest, quote.signature, trusted.key(), pcrs=evidence.pcrs)
        except AttestError as exc:
            self.fail(exc, executables=CRYPTO_FAILED, configuration=CRYPTO_FAILED)
            return None
        lap("3 PCR digest")

        # (4): the event log replays to the quoted PCRs.
        log: EventLog | None = None
        try:
            if evidence.eventlog is not None:
                log = parse(evidence.eventlog)
                check_replay(log, evidence.pcrs)
        except AttestError as exc:
            step = exc.step if exc.step.startswith("4") else f"4 {exc.step}"
            self.failures.append(Failure(step=step, reason=exc.reason))
            self.vector.update(executables=CRYPTO_FAILED, configuration=CRYPTO_FAILED)
            return None
        lap("4 event log")

        # (5): an approved image version's reference values.
        match = verifier.references.match(evidence.pcrs, log)
        lap("5 reference values")
        if match.matched is not None:
            self.vector.update(executables=APPROVED_BOOT, configuration=AFFIRMING)
            return match
        if match.closest is None:
            refused = verifier.references.refused
            self.failures.append(Failure(step=STEP_REFERENCE, reason=(
                "no approved image manifest is configured, so no boot can be approved "
                "(set VIGIL_ATTEST_REFERENCES and VIGIL_ATTEST_REFERENCE_KEYS)" if not refused
                else f"no trusted image manifest: {len(refused)} in the references folder "
                     f"did not verify ({refused[0][0]}: {refused[0][1]})")))
            return match
        closest = match.closest
        differences = closest.differences
        self.failures.append(Failure(step=STEP_REFERENCE, reason=(
            f"the evidence matches no approved image; the closest is "
            f"{closest.manifest.image} with {len(differences)} "
            f"difference{'s' if len(differences) != 1 else ''}")))
        self.failures.extend(Failure(step=STEP_REFERENCE, reason=d.reason())
                             for d in differences)
        aspects = {d.aspect for d in differences}
        self.vector["executables"] = CONTRAINDICATED if "executables" in aspects \
            else APPROVED_BOOT
        self.vector["configuration"] = CONTRAINDICATED if "configuration" in aspects \
            else AFFIRMING
        return match


def check_replay(log: EventLog, quoted: Mapping[str, Mapping[int, bytes]]) -> None:
    """Step 4's comparison: in every bank the log and the quote share, each quoted PCR
    the log sets equals its replayed value. Raises :class:`ReplayMismatchError`."""
    common = [bank for bank in log.banks if bank in quoted]
    if not common:
        raise ReplayMismatchError(f"the log has bank(s) {', '.join(log.banks) or 'none'} and "
                                  f"the quote {', '.join(quoted) or 'none'}: no bank to "
                                  "compare")
    mismatches = []
    for bank in common:
        for index, value in log.replay_bank(bank).items():
            actual = quoted[bank].get(index)
            if actual is not None and not hmac.compare_digest(actual, value):
                mismatches.append(f"{bank} PCR {index}: the log replays to {value.hex()}, "
                                  f"the quote has {actual.hex()}")
    if mismatches:
        raise ReplayMismatchError("; ".join(mismatches))


def manifest_from_evidence(evidence: Evidence, image: ImageRef, *,
                           pcrs: Sequence[int] = tuple(range(10)),
                           components: Sequence[Component] = (),
                           include_pcr_values: bool = True) -> ReferenceManifest:
    """A reference manifest from a known-good evidence capture.

    Whoever calls this vouches that the capture is known-good; this function checks that
    it hangs together before copying values out of it: the quote verifies with the AK
    the capture carries (step 1), the PCR values hash to its digest (step 3) and the log
    replays to them (step 4). Nonce and AK trust are not checked: the capture may be
    old and come from a build machine that was never enrolled.
    """
    ak = load_public_key(evidence.ak_public)
    verify_quote(evidence.quote.attest, evidence.quote.signature, ak, pcrs=evidence.pcrs)
    log = None
    if evidence.eventlog is not None:
        log = parse(evidence.eventlog)
        check_replay(log, evidence.pcrs)
    quoted = set().union(*(values.keys() for values in evidence.pcrs.values()))
    missing = sorted(set(pcrs) - quoted)
    if missing:
        raise ReplayMismatchError(f"PCRs {missing} are to be pinned but the capture's quote "
                                  "does not cover them")
    return manifest_from_log(image, evidence.pcrs, log, pcrs=pcrs, components=components,
                             include_pcr_values=include_pcr_values,
                             description=f"from evidence of {evidence.host_id} collected at "
                             f"{evidence.collected_at.isoformat()}")
