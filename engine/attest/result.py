"""Step 6: the signed attestation result, in the shape of an IETF RATS EAR.

The result is a JWT (compact JWS, ``typ`` ``JWT``) whose claims follow the EAT
Attestation Result (draft-ietf-rats-ear) with the AR4SI trustworthiness vector
(draft-ietf-rats-ar4si); Vigil's own claims carry the ``vigil.`` prefix::

    {
      "eat_profile": "tag:github.com,2023:veraison/ear",
      "iat": 1777636800,
      "ear.verifier-id": {"developer": "vigil", "build": "vigil 0.1.0"},
      "eat_nonce": "<base64url of the nonce the quote carried>",
      "submods": {
        "<host id>": {
          "ear.status": "affirming" | "warning" | "contraindicated" | "none",
          "ear.trustworthiness-vector": {"instance-identity": 2, "configuration": 2,
              "executables": 3, "file-system": 0, "hardware": 2, "runtime-opaque": 0,
              "storage-opaque": 0, "sourced-data": 0},
          "ear.appraisal-policy-id": "vigil:reference-manifests/v1",
          "vigil.host-id": "<host id>",
          "vigil.image": {"name": …, "version": …} | null,
          "vigil.components": [Component, …],   # of the matched image, attested
          "vigil.failures": [{"step": "5 reference values", "reason": "…"}, …],
          "vigil.ak-name": "<hex>",
          "vigil.inventory": {…}                # what the host reported, not attested
        }
      }
    }

How Vigil fills the vector (AR4SI values; 0 is "no claim"):

* ``instance-identity``: 2 when a trusted AK of the host signed a fresh quote; 97 when
  the AK is not one the host enrolled; 99 when the quote, its signature or its nonce
  fails (steps 1 and 2).
* ``hardware``: 2 when a certificate chain vouches for the TPM (EK certificate) or the
  AK (provider AK certificate); otherwise no claim.
* ``executables``: 3 when every boot component that ran (firmware, microcode, boot
  loaders, kernel) is the approved image's; 96 when one differs: Vigil's approval list
  is an allow-list, so an unapproved component is contraindicated, not merely unknown;
  99 when the PCR digest or the event-log replay fails (steps 3 and 4).
* ``configuration``: 2 when the measured configuration (Secure Boot variables, boot
  variables, kernel command line…) is the approved image's; 96 when it differs; 99 as
  above.
* ``file-system``, ``runtime-opaque``, ``storage-opaque``, ``sourced-data``: Vigil does
  not appraise them (0).

``ear.status`` is ``contraindicated`` whenever a step failed, else the worst tier among
the claims. :meth:`AttestationResult.summary` is what the policy input reads.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError

from engine import __version__
from engine.attest.errors import AttestError
from engine.attest.evidence import Inventory
from engine.attest.signing_keys import load_verification_key
from engine.errors import EXIT_CHECK
from engine.keys import SignatureError, SigningKey, VerificationKey, sign_compact, verify_compact
from engine.model import B64, Component, ImageRef

__all__ = [
    "EAR_PROFILE",
    "AttestationResult",
    "Failure",
    "ResultError",
    "ResultSummary",
    "Status",
    "TrustVector",
    "VerifierId",
    "sign_result",
    "verify_result",
]

EAR_PROFILE = "tag:github.com,2023:veraison/ear"
APPRAISAL_POLICY_ID = "vigil:reference-manifests/v1"
RESULT_TYP = "JWT"
STEP_RESULT = "6 attestation result"

Status = Literal["affirming", "warning", "contraindicated", "none"]

# AR4SI values Vigil assigns (draft-ietf-rats-ar4si, "Specific Claims").
NO_CLAIM = 0
AFFIRMING = 2
APPROVED_BOOT = 3
"""executables: only a recognized genuine set of approved executables was loaded
during boot."""
CONTRAINDICATED = 96
UNRECOGNIZED_INSTANCE = 97
CRYPTO_FAILED = 99


class ResultError(AttestError):
    """An attestation result cannot be verified or read."""

    def __init__(self, reason: str, *, tip: str | None = None) -> None:
        super().__init__(STEP_RESULT, reason, tip=tip)


def tier(value: int) -> Status:
    """The AR4SI trustworthiness tier of a claim value."""
    if -1 <= value <= 1:
        return "none"
    if 2 <= value <= 31 or -32 <= value <= -2:
        return "affirming"
    if 32 <= value <= 95 or -96 <= value <= -33:
        return "warning"
    return "contraindicated"


_TIER_ORDER: dict[Status, int] = {"none": 0, "affirming": 1, "warning": 2,
                                  "contraindicated": 3}


def _claim(name: str) -> Any:
    """A trustworthiness claim: a signed 8-bit integer, named ``name`` in the EAR."""
    return Field(default=NO_CLAIM, ge=-128, le=127, serialization_alias=name,
                 validation_alias=AliasChoices(name.replace("-", "_"), name))


class TrustVector(BaseModel):
    """The AR4SI trustworthiness vector (each claim a signed 8-bit integer)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    instance_identity: int = _claim("instance-identity")
    configuration: int = _claim("configuration")
    executables: int = _claim("executables")
    file_system: int = _claim("file-system")
    hardware: int = _claim("hardware")
    runtime_opaque: int = _claim("runtime-opaque")
    storage_opaque: int = _claim("storage-opaque")
    sourced_data: int = _claim("sourced-data")

    def worst_tier(self) -> Status:
        tiers = [tier(v) for v in self.model_dump().values()]
        return max(tiers, key=_TIER_ORDER.__getitem__)


class Failure(BaseModel):
    """One failed verification step, or one difference from the approved image."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    step: str
    reason: str


class VerifierId(BaseModel):
    """``ear.verifier-id``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    developer: str
    build: str = f"vigil {__version__}"


class ResultSummary(BaseModel):
    """What the policy input needs from an attestation result, and nothing else."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    status: Status
    issued_at: dt.datetime
    verifier_id: str
    """``developer`` / ``build`` of the verifier, e.g. ``vigil / vigil 0.1.0``."""
    image: ImageRef | None
    trust_vector: dict[str, int]
    """AR4SI claim (``instance_identity``, ``configuration``, …) -> value."""
    failures: list[Failure]
    components: list[Component]


class AttestationResult(BaseModel):
    """One host's appraisal. :func:`sign_result` turns it into an EAR JWT and
    :func:`verify_result` back."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host_id: str
    status: Status
    issued_at: dt.datetime
    verifier: VerifierId
    nonce: B64 | None = None
    trust_vector: TrustVector
    image: ImageRef | None = None
    components: list[Component] = []
    failures: list[Failure] = []
    ak_name: str | None = None
    inventory: Inventory | None = None

    @classmethod
    def build(cls, *, host_id: str, verifier: VerifierId, trust_vector: TrustVector,
              failures: Sequence[Failure], nonce: bytes | None, image: ImageRef | None,
              components: Sequence[Component], ak_name: bytes | None,
              inventory: Inventory | None, issued_at: dt.datetime | None = None
              ) -> AttestationResult:
        """A result whose status follows from the failures and the vector."""
        status: Status = "contraindicated" if failures else trust_vector.worst_tier()
        issued = (issued_at or dt.datetime.now(dt.UTC)).replace(microsecond=0)
        return cls(host_id=host_id, status=status, issued_at=issued, verifier=verifier,
                   nonce=nonce, trust_vector=trust_vector,
                   image=image if not failures else None,
                   components=list(components) if not failures else [],
                   failures=list(failures), ak_name=None if ak_name is None else ak_name.hex(),
                   inventory=inventory)

    def summary(self) -> ResultSummary:
        return ResultSummary(
            status=self.status, issued_at=self.issued_at,
            verifier_id=f"{self.verifier.developer} / {self.verifier.build}",
            image=self.image, trust_vector=self.trust_vector.model_dump(by_alias=False),
            failures=list(self.failures), components=list(self.components))

    def claims(self) -> dict[str, Any]:
        """The EAR claims set."""
        submod: dict[str, Any] = {
            "ear.status": self.status,
            "ear.trustworthiness-vector": self.trust_vector.model_dump(by_alias=True),
            "ear.appraisal-policy-id": APPRAISAL_POLICY_ID,
            "vigil.host-id": self.host_id,
            "vigil.image": None if self.image is None else self.image.model_dump(),
            "vigil.components": [c.model_dump(mode="json", exclude_none=True)
                                 for c in self.components],
            "vigil.failures": [f.model_dump() for f in self.failures],
        }
        if self.ak_name is not None:
            submod["vigil.ak-name"] = self.ak_name
        if self.inventory is not None:
            submod["vigil.inventory"] = self.inventory.model_dump(mode="json",
                                                                  exclude_none=True)
        claims: dict[str, Any] = {
            "eat_profile": EAR_PROFILE,
            "iat": int(self.issued_at.timestamp()),
            "ear.verifier-id": self.verifier.model_dump(),
            "submods": {self.host_id: submod},
        }
        if self.nonce is not None:
            claims["eat_nonce"] = base64.urlsafe_b64encode(self.nonce).rstrip(b"=").decode()
        return claims

    @classmethod
    def from_claims(cls, claims: dict[str, Any]) -> AttestationResult:
        """Read an EAR claims set that Vigil issued (:class:`ResultError` if not)."""
        if claims.get("eat_profile") != EAR_PROFILE:
            raise ResultError(f"eat_profile is {claims.get('eat_profile')!r}, not {EAR_PROFILE}")
        submods = claims.get("submods")
        if not isinstance(submods, dict) or len(submods) != 1:
            raise ResultError("a Vigil result has exactly one submod: the host")
        (host_id, submod), = submods.items()
        if not isinstance(submod, dict):
            raise ResultError("the host's submod is not an object")
        iat = claims.get("iat")
        if not isinstance(iat, int) or isinstance(iat, bool):
            raise ResultError("iat is missing or not an integer")
        nonce = None
        if "eat_nonce" in claims:
            try:
                text = str(claims["eat_nonce"])
                nonce = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            except (binascii.Error, ValueError):
                raise ResultError("eat_nonce is not base64url") from None
        try:
            result = cls.model_validate({
                "host_id": host_id,
                "status": submod.get("ear.status"),
                "issued_at": dt.datetime.fromtimestamp(iat, dt.UTC),
                "verifier": claims.get("ear.verifier-id"),
                "nonce": nonce,
                "trust_vector": submod.get("ear.trustworthiness-vector"),
                "image": submod.get("vigil.image"),
                "components": submod.get("vigil.components", []),
                "failures": submod.get("vigil.failures", []),
                "ak_name": submod.get("vigil.ak-name"),
                "inventory": submod.get("vigil.inventory"),
            })
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '$'}: {err['msg']}"
                                 for err in exc.errors()[:5])
            raise ResultError(f"not a Vigil attestation result: {problems}") from None
        if result.host_id != submod.get("vigil.host-id"):
            raise ResultError("vigil.host-id does not name the submod's host")
        return result


def sign_result(result: AttestationResult, key: SigningKey) -> str:
    """The result as a signed EAR JWT."""
    payload = json.dumps(result.claims(), separators=(",", ":"), sort_keys=True).encode()
    return sign_compact(payload, key, RESULT_TYP)


CLOCK_SKEW = dt.timedelta(seconds=60)
"""How far in the future a result's ``iat`` may be (clocks of verifier and decider)."""


class ResultSignatureError(ResultError):
    """The result's signature does not verify: a check that did not pass (exit 1)."""

    exit_code = EXIT_CHECK


def verify_result(token: str | bytes, public_key: VerificationKey | bytes,
                  *, max_age: dt.timedelta | None = None,
                  now: dt.datetime | None = None) -> AttestationResult:
    """Check an EAR JWT offline with the verifier's public key (a
    :class:`VerificationKey` or PEM bytes) and read it.

    Fails with :class:`ResultError` when the signature does not verify, the claims are
    not a Vigil EAR, the result is issued more than :data:`CLOCK_SKEW` in the future, or
    (with ``max_age``) it is older than that.
    """
    key = public_key if isinstance(public_key, VerificationKey) else \
        load_verification_key(public_key)
    try:
        payload = verify_compact(token, [key], RESULT_TYP, "attestation result")
    except SignatureError as exc:
        raise ResultSignatureError(exc.reason, tip=exc.tip) from None
    try:
        claims = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        raise ResultError("the signed payload is not JSON") from None
    if not isinstance(claims, dict):
        raise ResultError("the signed payload is not a JSON object")
    result = AttestationResult.from_claims(claims)
    age = (now or dt.datetime.now(dt.UTC)) - result.issued_at
    if age < -CLOCK_SKEW:
        # a result "from the future" would stay fresh for as long as its issuer chose
        raise ResultError(f"the result claims to be issued {-age} from now, beyond the "
                          f"{CLOCK_SKEW.total_seconds():.0f} s clock skew allowed",
                          tip="Check the verifier's clock, then appraise the host again.")
    if max_age is not None and age > max_age:
        raise ResultError(f"the result was issued {age} ago, more than {max_age}",
                          tip="Appraise the host again.")
    return result
