"""Host verification: TPM 2.0 quotes, measured-boot event logs, reference values.

Verification follows numbered steps, each with its own error:

1. quote structure and signature (:mod:`engine.attest.quote`), by an AK the verifier
   trusts for the host (:mod:`engine.attest.ak`)
2. nonce freshness (:mod:`engine.attest.nonce`)
3. PCR digest recomputed from the reported PCR values
4. event log parsed and replayed against the quoted PCRs (:mod:`engine.attest.eventlog`)
5. reference values of an approved image: signed manifests
   (:mod:`engine.attest.manifests`) matched against the evidence
   (:mod:`engine.attest.matching`), events named by :mod:`engine.attest.uefi_names`
6. a signed attestation result (:mod:`engine.attest.result`)

:class:`Verifier` (:mod:`engine.attest.verify`) runs them over an :class:`Evidence`
document (:mod:`engine.attest.evidence`), which the host agent
(:mod:`engine.attest.agent`) collects over ``tpm2-pytss``. :mod:`engine.attest.swtpm`
and :mod:`engine.attest.simboot` are a software-TPM host and a simulated measured boot
(``vigil agent simulate``, the demo, tests and benchmarks); :mod:`engine.attest.lab`
wires them to a verifier and catalogues real quotes for the tests and benchmarks.

This module is the part's face: other parts use the names in ``__all__``. Importing it
loads neither the PVDB's database stack nor ``tpm2-pytss``.
"""

from engine.attest.agent import (
    AK_TYPES,
    DEFAULT_BANKS,
    DEFAULT_EVENTLOG,
    DEFAULT_PCRS,
    EK_TYPES,
    TpmError,
    activate,
    collect_evidence,
    collect_inventory,
    enroll,
)
from engine.attest.ak import (
    ActivationResponse,
    AkRegistry,
    AkTrustError,
    CredentialChallenge,
    EnrollmentRequest,
    TrustedAk,
    load_certificates,
)
from engine.attest.errors import AttestError, EventLogError, QuoteError
from engine.attest.eventlog import PCR_INDEX_NOT_EXTENDED, Event, EventLog, PcrValues
from engine.attest.eventlog import load as load_eventlog
from engine.attest.eventlog import parse as parse_eventlog
from engine.attest.evidence import (
    MAX_EVIDENCE_BYTES,
    Evidence,
    EvidenceError,
    Inventory,
    QuoteBlob,
)
from engine.attest.manifests import (
    MANIFEST_TYP,
    ExpectedEvent,
    ManifestError,
    ReferenceManifest,
    load_manifest,
    load_manifest_folder,
    manifest_from_log,
    sign_manifest,
)
from engine.attest.matching import (
    Candidate,
    Difference,
    MatchReport,
    ReferenceMismatch,
    ReferenceSet,
)
from engine.attest.nonce import ClockRegressionError, Nonce, NonceError, NonceStore
from engine.attest.quote import verify_quote
from engine.attest.result import (
    EAR_PROFILE,
    AttestationResult,
    Failure,
    ResultError,
    ResultSummary,
    Status,
    TrustVector,
    VerifierId,
    sign_result,
    tier,
    verify_result,
)
from engine.attest.signing_keys import (
    KeyError_,
    SigningKey,
    VerificationKey,
    load_signing_key,
    load_verification_key,
)
from engine.attest.simboot import DEFAULT_BOOT, Boot, LogBuilder, hypervisor_boot
from engine.attest.swtpm import SWTPM_BANKS, Swtpm, SwtpmTemplate, manufacture
from engine.attest.uefi_names import describe_event
from engine.attest.verify import (
    Appraisal,
    ReplayMismatchError,
    Verifier,
    check_replay,
    manifest_from_evidence,
)
from engine.model import ImageRef

__all__ = [
    "AK_TYPES",
    "DEFAULT_BANKS",
    "DEFAULT_BOOT",
    "DEFAULT_EVENTLOG",
    "DEFAULT_PCRS",
    "EAR_PROFILE",
    "EK_TYPES",
    "MANIFEST_TYP",
    "MAX_EVIDENCE_BYTES",
    "PCR_INDEX_NOT_EXTENDED",
    "SWTPM_BANKS",
    "ActivationResponse",
    "AkRegistry",
    "AkTrustError",
    "Appraisal",
    "AttestError",
    "AttestationResult",
    "Boot",
    "Candidate",
    "ClockRegressionError",
    "CredentialChallenge",
    "Difference",
    "EnrollmentRequest",
    "Event",
    "EventLog",
    "EventLogError",
    "Evidence",
    "EvidenceError",
    "ExpectedEvent",
    "Failure",
    "ImageRef",
    "Inventory",
    "KeyError_",
    "LogBuilder",
    "ManifestError",
    "MatchReport",
    "Nonce",
    "NonceError",
    "NonceStore",
    "PcrValues",
    "QuoteBlob",
    "QuoteError",
    "ReferenceManifest",
    "ReferenceMismatch",
    "ReferenceSet",
    "ReplayMismatchError",
    "ResultError",
    "ResultSummary",
    "SigningKey",
    "Status",
    "Swtpm",
    "SwtpmTemplate",
    "TpmError",
    "TrustVector",
    "TrustedAk",
    "VerificationKey",
    "Verifier",
    "VerifierId",
    "activate",
    "check_replay",
    "collect_evidence",
    "collect_inventory",
    "describe_event",
    "enroll",
    "hypervisor_boot",
    "load_certificates",
    "load_eventlog",
    "load_manifest",
    "load_manifest_folder",
    "load_signing_key",
    "load_verification_key",
    "manifest_from_evidence",
    "manifest_from_log",
    "manufacture",
    "parse_eventlog",
    "sign_manifest",
    "sign_result",
    "tier",
    "verify_quote",
    "verify_result",
]
