"""Fixtures of the rollout tests that use the image catalog: the image pipeline's key pair
and a catalog holding an image whose versions' manifests the default builder's
derivation signed; a skip when the software TPM is missing."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.attest import SigningKey, VerificationKey, load_signing_key, load_verification_key
from engine.attest.lab import ec_key_pem
from engine.images import Catalog, ImageRecord, boot_for, manifest_for
from engine.model import Component, ImageRef

IMAGE = "hv-kvm"
KERNEL = Component(kind="kernel", vendor="linux", product="linux_kernel", version="6.6.30")


@dataclass(frozen=True)
class Pipeline:
    """The image pipeline's signing key, as a file too (``VIGIL_IMAGES_SIGNING_KEY``)."""

    path: Path
    key: SigningKey
    public: VerificationKey


@pytest.fixture
def pipeline(tmp_path: Path) -> Pipeline:
    pem = ec_key_pem()
    path = tmp_path / "pipeline.pem"
    path.write_bytes(pem)
    return Pipeline(path, load_signing_key(pem), load_verification_key(pem))


def add_version(catalog: Catalog, pipeline: Pipeline, version: str,
                components: list[Component], *, parent: str | None = None,
                status: str = "approved", key: SigningKey | None = None) -> ImageRecord:
    """An image version whose manifest is what a host booting ``components`` measures."""
    from engine.attest import sign_manifest

    manifest = manifest_for(ImageRef(name=IMAGE, version=version), components,
                            boot_for(components))
    return catalog.create(IMAGE, version, components=components, actor="test",
                          parent_version=parent,
                          manifest=sign_manifest(manifest, key or pipeline.key),
                          status=status)  # type: ignore[arg-type]


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    with Catalog(tmp_path / "images.duckdb") as opened:
        yield opened


@pytest.fixture(scope="session")
def need_swtpm() -> None:
    for tool in ("swtpm", "swtpm_setup", "swtpm_ioctl"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (Debian packages swtpm and swtpm-tools; "
                        "scripts/setup.sh installs them)")
    try:
        import tpm2_pytss  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"tpm2-pytss cannot be imported ({exc}); run scripts/setup.sh")
