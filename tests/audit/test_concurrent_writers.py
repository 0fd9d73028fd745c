"""Several `vigil policy eval` processes at once on one decision log: each waits its turn
for the file (bounded by decision_log_wait), none is lost, and the chain verifies."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from engine.audit import verify_log
from engine.decide import DecisionLog
from engine.keys import load_verification_key
from tests.decide.conftest import ROOT, document
from tests.tools import HANG_GUARD

WRITERS = 6


def test_concurrent_cli_decisions_are_all_logged(tmp_path: Path, audit_keys) -> None:  # type: ignore[no-untyped-def]
    doc = tmp_path / "doc.json"
    doc.write_text(json.dumps(document()))
    log = tmp_path / "decisions.duckdb"
    (tmp_path / "none.toml").write_text("")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "VIGIL_CONFIG": str(tmp_path / "none.toml"),
           "VIGIL_DECISION_LOG": str(log), "VIGIL_EVALUATOR": "regopy",
           "VIGIL_DECISION_TIMEOUT": str(HANG_GUARD),
           "VIGIL_DECISION_LOG_WAIT": str(HANG_GUARD),
           "VIGIL_AUDIT_SIGNING_KEY": str(audit_keys[0]), "VIGIL_AUDIT_CHECKPOINT_EVERY": "2"}
    procs = [subprocess.Popen([sys.executable, "-m", "engine.cli.main", "policy", "eval",
                               str(doc), "--json"], env=env, cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(WRITERS)]
    outcomes = [(p.wait(timeout=HANG_GUARD * 2), p.stdout.read(), p.stderr.read())  # type: ignore[union-attr]
                for p in procs]
    for code, _out, err in outcomes:
        assert code == 0, err.decode()
    ids = {json.loads(out)["decision_id"] for _code, out, _err in outcomes}
    assert len(ids) == WRITERS
    with DecisionLog(log, read_only=True) as dlog:
        assert {r.decision_id for r in dlog.rows()} == ids
        found = verify_log(dlog, [load_verification_key(audit_keys[1])], expect_every=2)
    assert found.ok, found.problems
    assert found.records == WRITERS and [c.size for c in found.checkpoints] == [2, 4, 6]


def test_a_writer_that_cannot_get_the_file_in_time_fails_closed(tmp_path: Path) -> None:
    log = tmp_path / "decisions.duckdb"
    doc = tmp_path / "doc.json"
    doc.write_text(json.dumps(document()))
    (tmp_path / "none.toml").write_text("")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "VIGIL_CONFIG": str(tmp_path / "none.toml"),
           "VIGIL_DECISION_LOG": str(log), "VIGIL_EVALUATOR": "regopy",
           "VIGIL_DECISION_LOG_WAIT": "0.2"}
    with DecisionLog(log):  # held by this process for the whole run
        done = subprocess.run([sys.executable, "-m", "engine.cli.main", "policy", "eval",
                               str(doc)], env=env, cwd=ROOT, capture_output=True,
                              timeout=HANG_GUARD)
    assert done.returncode == 5
    err = done.stderr.decode()
    assert err.startswith("error: ") and "in use by another process" in err
    assert "Traceback" not in err
