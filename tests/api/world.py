"""A small provisioning world on disk, built by the tests (no shared data needed): a PVDB
whose findings give each verdict, a fleet of five hosts, their signed attestation
results, an image catalog, keys and tokens.

At :data:`NOW` (2024-07-01) the default policy decides, per host:

* ``hv-admit`` (kernel 6.12.30, image hv-clean 2024.06.1): admit, nothing affects it;
* ``hv-delay`` (kernel 6.6.30, hv-old 2024.05.1): delay, CVE-2099-0001 (CVSS 7.8) is
  fixed on the 6.9 branch (6.9.8, released 2024-06-27) but not yet on 6.6, whose next
  release is projected from its weekly cadence, and no patched version of hv-old exists;
* ``hv-patch`` (kernel 6.6.30, hv-mid 2024.05.1): patch, the catalog holds hv-mid
  2024.05.2 approved, which ``hv-patched`` runs;
* ``hv-reject`` (kernel 6.1.90, hv-lts 2024.05.1): reject, CVE-2099-0002 is KEV-listed
  and hv-lts has no patched version.

:func:`build_world` writes it under a folder for any ``now`` (the results are issued a
minute before it); ``settings`` are the ``load_settings`` overrides that point at it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from engine.api import TokenStore
from engine.attest import AttestationResult, TrustVector, VerifierId, sign_result
from engine.fleet import Fleet, FleetSnapshot, Host
from engine.images import Catalog
from engine.keys import load_signing_key
from engine.model import Component, ImageRef
from engine.pvdb import Pvdb
from tests.pvdb.records import cve5_record, kernel_affected, write_json

NOW = dt.datetime(2024, 7, 1, 12, 0, tzinfo=dt.UTC)
HIGH = "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H"


def kernel(version: str) -> Component:
    return Component(kind="kernel", vendor="linux", product="linux_kernel", version=version)


HOSTS: dict[str, tuple[ImageRef, str]] = {
    "hv-admit": (ImageRef(name="hv-clean", version="2024.06.1"), "6.12.30"),
    "hv-delay": (ImageRef(name="hv-old", version="2024.05.1"), "6.6.30"),
    "hv-patch": (ImageRef(name="hv-mid", version="2024.05.1"), "6.6.30"),
    "hv-patched": (ImageRef(name="hv-mid", version="2024.05.2"), "6.12.30"),
    "hv-reject": (ImageRef(name="hv-lts", version="2024.05.1"), "6.1.90"),
}


def write_key(path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    private, public = path.with_suffix(".key.pem"), path.with_suffix(".pub.pem")
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


def build_pvdb(path: Path) -> Path:
    feed = path.parent / "feed"
    write_json(feed / "CVE-2099-0001.json", cve5_record(
        "CVE-2099-0001", affected=kernel_affected("6.4", ["6.9.8"], mainline="6.10"),
        metrics=[{"cvssV3_1": {"vectorString": HIGH}}]))
    write_json(feed / "CVE-2099-0002.json", cve5_record(
        "CVE-2099-0002", affected=kernel_affected("6.1", ["6.1.200"], mainline="6.2"),
        metrics=[{"cvssV3_1": {"vectorString": HIGH}}]))
    write_json(feed / "linux-kernel.json", {"versions": {v: {"name": v, "date": day} for v, day in [
        ("6.6.30", "2024-05-02"), ("6.6.31", "2024-05-17"), ("6.6.32", "2024-05-25"),
        ("6.6.33", "2024-06-12"), ("6.6.34", "2024-06-16"), ("6.6.35", "2024-06-21"),
        ("6.6.36", "2024-06-27"), ("6.9.8", "2024-06-27"), ("6.1.90", "2024-05-02"),
        ("6.1.200", "2025-01-01"), ("6.12.30", "2025-05-22"), ("6.10", "2024-07-14"),
        ("6.2", "2023-02-19")]}})
    write_json(feed / "kev.json", {
        "title": "KEV", "catalogVersion": "2024.07.01",
        "dateReleased": "2024-07-01T00:00:00.000Z", "count": 1,
        "vulnerabilities": [{"cveID": "CVE-2099-0002", "vendorProject": "Linux",
                             "product": "Kernel", "vulnerabilityName": "test",
                             "dateAdded": "2024-06-20", "dueDate": "2024-07-10",
                             "knownRansomwareCampaignUse": "Unknown",
                             "requiredAction": "patch", "shortDescription": "test",
                             "notes": ""}]})
    with Pvdb.open(path) as db:
        db.ingest([str(feed)])
    return path


@dataclass
class World:
    folder: Path
    settings: dict[str, Any]
    tokens: dict[str, str]
    report_public: Path
    verifier_private: Path
    verifier_public: Path
    now: dt.datetime
    extra: dict[str, Any] = field(default_factory=dict)

    def write_result(self, host: str, *, issued_at: dt.datetime | None = None) -> str:
        image, version = HOSTS[host]
        result = AttestationResult.build(
            host_id=host, verifier=VerifierId(developer="vigil"),
            trust_vector=TrustVector(instance_identity=2, hardware=2, executables=3,
                                     configuration=2),
            failures=[], nonce=b"\x07" * 32, image=image, components=[kernel(version)],
            ak_name=None, inventory=None,
            issued_at=issued_at or self.now - dt.timedelta(minutes=1))
        token = sign_result(result, load_signing_key(self.verifier_private))
        (self.folder / "results" / f"{host}.jwt").write_text(token)
        return token

    def add_patched_version(self, name: str, parent: str, version: str) -> None:
        """An approved patched version of ``name@parent`` in the catalog."""
        with Catalog(self.folder / "images.duckdb") as catalog:
            if catalog.find(name, parent) is None:
                catalog.create(name, parent, components=[kernel("6.6.30")], actor="test",
                               manifest="signed-manifest", status="approved")
            catalog.create(name, version, components=[kernel("6.12.30")], actor="test",
                           parent_version=parent, manifest="signed-manifest",
                           status="approved")


def build_world(folder: Path, *, now: dt.datetime = NOW, pvdb: Path | None = None) -> World:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results").mkdir(exist_ok=True)
    verifier_private, verifier_public = write_key(folder / "verifier")
    report_private, report_public = write_key(folder / "report")
    db = pvdb or build_pvdb(folder / "pvdb" / "pvdb.duckdb")
    hosts = tuple(Host(id=h, group="rack-a", vcpus=16, memory_mib=65536,
                       image_version=image.version, labels={"zone": "a"})
                  for h, (image, _) in HOSTS.items())
    with Fleet.open(folder / "fleet.duckdb") as fleet:
        fleet.replace(FleetSnapshot(hosts=hosts, vms=()), source="test")
    settings: dict[str, Any] = {
        "db": db, "decision_log": folder / "decisions.duckdb",
        "fleet_db": folder / "fleet.duckdb", "images_db": folder / "images.duckdb",
        "predict_db": folder / "predict.duckdb", "requests_db": folder / "requests.duckdb",
        "tokens_db": folder / "tokens.sqlite3", "attest_results": folder / "results",
        "attest_result_verification_key": verifier_public,
        "report_signing_key": report_private, "attest_source": "cached",
        "decision_timeout": 60.0, "admission_timeout": 60.0,
        "rollout_db": folder / "rollouts.duckdb", "attest_db": folder / "attest.sqlite3",
    }
    world = World(folder, settings, {}, report_public, verifier_private, verifier_public, now)
    for host in HOSTS:
        world.write_result(host)
    world.add_patched_version("hv-mid", "2024.05.1", "2024.05.2")
    with TokenStore(folder / "tokens.sqlite3") as tokens:
        for name, role, tenant in (("ops", "admin", None), ("acme", "tenant", "acme"),
                                   ("globex", "tenant", "globex"),
                                   ("audit", "auditor", None),
                                   ("kube-apiserver", "service", None)):
            world.tokens[name], _ = tokens.create(name, role, tenant=tenant)
    return world


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
