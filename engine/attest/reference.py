"""Step 5: signed reference manifests of approved host images, and matching evidence.

A **reference manifest** describes one approved image version (JSON, ``schema``
``vigil.reference-manifest/1``; digests in lowercase hex)::

    {
      "schema": "vigil.reference-manifest/1",
      "image": {"name": "hv-base", "version": "2026.05.1"},
      "created_at": "2026-05-01T12:00:00Z",
      "description": "from evidence of hv-042 collected at …",
      "pcrs": {"sha256": {"0": "<hex>", …}},          # expected PCR values (optional)
      "event_pcrs": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],    # PCRs whose events are pinned
      "events": [                                      # expected events, in log order
        {"pcr": 0, "type": "EV_S_CRTM_VERSION", "component": "S-CRTM version",
         "digests": {"sha256": "<hex>", "sha1": "<hex>"}, "data": "1.0"}, …],
      "components": [{"kind": "kernel", "vendor": "debian", "product": "linux",
                      "version": "6.1.0-18", "cpe": …, "purl": …}, …]
    }

``pcrs`` and ``events`` may each be empty, not both. For each PCR in ``event_pcrs`` the
manifest lists *every* event the log extends into it, in order; ``component`` names what
the event measures (S-CRTM version, firmware blobs, microcode, Secure Boot variables
PK/KEK/db/dbx, shim/GRUB/kernel, the kernel command line…, see :func:`describe_event`).
``components`` is the image's component list for the PVDB
(:class:`engine.model.Component`).

The image pipeline signs the manifest as a JWS (compact serialization, ``joserfc``) with
its private key: ES256/ES384, Ed25519 or PS256, header ``typ`` ``vigil-reference+jws``
and ``kid`` the key's RFC 7638 thumbprint. :func:`load_manifest` verifies the signature
with a trusted public key *before* it reads a byte of the payload.

:class:`ReferenceSet` then finds the approved image version whose manifest the evidence
matches, comparing only what steps 3 and 4 proved: quoted PCR values, and the events of
an event log that replays to them. When none matches it lists, for the closest manifest,
each :class:`Difference`: the PCR or event, what was expected, what was found.
"""

from __future__ import annotations

import datetime as dt
import difflib
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeAlias

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from joserfc import jwk, jws
from joserfc.errors import JoseError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from engine.attest.errors import AttestError
from engine.attest.eventlog import Event, EventLog
from engine.model import Component, Hex, ImageRef

__all__ = [
    "MANIFEST_TYP",
    "STEP_REFERENCE",
    "Difference",
    "ExpectedEvent",
    "ImageRef",
    "KeyError_",
    "ManifestError",
    "MatchReport",
    "ReferenceManifest",
    "ReferenceMismatch",
    "ReferenceSet",
    "SigningKey",
    "VerificationKey",
    "describe_event",
    "load_manifest",
    "load_signing_key",
    "load_verification_key",
    "manifest_from_log",
    "sign_manifest",
]

STEP_REFERENCE = "5 reference values"
STEP_MANIFEST = "5 reference manifest"
MANIFEST_TYP = "vigil-reference+jws"
MAX_MANIFEST_BYTES = 16 * 1024 * 1024

Aspect = Literal["executables", "configuration"]
JoseKey: TypeAlias = jwk.ECKey | jwk.OKPKey | jwk.RSAKey


class ManifestError(AttestError):
    """A reference manifest cannot be read, or its signature does not verify."""

    def __init__(self, reason: str, *, tip: str | None = None) -> None:
        super().__init__(STEP_MANIFEST, reason, tip=tip)


class KeyError_(AttestError):
    """A signing or verification key cannot be loaded."""

    def __init__(self, reason: str, *, tip: str | None = None) -> None:
        super().__init__("key", reason, tip=tip)


class ReferenceMismatch(AttestError):
    """Step 5: the evidence matches no approved image version."""

    def __init__(self, reason: str, differences: Sequence[Difference] = ()) -> None:
        super().__init__(STEP_REFERENCE, reason)
        self.differences = tuple(differences)


# -- the manifest --------------------------------------------------------------------------


class ExpectedEvent(BaseModel):
    """One event the image's boot extends, as a known-good log recorded it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    pcr: int = Field(ge=0, le=23)
    type: str
    """The event type's name, e.g. ``EV_EFI_BOOT_SERVICES_APPLICATION``."""
    component: str
    """What the event measures, e.g. ``Secure Boot variable db``."""
    digests: dict[str, Hex]
    """Bank name -> digest as logged (and extended)."""
    data: str | None = None
    """A readable summary of the event data (a path, a version…); informative only."""


class ReferenceManifest(BaseModel):
    """The reference values of one approved image version."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    schema_: Literal["vigil.reference-manifest/1"] = Field(
        default="vigil.reference-manifest/1", alias="schema")
    image: ImageRef
    created_at: dt.datetime
    description: str | None = None
    pcrs: dict[str, dict[int, Hex]] = {}
    """Expected PCR values: bank name -> PCR index -> value."""
    event_pcrs: list[int] = []
    """The PCRs whose complete event sequence :attr:`events` pins."""
    events: list[ExpectedEvent] = []
    components: list[Component] = []

    @model_validator(mode="after")
    def _consistent(self) -> ReferenceManifest:
        if not self.pcrs and not self.event_pcrs:
            raise ValueError("a manifest needs expected PCR values, expected events, or both")
        stray = sorted({e.pcr for e in self.events} - set(self.event_pcrs))
        if stray:
            raise ValueError(f"events for PCRs {stray} that event_pcrs does not list")
        for bank, values in self.pcrs.items():
            if any(not 0 <= index <= 23 for index in values):
                raise ValueError(f"{bank}: PCR indexes run from 0 to 23")
        return self

    def payload(self) -> bytes:
        return self.model_dump_json(by_alias=True, exclude_none=True).encode()


# -- keys --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A private key and the one JWS algorithm it signs with."""

    key: JoseKey
    algorithm: str
    kid: str


@dataclass(frozen=True, slots=True)
class VerificationKey:
    """A trusted public key and the JWS algorithms accepted from it."""

    key: JoseKey
    algorithms: tuple[str, ...]
    kid: str


def _algorithms(key: object) -> tuple[str, ...]:
    """The algorithms a key type may sign with; the first is the one Vigil signs with.
    Tying them to the key closes JWS algorithm confusion (``none``, HMAC with a public
    key, RSA for an EC key)."""
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        by_curve = {"secp256r1": "ES256", "secp384r1": "ES384", "secp521r1": "ES512"}
        if key.curve.name not in by_curve:
            raise KeyError_(f"EC keys on {key.curve.name} are not supported; use P-256 or P-384")
        return (by_curve[key.curve.name],)
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return ("Ed25519", "EdDSA")
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise KeyError_(f"a {key.key_size}-bit RSA key is too weak; use 2048 bits or more")
        return ("PS256", "RS256")
    raise KeyError_(f"{type(key).__name__} keys are not supported; use EC P-256/P-384, "
                    "Ed25519 or RSA")


def _jose_key(pem: bytes, algorithm: str) -> JoseKey:
    if algorithm.startswith("ES"):
        return jwk.ECKey.import_key(pem)
    if algorithm.startswith("Ed"):
        return jwk.OKPKey.import_key(pem)
    return jwk.RSAKey.import_key(pem)


def _read_pem(source: Path | bytes, what: str) -> bytes:
    if isinstance(source, bytes):
        return source
    try:
        return source.read_bytes()
    except OSError as exc:
        raise KeyError_(f"cannot read the {what} {source}: {exc.strerror or exc}") from exc


def load_signing_key(source: Path | bytes) -> SigningKey:
    """A PEM private key (PKCS#8 or traditional, unencrypted) from a file or bytes."""
    pem = _read_pem(source, "private key")
    try:
        private = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyError_(f"not an unencrypted PEM private key: {exc}") from None
    algorithm = _algorithms(private)[0]
    der = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    key = _jose_key(der, algorithm)
    return SigningKey(key, algorithm, key.thumbprint())


def load_verification_key(source: Path | bytes) -> VerificationKey:
    """A PEM public key (SubjectPublicKeyInfo), or the public half of a PEM private key."""
    pem = _read_pem(source, "public key")
    try:
        public = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError):
        try:
            public = serialization.load_pem_private_key(pem, password=None).public_key()
        except (ValueError, TypeError) as exc:
            raise KeyError_(f"not a PEM public key: {exc}") from None
    algorithms = _algorithms(public)
    der = public.public_bytes(serialization.Encoding.PEM,
                              serialization.PublicFormat.SubjectPublicKeyInfo)
    key = _jose_key(der, algorithms[0])
    return VerificationKey(key, algorithms, key.thumbprint())


def sign_compact(payload: bytes, key: SigningKey, typ: str) -> str:
    """A compact JWS over ``payload``."""
    header = {"alg": key.algorithm, "typ": typ, "kid": key.kid}
    return jws.serialize_compact(header, payload, key.key, algorithms=[key.algorithm])


def verify_compact(token: str | bytes, keys: Sequence[VerificationKey], typ: str,
                   what: str) -> bytes:
    """The payload of a compact JWS whose signature verifies with one of ``keys`` and
    whose header has ``typ``; :class:`ManifestError`-style ``AttestError`` otherwise."""
    if isinstance(token, bytes):
        token = token.decode("ascii", "replace")
    token = token.strip()
    if not keys:
        raise ManifestError(f"no trusted key is configured to verify the {what}")
    try:
        header = jws.extract_compact(token.encode()).headers()
    except (JoseError, ValueError) as exc:
        raise ManifestError(f"the {what} is not a compact JWS: {exc}") from None
    kid = header.get("kid")
    candidates = [k for k in keys if k.kid == kid] or list(keys)
    for candidate in candidates:
        if header.get("alg") not in candidate.algorithms:
            continue
        try:
            verified = jws.deserialize_compact(token, candidate.key,
                                               algorithms=list(candidate.algorithms))
        except (JoseError, ValueError):
            continue
        if verified.headers().get("typ") != typ:
            raise ManifestError(f"the {what}'s typ is {verified.headers().get('typ')!r}, "
                                f"not {typ!r}")
        return verified.payload
    raise ManifestError(f"the {what}'s signature does not verify with any trusted key "
                        f"(alg {header.get('alg')!r}, kid {kid!r})",
                        tip="It was altered, or signed by a key this verifier does not "
                        "trust.")


def sign_manifest(manifest: ReferenceManifest, key: SigningKey) -> str:
    """The manifest as a compact JWS signed with the image pipeline's key."""
    return sign_compact(manifest.payload(), key, MANIFEST_TYP)


def load_manifest(token: str | bytes, keys: Sequence[VerificationKey]) -> ReferenceManifest:
    """Verify a signed manifest with the trusted ``keys``, then parse it."""
    payload = verify_compact(token, keys, MANIFEST_TYP, "reference manifest")
    try:
        return ReferenceManifest.model_validate_json(payload)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '$'}: {err['msg']}"
                             for err in exc.errors()[:5])
        raise ManifestError(f"the signed manifest is malformed: {problems}") from None


# -- what an event measures ----------------------------------------------------------------

_VARIABLE_TYPES = {"EV_EFI_VARIABLE_DRIVER_CONFIG", "EV_EFI_VARIABLE_BOOT",
                   "EV_EFI_VARIABLE_BOOT2", "EV_EFI_VARIABLE_AUTHORITY"}
_IMAGE_TYPES = {"EV_EFI_BOOT_SERVICES_APPLICATION": "boot application",
                "EV_EFI_BOOT_SERVICES_DRIVER": "boot driver",
                "EV_EFI_RUNTIME_SERVICES_DRIVER": "runtime driver"}
_EXECUTABLE_TYPES = {"EV_S_CRTM_CONTENTS", "EV_S_CRTM_VERSION", "EV_POST_CODE",
                     "EV_POST_CODE2", "EV_CPU_MICROCODE", "EV_EFI_PLATFORM_FIRMWARE_BLOB",
                     "EV_EFI_PLATFORM_FIRMWARE_BLOB2", "EV_NONHOST_CODE",
                     "EV_EFI_SPDM_FIRMWARE_BLOB", "EV_COMPACT_HASH", *_IMAGE_TYPES}
_CODE_PCRS = {0, 2, 4, 9}
"""PC Client PCRs that measure code (firmware, option ROMs, boot loaders, files GRUB
loads); the others measure configuration."""


def _text(data: bytes) -> str | None:
    """Event data as text when it is printable ASCII or UTF-16LE."""
    for encoding in ("ascii", "utf-16-le"):
        try:
            text = data.decode(encoding).rstrip("\x00").strip()
        except UnicodeDecodeError:
            continue
        if text and text.isprintable():
            return text
    return None


def _variable_name(data: bytes) -> str | None:
    """UEFI_VARIABLE_DATA: GUID, UINT64 name length (CHAR16s), UINT64 data length, name."""
    if len(data) < 32:
        return None
    length = struct.unpack_from("<Q", data, 16)[0]
    if length > 256 or 32 + 2 * length > len(data):
        return None
    try:
        return data[32:32 + 2 * length].decode("utf-16-le").rstrip("\x00") or None
    except UnicodeDecodeError:
        return None


def _image_path(data: bytes) -> str | None:
    """The file path node of a UEFI_IMAGE_LOAD_EVENT's device path."""
    if len(data) < 32:
        return None
    length = struct.unpack_from("<Q", data, 24)[0]
    path = data[32:32 + min(length, len(data) - 32)]
    offset = 0
    while offset + 4 <= len(path):
        node_type, subtype, size = path[offset], path[offset + 1], int.from_bytes(
            path[offset + 2:offset + 4], "little")
        if size < 4 or node_type == 0x7F:
            return None
        if node_type == 0x04 and subtype == 0x04:
            try:
                return path[offset + 4:offset + size].decode("utf-16-le").rstrip("\x00") or None
            except UnicodeDecodeError:
                return None
        offset += size
    return None


def describe_event(event: Event) -> tuple[str, str | None]:
    """What ``event`` measures, as a stable label, and a readable summary of its data.

    The label does not carry versions (a new kernel is the same component with another
    digest); the summary does.
    """
    name = event.type_name
    text = _text(event.data)
    if name in _VARIABLE_TYPES:
        variable = _variable_name(event.data) or "?"
        if name == "EV_EFI_VARIABLE_AUTHORITY":
            return f"Secure Boot authority from {variable}", None
        if name == "EV_EFI_VARIABLE_DRIVER_CONFIG" and event.pcr == 7:
            return f"Secure Boot variable {variable}", None
        kind = "boot variable" if "BOOT" in name else "UEFI variable"
        return f"{kind} {variable}", None
    if name in _IMAGE_TYPES:
        path = _image_path(event.data)
        return (f"{_IMAGE_TYPES[name]} {path}" if path else _IMAGE_TYPES[name]), path
    if name == "EV_S_CRTM_VERSION":
        return "S-CRTM version", text
    if name == "EV_S_CRTM_CONTENTS":
        return "S-CRTM contents", text
    if name == "EV_CPU_MICROCODE":
        return "CPU microcode", text
    if name == "EV_EFI_PLATFORM_FIRMWARE_BLOB2" and event.data:
        size = event.data[0]
        description = _text(event.data[1:1 + size])
        return f"platform firmware blob {description}" if description else \
            "platform firmware blob", description
    if name == "EV_EFI_PLATFORM_FIRMWARE_BLOB":
        return "platform firmware blob", None
    if name == "EV_IPL" and text:
        if text.startswith("kernel_cmdline:"):
            return "kernel command line", text.partition(":")[2].strip()
        if text.startswith("grub_kernel_cmdline"):
            return "kernel command line", text.partition(" ")[2].strip()
        if text.startswith("grub_cmd:"):
            return "GRUB command", text.partition(":")[2].strip()
        return (f"file {text}" if event.pcr == 9 else "boot loader event"), text
    if name == "EV_SEPARATOR":
        return "separator", None
    if name in ("EV_POST_CODE", "EV_EFI_ACTION", "EV_ACTION") and text:
        return f"{'firmware code' if name == 'EV_POST_CODE' else 'action'}: {text}", None
    return name, text


def _aspect(event_type: str | None, pcr: int | None) -> Aspect:
    if event_type is not None:
        if event_type in _EXECUTABLE_TYPES:
            return "executables"
        if event_type == "EV_IPL":
            return "executables" if pcr == 9 else "configuration"
        return "configuration"
    return "executables" if pcr in _CODE_PCRS else "configuration"


def _labelled(events: Iterable[Event]) -> list[tuple[Event, str, str | None]]:
    """Each event with its label, numbered (``#2``…) where a PCR repeats a label."""
    described = [(event, *describe_event(event)) for event in events]
    totals: dict[tuple[int, str], int] = {}
    for event, label, _ in described:
        totals[(event.pcr, label)] = totals.get((event.pcr, label), 0) + 1
    seen: dict[tuple[int, str], int] = {}
    out = []
    for event, label, summary in described:
        key = (event.pcr, label)
        seen[key] = seen.get(key, 0) + 1
        out.append((event, f"{label} #{seen[key]}" if totals[key] > 1 else label, summary))
    return out


# -- creating a manifest ---------------------------------------------------------------------


def manifest_from_log(image: ImageRef, quoted: Mapping[str, Mapping[int, bytes]],
                      log: EventLog | None, *, pcrs: Sequence[int] = tuple(range(10)),
                      components: Sequence[Component] = (), description: str | None = None,
                      include_pcr_values: bool = True) -> ReferenceManifest:
    """A manifest pinning ``pcrs`` of a known-good boot: the quoted values of every
    quoted bank and, when a log is given, every event it extends into those PCRs.

    The caller must have checked that the quote verifies and the log replays to it
    (``vigil attest reference`` does); this function only copies values.
    """
    selected = sorted(set(pcrs))
    expected_pcrs = {bank: {i: values[i] for i in selected if i in values}
                     for bank, values in quoted.items()} if include_pcr_values else {}
    expected_pcrs = {bank: values for bank, values in expected_pcrs.items() if values}
    events: list[ExpectedEvent] = []
    event_pcrs: list[int] = []
    if log is not None:
        banks = [bank for bank in log.banks if bank in quoted] or list(log.banks)
        extended = [e for e in log.events if e.extended and e.pcr in selected]
        event_pcrs = sorted({e.pcr for e in extended})
        for event, label, summary in _labelled(extended):
            events.append(ExpectedEvent(pcr=event.pcr, type=event.type_name, component=label,
                                        digests={b: event.digests[b] for b in banks
                                                 if b in event.digests},
                                        data=summary))
    return ReferenceManifest(image=image, created_at=dt.datetime.now(dt.UTC),
                             description=description, pcrs=expected_pcrs,
                             event_pcrs=event_pcrs, events=events,
                             components=list(components))


# -- matching ------------------------------------------------------------------------------


class Difference(BaseModel):
    """One way the evidence differs from a manifest."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["pcr", "event-changed", "event-missing", "event-unexpected", "no-bank"]
    aspect: Aspect
    """Whether it concerns code that ran or configuration (the AR4SI claim it affects)."""
    pcr: int | None = None
    bank: str | None = None
    component: str | None = None
    """What the manifest expected there (or, for an unexpected event, what was found)."""
    event_type: str | None = None
    event_index: int | None = None
    """The event's position in the host's log."""
    expected: str | None = None
    """Expected digest or PCR value (hex), or a description."""
    actual: str | None = None
    """Found digest or PCR value (hex), or a description."""

    def reason(self) -> str:
        where = f"PCR {self.pcr}" if self.pcr is not None else ""
        event = ""
        if self.event_type is not None:
            at = f", event {self.event_index}" if self.event_index is not None else ""
            event = f" {self.component} ({self.event_type}{at})"
        bank = f" {self.bank}" if self.bank else ""
        if self.kind == "pcr":
            return f"{where}{bank}: expected {self.expected}, actual {self.actual}"
        if self.kind == "event-changed":
            return f"{where}{event}:{bank} digest expected {self.expected}, actual {self.actual}"
        if self.kind == "event-missing":
            return f"{where}{event}: expected event is missing (digest {self.expected})"
        if self.kind == "event-unexpected":
            return f"{where}{event}: unexpected event (digest {self.actual})"
        return f"{self.expected}; {self.actual}"


@dataclass(frozen=True, slots=True)
class Candidate:
    """How the evidence compares with one manifest."""

    manifest: ReferenceManifest
    differences: tuple[Difference, ...]


@dataclass(frozen=True, slots=True)
class MatchReport:
    """The outcome of step 5."""

    matched: ReferenceManifest | None
    """The approved image version the evidence matches; ``None`` when there is none."""
    closest: Candidate | None
    """When nothing matches: the manifest with the fewest differences."""
    candidates: tuple[Candidate, ...]

    @property
    def differences(self) -> tuple[Difference, ...]:
        return () if self.matched is not None or self.closest is None else \
            self.closest.differences


class ReferenceSet:
    """The approved images' manifests, every signature verified."""

    def __init__(self, manifests: Iterable[ReferenceManifest]) -> None:
        self.manifests = tuple(sorted(manifests, key=lambda m: (m.image.name, m.image.version)))

    @classmethod
    def load(cls, folder: Path, keys: Sequence[VerificationKey]) -> ReferenceSet:
        """Every ``*.jws`` in ``folder``; one bad signature fails the whole set."""
        try:
            paths = sorted(folder.glob("*.jws"))
        except OSError as exc:
            raise ManifestError(f"cannot list {folder}: {exc.strerror or exc}") from exc
        if not folder.is_dir():
            raise ManifestError(f"{folder} is not a folder of reference manifests")
        manifests = []
        for path in paths:
            try:
                with path.open("rb") as stream:
                    data = stream.read(MAX_MANIFEST_BYTES + 1)
            except OSError as exc:
                raise ManifestError(f"cannot read {path}: {exc.strerror or exc}") from exc
            if len(data) > MAX_MANIFEST_BYTES:
                raise ManifestError(f"{path} is larger than {MAX_MANIFEST_BYTES} bytes")
            try:
                manifests.append(load_manifest(data, keys))
            except ManifestError as exc:
                raise ManifestError(f"{path.name}: {exc.reason}", tip=exc.tip) from exc
        return cls(manifests)

    def match(self, quoted: Mapping[str, Mapping[int, bytes]], log: EventLog | None
              ) -> MatchReport:
        """Compare the attested PCRs and log with every manifest.

        ``quoted`` are the PCR values step 3 proved; ``log`` an event log step 4 proved
        replays to them (``None`` when the evidence has none). Events of PCRs the quote
        does not cover are not attested and are ignored.
        """
        quoted_pcrs = {index for values in quoted.values() for index in values}
        by_pcr: dict[int, list[tuple[Event, str, str | None]]] = {}
        if log is not None:
            extended = [e for e in log.events if e.extended and e.pcr in quoted_pcrs]
            for item in _labelled(extended):
                by_pcr.setdefault(item[0].pcr, []).append(item)
        candidates = tuple(Candidate(m, tuple(_compare(m, quoted, log, by_pcr)))
                           for m in self.manifests)
        for candidate in candidates:
            if not candidate.differences:
                return MatchReport(candidate.manifest, None, candidates)
        closest = min(candidates, key=lambda c: len(c.differences), default=None)
        return MatchReport(None, closest, candidates)


def _compare(manifest: ReferenceManifest, quoted: Mapping[str, Mapping[int, bytes]],
             log: EventLog | None, by_pcr: Mapping[int, list[tuple[Event, str, str | None]]]
             ) -> list[Difference]:
    differences: list[Difference] = []
    event_pcrs_differing: set[int] = set()
    if manifest.event_pcrs:
        differences.extend(_compare_events(manifest, quoted, log, by_pcr))
        event_pcrs_differing = {d.pcr for d in differences if d.pcr is not None}
    common = [bank for bank in manifest.pcrs if bank in quoted]
    if manifest.pcrs and not common:
        differences.append(Difference(
            kind="no-bank", aspect="configuration",
            expected=f"PCR values in bank {', '.join(manifest.pcrs)}",
            actual=f"the quote covers {', '.join(quoted) or 'no bank'}"))
    for bank in common:
        for index, value in sorted(manifest.pcrs[bank].items()):
            actual = quoted[bank].get(index)
            if actual == value or index in event_pcrs_differing:
                continue
            differences.append(Difference(
                kind="pcr", aspect=_aspect(None, index), pcr=index, bank=bank,
                expected=value.hex(), actual="not quoted" if actual is None else actual.hex()))
    return differences


def _compare_events(manifest: ReferenceManifest, quoted: Mapping[str, Mapping[int, bytes]],
                    log: EventLog | None,
                    by_pcr: Mapping[int, list[tuple[Event, str, str | None]]]
                    ) -> list[Difference]:
    if log is None:
        return [Difference(kind="no-bank", aspect="configuration",
                           expected=f"events for PCRs {manifest.event_pcrs}",
                           actual="the evidence has no event log")]
    banks = [b for b in log.banks if any(b in e.digests for e in manifest.events)]
    if manifest.events and not banks:
        return [Difference(kind="no-bank", aspect="configuration",
                           expected="event digests in bank "
                           f"{', '.join(sorted({b for e in manifest.events for b in e.digests}))}",
                           actual=f"the log has {', '.join(log.banks) or 'no bank'}")]
    primary = "sha256" if "sha256" in banks else (banks[0] if banks else "sha256")
    quoted_pcrs = {index for values in quoted.values() for index in values}
    expected_by_pcr: dict[int, list[ExpectedEvent]] = {}
    for expected_event in manifest.events:
        expected_by_pcr.setdefault(expected_event.pcr, []).append(expected_event)
    differences: list[Difference] = []
    for pcr in manifest.event_pcrs:
        expected = expected_by_pcr.get(pcr, [])
        if pcr not in quoted_pcrs:
            differences.append(Difference(kind="pcr", aspect=_aspect(None, pcr), pcr=pcr,
                                          expected=f"{len(expected)} events",
                                          actual="not quoted"))
            continue
        actual = by_pcr.get(pcr, [])
        a_keys = [(e.type_name, e.digests.get(primary)) for e, _, _ in actual]
        e_keys = [(x.type, x.digests.get(primary)) for x in expected]
        if a_keys == e_keys and all(_same_digests(x, e) for x, (e, _, _) in zip(
                expected, actual, strict=True)):
            continue
        matcher = difflib.SequenceMatcher(a=e_keys, b=a_keys, autojunk=False)
        for op, i1, i2, j1, j2 in matcher.get_opcodes():
            if op == "equal":
                for x, (e, label, _) in zip(expected[i1:i2], actual[j1:j2], strict=True):
                    differences.extend(_digest_differences(x, e, label))
                continue
            paired = min(i2 - i1, j2 - j1) if op == "replace" else 0
            for k in range(paired):
                x = expected[i1 + k]
                e, label, _ = actual[j1 + k]
                differences.extend(_digest_differences(x, e, label, primary_first=primary))
            for x in expected[i1 + paired:i2]:
                differences.append(Difference(
                    kind="event-missing", aspect=_aspect(x.type, pcr), pcr=pcr,
                    component=x.component, event_type=x.type,
                    expected=_digest_text(x.digests, primary)))
            for e, label, _ in actual[j1 + paired:j2]:
                differences.append(Difference(
                    kind="event-unexpected", aspect=_aspect(e.type_name, pcr), pcr=pcr,
                    component=label, event_type=e.type_name, event_index=e.index,
                    actual=_digest_text(e.digests, primary)))
    return differences


def _same_digests(expected: ExpectedEvent, event: Event) -> bool:
    return all(event.digests.get(bank, digest) == digest
               for bank, digest in expected.digests.items())


def _digest_text(digests: Mapping[str, bytes], primary: str) -> str:
    digest = digests.get(primary)
    if digest is None and digests:
        primary, digest = next(iter(digests.items()))
    return f"{primary}:{digest.hex()}" if digest is not None else "(none)"


def _digest_differences(expected: ExpectedEvent, event: Event, label: str, *,
                        primary_first: str | None = None) -> list[Difference]:
    """The banks in which ``event`` differs from ``expected`` (one Difference, in the
    primary bank when that one differs), or a type change."""
    if event.type_name != expected.type:
        return [Difference(kind="event-changed", aspect=_aspect(expected.type, event.pcr),
                           pcr=event.pcr, component=expected.component,
                           event_type=expected.type, event_index=event.index,
                           expected=f"{expected.type} {_digest_text(expected.digests, 'sha256')}",
                           actual=f"{event.type_name} {_digest_text(event.digests, 'sha256')}")]
    banks = [b for b in expected.digests if b in event.digests
             and event.digests[b] != expected.digests[b]]
    if not banks:
        return []
    bank = primary_first if primary_first in banks else banks[0]
    component = expected.component if expected.component == label else \
        f"{expected.component} (found: {label})"
    return [Difference(kind="event-changed", aspect=_aspect(expected.type, event.pcr),
                       pcr=event.pcr, bank=bank, component=component,
                       event_type=expected.type, event_index=event.index,
                       expected=expected.digests[bank].hex(), actual=event.digests[bank].hex())]
