"""An OPA fleet's decisions land in Vigil's hash-chained log: OPA's decision-log plugin,
pointed at `vigil bundle serve --accept-decision-logs`, uploads its gzip-compressed events;
each is kept with its decision_id, path, input, result, bundle revision, labels and
metrics, the chain verifies, and `vigil decisions replay` replays a decision OPA made with
the bundle the server served. Vigil's own NDJSON export reads back as OPA events."""

from __future__ import annotations

import gzip
import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import uvicorn

from engine.decide import (
    BundleFolder,
    DecisionLog,
    Replayer,
    build_bundle,
    bundle_server_app,
    load_directory,
)
from tests.decide.conftest import VULN_IN_WINDOW, document
from tests.opa.conftest import OpaServer, free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ROOT / "engine" / "policies"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path, DecisionLog]]:
    folder = tmp_path / "bundles"
    folder.mkdir()
    (folder / "vigil.tar.gz").write_bytes(
        build_bundle(load_directory(POLICIES, ["vigil"]), revision="fleet-7"))
    log = DecisionLog(tmp_path / "decisions.duckdb")
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(bundle_server_app(BundleFolder(folder), log),
                                        host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    wait_until(lambda: srv.started, "the bundle server starting")
    yield f"http://127.0.0.1:{port}", folder, log
    srv.should_exit = True
    thread.join(timeout=30)
    log.close()


CONFIG = """
labels:
  region: test-east
services:
  vigil:
    url: {url}
bundles:
  vigil:
    service: vigil
    resource: bundles/vigil.tar.gz
decision_logs:
  service: vigil
  reporting:
    min_delay_seconds: 1
    max_delay_seconds: 1
"""


def test_opa_decision_logs_land_in_the_chained_log_and_replay(
        opa_server: OpaServer, server: tuple[str, Path, DecisionLog]) -> None:
    url, _, log = server
    opa = opa_server.start(config=CONFIG.format(url=url), wait_for_bundles=True)
    docs = [document(), document(vulnerabilities=[VULN_IN_WINDOW])]
    answers = [requests.post(f"{opa}/v1/data/vigil/decision/result", json={"input": d},
                             timeout=10).json() for d in docs]
    ids = [a["decision_id"] for a in answers]
    wait_until(lambda: all(log.get(i) for i in ids), "OPA uploading both decisions")
    for doc, answer, decision_id in zip(docs, answers, ids, strict=True):
        record = log.get(decision_id)
        assert record is not None
        assert (record.path, record.input, record.result) == (
            "vigil/decision/result", doc, answer["result"])
        assert record.bundle_revision == "fleet-7" and record.evaluator == "opa-server"
        assert record.bundles == {"vigil": "fleet-7"}
        assert record.labels["region"] == "test-east" and record.labels["id"]
        assert any(k.startswith("timer_") for k in record.metrics)
    assert log.verify_chain() == []
    assert log.bundle("fleet-7") is not None  # recorded when served
    replayer = Replayer(log)
    replayed = [replayer.replay(r) for r in log.since() if r.decision_id in ids]
    assert len(replayed) == 2
    assert [r.differences for r in replayed] == [[], []]
    assert {r.replayed_revision for r in replayed} == {"fleet-7"}


def test_an_upload_retried_is_kept_once_and_bad_events_are_refused(
        server: tuple[str, Path, DecisionLog]) -> None:
    url, _, log = server
    event = {"decision_id": "d-1", "path": "vigil/decision/result",
             "timestamp": "2026-12-01T10:00:00.123456789Z", "input": {"a": 1},
             "result": {"verdict": "admit"}, "bundles": {"vigil": {"revision": "r9"}},
             "labels": {"id": "opa-1", "version": "1.22.4"},
             "metrics": {"timer_rego_query_eval_ns": 1200}}
    body = gzip.compress(json.dumps([event]).encode())
    headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
    first = requests.post(f"{url}/logs", data=body, headers=headers, timeout=10)
    again = requests.post(f"{url}/logs", data=body, headers=headers, timeout=10)
    assert (first.status_code, first.json()["added"]) == (200, 1)
    assert (again.status_code, again.json()["already_logged"]) == (200, 1)
    assert [r.decision_id for r in log.since()] == ["d-1"]
    record = log.get("d-1")
    assert record is not None and record.timestamp.microsecond == 123456
    for bad, why in ((b"not gzip", "not valid gzip"),
                     (gzip.compress(b'{"a": 1}'), "not a JSON array"),
                     (gzip.compress(b"[{}]"), "no decision_id")):
        answer = requests.post(f"{url}/logs", data=bad, headers=headers, timeout=10)
        assert answer.status_code == 400
        assert why in json.dumps(answer.json())
    bomb = gzip.compress(b"[" + b" " * (200 * 2**20) + b"]")
    answer = requests.post(f"{url}/logs", data=bomb, headers=headers, timeout=30)
    assert answer.status_code == 400 and "beyond its limit" in answer.text
    assert log.verify_chain() == []


def test_the_ndjson_export_reads_as_opa_events(server: tuple[str, Path, DecisionLog]
                                               ) -> None:
    _, _, log = server
    import datetime as dt

    log.append(decision_id="v-1", timestamp=dt.datetime(2026, 12, 1, tzinfo=dt.UTC),
               path="vigil/decision/result", input_document={"x": 1},
               result={"verdict": "reject"}, bundle_revision="r1", evaluator="regorus",
               metrics={"timer_eval_ns": 5}, error=None, labels={"id": "vigil"})
    out = io.BytesIO()
    assert log.export_ndjson(out) == 1
    (line,) = out.getvalue().splitlines()
    event = json.loads(line)
    assert set(event) >= {"decision_id", "labels", "bundles", "path", "input", "result",
                          "timestamp", "metrics"}
    # and an event Vigil exported is one Vigil takes back, as from an OPA
    with DecisionLog(Path(str(log.path) + ".other")) as other:
        assert other.append_opa_event(event)
        assert other.get("v-1").result == {"verdict": "reject"}  # type: ignore[union-attr]


def test_the_bundle_server_serves_only_regular_files_in_its_folder(
        server: tuple[str, Path, DecisionLog], tmp_path: Path) -> None:
    url, folder, _ = server
    (folder / "passwd.tar.gz").symlink_to("/etc/passwd")
    assert requests.get(f"{url}/bundles/passwd.tar.gz", timeout=10).status_code == 404
    long_name = "a" * 300 + ".tar.gz"
    assert requests.get(f"{url}/bundles/{long_name}", timeout=10).status_code == 404
    assert requests.get(f"{url}/bundles/vigil.tar.gz", timeout=10).status_code == 200
