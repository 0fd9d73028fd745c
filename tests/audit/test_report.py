"""The compliance report checked against a history built for it: placements over four
simulated weeks with a feed update between them, a delay whose fix then ships, a
vulnerability published after VMs were placed (exposure discovered after the fact), a
patched image made, attested, approved and targeted."""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
import shutil
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

import pytest

from engine.attest import AttestationResult, TrustVector, VerifierId, load_signing_key, sign_result
from engine.decide import (
    Decider,
    DecisionLog,
    PatchedConfiguration,
    RequestFacts,
    VmShape,
    build_input,
)
from engine.images import Catalog
from engine.model import Component, ImageRef
from engine.pvdb import Availability, AvailabilityBasis, Pvdb
from tests.clirun import vigil
from tests.decide.conftest import POLICIES
from tests.pvdb.records import cve5_record, kernel_affected, write_json

HIGH = "CVSS:3.1/AV:L/AC:L/PR:L/UI:N/S:U/C:H/I:H/A:H"
LOW = "CVSS:3.1/AV:L/AC:H/PR:H/UI:N/S:U/C:L/I:N/A:N"
A, B = "CVE-2099-1001", "CVE-2099-2002"
W1 = dt.datetime(2026, 3, 9, 10, 0, tzinfo=dt.UTC)
W2 = W1 + dt.timedelta(weeks=1)
W3 = W1 + dt.timedelta(weeks=2)
PREDICTED = dt.date(2026, 3, 19)
SHIPPED = dt.date(2026, 3, 20)
B_PUBLISHED = "2026-03-18T00:00:00.000Z"

HOSTS = {
    "hv-1": ("hv-base", "1.0", "6.6.30"),
    "hv-2": ("hv-old", "2.0", "6.1.100"),
    "hv-3": ("hv-new", "3.0", "6.12.10"),
}


class Predictor:
    """An estimator that predicts A's fix on the 6.6 line for 2026-03-19."""

    cache_key: Hashable = "test-predictor"

    def availability(self, product: tuple[str, str], version: str, vuln_id: str,
                     fixed_dates: Mapping[str, dt.date]) -> Availability | None:
        if vuln_id != A or not version.startswith("6.6."):
            return None
        return Availability(date=PREDICTED, basis=AvailabilityBasis.ESTIMATED,
                            source="test predictor", confidence=0.8,
                            interval=(PREDICTED - dt.timedelta(days=2),
                                      PREDICTED + dt.timedelta(days=4)),
                            p_within_window=0.9, window_days=30)


def _feeds(folder: Path, version: int) -> Path:
    """Feed files as they stood before (1) and after (2) the update of week 2."""
    out = folder / f"feed-{version}"
    a_fixed = ["6.1.90"] + (["6.6.31"] if version == 2 else [])
    write_json(out / f"{A}.json", cve5_record(
        A, updated=f"2026-0{version + 1}-01T00:00:00.000Z",
        affected=kernel_affected("6.1", a_fixed, mainline="6.7"),
        metrics=[{"cvssV3_1": {"vectorString": HIGH}}]))
    if version == 2:
        record = cve5_record(B, updated=B_PUBLISHED, affected=[{
            "vendor": "Linux", "product": "Linux", "defaultStatus": "unaffected",
            "versions": [{"version": "6.1", "lessThan": "6.1.200", "status": "affected",
                          "versionType": "semver"}]}],
            metrics=[{"cvssV3_1": {"vectorString": LOW}}])
        record["cveMetadata"]["datePublished"] = B_PUBLISHED
        write_json(out / f"{B}.json", record)
        write_json(out / "releases" / "linux-kernel.json", {
            "releases": {}, "versions": {"6.6.31": {"name": "6.6.31",
                                                     "date": SHIPPED.isoformat()}}})
    return out


def _token(key: Path, host: str, when: dt.datetime) -> tuple[str, AttestationResult]:
    image, version, kernel = HOSTS[host]
    result = AttestationResult.build(
        host_id=host, verifier=VerifierId(developer="vigil"),
        trust_vector=TrustVector(instance_identity=2, hardware=2, executables=2,
                                 configuration=2),
        failures=[], nonce=None, image=ImageRef(name=image, version=version),
        components=[Component(kind="kernel", vendor="linux", product="linux_kernel",
                              version=kernel)],
        ak_name=None, inventory=None, issued_at=when - dt.timedelta(minutes=10))
    return sign_result(result, load_signing_key(key)), result


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory, evaluator, audit_keys, ec_keys
            ) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("history")
    pvdb_path, log_path, images_path = (root / "pvdb.duckdb", root / "decisions.duckdb",
                                        root / "images.duckdb")
    with Pvdb.open(pvdb_path) as db:
        db.ingest([str(_feeds(root, 1))])
    ids: dict[str, str] = {}
    clock = [W1]
    signing = load_signing_key(audit_keys[0])

    def place(name: str, tenant: str, vm: str, host: str, when: dt.datetime) -> None:
        clock[0] = when
        token, result = _token(ec_keys[0], host, when)
        with Pvdb.open(pvdb_path, read_only=True) as db, \
                DecisionLog(log_path, signing_key=signing, checkpoint_every=2) as log:
            report = db.affecting(list(result.components), as_of=when, estimator=Predictor())
            document = build_input(RequestFacts(tenant=tenant, vm=VmShape(
                name=vm, vcpus=2, memory_mib=2048)), host, result.summary(), report,
                PatchedConfiguration(state="none"), when)
            verdict = Decider(evaluator, log, clock=lambda: clock[0]).decide(
                document, attestation_result=token)
        ids[name] = verdict.decision_id
        ids[name + ":verdict"] = verdict.verdict

    # week 1: A known, its fix for 6.6 predicted; hv-2 (6.1.100) clean
    place("d1", "acme", "web-1", "hv-1", W1)
    place("d2", "acme", "db-1", "hv-2", W1 + dt.timedelta(hours=1))
    place("d3", "globex", "app-1", "hv-2", W1 + dt.timedelta(hours=2))
    # week 2: the feeds move on: A fixed on 6.6 (6.6.31 shipped 2026-03-20), B published
    with Pvdb.open(pvdb_path) as db:
        db.ingest([str(_feeds(root, 2))])
    # a patched image is made, attested, approved and targeted during week 2
    moments = iter(W2 + dt.timedelta(days=d) for d in range(1, 10))
    with Catalog(images_path, now=lambda: next(moments)) as catalog:
        kernel = [Component(kind="kernel", vendor="linux", product="linux_kernel",
                            version="6.6.30")]
        catalog.create("hv-base", "1.0", components=kernel, actor="ops", manifest="m0",
                       status="approved")
        catalog.create("hv-base", "1.0.1", components=kernel, actor="builder",
                       parent_version="1.0")
        catalog.record_build("hv-base", "1.0.1", components=[kernel[0].model_copy(
            update={"version": "6.6.31"})], manifest="m1", patches=[], actor="builder")
        catalog.set_status("hv-base", "1.0.1", "attested", actor="staging")
        catalog.set_status("hv-base", "1.0.1", "approved", actor="alice")
        catalog.set_target("rack-a", "hv-base", "1.0.1", actor="alice")
    # week 3: web-1 still waits (the fix has shipped, not the host); app-1 moves to hv-3
    place("d4", "acme", "web-1", "hv-1", W3)
    place("d5", "globex", "app-1", "hv-3", W3 + dt.timedelta(hours=1))
    return {"root": root, "pvdb": pvdb_path, "log": log_path, "images": images_path,
            "ids": ids}


def _report(capsys, monkeypatch, history: dict[str, Any], audit_keys, *args: str
            ) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    (history["root"] / "none.toml").write_text("")
    for name, value in {"VIGIL_CONFIG": history["root"] / "none.toml",
                        "VIGIL_DB": history["pvdb"], "VIGIL_DECISION_LOG": history["log"],
                        "VIGIL_IMAGES_DB": history["images"],
                        "VIGIL_ROLLOUT_DB": history["root"] / "no-rollouts.duckdb",
                        "VIGIL_AUDIT_VERIFICATION_KEYS": json.dumps([str(audit_keys[1])]),
                        "VIGIL_AUDIT_CHECKPOINT_EVERY": "2"}.items():
        monkeypatch.setenv(name, str(value))
    return vigil(capsys, monkeypatch, "audit", "report", *args)


def _days(a: dt.datetime, b: dt.datetime) -> float:
    return round((b - a).total_seconds() / 86400, 2)


def test_the_report_states_what_happened(history, audit_keys, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    ids = history["ids"]
    assert [ids[f"d{i}:verdict"] for i in range(1, 6)] == ["delay", "admit", "admit",
                                                          "delay", "admit"]
    code, out, err = _report(capsys, monkeypatch, history, audit_keys, "--from",
                             "2026-03-01", "--to", "2026-03-31", "--as-of", "2026-04-01")
    assert code == 0, err
    report = json.loads(out)
    assert report["verification"]["verified"] and report["verification"]["records"] == 5
    placements = {p["decision_id"]: p for p in report["placements"]}
    first = placements[ids["d1"]]
    assert (first["host"], first["image"], first["verdict"]) == ("hv-1", "hv-base@1.0",
                                                                 "delay")
    assert [v["id"] for v in first["known_then"]] == [A]
    assert first["known_then"][0]["fix_basis"] == "estimated"
    assert first["bundle_revision"].startswith("dev-")
    # B was published on 2026-03-18, after db-1 and app-1 were placed on hv-2 (6.1.100)
    found = report["discovered_after"]
    assert [v["id"] for v in found["vulnerabilities"]] == [B]
    assert found["vulnerabilities"][0]["published"].startswith("2026-03-18")
    end = dt.datetime(2026, 4, 1, tzinfo=dt.UTC)
    db1 = W1 + dt.timedelta(hours=1)
    app1 = (W1 + dt.timedelta(hours=2), W3 + dt.timedelta(hours=1))
    assert found["hosts"] == [{"host": "hv-2", "exposure_days": _days(db1, end),
                               "vulnerabilities": [B]}]
    tenants = {t["tenant"]: t for t in found["tenants"]}
    assert tenants["acme"]["vm_days"] == _days(db1, end)
    assert tenants["globex"]["vm_days"] == _days(*app1)
    assert "hv-1" not in {h["host"] for h in found["hosts"]}  # A was known there
    daily = {d["date"]: d["hosts_exposed"] for d in found["daily"]}
    assert daily["2026-03-08"] == 0 and daily["2026-03-09"] == 1 and daily["2026-03-31"] == 1
    # the delays: predicted 03-19 (estimated), the fix shipped 03-20
    delays = {d["decision_id"]: d for d in report["delays"]}
    assert delays[ids["d1"]]["predicted"] == PREDICTED.isoformat()
    assert delays[ids["d1"]]["basis"] == "estimated"
    assert delays[ids["d1"]]["shipped"] == SHIPPED.isoformat()
    assert delays[ids["d1"]]["error_days"] == 1
    assert delays[ids["d4"]]["basis"] == "vendor" and delays[ids["d4"]]["error_days"] == 0
    # the patched configuration's life
    patched = {c["image"]: c for c in report["patched_configurations"]}["hv-base@1.0.1"]
    assert patched["parent"] == "1.0"
    assert [patched[k][:10] for k in ("made", "built", "attested", "approved")] == [
        "2026-03-18", "2026-03-19", "2026-03-20", "2026-03-21"]
    assert patched["targets"][0]["group"] == "rack-a"
    revisions = report["policy"]["revisions"]
    assert len(revisions) == 1 and revisions[0]["decisions"] == 5


def test_as_of_leaves_out_what_was_not_known_yet(history, audit_keys, capsys, monkeypatch
                                                 ) -> None:  # type: ignore[no-untyped-def]
    ids = history["ids"]
    code, out, err = _report(capsys, monkeypatch, history, audit_keys, "--from",
                             "2026-03-01", "--to", "2026-03-16", "--as-of", "2026-03-17")
    assert code == 0, err
    report = json.loads(out)
    assert {p["decision_id"] for p in report["placements"]} == {ids["d1"], ids["d2"],
                                                                ids["d3"]}
    assert report["discovered_after"]["vulnerabilities"] == []  # B: published on 03-18
    (delay,) = report["delays"]
    assert delay["shipped"] is None and delay["status"] == "not shipped by the as-of date"
    made = {c["image"] for c in report["patched_configurations"]}
    assert made == {"hv-base@1.0"}  # 1.0.1 was made on 03-18


def test_one_tenant_and_a_new_policy(history, audit_keys, capsys, monkeypatch, tmp_path
                                     ) -> None:  # type: ignore[no-untyped-def]
    ids = history["ids"]
    changed = tmp_path / "policies"
    shutil.copytree(POLICIES / "vigil", changed / "vigil")
    data = json.loads((changed / "vigil/config/data.json").read_text())
    data["window_days"] = 5  # the fix predicted 10 days out is no longer within it
    (changed / "vigil/config/data.json").write_text(json.dumps(data))
    code, out, err = _report(capsys, monkeypatch, history, audit_keys, "--from",
                             "2026-03-01", "--to", "2026-03-31", "--as-of", "2026-04-01",
                             "--tenant", "acme", "--policy", str(changed))
    assert code == 0, err
    report = json.loads(out)
    assert {p["tenant"] for p in report["placements"]} == {"acme"}
    assert [t["tenant"] for t in report["discovered_after"]["tenants"]] == ["acme"]
    policy = report["policy"]
    assert policy["replayed"] == 3
    # d1 rested on a fix 10 days out: admitted now; d4's fix had shipped: still a delay,
    # with a reason that names the new window
    assert [(d["decision_id"], d["recorded"], d["replayed"]) for d in policy["diverged"]] \
        == [(ids["d1"], "delay", "admit"), (ids["d4"], "delay", "delay")]
    assert "verdict: recorded delay, replayed admit" in policy["diverged"][0]["differences"]


def test_html_and_csv(history, audit_keys, capsys, monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    page = tmp_path / "report.html"
    code, _out, err = _report(capsys, monkeypatch, history, audit_keys, "--from",
                              "2026-03-01", "--to", "2026-03-31", "--as-of", "2026-04-01",
                              "--format", "html", "--out", str(page))
    assert code == 0, err
    html = page.read_text()
    assert html.count("<svg") == 2  # exposure over time, predicted against shipped
    assert "default-src 'none'" in html and "<script" not in html
    assert set(re.findall(r'(?:href|src)="(.)', html)) <= {"#"}  # nothing loaded
    assert set(re.findall(r"https?://[^\"' ]+", html)) <= {
        "http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}  # namespaces only
    assert B in html and "hv-2" in html and "hv-base@1.0.1" in html
    code, out, err = _report(capsys, monkeypatch, history, audit_keys, "--from",
                             "2026-03-01", "--to", "2026-03-31", "--as-of", "2026-04-01",
                             "--format", "csv", "--table", "delays")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("seq,decision_id,time,host") and len(lines) == 3
    assert "2026-03-19,estimated" in lines[1] and ",2026-03-20," in lines[1]
    code, out, err = _report(capsys, monkeypatch, history, audit_keys, "--from",
                             "2026-03-01", "--to", "2026-03-31", "--as-of", "2026-04-01",
                             "--format", "csv")
    assert code == 0 and len(out.splitlines()) == 6


def test_an_empty_period_and_bad_dates(history, audit_keys, capsys, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    code, out, err = _report(capsys, monkeypatch, history, audit_keys, "--from",
                             "2025-01-01", "--to", "2025-01-31", "--as-of", "2026-04-01")
    assert code == 6 and out == ""
    assert err.startswith("error: no decision between 2025-01-01") and \
        "records 1–5" in err
    code, _out, err = _report(capsys, monkeypatch, history, audit_keys, "--from",
                              "2026-03-31", "--to", "2026-03-01")
    assert code == 2 and "is not after" in err
    code, _out, err = _report(capsys, monkeypatch, history, audit_keys, "--from",
                              "March", "--to", "2026-03-01")
    assert code == 2 and "not an ISO date" in err


def test_a_broken_log_gives_no_report(history, audit_keys, capsys, monkeypatch, tmp_path
                                      ) -> None:  # type: ignore[no-untyped-def]
    import duckdb

    broken = tmp_path / "broken.duckdb"
    shutil.copy(history["log"], broken)
    con = duckdb.connect(str(broken))
    con.execute("UPDATE decision_log SET result = replace(result, 'delay', 'admit')"
                " WHERE seq = 4")
    con.close()
    code, out, err = _report(capsys, monkeypatch, copy.deepcopy({**history, "log": broken}),
                             audit_keys, "--from", "2026-03-01", "--to", "2026-03-31",
                             "--as-of", "2026-04-01")
    assert code == 1 and out == "" and "record 4" in err


def test_the_report_from_the_export_alone(history, audit_keys, capsys, monkeypatch, tmp_path
                                          ) -> None:  # type: ignore[no-untyped-def]
    export = tmp_path / "export.ndjson"
    import io

    buffer = io.BytesIO()
    with DecisionLog(history["log"], signing_key=load_signing_key(audit_keys[0]),
                     checkpoint_every=2) as log:
        log.export_ndjson(buffer)
    export.write_bytes(buffer.getvalue())
    code, out, err = _report(capsys, monkeypatch,
                             {**history, "log": tmp_path / "absent.duckdb"}, audit_keys,
                             "--export", str(export), "--from", "2026-03-01", "--to",
                             "2026-03-31", "--as-of", "2026-04-01")
    assert code == 0, err
    report = json.loads(out)
    assert report["source"] == str(export) and len(report["placements"]) == 5
    assert [v["id"] for v in report["discovered_after"]["vulnerabilities"]] == [B]
