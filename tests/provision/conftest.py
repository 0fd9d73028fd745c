"""Real placements for the report tests: the offline snapshot PVDB (feeds/snapshot), the
default policy, attestation results signed as EARs by a verifier key, and a report
signing key."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from engine.attest import AttestationResult, TrustVector, VerifierId, sign_result
from engine.decide import (
    Decider,
    PatchedConfiguration,
    RequestFacts,
    VmShape,
    embedded_evaluator,
    load_directory,
)
from engine.keys import SigningKey, VerificationKey, load_signing_key, load_verification_key
from engine.model import Component, ImageRef
from engine.provision import Placement, decide_placement
from engine.pvdb import Pvdb
from tests.conftest import ROOT

SNAPSHOT = ROOT / "feeds" / "snapshot"
NOW = dt.datetime(2026, 9, 1, 12, 0, tzinfo=dt.UTC)
"""After every fact of the snapshot (its EPSS scores are of 2026-08-22): the placements
are decided with all of it known (an earlier time would leave out what was not yet)."""
KERNEL = Component(kind="kernel", vendor="linux", product="linux_kernel", version="6.6.30",
                   cpe="cpe:2.3:o:linux:linux_kernel:6.6.30:*:*:*:*:*:*:*")
XEN = Component(kind="hypervisor", vendor="xen", product="xen", version="4.17.3")
MICROCODE = Component(kind="microcode", vendor="intel", product="microcode", version="20240514")
IMAGE = ImageRef(name="hv-xen-dom0", version="2024.05.1")
PATCHED_READY = PatchedConfiguration.model_validate({
    "state": "ready", "image": {"name": "hv-xen-dom0", "version": "2024.07.1"},
    "attested": True, "attestation_status": "affirming"})


def write_ec_key(path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    private, public = path.with_suffix(".key.pem"), path.with_suffix(".pub.pem")
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


@dataclass(frozen=True)
class Keys:
    private: Path
    public: Path
    signing: SigningKey
    verification: VerificationKey


def _keys(path: Path) -> Keys:
    private, public = write_ec_key(path)
    return Keys(private, public, load_signing_key(private), load_verification_key(public))


@pytest.fixture(scope="session")
def verifier_keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return _keys(tmp_path_factory.mktemp("keys") / "verifier")


@pytest.fixture(scope="session")
def report_keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return _keys(tmp_path_factory.mktemp("keys") / "report")


@pytest.fixture(scope="session")
def other_keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return _keys(tmp_path_factory.mktemp("keys") / "other")


@pytest.fixture(scope="session")
def snapshot_pvdb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pvdb") / "pvdb.duckdb"
    with Pvdb.open(path) as db:
        db.ingest([str(SNAPSHOT)])
    return path


@pytest.fixture(scope="session")
def decider() -> Iterator[Decider]:
    policy = load_directory(ROOT / "engine" / "policies", ["vigil"])
    with Decider(embedded_evaluator("regopy", policy, timeout=5.0)) as d:
        yield d


@dataclass(frozen=True)
class Placed:
    """A placement and the EAR (compact JWT) its attestation result was read from."""

    placement: Placement
    ear: str


@pytest.fixture(scope="session")
def place(snapshot_pvdb: Path, decider: Decider, verifier_keys: Keys
          ) -> Callable[..., Placed]:
    """``place(components, patched=…, tenant=…)``: attest a host running ``components``
    (an EAR signed by the verifier key, verified back), then decide placing a VM on it."""
    from engine.attest import verify_result

    def run(components: list[Component], *, patched: PatchedConfiguration | None = None,
            tenant: str = "acme", host: str = "hv-042") -> Placed:
        result = AttestationResult.build(
            host_id=host, verifier=VerifierId(developer="vigil"),
            trust_vector=TrustVector(instance_identity=2, hardware=2, executables=3,
                                     configuration=2),
            failures=[], nonce=b"\x07" * 32, image=IMAGE, components=components,
            ak_name=None, inventory=None, issued_at=NOW - dt.timedelta(minutes=1))
        token = sign_result(result, verifier_keys.signing)
        verified = verify_result(token, verifier_keys.verification)
        request = RequestFacts(tenant=tenant, vm=VmShape(name="web-1", vcpus=2,
                                                         memory_mib=4096))
        with Pvdb.open(snapshot_pvdb, read_only=True) as pvdb:
            placement = decide_placement(decider, pvdb, request, verified, patched=patched,
                                         now=NOW)
        return Placed(placement, token)

    return run
