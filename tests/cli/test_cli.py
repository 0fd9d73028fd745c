"""The ``vigil`` command line: JSON output, exit codes and one-sentence errors."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

from tests.clirun import vigil
from tests.conftest import ROOT

SNAPSHOT = ROOT / "feeds" / "snapshot"
SAMPLE_HOST = ROOT / "evidence" / "sample-host.components.json"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for key in [k for k in os.environ if k.startswith("VIGIL_")]:
        monkeypatch.delenv(key)
    db = tmp_path / "pvdb.duckdb"
    monkeypatch.setenv("VIGIL_DB", str(db))
    monkeypatch.setenv("COLUMNS", "200")  # a wide terminal: table cells are not folded
    return db


def test_ingest_snapshot_twice(env: Path, capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, _ = vigil(capsys, monkeypatch, "feeds", "ingest", str(SNAPSHOT), "--json")
    assert code == 0
    report = orjson.loads(out)
    assert report["counts"]["cve5"]["added"] == 8
    assert report["counts"]["kev"]["added"] == 3
    assert report["problems"] == []
    code, out, _ = vigil(capsys, monkeypatch, "feeds", "ingest", str(SNAPSHOT), "--json")
    assert code == 0
    assert orjson.loads(out)["changed"] == 0
    code, out, _ = vigil(capsys, monkeypatch, "feeds", "status", "--json")
    sources = {r["source"]: r for r in orjson.loads(out)["sources"]}
    assert sources["cve5"]["records"] == 8
    assert sources["cve5"]["schema_version"] == 4


def test_affecting_sample_host(env: Path, capsys: pytest.CaptureFixture[str],
                               monkeypatch: pytest.MonkeyPatch) -> None:
    vigil(capsys, monkeypatch, "feeds", "ingest", str(SNAPSHOT))
    code, out, _ = vigil(capsys, monkeypatch, "pvdb", "affecting", "--components",
                         str(SAMPLE_HOST), "--json")
    assert code == 0
    report = orjson.loads(out)
    found = {f["vuln_id"]: f for f in report["findings"]}
    assert set(found) == {"CVE-2024-1086", "CVE-2024-36971", "CVE-2024-50264",
                          "CVE-2024-42135", "CVE-2024-53104", "CVE-2025-38236"}
    f = found["CVE-2024-36971"]
    assert f["fix"]["closing_version"] == "6.6.34"
    assert f["fix"]["availability"] == {"date": "2024-06-16", "basis": "vendor",
                                        "source": "release 6.6.34", "confidence": 1.0,
                                        "interval": None, "p_within_window": None,
                                        "window_days": None}
    assert f["kev"]["date_added"] == "2024-08-07"
    assert f["epss"]["score"] == 0.02701
    assert [u["vuln_id"] for u in report["undetermined"]] == ["CVE-2024-2201"]
    assert "cannot be compared" in report["undetermined"][0]["reason"]

    code, out, _ = vigil(capsys, monkeypatch, "pvdb", "affecting", "--component",
                         "kernel=linux/linux_kernel@6.6.30", "--kev-only", "--json")
    assert {f["vuln_id"] for f in orjson.loads(out)["findings"]} == {
        "CVE-2024-1086", "CVE-2024-36971", "CVE-2024-53104"}
    code, out, _ = vigil(capsys, monkeypatch, "pvdb", "affecting", "--component",
                         "kernel=linux/linux_kernel@6.6.30", "--min-severity", "high", "--json")
    assert {f["vuln_id"] for f in orjson.loads(out)["findings"]} == {
        "CVE-2024-1086", "CVE-2024-36971", "CVE-2024-50264", "CVE-2025-38236"}
    # Fixes available by 2024-07-01 (+0 days): 6.6.34 (2024-06-16) on the host's own line.
    # CVE-2024-1086's only fix in these records is 6.8 (2024-03-10), another line: an
    # upgrade, not a patch of 6.6, so it does not count as a patch within the window.
    code, out, _ = vigil(capsys, monkeypatch, "pvdb", "affecting", "--component",
                         "kernel=linux/linux_kernel@6.6.30", "--within-days", "0",
                         "--as-of", "2024-07-01", "--json")
    assert {f["vuln_id"] for f in orjson.loads(out)["findings"]} == {"CVE-2024-36971"}
    code, out, _ = vigil(capsys, monkeypatch, "pvdb", "affecting", "--component",
                         "kernel=linux/linux_kernel@6.6.30", "--as-of", "2024-07-01",
                         "--json")
    lines = {f["vuln_id"]: f["fix"]["line"] for f in orjson.loads(out)["findings"]}
    assert lines["CVE-2024-1086"] == "other" and lines["CVE-2024-36971"] == "own"
    code, out, _ = vigil(capsys, monkeypatch, "pvdb", "affecting", "--component",
                         "kernel=linux/linux_kernel@6.6.30", "--as-of", "2024-07-01")
    assert "6.8 (upgrade, other line)" in out and "6.6.34 (patch)" in out
    code, out, _ = vigil(capsys, monkeypatch, "pvdb", "affecting", "--components",
                         str(SAMPLE_HOST))
    assert code == 0
    assert "CVE-2024-36971" in out and "6.6.34" in out


def test_show_prints_provenance(env: Path, capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    vigil(capsys, monkeypatch, "feeds", "ingest", str(SNAPSHOT))
    code, out, _ = vigil(capsys, monkeypatch, "pvdb", "show", "CVE-2024-1086", "--json")
    assert code == 0
    detail = orjson.loads(out)
    assert {p["source"] for p in detail["provenance"]} == {"cve5", "kev", "epss"}
    assert all(len(p["content_hash"]) == 64 for p in detail["provenance"])


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["pvdb", "show", "CVE-2099-0001"], 6, "CVE-2099-0001 is not in the PVDB"),
        (["pvdb", "affecting", "--component", "linux_kernel 6.6"], 2,
         "cannot read component 'linux_kernel 6.6'"),
        (["pvdb", "affecting", "--component", "linux/linux_kernel@6.6", "--min-severity",
          "urgent"], 2, "neither a CVSS score nor a rating"),
        (["pvdb", "affecting"], 2, "no components given"),
        (["feeds", "ingest", "/nonexistent/feed"], 4, "/nonexistent/feed: no such file"),
    ],
)
def test_errors_are_one_sentence_with_exit_code(
    env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    args: list[str], code: int, message: str,
) -> None:
    vigil(capsys, monkeypatch, "feeds", "ingest", str(SNAPSHOT))
    got, _, err = vigil(capsys, monkeypatch, *args)
    assert got == code
    assert err.startswith("error: ")
    assert message in err
    assert "Traceback" not in err


def test_missing_database_is_named(env: Path, capsys: pytest.CaptureFixture[str],
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = vigil(capsys, monkeypatch, "feeds", "status")
    assert code == 5
    assert f"no PVDB at {env}" in err
    assert "Tip:" in err


def test_bad_configuration_is_named(env: Path, capsys: pytest.CaptureFixture[str],
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VIGIL_INGEST_BATCH", "0")
    code, _, err = vigil(capsys, monkeypatch, "feeds", "ingest", str(SNAPSHOT))
    assert code == 3
    assert "ingest_batch" in err


def test_rejected_record_exits_4_and_names_it(env: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "feed" / "CVE-2024-0001.json"
    bad.parent.mkdir()
    bad.write_text('{"dataType": "CVE_RECORD", "cveMetadata": {"cveId": "CVE-2024-0001", '
                   '"state": "PUBLISHED"}, "containers": {}}')
    code, _, err = vigil(capsys, monkeypatch, "feeds", "ingest", str(bad.parent))
    assert code == 4
    assert "CVE-2024-0001.json [CVE-2024-0001] at $.containers" in err
    assert "missing required field 'cna'" in err


def test_components_file_errors_name_the_field(env: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    vigil(capsys, monkeypatch, "feeds", "ingest", str(SNAPSHOT))
    path = tmp_path / "host.json"
    path.write_text('{"components": [{"kind": "kernel", "vendor": "linux", '
                    '"product": "linux_kernel"}]}')
    code, _, err = vigil(capsys, monkeypatch, "pvdb", "affecting", "--components", str(path))
    assert code == 2
    assert "components[0].version" in err
    assert "Field required" in err


def test_affecting_and_status_state_coverage(env: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    vigil(capsys, monkeypatch, "feeds", "ingest", str(SNAPSHOT))
    code, out, _ = vigil(capsys, monkeypatch, "pvdb", "affecting", "--component",
                         "kernel=linux/linux_kernel@6.6.30", "--purl",
                         "pkg:deb/ubuntu/linux@6.8.0-31.31?distro=noble", "--json")
    assert code == 0
    kernel, noble = orjson.loads(out)["coverage"]
    assert kernel["status"] == "covered"
    assert {s["scope"] for s in kernel["sources"]} == {"linux/linux_kernel"}
    assert noble["status"] == "uncovered" and noble["sources"] == []
    code, out, _ = vigil(capsys, monkeypatch, "pvdb", "affecting", "--purl",
                         "pkg:deb/ubuntu/linux@6.8.0-31.31?distro=noble")
    assert code == 0
    assert "uncovered" in out and "no loaded source" in out
    code, out, _ = vigil(capsys, monkeypatch, "feeds", "status")
    assert code == 0
    assert "coverage per ecosystem" in out and "linux/linux_kernel" in out
    code, out, _ = vigil(capsys, monkeypatch, "feeds", "status", "--json")
    scopes = {c["scope"]: c for c in orjson.loads(out)["coverage"]}
    assert "cve5" in scopes["linux/linux_kernel"]["sources"]
