"""regorus (the default) and rego-cpp decide the same documents the same way.

The Rego unit tests run on regorus; these tests hold rego-cpp to the same answers on
documents that reach every rule of the default policy and of the site example: each
verdict, every reason, warning and obligation, with and without a patched configuration,
attestation failures, tenant requests and undetermined vulnerabilities.
"""

from __future__ import annotations

import copy
import itertools
import json
from typing import Any

import pytest

from engine.decide.bundle import load_directory
from engine.decide.evaluators import Evaluator, embedded_evaluator
from tests.decide.conftest import PATCHED_READY, POLICIES, VULN_IN_WINDOW, document

DAY_NS = 86_400 * 10**9
NOW_NS = 1767226200000000000


def _vulnerability(i: int) -> dict[str, Any]:
    """The i-th of a mix: KEV-listed, high, low, unscored, EPSS-only, fix before, in and
    after the window, vendor and estimated dates, a component index out of range."""
    v = copy.deepcopy(VULN_IN_WINDOW)
    days = [3, 9, 45, -2, None, 20, 120, 1, None, 28, 30, 31][i % 12]
    v["id"] = f"CVE-2026-{1000 + i}"
    v["component"] = i % 3
    v["max_cvss"] = [9.8, 8.1, 7.5, 6.5, 4.3, 7.0, 5.0, 8.8, None, 9.1, 6.9, 10.0][i % 12]
    v["kev"] = ({"date_added": "2025-11-01", "due_date": None, "known_ransomware_use": False}
                if i % 7 == 3 else None)
    v["epss"] = {"score": [0.01, 0.5, 0.09, 0.1][i % 4], "percentile": 0.5,
                 "date": "2026-01-01"} if i % 5 else None
    availability = v["fix"]["availability"]
    if days is None:
        v["fix"]["status"] = "no_fix"
        availability.update(date=None, date_ns=None, days_from_now=None, basis="none",
                            confidence=None)
    else:
        availability.update(date_ns=NOW_NS + days * DAY_NS, days_from_now=days,
                            basis="estimated" if i % 3 else "vendor",
                            confidence=0.66 if i % 3 else 1.0)
    return v


COMPONENTS = [
    {"kind": "kernel", "vendor": "linux", "product": "linux_kernel", "version": "6.6.30"},
    {"kind": "hypervisor", "vendor": "qemu", "product": "qemu", "version": "8.2.2"},
]

PATCHED = {
    "none": {"state": "none", "image": None, "attested": False, "attestation_status": None},
    "preparing": {"state": "preparing", "image": {"name": "hv-base", "version": "1.3.0"},
                  "attested": False, "attestation_status": None},
    "ready": PATCHED_READY,
}


def _documents() -> list[tuple[str, dict[str, Any]]]:
    docs: list[tuple[str, dict[str, Any]]] = []
    for n, patched in itertools.product((0, 1, 4, 12, 30), PATCHED):
        doc = document(vulnerabilities=[_vulnerability(i) for i in range(n)],
                       patched_configuration=PATCHED[patched])
        doc["host"]["components"] = COMPONENTS
        if n == 4:
            doc["undetermined"] = [{"id": "CVE-2026-9000", "component": 1,
                                    "reason": "rpm and semver ranges"}]
        docs.append((f"{n} vulnerabilities, patched configuration {patched}", doc))
    stale = document()
    stale["host"]["attestation"]["age_seconds"] = 999_999
    docs.append(("stale attestation", stale))
    failing = document()
    failing["host"]["attestation"].update(status="contraindicated", failures=[
        {"step": "pcr_replay", "reason": "PCR 4 differs from the event log"}])
    docs.append(("contraindicated attestation", failing))
    missing = document()
    missing["host"]["attestation"].update(status="none", issued_at=None, issued_at_ns=None,
                                          age_seconds=None)
    docs.append(("no attestation", missing))
    for met_host, met_patched, patched in itertools.product((True, False), (True, False),
                                                             ("none", "ready")):
        doc = document(patched_configuration=PATCHED[patched])
        doc["request"].update(requested_patch_level="1.3.0", patch_level_met={
            "host": met_host, "patched_configuration": met_patched})
        docs.append((f"patch level met by host {met_host}, patched {met_patched}, "
                     f"{patched}", doc))
    for image, patched in itertools.product(("1.2.0", "1.3.0", "9.9.9"), ("none", "ready")):
        doc = document(patched_configuration=PATCHED[patched])
        doc["request"]["requested_image"] = {"name": "hv-base", "version": image}
        docs.append((f"requested image {image}, patched {patched}", doc))
    return docs


DOCUMENTS = _documents()


def _normal(value: Any) -> str:
    """A decision with its sets (reasons, warnings, obligations) in a fixed order."""
    return json.dumps({k: sorted(json.dumps(i, sort_keys=True) for i in v)
                       if isinstance(v, list) else v for k, v in value.items()},
                      sort_keys=True, indent=1)


@pytest.fixture(scope="module", params=[["vigil"], ["vigil", "site"]], ids=["default", "site"])
def evaluators(request: pytest.FixtureRequest) -> dict[str, Evaluator]:
    policy = load_directory(POLICIES, request.param)
    made = {name: embedded_evaluator(name, policy, timeout=None)
            for name in ("regorus", "regopy")}
    yield made
    for evaluator in made.values():
        evaluator.close()


@pytest.mark.parametrize(("label", "doc"), DOCUMENTS, ids=[d[0] for d in DOCUMENTS])
def test_both_evaluators_decide_alike(evaluators: dict[str, Evaluator], label: str,
                                      doc: dict[str, Any]) -> None:
    regorus = evaluators["regorus"].evaluate(doc)
    regopy = evaluators["regopy"].evaluate(doc)
    assert regorus.defined and regopy.defined, label
    assert _normal(regorus.value) == _normal(regopy.value), label


def test_the_documents_reach_every_verdict_and_rule(evaluators: dict[str, Evaluator]) -> None:
    """The parity above means something only if the documents exercise the policy."""
    verdicts: set[str] = set()
    rules: set[str] = set()
    obligations: set[str] = set()
    for _, doc in DOCUMENTS:
        value = evaluators["regorus"].evaluate(doc).value
        verdicts.add(value["verdict"])
        rules.update(f["rule"] for f in value["reasons"] + value["warnings"])
        obligations.update(o["type"] for o in value["obligations"])
    site = "site" in evaluators["regorus"].policy.roots  # type: ignore[attr-defined]
    if site:  # the site rule turns the delays (CVSS >= 9 among them) into rejects
        assert verdicts == {"admit", "patch", "reject"}
        assert "critical_cvss_unpatched" in rules
    else:
        assert verdicts == {"admit", "patch", "delay", "reject"}
        assert "fix_expected_within_window" in rules
    assert {"kev_without_patched_configuration", "patched_configuration_ready",
            "fix_date_estimated", "no_fix_within_window",
            "vulnerability_tolerated", "vulnerability_undetermined",
            "attestation_not_affirming", "attestation_stale", "requested_patch_level_unmet",
            "requested_patch_level_needs_patched_configuration", "requested_image_unmet",
            "requested_image_needs_patched_configuration"} <= rules
    assert obligations == ({"patch_host", "place_on_image"} if site else
                           {"patch_host", "place_on_image", "recheck_at",
                            "prepare_patched_configuration"})
