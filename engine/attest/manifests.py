"""Step 5's reference values: signed reference manifests of approved host images.

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
PK/KEK/db/dbx, shim/GRUB/kernel, the kernel command line…, see
:func:`engine.attest.uefi_names.describe_event`). ``components`` is the image's component
list for the PVDB (:class:`engine.model.Component`).

The image pipeline signs the manifest as a JWS (compact serialization, ``joserfc``) with
its private key: ES256/ES384, Ed25519 or PS256, header ``typ`` ``vigil-reference+jws``
and ``kid`` the key's RFC 7638 thumbprint (:mod:`engine.keys`). :func:`load_manifest`
verifies the signature with a trusted public key *before* it reads a byte of the
payload. Matching evidence against manifests is :mod:`engine.attest.matching`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from engine.attest.errors import AttestError
from engine.attest.eventlog import EventLog
from engine.attest.uefi_names import label_events
from engine.keys import SignatureError, SigningKey, VerificationKey, sign_compact, verify_compact
from engine.model import Component, Hex, ImageRef

__all__ = [
    "MANIFEST_TYP",
    "MAX_MANIFEST_BYTES",
    "STEP_MANIFEST",
    "ExpectedEvent",
    "ManifestError",
    "ReferenceManifest",
    "load_manifest",
    "load_manifest_folder",
    "manifest_from_log",
    "sign_manifest",
]

STEP_MANIFEST = "5 reference manifest"
MANIFEST_TYP = "vigil-reference+jws"
MAX_MANIFEST_BYTES = 16 * 1024 * 1024


class ManifestError(AttestError):
    """A reference manifest cannot be read, or its signature does not verify."""

    def __init__(self, reason: str, *, tip: str | None = None) -> None:
        super().__init__(STEP_MANIFEST, reason, tip=tip)



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



# -- signing and reading -------------------------------------------------------------------


def sign_manifest(manifest: ReferenceManifest, key: SigningKey) -> str:
    """The manifest as a compact JWS signed with the image pipeline's key."""
    return sign_compact(manifest.payload(), key, MANIFEST_TYP)


def load_manifest(token: str | bytes, keys: Sequence[VerificationKey]) -> ReferenceManifest:
    """Verify a signed manifest with the trusted ``keys``, then parse it."""
    try:
        payload = verify_compact(token, keys, MANIFEST_TYP, "reference manifest")
    except SignatureError as exc:
        raise ManifestError(exc.reason, tip=exc.tip) from None
    try:
        return ReferenceManifest.model_validate_json(payload)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '$'}: {err['msg']}"
                             for err in exc.errors()[:5])
        raise ManifestError(f"the signed manifest is malformed: {problems}") from None


def load_manifest_folder(folder: Path, keys: Sequence[VerificationKey]
                         ) -> tuple[list[ReferenceManifest], list[tuple[str, str]]]:
    """Every ``*.jws`` in ``folder`` whose signature verifies with a trusted key, and the
    refused ones as (file name, reason): a manifest that does not verify (an unknown key,
    a bad signature, unreadable, too large) is never matched, and it does not stop the
    trusted ones from being used."""
    try:
        paths = sorted(folder.glob("*.jws"))
    except OSError as exc:
        raise ManifestError(f"cannot list {folder}: {exc.strerror or exc}") from exc
    if not folder.is_dir():
        raise ManifestError(f"{folder} is not a folder of reference manifests")
    manifests: list[ReferenceManifest] = []
    refused: list[tuple[str, str]] = []
    for path in paths:
        try:
            with path.open("rb") as stream:
                data = stream.read(MAX_MANIFEST_BYTES + 1)
        except OSError as exc:
            refused.append((path.name, f"cannot be read: {exc.strerror or exc}"))
            continue
        if len(data) > MAX_MANIFEST_BYTES:
            refused.append((path.name, f"larger than {MAX_MANIFEST_BYTES} bytes"))
            continue
        try:
            manifests.append(load_manifest(data, keys))
        except ManifestError as exc:
            refused.append((path.name, exc.reason))
    return manifests, refused


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
        for event, label, summary in label_events(extended):
            events.append(ExpectedEvent(pcr=event.pcr, type=event.type_name, component=label,
                                        digests={b: event.digests[b] for b in banks
                                                 if b in event.digests},
                                        data=summary))
    return ReferenceManifest(image=image, created_at=dt.datetime.now(dt.UTC),
                             description=description, pcrs=expected_pcrs,
                             event_pcrs=event_pcrs, events=events,
                             components=list(components))

