"""`vigil images` and `vigil patch plan` on a PVDB written by the test."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path
from typing import Any

import orjson
import pytest

from engine.attest import sign_manifest
from engine.images import boot_for, manifest_for
from engine.model import ImageRef
from tests.clirun import vigil as run_vigil
from tests.images.conftest import BASE_COMPONENTS, Pipeline
from tests.pvdb.records import cve5_record, kernel_affected


def vigil(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str
          ) -> tuple[int, Any, str]:
    code, out, err = run_vigil(capsys, monkeypatch, *args)
    return code, (orjson.loads(out) if "--json" in args and code == 0 else out), err


def kernel_releases() -> dict[str, Any]:
    """Weekly 6.1.y (Mondays) and 6.6.y (Thursdays) stable releases through 2024."""
    versions: dict[str, Any] = {}
    for line, start in (("6.1", dt.date(2023, 1, 2)), ("6.6", dt.date(2023, 11, 2))):
        day, n = start, 0
        while day <= dt.date(2024, 12, 31):
            v = f"{line}.{n}" if n else line
            versions[v] = {"name": v, "date": day.isoformat()}
            day += dt.timedelta(days=7)
            n += 1
    return {"versions": versions}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pipeline: Pipeline) -> Path:
    for key in [k for k in os.environ if k.startswith("VIGIL_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("VIGIL_DB", str(tmp_path / "pvdb.duckdb"))
    monkeypatch.setenv("VIGIL_PREDICT_DB", str(tmp_path / "predict.duckdb"))
    monkeypatch.setenv("VIGIL_IMAGES_DB", str(tmp_path / "images.duckdb"))
    monkeypatch.setenv("VIGIL_IMAGES_SIGNING_KEY", str(tmp_path / "pipeline.pem"))
    monkeypatch.setenv("VIGIL_ATTEST_REFERENCE_KEYS", json.dumps([str(tmp_path /
                                                                     "pipeline.pem")]))
    monkeypatch.setenv("VIGIL_ATTEST_REFERENCES", str(tmp_path / "references"))
    monkeypatch.setenv("COLUMNS", "250")
    feeds = tmp_path / "feeds" / "cve5"
    feeds.mkdir(parents=True)
    (tmp_path / "feeds" / "linux-kernel.json").write_bytes(orjson.dumps(kernel_releases()))
    records = {"CVE-2024-91001": kernel_affected("5.15", ["6.1.90", "6.6.30"]),
               "CVE-2024-91002": kernel_affected("5.15", ["6.1.85", "6.6.25"]),
               "CVE-2024-91003": kernel_affected("5.15", ["6.6.20"]),
               "CVE-2024-91004": [{"vendor": "Linux", "product": "Linux",
                                   "defaultStatus": "affected",
                                   "versions": [{"version": "5.15", "status": "affected"}]}]}
    for cve, affected in records.items():  # published before the as-of dates asked below
        (feeds / f"{cve}.json").write_bytes(orjson.dumps(cve5_record(
            cve, affected=affected, published="2024-03-01T00:00:00.000Z",
            updated="2024-03-22T00:00:00.000Z")))
    image = ImageRef(name="hv", version="1")
    token = sign_manifest(manifest_for(image, BASE_COMPONENTS, boot_for(BASE_COMPONENTS)),
                          pipeline.key)
    (tmp_path / "hv-1.jws").write_text(token)
    return tmp_path


def test_patch_plan_and_the_catalog_commands(env: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    assert vigil(capsys, monkeypatch, "feeds", "ingest", str(env / "feeds"))[0] == 0
    code, out, err = vigil(capsys, monkeypatch, "images", "import", str(env / "hv-1.jws"),
                           "--approved", "--json")
    assert code == 0, err
    assert out["image"]["status"] == "approved" and out["image"]["manifest"] is True

    code, out, err = vigil(capsys, monkeypatch, "patch", "plan", "--image", "hv@1", "--json")
    assert code == 0, err
    plan = out["plan"]
    assert [s["patch"] for s in plan["steps"]] == ["linux/linux_kernel@6.1.90"]
    assert plan["closed"] == ["CVE-2024-91001", "CVE-2024-91002"]
    reasons = {o["vuln_id"]: o["reason"] for o in plan["open"]}
    assert reasons == {"CVE-2024-91003": "other_line", "CVE-2024-91004": "no_fix"}
    code, out, _ = vigil(capsys, monkeypatch, "patch", "plan", "--image", "hv@1", "--cve",
                         "CVE-2024-91002", "--graph", str(env / "graph.json"))
    assert code == 0 and "linux/linux_kernel@6.1.85" in out and "install order" in out
    graph = json.loads((env / "graph.json").read_text())
    assert [p["id"] for p in graph["patches"]] == ["linux/linux_kernel@6.1.85",
                                                   "linux/linux_kernel@6.1.90"]
    assert graph["patches"][1]["supersedes"] == ["linux/linux_kernel@6.1.85"]

    assert vigil(capsys, monkeypatch, "images", "target", "rack-a", "hv@1")[0] == 0
    code, out, err = vigil(capsys, monkeypatch, "images", "list")
    assert code == 0 and "rack-a" in out and "approved" in out
    code, out, err = vigil(capsys, monkeypatch, "images", "show", "hv@9")
    assert code == 6 and err.startswith("error: image hv@9 is not in the catalog")
    code, out, err = vigil(capsys, monkeypatch, "images", "approve", "hv@1")
    assert code == 2 and err.startswith("error: hv@1 is approved; it cannot become approved")
    code, out, err = vigil(capsys, monkeypatch, "patch", "plan", "--image", "hv")
    assert code == 2 and "NAME@VERSION" in err
    code, out, err = vigil(capsys, monkeypatch, "images", "rollback", "rack-a", "--to", "0")
    assert code == 2 and err.startswith("error: hv@0 was never the target of rack-a")


@pytest.mark.slow
@pytest.mark.usefixtures("need_swtpm")
def test_prepare_approve_target_and_roll_back(env: Path, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    assert vigil(capsys, monkeypatch, "feeds", "ingest", str(env / "feeds"))[0] == 0
    assert vigil(capsys, monkeypatch, "images", "import", str(env / "hv-1.jws"),
                 "--approved")[0] == 0
    assert vigil(capsys, monkeypatch, "images", "target", "rack-a", "hv@1")[0] == 0
    code, out, err = vigil(capsys, monkeypatch, "images", "prepare", "--image", "hv@1",
                           "--cve", "CVE-2024-91002", "--json")
    assert code == 0, err
    assert out["image"]["version"] == "1-p1" and out["image"]["status"] == "attested"
    assert [s["to_version"] for s in out["plan"]["steps"]] == ["6.1.85"]
    code, out, err = vigil(capsys, monkeypatch, "images", "approve", "hv@1-p1", "--json")
    assert code == 0, err
    assert Path(out["reference"]).read_text().strip().count(".") == 2  # a compact JWS
    assert vigil(capsys, monkeypatch, "images", "target", "rack-a", "hv@1-p1")[0] == 0
    code, out, err = vigil(capsys, monkeypatch, "images", "rollback", "rack-a", "--to", "1",
                           "--reason", "regression")
    assert code == 0 and "rolled back to hv@1 (was 1-p1)" in out
    code, out, _ = vigil(capsys, monkeypatch, "images", "history", "--group", "rack-a",
                         "--json")
    assert [(h["action"], h["after"]) for h in out["history"]] == [
        ("target", "1"), ("target", "1-p1"), ("rollback", "1")]
    # the preparation queue: the predictor queues what is expected; prepare consumes it
    code, out, err = vigil(capsys, monkeypatch, "predict", "prepare", "--image", "hv@1",
                           "--component", "kernel=linux/linux_kernel@6.1.76", "--as-of",
                           "2024-03-25T09:00:00+00:00", "--json")
    assert code == 0, err
    code, out, err = vigil(capsys, monkeypatch, "images", "prepare", "--json")
    assert code == 0, err
    outcomes = {o["vuln_id"]: o for o in out["outcomes"]}
    assert outcomes, "the predictor queued nothing"
    for vuln, outcome in outcomes.items():  # no fix on 6.1 yet: built once there is
        assert outcome["outcome"] == "waiting", (vuln, outcome)
