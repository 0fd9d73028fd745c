"""Fixtures for the decision tests: keys, input documents, the source policies, the
in-process evaluators."""

from __future__ import annotations

import copy
import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from engine.decide import EMBEDDED, Evaluator, embedded_evaluator, load_directory
from tests.tools import HANG_GUARD

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ROOT / "engine" / "policies"
NOW = dt.datetime(2026, 1, 1, 0, 10, tzinfo=dt.UTC)


def _write_key(path: Path, key: Any) -> tuple[Path, Path]:
    private = path.with_suffix(".key.pem")
    public = path.with_suffix(".pub.pem")
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                          serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


@pytest.fixture(scope="session")
def rsa_keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return _write_key(tmp_path_factory.mktemp("keys") / "rsa",
                      rsa.generate_private_key(public_exponent=65537, key_size=2048))


@pytest.fixture(scope="session")
def other_rsa_keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return _write_key(tmp_path_factory.mktemp("keys") / "other",
                      rsa.generate_private_key(public_exponent=65537, key_size=2048))


@pytest.fixture(scope="session")
def ec_keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return _write_key(tmp_path_factory.mktemp("keys") / "ec",
                      ec.generate_private_key(ec.SECP256R1()))


VULN_IN_WINDOW: dict[str, Any] = {
    "id": "CVE-2026-0001", "component": 0, "title": "t", "max_cvss": 8.1, "cvss": [],
    "kev": None, "epss": None,
    "fix": {"status": "fixed", "closing_version": "6.6.31", "advisories": [], "patch_ids": [],
            "availability": {"date": "2026-01-10", "date_ns": 1768003200000000000,
                             "days_from_now": 9, "basis": "vendor", "confidence": 1.0}},
}

BASE: dict[str, Any] = {
    "schema_version": 1,
    "request": {"tenant": "acme", "vm": {"name": "web-1", "vcpus": 2, "memory_mib": 4096},
                "requested_patch_level": None, "requested_image": None,
                "patch_level_met": None},
    "host": {"id": "hv-01",
             "attestation": {"status": "affirming", "issued_at": "2026-01-01T00:00:00Z",
                             "issued_at_ns": 1767225600000000000, "age_seconds": 600,
                             "verifier_id": "vigil",
                             "image": {"name": "hv-base", "version": "1.2.0"},
                             "failures": []},
             "components": [{"kind": "kernel", "vendor": "linux", "product": "linux_kernel",
                             "version": "6.6.30"}]},
    "vulnerabilities": [],
    "undetermined": [],
    "patched_configuration": {"state": "none", "image": None, "attested": False,
                              "attestation_status": None},
    "decision_time": {"rfc3339": "2026-01-01T00:10:00Z", "ns": 1767226200000000000},
}


def document(**changes: Any) -> dict[str, Any]:
    """A copy of the base input with top-level fields replaced."""
    doc = copy.deepcopy(BASE)
    doc.update(copy.deepcopy(changes))
    return doc


PATCHED_READY = {"state": "ready", "image": {"name": "hv-base", "version": "1.3.0"},
                 "attested": True, "attestation_status": "affirming"}


@pytest.fixture(scope="module", params=EMBEDDED)
def embedded(request: pytest.FixtureRequest) -> Evaluator:
    """Each in-process evaluator in turn: regorus (the default) and rego-cpp (its timeout
    is a hang guard: these decisions never legitimately take it)."""
    return embedded_evaluator(request.param, load_directory(POLICIES, ["vigil"]),
                              timeout=HANG_GUARD)
