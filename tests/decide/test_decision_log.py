"""Decision log: append, OPA-shaped NDJSON export, replay with and without divergence."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import duckdb
from typer.testing import CliRunner

from engine.cli.main import app
from engine.decide import Decider
from engine.decide.bundle import load_directory
from engine.decide.decision_log import DecisionLog
from engine.decide.evaluators.regopy_engine import EmbeddedEvaluator
from engine.decide.replay import Replayer
from tests.decide.conftest import PATCHED_READY, POLICIES, VULN_IN_WINDOW, document
from tests.tools import HANG_GUARD


def _decide_three(log_path: Path, policies: Path) -> list[str]:
    evaluator = EmbeddedEvaluator(load_directory(policies, ["vigil"]), timeout=HANG_GUARD)
    with DecisionLog(log_path) as log:
        decider = Decider(evaluator, log)
        return [decider.decide(doc).decision_id for doc in (
            document(),
            document(vulnerabilities=[VULN_IN_WINDOW]),
            document(vulnerabilities=[VULN_IN_WINDOW], patched_configuration=PATCHED_READY),
        )]


def test_append_and_export_in_opa_event_shape(tmp_path: Path) -> None:
    ids = _decide_three(tmp_path / "d.duckdb", POLICIES)
    out = io.BytesIO()
    with DecisionLog(tmp_path / "d.duckdb") as log:
        assert log.export_ndjson(out) == 3
        assert log.verify_chain() == []
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [e["decision_id"] for e in events] == ids
    event = events[1]
    assert set(event) >= {"decision_id", "labels", "bundles", "path", "input", "result",
                          "timestamp", "metrics"}
    assert event["path"] == "vigil/decision/result"
    assert event["bundles"]["vigil"]["revision"].startswith("dev-")
    assert event["labels"]["app"] == "vigil" and event["labels"]["evaluator"] == "regopy"
    assert event["timestamp"].endswith("Z")
    assert event["result"]["verdict"] == "delay"
    assert event["input"]["vulnerabilities"][0]["id"] == "CVE-2026-0001"
    assert event["metrics"]["timer_rego_query_eval_ns"] > 0


def test_a_changed_row_breaks_the_chain(tmp_path: Path) -> None:
    _decide_three(tmp_path / "d.duckdb", POLICIES)
    con = duckdb.connect(str(tmp_path / "d.duckdb"))
    con.execute("UPDATE decision_log SET result = replace(result, 'delay', 'admit') "
                "WHERE seq = 2")
    con.close()
    with DecisionLog(tmp_path / "d.duckdb") as log:
        problems = log.verify_chain()
    assert len(problems) == 1 and "(row 2) was changed" in problems[0]


def test_replay_without_divergence(tmp_path: Path) -> None:
    ids = _decide_three(tmp_path / "d.duckdb", POLICIES)
    result = CliRunner().invoke(app, ["decisions", "replay", "--since", "2000-01-01",
                                      "--log", str(tmp_path / "d.duckdb"), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["replayed"] == 3 and report["diverged"] == 0
    one = CliRunner().invoke(app, ["decisions", "replay", ids[0], "--log",
                                   str(tmp_path / "d.duckdb")])
    assert one.exit_code == 0 and "1 replayed, 0 diverged" in one.stdout


def test_replay_detects_divergence_when_the_policy_changes(tmp_path: Path) -> None:
    _decide_three(tmp_path / "d.duckdb", POLICIES)
    changed = tmp_path / "policies"
    shutil.copytree(POLICIES / "vigil", changed / "vigil")
    data = json.loads((changed / "vigil/config/data.json").read_text())
    data["window_days"] = 5  # the fix in 9 days is no longer within the window
    (changed / "vigil/config/data.json").write_text(json.dumps(data))
    with DecisionLog(tmp_path / "d.duckdb") as log:
        replayer = Replayer(log, load_directory(changed, ["vigil"]))
        results = [replayer.replay(r) for r in log.since()]
    diverged = [r for r in results if r.diverged]
    assert len(diverged) == 1
    assert diverged[0].recorded_verdict == "delay" and diverged[0].replayed_verdict == "admit"
    assert "verdict: recorded delay, replayed admit" in diverged[0].differences
    result = CliRunner().invoke(app, ["decisions", "replay", "--since", "2000-01-01",
                                      "--log", str(tmp_path / "d.duckdb"),
                                      "--policies", str(changed)])
    assert result.exit_code == 1
    assert "DIVERGED" in result.stdout
