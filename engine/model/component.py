"""What a host runs: the component model every part shares.

The PVDB answers questions about components, reference manifests and attestation
results carry them, the image catalog lists them per image version, and the policy
input names them. This module depends on pydantic only, so any part can import it
without loading a database or a TPM stack.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Component(BaseModel):
    """One component of a host: firmware, microcode, hypervisor, kernel, a package…"""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str = Field(description="firmware, bmc, microcode, hypervisor, kernel, os-package, …")
    vendor: str | None = Field(default=None, description="Vendor name as a CPE would give it")
    product: str | None = Field(default=None, description="Product or package name")
    version: str = Field(description="The version the host runs, in the vendor's own scheme")
    cpe: str | None = Field(default=None, description="CPE 2.3 name, when known")
    purl: str | None = Field(default=None, description="Package URL, when known")

    @model_validator(mode="after")
    def _named(self) -> Component:
        if not (self.cpe or self.purl or (self.vendor and self.product)):
            raise ValueError("a component needs vendor and product, a cpe, or a purl")
        if not self.version.strip():
            raise ValueError("version must not be empty")
        return self

    @property
    def label(self) -> str:
        if self.purl:
            return self.purl
        if self.vendor and self.product:
            return f"{self.vendor}/{self.product}@{self.version}"
        return f"{self.cpe}@{self.version}"
