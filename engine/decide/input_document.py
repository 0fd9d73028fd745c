"""The input documents: every fact a policy may read for one placement decision.

Schema version 2 splits a decision in two documents, so that its cost follows what
changes per request and not the size of the host's finding list:

* the **posture document** (``stage: "posture"``, the input of
  ``data.vigil.posture.result``): the host, its attestation result, the vulnerabilities
  of its components for the day, their coverage and its patched configuration, with the
  decision *day*; judged once and kept for as long as none of them changes;
* the **decision document** (``stage: "decision"``, the input of
  ``data.vigil.decision.result``): the tenant's request, the host's attestation with its
  age, the patched configuration, the decision time, and ``posture``: the posture's
  counts of findings per kind, its facts and the digest of the posture document.

A version 1 document (:class:`InputDocument`) holds both in one and stays readable: it is
what decisions recorded before version 2 carry, and what a policy without a posture
entry point decides. Every document is versioned (``schema_version``), published as JSON
Schema (``vigil schema input``, ``docs/input-schema.json``) and validated before every
evaluation. Values are normalised so that the embedded evaluator (rego-cpp) and an OPA
server read them alike:

* times come twice, as RFC 3339 text (``...Z``) and as integer nanoseconds since the
  epoch — policies compare the nanoseconds and never parse text (rego-cpp's
  ``time.parse_rfc3339_ns`` rejects a trailing ``Z``);
* day counts are precomputed (``days_from_now``), so no policy does date arithmetic;
* scores are decimals rounded once, to one place for CVSS and three for EPSS, here and
  nowhere else;
* version comparisons a policy needs (the tenant's requested patch level) are answered
  by the engine with the version scheme's own parser and handed over as booleans.

This module is the contract: the models, :func:`json_schema` and :func:`validate`.
Changing a field here changes what every policy reads (and the schema version).
:mod:`engine.decide.input_builder` fills a document from what the other parts know.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any, Literal

import jsonschema
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from engine.decide.errors import InputDocumentError

SCHEMA_VERSION = 2
SCHEMA_ID = "https://vigil.invalid/schemas/input-v2.json"
SCHEMA_ID_V1 = "https://vigil.invalid/schemas/input-v1.json"

AttestationStatus = Literal["affirming", "warning", "contraindicated", "none"]
"""The AR4SI tier of an attestation result (``none``: there is no result)."""

TrustClaim = Annotated[int, Field(ge=-128, le=127)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Image(_Model):
    """An approved host image and its version."""

    name: str = Field(description="Image name, as in the reference-value catalog")
    version: str = Field(description="Image version, in the image's own version scheme")


class VmShape(_Model):
    """The VM to be placed."""

    name: str = Field(description="VM name, unique within the tenant")
    vcpus: int = Field(ge=1, description="Virtual CPUs")
    memory_mib: int = Field(ge=1, description="Memory in MiB")
    flavor: str | None = Field(default=None, description="Flavor name, when the cloud uses them")
    labels: dict[str, str] = Field(default_factory=dict, description="Free-form labels")


class PatchLevelMet(_Model):
    """Whether the host, or its patched configuration, meets the requested patch level.

    Precomputed by the engine with the image version scheme's parser; ``null`` means
    the versions could not be compared (or there is no image to compare).
    """

    host: bool | None = Field(description="The host's attested image is at least the level")
    patched_configuration: bool | None = Field(
        description="The patched configuration's image is at least the level")


class Request(_Model):
    """What the tenant asked for."""

    tenant: str = Field(description="Tenant id")
    vm: VmShape
    requested_patch_level: str | None = Field(
        default=None, description="Minimum host image version the tenant requires, or null")
    requested_image: Image | None = Field(
        default=None, description="Exact host image the tenant requires, or null")
    patch_level_met: PatchLevelMet | None = Field(
        default=None,
        description="Set by the engine when requested_patch_level is set; null otherwise")


class TrustVector(_Model):
    """The AR4SI trustworthiness vector: one signed claim per aspect.

    Values follow draft-ietf-rats-ar4si: 0 no claim, 1 verifier malfunction,
    2..31 affirming, 32..95 warning, 96..127 contraindicated; negative values are
    implementation-specific.
    """

    instance_identity: TrustClaim = 0
    configuration: TrustClaim = 0
    executables: TrustClaim = 0
    file_system: TrustClaim = 0
    hardware: TrustClaim = 0
    runtime_opaque: TrustClaim = 0
    storage_opaque: TrustClaim = 0
    sourced_data: TrustClaim = 0


class Failure(_Model):
    """One failed step of the attestation verification."""

    step: str = Field(description="Verification step, e.g. quote-signature, pcr-replay")
    reason: str = Field(description="What was wrong, in one sentence")


class Attestation(_Model):
    """The attestation result of the host, as the verifier issued it."""

    status: AttestationStatus = Field(description="Overall AR4SI tier; none when no result")
    issued_at: str | None = Field(default=None, description="RFC 3339 (UTC, trailing Z)")
    issued_at_ns: int | None = Field(default=None, description="issued_at in ns since epoch")
    age_seconds: int | None = Field(
        default=None, ge=0, description="decision_time minus issued_at, whole seconds")
    verifier_id: str | None = Field(default=None, description="Which verifier issued it")
    image: Image | None = Field(default=None, description="The approved image it matched")
    trust_vector: TrustVector | None = None
    failures: list[Failure] = Field(default_factory=list)


class Component(_Model):
    """One component the host runs (the index in this list is what vulnerabilities cite)."""

    kind: str = Field(description="firmware, bmc, microcode, hypervisor, kernel, os-package, …")
    vendor: str | None = None
    product: str | None = None
    version: str
    cpe: str | None = None
    purl: str | None = None


class Host(_Model):
    """The candidate host."""

    id: str = Field(description="Host id")
    attestation: Attestation
    components: list[Component] = Field(default_factory=list)


class CvssScore(_Model):
    """One CVSS score, with its provenance (never merged across providers)."""

    provider: str = Field(description="Who scored it: nvd, the CNA, a vendor")
    source: str = Field(description="The feed the score came from")
    version: str = Field(description="CVSS version, e.g. 3.1 or 4.0")
    vector: str
    score: float = Field(ge=0, le=10, description="Base score, rounded to one decimal")


class Kev(_Model):
    """CISA Known Exploited Vulnerabilities catalog entry."""

    date_added: str = Field(description="YYYY-MM-DD")
    due_date: str | None = Field(default=None, description="YYYY-MM-DD")
    known_ransomware_use: bool


class Epss(_Model):
    """FIRST EPSS probability of exploitation in the next 30 days."""

    score: float = Field(ge=0, le=1, description="Probability, rounded to three decimals")
    percentile: float | None = Field(default=None, ge=0, le=1)
    date: str | None = Field(default=None, description="YYYY-MM-DD of the EPSS release")


class Availability(_Model):
    """When the fix is (or is predicted to be) available."""

    date: str | None = Field(default=None, description="YYYY-MM-DD, or null when unknown")
    date_ns: int | None = Field(default=None, description="date at 00:00Z in ns since epoch")
    days_from_now: int | None = Field(
        default=None, description="date minus the decision day, in days; <= 0: available now")
    basis: Literal["vendor", "estimated", "none"] = Field(
        description="vendor: a feed states it; estimated: predicted; none: no date")
    confidence: float | None = Field(
        default=None, ge=0, le=1, description="P(fix by date), two decimals; 1.0 for vendor")
    p_within_window: float | None = Field(
        default=None, ge=0, le=1,
        description="for estimates: P(fix within window_days of the decision), two decimals")
    window_days: int | None = Field(
        default=None, ge=0, description="the predictor's window for p_within_window")


class Fix(_Model):
    """Whether a fix exists for the affected version line."""

    status: Literal["fixed", "no_fix", "unknown"]
    closing_version: str | None = Field(
        default=None, description="Lowest fixed version above the component's version")
    line: Literal["own", "other"] | None = Field(
        default=None, description="own: closing_version patches the component's own line;"
        " other: it is an upgrade to another line, and its date is not a patch date for"
        " this one (unless availability.basis is estimated, an estimate for this line)")
    advisories: list[str] = Field(default_factory=list)
    patch_ids: list[str] = Field(default_factory=list)
    availability: Availability


class Vulnerability(_Model):
    """One vulnerability that affects one of the host's components."""

    id: str = Field(description="CVE id (or the source's id when there is no CVE)")
    component: int = Field(ge=0, description="Index into host.components")
    title: str | None = None
    max_cvss: float | None = Field(
        default=None, ge=0, le=10, description="Highest CVSS base score of any provider")
    cvss: list[CvssScore] = Field(default_factory=list)
    kev: Kev | None = None
    epss: Epss | None = None
    fix: Fix


class Undetermined(_Model):
    """A vulnerability that names a host component but whose versions cannot be compared."""

    id: str
    component: int = Field(ge=0)
    reason: str


class CoverageSource(_Model):
    """One loaded source that covers a component."""

    source: str = Field(description="The feed: csaf, osv, cve5, nvd…")
    scope: str = Field(description="The package and release or product it covers, e.g."
                       " 'rpm/redhat kernel (release 9)' or 'linux/linux_kernel'")
    as_of: str | None = Field(default=None, description="RFC 3339: the newest of that"
                              " source's records about it")


class Coverage(_Model):
    """Which loaded sources cover one host component (added in schema version 1; absent
    in documents built before, where nothing is said about coverage)."""

    component: int = Field(ge=0, description="Index into host.components")
    status: Literal["covered", "uncovered", "undetermined"] = Field(
        description="covered: a loaded source states versions of it and its version was"
        " compared; uncovered: no loaded source says anything about it (no vulnerability"
        " then means nothing was known); undetermined: covered, but its version cannot"
        " be read in those sources' terms")
    sources: list[CoverageSource] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)


class PatchedConfiguration(_Model):
    """The patched configuration (image) for this host."""

    state: Literal["none", "preparing", "ready"]
    image: Image | None = None
    attested: bool = Field(default=False, description="The image was attested after it was built")
    attestation_status: AttestationStatus | None = Field(
        default=None, description="Tier of that attestation, when attested")


class DecisionTime(_Model):
    """The instant the decision is made."""

    rfc3339: str = Field(description="RFC 3339, UTC, trailing Z")
    ns: int = Field(description="Nanoseconds since the epoch")


class Provenance(_Model):
    """Where the vulnerability facts came from."""

    pvdb_generation: int | None = None
    pvdb_as_of: str | None = None


class InputDocument(_Model):
    """One decision's input (schema version 1)."""

    model_config = ConfigDict(
        frozen=True, extra="forbid",
        json_schema_extra={"$id": SCHEMA_ID_V1,
                           "$schema": "https://json-schema.org/draft/2020-12/schema"},
    )

    schema_version: Literal[1] = 1
    request: Request
    host: Host
    vulnerabilities: list[Vulnerability] = Field(default_factory=list)
    undetermined: list[Undetermined] = Field(default_factory=list)
    coverage: list[Coverage] = Field(
        default_factory=list, description="Per host component, the loaded sources that"
        " cover it (one entry per component; none in documents built without it)")
    patched_configuration: PatchedConfiguration
    decision_time: DecisionTime
    provenance: Provenance | None = None

    def to_json(self) -> dict[str, Any]:
        """The document as plain JSON values (what the evaluator receives)."""
        return self.model_dump(mode="json")


class Day(_Model):
    """The decision day (UTC): what the day counts of a posture document count from."""

    date: str = Field(description="YYYY-MM-DD")
    ns: int = Field(description="date at 00:00Z in ns since epoch")


class PostureDocument(_Model):
    """The input of ``data.vigil.posture.result`` (schema version 2): what a host's
    facts are on one day, the same for every request decided on them."""

    schema_version: Literal[2] = 2
    stage: Literal["posture"] = "posture"
    host: Host = Field(description="The host; attestation.age_seconds is null here (the"
                       " age is the request's)")
    vulnerabilities: list[Vulnerability] = Field(default_factory=list)
    undetermined: list[Undetermined] = Field(default_factory=list)
    coverage: list[Coverage] = Field(default_factory=list)
    patched_configuration: PatchedConfiguration
    day: Day
    provenance: Provenance | None = None


class RequestHost(_Model):
    """The candidate host as the decision document names it."""

    id: str = Field(description="Host id")
    attestation: Attestation


class PostureCounts(_Model):
    """How many host findings of each kind the posture gave (after exceptions)."""

    deny: int = Field(ge=0)
    patch: int = Field(ge=0)
    delay: int = Field(ge=0)
    warn: int = Field(ge=0)


class PostureSummary(_Model):
    """What the decision reads of the host's posture."""

    digest: str = Field(description="sha256: of the posture document's canonical JSON")
    decision_id: str | None = Field(
        default=None, description="The posture's record in the decision log, when logged")
    counts: PostureCounts
    facts: dict[str, Any] = Field(default_factory=dict,
                                  description="The posture's facts (policy-defined)")


class DecisionDocument(_Model):
    """The input of ``data.vigil.decision.result`` (schema version 2): one request."""

    model_config = ConfigDict(
        frozen=True, extra="forbid",
        json_schema_extra={"$id": SCHEMA_ID,
                           "$schema": "https://json-schema.org/draft/2020-12/schema"},
    )

    schema_version: Literal[2] = 2
    stage: Literal["decision"] = "decision"
    request: Request
    host: RequestHost
    patched_configuration: PatchedConfiguration
    decision_time: DecisionTime
    posture: PostureSummary


AnyDocument = InputDocument | PostureDocument | DecisionDocument


# --- schema ---------------------------------------------------------------------------


def _model_of(document: Any) -> type[BaseModel]:
    """The model a JSON value claims to be (by ``schema_version`` and ``stage``)."""
    if isinstance(document, dict) and document.get("schema_version") == 2:
        return PostureDocument if document.get("stage") == "posture" else DecisionDocument
    return InputDocument


@lru_cache(maxsize=1)
def json_schema() -> dict[str, Any]:
    """The published JSON Schema (draft 2020-12): a decision document, a posture
    document (schema version 2) or a version 1 document."""
    from pydantic import TypeAdapter

    schema = TypeAdapter(AnyDocument).json_schema(mode="validation")
    schema["$id"] = SCHEMA_ID
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = ("Vigil decision input documents, schema version 2: a decision"
                       " document (stage decision), a posture document (stage posture),"
                       " or a version 1 document")
    return schema


@lru_cache(maxsize=4)
def _validator(model: type[BaseModel]) -> jsonschema.protocols.Validator:
    schema = model.model_json_schema(mode="validation")
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    validator: jsonschema.protocols.Validator = cls(schema)
    return validator


def _pointer(path: Any) -> str:
    out = "$"
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def validate(document: Any) -> AnyDocument:
    """Check a JSON value against the schema of the document it claims to be (version
    1, or a version 2 posture or decision document); raise naming every field that
    fails.

    The model (strict: no coercion, no extra fields) accepts or refuses first, in
    microseconds; only a refused document goes through the JSON Schema validator, whose
    errors name each field the way the published schema does.
    """
    model = _model_of(document)
    try:
        checked: AnyDocument = model.model_validate(document, strict=True)  # type: ignore[assignment]
        return checked
    except ValidationError as exc:
        refused = exc
    version = model.model_fields["schema_version"].default
    errors = sorted(_validator(model).iter_errors(document),
                    key=lambda e: list(e.absolute_path))
    if errors:
        problems: list[tuple[str, str]] = []
        for error in errors:
            if error.validator == "required" and isinstance(error.instance, dict):
                missing = [n for n in error.validator_value if n not in error.instance]
                for name in missing:
                    problems.append((f"{_pointer(error.absolute_path)}.{name}", "is required"))
                continue
            if error.validator == "additionalProperties" and isinstance(error.instance, dict):
                allowed = set(error.schema.get("properties", {}))
                for name in sorted(set(error.instance) - allowed):
                    problems.append((f"{_pointer(error.absolute_path)}.{name}",
                                     f"is not a field of schema version {version}"))
                continue
            problems.append((_pointer(error.absolute_path), error.message))
        raise InputDocumentError(problems)
    # valid JSON by the schema but not by the model: name the model's fields
    raise InputDocumentError([(_pointer(error["loc"]), error["msg"])
                              for error in refused.errors()])
