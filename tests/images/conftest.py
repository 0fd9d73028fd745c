"""Fixtures of the image part: a catalog holding an approved base image whose manifest
the default builder's derivation signed, and the image pipeline's key pair."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from engine.attest import (
    SigningKey,
    VerificationKey,
    load_signing_key,
    load_verification_key,
    sign_manifest,
)
from engine.images import Catalog, ImageRecord, boot_for, manifest_for
from engine.model import Component, ImageRef

BASE_COMPONENTS = [
    Component(kind="firmware", vendor="tianocore", product="edk2", version="2024.02"),
    Component(kind="microcode", vendor="intel", product="microcode", version="20240312"),
    Component(kind="kernel", vendor="linux", product="linux_kernel", version="6.1.76"),
    Component(kind="hypervisor", vendor="qemu", product="qemu", version="8.2.2"),
]


@dataclass
class Pipeline:
    pem: bytes
    key: SigningKey
    public: VerificationKey


@pytest.fixture
def pipeline(tmp_path: Path) -> Pipeline:
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    (tmp_path / "pipeline.pem").write_bytes(pem)
    return Pipeline(pem, load_signing_key(pem), load_verification_key(pem))


@pytest.fixture
def catalog(tmp_path: Path) -> Iterator[Catalog]:
    with Catalog(tmp_path / "images.duckdb") as opened:
        yield opened


@pytest.fixture
def base(catalog: Catalog, pipeline: Pipeline) -> ImageRecord:
    image = ImageRef(name="hv", version="2026.05.1")
    manifest = manifest_for(image, BASE_COMPONENTS, boot_for(BASE_COMPONENTS))
    return catalog.create("hv", "2026.05.1", components=BASE_COMPONENTS, actor="import",
                          manifest=sign_manifest(manifest, pipeline.key), status="approved",
                          reason="imported")


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
