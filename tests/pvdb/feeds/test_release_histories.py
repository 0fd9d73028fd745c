"""The feed adapters for release calendars' history: XSA/QSB lists and vendor tables."""

from __future__ import annotations

from pathlib import Path

from engine.pvdb import Pvdb

XSA = """- xsa: 454
  date: 2024-04-09
  affected: yes
  qsb: 101-2024

- xsa: 455
  date: 2024-04-09
  affected: no
"""
QSB = """- qsb: "101"
  title: "Xen issue (XSA-454)"
  date: 2024-04-10
"""
MSRC = ("cvrf_id,initial_release_date,current_release_date,vulnerability_count,source_path\n"
        "2024-Mar,2024-03-12T07:00:00,2024-03-12T07:00:00,60,x.xml\n"
        "2017-May,2017-05-08T23:30:00-08:00,2017-05-09T07:00:00Z,1,y.xml\n")
INTEL = ("release_tag,release_date,intel_sa_ids,platform_rows\n"
         "microcode-20240312,2024-03-12,INTEL-SA-00898;INTEL-SA-00960,48\n"
         "microcode-20240531,2024-05-31,,1\n")


def write(folder: Path) -> Path:
    (folder / "xen").mkdir(parents=True)
    (folder / "xen" / "sec-xsa.yml").write_text(XSA)
    (folder / "xen" / "sec-qsb.yml").write_text(QSB)
    (folder / "patch_tuesday.csv").write_text(MSRC)
    (folder / "microcode_releases.csv").write_text(INTEL)
    return folder


def test_release_histories_ingest(tmp_path: Path) -> None:
    feeds = write(tmp_path / "feeds")
    with Pvdb.open(tmp_path / "pvdb.duckdb") as db:
        report = db.ingest([str(feeds)])
        assert report.problems == [] and report.skipped == []
        assert report.counts["releases"].added == 4
        xsa = db.show("XSA-454")
        fixes = {(f["vendor"], f["advisory_id"], str(f["fix_date"])) for f in xsa["fixes"]}
        assert fixes == {("xen", "XSA-454", "2024-04-09"), ("qubes", "QSB-101", "None")}
        rows = dict(db._con.execute(
            "SELECT product || ' ' || version, CAST(release_date AS VARCHAR) FROM releases"
        ).fetchall())
        assert rows["qubes:qsb 101"] == "2024-04-10"
        assert rows["xen:xsa XSA-455"] == "2024-04-09"
        assert rows["microsoft:security_update 2024-Mar"] == "2024-03-12"
        # 23:30 on 8 May in UTC-8 is 9 May in UTC: dates are UTC dates.
        assert rows["microsoft:security_update 2017-May"] == "2017-05-09"
        assert rows["intel:microcode microcode-20240531"] == "2024-05-31"
        assert {f["fixed_version"] for f in db.show("INTEL-SA-00960")["fixes"]} == {
            "microcode-20240312"}
        assert db.ingest([str(feeds)]).changed == 0


def test_bad_dates_are_problems_naming_the_entry(tmp_path: Path) -> None:
    feeds = tmp_path / "feeds"
    feeds.mkdir()
    (feeds / "sec-xsa.yml").write_text("- xsa: 1\n  date: someday\n")
    (feeds / "ucode.csv").write_text("release_tag,release_date,intel_sa_ids,platform_rows\n"
                                     "microcode-1,,INTEL-SA-00001,1\n")
    with Pvdb.open(tmp_path / "pvdb.duckdb") as db:
        problems = sorted(str(p) for p in db.ingest([str(feeds)]).problems)
    assert len(problems) == 2
    assert "$[0].date: not a date: 'someday'" in problems[0]
    assert "line 2: empty release date" in problems[1]
