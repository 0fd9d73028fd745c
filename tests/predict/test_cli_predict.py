"""`vigil pvdb affecting` carries estimated dates for open vulnerabilities; `vigil predict`
estimates, queues preparations and logs missed predictions. Data written by the test."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.clirun import vigil as run_vigil
from tests.pvdb.records import cve5_record, kernel_affected

HOST_61 = "kernel=linux/linux_kernel@6.1.70"


def vigil(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str
          ) -> tuple[int, Any, str]:
    code, out, err = run_vigil(capsys, monkeypatch, *args)
    return code, (orjson.loads(out) if "--json" in args and code == 0 else out), err


def kernel_releases() -> dict[str, Any]:
    """Weekly 6.1.y and 6.6.y stable releases through 2024 (Mondays for 6.1, Thursdays
    for 6.6)."""
    versions: dict[str, Any] = {}
    for branch, start in (("6.1", dt.date(2023, 1, 2)), ("6.6", dt.date(2023, 11, 2))):
        day, n = start, 0
        while day <= dt.date(2024, 12, 31):
            v = f"{branch}.{n}" if n else branch
            versions[v] = {"name": v, "date": day.isoformat()}
            day += dt.timedelta(days=7)
            n += 1
    return {"versions": versions}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for key in [k for k in os.environ if k.startswith("VIGIL_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("VIGIL_DB", str(tmp_path / "pvdb.duckdb"))
    monkeypatch.setenv("VIGIL_PREDICT_DB", str(tmp_path / "predict.duckdb"))
    monkeypatch.setenv("COLUMNS", "250")
    feeds = tmp_path / "feeds"
    (feeds / "cve5").mkdir(parents=True)
    (feeds / "linux-kernel.json").write_bytes(orjson.dumps(kernel_releases()))
    # Published before the dates the tests ask about (an answer as of a day before a
    # record's publication leaves it out).
    dated = {"published": "2024-03-01T00:00:00.000Z", "updated": "2024-03-22T00:00:00.000Z"}
    # Fixed on 6.6 in 6.6.20 (2024-03-21); 6.1 is affected and has no fix.
    (feeds / "cve5" / "CVE-2024-90001.json").write_bytes(orjson.dumps(cve5_record(
        "CVE-2024-90001", **dated, affected=kernel_affected("5.15", ["6.6.20"]))))
    # No fix anywhere.
    (feeds / "cve5" / "CVE-2024-90002.json").write_bytes(orjson.dumps(cve5_record(
        "CVE-2024-90002", **dated, affected=[{"vendor": "Linux", "product": "Linux",
                                     "defaultStatus": "affected",
                                     "versions": [{"version": "5.15", "status": "affected"}]}])))
    return feeds


def test_affecting_shows_estimated_dates_for_open_vulnerabilities(
        env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert vigil(capsys, monkeypatch, "feeds", "ingest", str(env))[0] == 0
    code, report, _ = vigil(capsys, monkeypatch, "pvdb", "affecting", "--component", HOST_61,
                            "--as-of", "2024-03-25T09:00:00+00:00", "--json")
    assert code == 0
    found = {f["vuln_id"]: f for f in report["findings"]}
    backport = found["CVE-2024-90001"]["fix"]
    assert backport["closing_version"] == "6.6.20"  # only another line is fixed
    a = backport["availability"]
    assert a["basis"] == "estimated"
    assert a["date"] >= "2024-03-25"
    assert a["interval"][0] <= a["date"] <= a["interval"][1]
    assert 0 < a["confidence"] <= 1
    assert a["source"].startswith("predicted (calendar)")
    assert "6.6.20 on another line: 2024-03-21 (vendor)" in a["source"]
    # The projected 6.1 cadence: Mondays, a week apart.
    assert dt.date.fromisoformat(a["date"]).weekday() == 0
    none = found["CVE-2024-90002"]["fix"]
    assert none["status"] == "no_fix"
    assert none["availability"]["basis"] == "none"
    assert none["availability"]["date"] is None
    assert "no fix on any line yet" in none["availability"]["source"]
    # The table shows the estimate.
    code, out, _ = vigil(capsys, monkeypatch, "pvdb", "affecting", "--component", HOST_61,
                         "--as-of", "2024-03-25T09:00:00Z")
    assert f"{a['date']} (estimated)" in out
    # --within-days counts an expected date.
    code, report, _ = vigil(capsys, monkeypatch, "pvdb", "affecting", "--component", HOST_61,
                            "--as-of", "2024-03-25T09:00:00Z", "--within-days", "30", "--json")
    assert [f["vuln_id"] for f in report["findings"]] == ["CVE-2024-90001"]


def test_estimate_prepare_and_recheck(env: Path, capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    vigil(capsys, monkeypatch, "feeds", "ingest", str(env))
    code, out, _ = vigil(capsys, monkeypatch, "predict", "estimate", "--component", HOST_61,
                         "--as-of", "2024-03-25", "--json")
    assert code == 0
    assert {e["vuln_id"] for e in out["estimates"]} == {"CVE-2024-90001", "CVE-2024-90002"}

    code, out, _ = vigil(capsys, monkeypatch, "predict", "prepare", "--image", "host-img@7",
                         "--component", HOST_61, "--as-of", "2024-03-25", "--window", "30",
                         "--json")
    assert code == 0
    [req] = out["requests"]
    assert (req["vuln_id"], req["created"], req["basis"]) == ("CVE-2024-90001", True,
                                                              "estimated")
    assert "backport" in req["expected_patch"]
    expected = req["expected_date"]
    # Preparing again updates the same request.
    code, out, _ = vigil(capsys, monkeypatch, "predict", "prepare", "--image", "host-img@7",
                         "--component", HOST_61, "--as-of", "2024-03-25", "--json")
    assert [r["created"] for r in out["requests"]] == [False]

    # Before the expected date: still waiting.
    code, out, _ = vigil(capsys, monkeypatch, "predict", "recheck", "--as-of", "2024-03-25",
                         "--json")
    assert [r["outcome"] for r in out["results"]] == ["waiting"]
    # The date passes and 6.1 still has no fix: re-estimated, the miss logged.
    later = (dt.date.fromisoformat(expected) + dt.timedelta(days=2)).isoformat()
    code, out, _ = vigil(capsys, monkeypatch, "predict", "recheck", "--as-of", later, "--json")
    [result] = out["results"]
    assert result["outcome"] == "missed"
    assert result["miss"]["predicted_date"] == expected
    assert result["miss"]["new_date"] is None or result["miss"]["new_date"] > expected

    from engine.predict.queue import Queue

    with Queue(Path(os.environ["VIGIL_PREDICT_DB"])) as queue:
        assert len(queue.misses()) == 1
        [pending] = queue.requests("pending")
        assert pending.expected_date != dt.date.fromisoformat(expected)


def test_backtest_writes_report_and_plots(env: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    vigil(capsys, monkeypatch, "feeds", "ingest", str(env))
    report = tmp_path / "docs" / "prediction.md"
    report.parent.mkdir()
    report.write_text("# Prediction\n\nProse kept.\n\n<!-- BACKTEST:BEGIN -->\nold\n"
                      "<!-- BACKTEST:END -->\n\nMore prose.\n")
    code, out, _ = vigil(capsys, monkeypatch, "predict", "backtest", "--as-of-range",
                         "2024-03-01", "2024-06-30", "--step", "7", "--report", str(report),
                         "--json")
    assert code == 0
    assert out["scores"]["linux kernel (stable backports)"]["instances"] > 0
    text = report.read_text()
    assert text.startswith("# Prediction\n\nProse kept.") and "More prose." in text
    assert "old" not in text and "## Backtest results" in text
    assert (report.parent / "prediction_errors.png").stat().st_size > 1000
    code, _, err = vigil(capsys, monkeypatch, "predict", "backtest", "--as-of-range",
                         "2024-06-30", "2024-03-01")
    assert code == 2 and "END is before START" in err


def test_backtest_on_a_kernel_cna_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.predict.test_protocol import write_corpus

    cna, releases = write_corpus(tmp_path)
    report = tmp_path / "prediction.md"
    code, out, err = vigil(capsys, monkeypatch, "predict", "backtest", "--kernel-cna", str(cna),
                           "--releases", str(releases), "--method", "base-rate", "--method",
                           "conditional-median", "--method", "next-release", "--report",
                           str(report), "--json")
    assert code == 0, err
    assert out["questions"] > 0 and out["pairs"] == 2
    assert set(out["scores"]) == {"base-rate", "conditional-median", "next-release"}
    assert {t["target"][:5] for t in out["targets"]} >= {"P(fix", "80% i"}
    text = report.read_text()
    assert "## Backtest results (kernel CNA, full history)" in text
    # The command written into the report repeats the methods it was run with.
    assert ("--method base-rate --method conditional-median --method next-release --report"
            " prediction.md") in text
    assert (tmp_path / "prediction_reliability.png").stat().st_size > 1000
    code, _, err = vigil(capsys, monkeypatch, "predict", "backtest", "--kernel-cna", str(cna))
    assert code == 2 and "--releases" in err
    code, _, err = vigil(capsys, monkeypatch, "predict", "backtest", "--kernel-cna",
                         str(tmp_path / "absent"), "--releases", str(releases))
    assert code == 4 and err.startswith("error:") and "Traceback" not in err
    code, _, err = vigil(capsys, monkeypatch, "predict", "backtest", "--kernel-cna", str(cna),
                         "--releases", str(releases), "--method", "astrology")
    assert code == 2 and "astrology" in err
    code, _, err = vigil(capsys, monkeypatch, "predict", "backtest")
    assert code == 2 and "--as-of-range" in err
