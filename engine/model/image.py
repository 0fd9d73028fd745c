"""Host image identity: a name and a version, as reference manifests, attestation
results, the image catalog and the policy input name an approved host image."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ImageRef(BaseModel):
    """An approved host image version."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    version: str = Field(min_length=1)

    def __str__(self) -> str:
        return f"{self.name} {self.version}"
