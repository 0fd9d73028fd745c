"""The evidence wire format: what the host agent (``vigil agent evidence``,
:mod:`engine.attest.agent`) sends and the verifier appraises.

The evidence file is JSON (``schema`` ``vigil.evidence/1``). Binary fields are base64
(RFC 4648 §4, with padding); digests are lowercase hex::

    {
      "schema": "vigil.evidence/1",
      "host_id": "hv-042",                  # the host as enrolled with the verifier
      "collected_at": "2026-05-01T12:00:00Z",
      "nonce": "<base64>",                  # the verifier's nonce, as passed to TPM2_Quote
      "ak_public": "<base64>",              # TPM2B_PUBLIC of the AK that signed
      "quote": {"attest": "<base64>",       # TPM2B_ATTEST returned by TPM2_Quote
                "signature": "<base64>"},   # TPMT_SIGNATURE
      "pcrs": {"sha256": {"0": "<hex>", …}, "sha1": {…}},   # the quoted PCRs, as read
      "eventlog": "<base64>" | null,        # binary_bios_measurements, as read
      "inventory": {"bios_vendor": …, "bios_version": …, "bios_date": …,
                    "system_vendor": …, "product_name": …, "microcode": "0xf0",
                    "kernel_release": …, "hypervisor": "kvm",
                    "hypervisor_version": …, "extra": {…}}
    }

Nothing in it is trusted as sent: the verifier uses its own record of the host's AK,
accepts ``pcrs`` only if they hash to the quote's ``pcrDigest``, the event log only if it
replays to the quoted PCRs, and the inventory only as what the host *reports*.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)

from engine.attest.errors import AttestError
from engine.errors import NotFoundError
from engine.model import B64, Hex

__all__ = ["MAX_EVIDENCE_BYTES", "Evidence", "EvidenceError", "Inventory", "QuoteBlob"]

STEP_EVIDENCE = "0 evidence"
MAX_EVIDENCE_BYTES = 64 * 1024 * 1024
"""The largest evidence file :meth:`Evidence.load` reads."""


class EvidenceError(AttestError):
    """An evidence document cannot be read."""

    def __init__(self, reason: str, *, tip: str | None = None) -> None:
        super().__init__(STEP_EVIDENCE, reason, tip=tip)


class QuoteBlob(BaseModel):
    """A TPM2_Quote's two outputs, as the TPM marshalled them."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    attest: B64
    """TPM2B_ATTEST (or a bare TPMS_ATTEST)."""
    signature: B64
    """TPMT_SIGNATURE."""


class Inventory(BaseModel):
    """What the host reports about itself. Not attested: the verifier passes it on as
    reported, next to the components of the image the evidence matched."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    bios_vendor: str | None = None
    bios_version: str | None = None
    bios_date: str | None = None
    system_vendor: str | None = None
    product_name: str | None = None
    microcode: str | None = None
    """The CPU microcode revision (``/proc/cpuinfo``), e.g. ``0xf0``; the lowest one if
    the CPUs disagree."""
    kernel_release: str | None = None
    hypervisor: str | None = None
    """``kvm``, ``xen``… or ``None`` when the host is no hypervisor."""
    hypervisor_version: str | None = None
    extra: dict[str, str] = {}


class Evidence(BaseModel):
    """One host's attestation evidence (see the module docstring for the JSON)."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    schema_: Literal["vigil.evidence/1"] = Field(default="vigil.evidence/1", alias="schema")
    host_id: str = Field(min_length=1, max_length=256)
    collected_at: dt.datetime
    nonce: B64
    ak_public: B64
    quote: QuoteBlob
    pcrs: dict[str, dict[int, Hex]]
    """Bank name -> PCR index -> value, for exactly the PCRs the quote covers."""
    eventlog: B64 | None = None
    inventory: Inventory = Inventory()

    @field_validator("pcrs")
    @classmethod
    def _pcr_indexes(cls, value: dict[str, dict[int, bytes]]) -> dict[str, dict[int, bytes]]:
        for bank, values in value.items():
            for index in values:
                if not 0 <= index < 32:
                    raise ValueError(f"{bank}: PCR index {index} is out of range")
        return value

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True, indent=2).encode() + b"\n"

    @classmethod
    def from_json(cls, data: bytes | str) -> Evidence:
        """Parse an evidence document; :class:`EvidenceError` names the bad field."""
        try:
            return cls.model_validate_json(data)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '$'}: {err['msg']}"
                                 for err in exc.errors()[:5])
            raise EvidenceError(f"not a vigil.evidence/1 document: {problems}") from None

    @classmethod
    def load(cls, path: Path) -> Evidence:
        try:
            with path.open("rb") as stream:
                data = stream.read(MAX_EVIDENCE_BYTES + 1)
        except FileNotFoundError:
            raise NotFoundError(f"evidence file {path} does not exist") from None
        except OSError as exc:
            raise EvidenceError(f"cannot read {path}: {exc.strerror or exc}") from exc
        if len(data) > MAX_EVIDENCE_BYTES:
            raise EvidenceError(f"{path} is larger than {MAX_EVIDENCE_BYTES} bytes")
        if not data.strip():
            raise EvidenceError(f"{path} is empty")
        return cls.from_json(data)

    def dump(self, path: Path) -> None:
        path.write_bytes(self.to_json())
