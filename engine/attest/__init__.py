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
wires them to a verifier and catalogues real quotes for the tests and benchmarks;
:func:`start_fleet` runs a simulated fleet (a software TPM and an agent per host).

Fresh evidence over HTTP: the host serves :mod:`engine.attest.agent_service`
(``vigil agent serve``); the verifier calls :func:`challenge_agent`, or
:func:`attest_host` for nonce, challenge and appraisal in one
(:mod:`engine.attest.challenge`); the exchange is :mod:`engine.attest.agent_protocol`.

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
from engine.attest.agent_protocol import (
    CHALLENGE_PATH,
    MAX_ANSWER_BYTES,
    MAX_CHALLENGE_BYTES,
    Challenge,
)
from engine.attest.agent_service import (
    AgentConfig,
    RunningAgent,
    agent_app,
    cached_inventory,
    serve_agent,
    start_agent,
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
from engine.attest.challenge import (
    DEFAULT_CHALLENGE_TIMEOUT,
    AgentError,
    AgentFailure,
    attest_host,
    challenge_agent,
    challenge_agent_async,
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
from engine.attest.lab import NEXT_BOOT, NEXT_IMAGE, Fleet, FleetHost, LabHost, start_fleet
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
from engine.attest.result_files import ResultFile, read_result_file, stat_result_file
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
    "CHALLENGE_PATH",
    "DEFAULT_BANKS",
    "DEFAULT_BOOT",
    "DEFAULT_CHALLENGE_TIMEOUT",
    "DEFAULT_EVENTLOG",
    "DEFAULT_PCRS",
    "EAR_PROFILE",
    "EK_TYPES",
    "MANIFEST_TYP",
    "MAX_ANSWER_BYTES",
    "MAX_CHALLENGE_BYTES",
    "MAX_EVIDENCE_BYTES",
    "NEXT_BOOT",
    "NEXT_IMAGE",
    "PCR_INDEX_NOT_EXTENDED",
    "SWTPM_BANKS",
    "ActivationResponse",
    "AgentConfig",
    "AgentError",
    "AgentFailure",
    "AkRegistry",
    "AkTrustError",
    "Appraisal",
    "AttestError",
    "AttestationResult",
    "Boot",
    "Candidate",
    "Challenge",
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
    "Fleet",
    "FleetHost",
    "ImageRef",
    "Inventory",
    "KeyError_",
    "LabHost",
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
    "ResultFile",
    "ResultSummary",
    "RunningAgent",
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
    "agent_app",
    "attest_host",
    "cached_inventory",
    "challenge_agent",
    "challenge_agent_async",
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
    "read_result_file",
    "serve_agent",
    "sign_manifest",
    "sign_result",
    "start_agent",
    "start_fleet",
    "stat_result_file",
    "tier",
    "verify_quote",
    "verify_result",
]
