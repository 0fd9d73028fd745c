"""The service writes its decision log with the configured audit signing key: signed
checkpoints at the configured cadence, and every admission decided at once is logged."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from engine.api import create_app
from engine.audit.verify import verify_log
from engine.config import load_settings
from engine.decide import DecisionLog
from engine.keys import load_verification_key
from tests.api.conftest import Clock, review, run_server
from tests.api.world import NOW, bearer, build_world, write_key
from tests.tools import HANG_GUARD


def _vmi(n: int) -> dict[str, object]:
    return {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
            "metadata": {"name": f"vm{n}", "namespace": "acme", "annotations": {
                "vigil.io/requested-image": "hv-clean@2024.06.1"}},
            "spec": {"domain": {"cpu": {"cores": 2}, "memory": {"guest": "1Gi"}}}}


def test_a_service_written_log_has_signed_checkpoints(tmp_path: Path, pvdb: Path) -> None:
    world = build_world(tmp_path / "world", pvdb=pvdb)
    private, public = write_key(tmp_path / "audit")
    settings = load_settings(**world.settings, audit_signing_key=private,
                             audit_checkpoint_every=3)
    count = 12
    for url in run_server(create_app(settings, clock=Clock(NOW))):
        headers = bearer(world.tokens["kube-apiserver"])

        def admit(n: int, url: str = url, headers: dict[str, str] = headers) -> bool:
            r = httpx.post(f"{url}/v1/admission", json=review(_vmi(n)), headers=headers,
                           timeout=HANG_GUARD)
            assert r.status_code == 200, r.text
            res = r.json()["response"]
            assert res["allowed"], res
            return True

        with ThreadPoolExecutor(6) as pool:  # decided at once: logged in groups
            answers = list(pool.map(admit, range(count)))
        assert all(answers)
    with DecisionLog(settings.decision_log, read_only=True) as log:
        rows = list(log.rows())
        decisions = [r for r in rows if r.path == "vigil/decision/result"]
        assert len(decisions) == count  # every admission logged, none twice
        assert len({r.decision_id for r in rows}) == len(rows)
        assert [r.seq for r in rows] == list(range(1, len(rows) + 1))
        checkpoints = log.checkpoints()
        assert [c.size for c in checkpoints if c.kind == "periodic"] == list(
            range(3, len(rows) + 1, 3))
        verified = verify_log(log, [load_verification_key(public)], expect_every=3)
    assert verified.ok, verified.to_json()["problems"]
    assert verified.covered_to == len(rows) - len(rows) % 3
