"""The backtest on the real data in ../shared/data/feeds (skipped where absent)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.predict import backtest, calendars, estimator_for
from engine.pvdb import Component, Pvdb
from engine.pvdb import history as hist

pytestmark = [pytest.mark.shared_data, pytest.mark.slow]


FULL_CORPUS = "kernel_cna_full"
"""Every record the kernel CNA published: left out here. These tests pin figures of the
curated feeds (the kernel CNA's records of 2024–25 in ``cve5_linux_cna``); the backtest
protocol for the full corpus is a separate piece of work (docs/prediction.md)."""


@pytest.fixture(scope="module")
def real_db(feeds_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pvdb]:
    with Pvdb.open(tmp_path_factory.mktemp("real") / "pvdb.duckdb") as db:
        db.ingest([str(p) for p in sorted(feeds_dir.iterdir())
                   if p.is_dir() and p.name != FULL_CORPUS])
        yield db


def test_history_reads_every_source(real_db: Pvdb) -> None:
    h = real_db.history()
    by_product = {p: len(h.for_product(p)) for p in (hist.KERNEL, hist.QUBES,
                                                     hist.INTEL_MICROCODE)}
    assert by_product[hist.KERNEL] > 150
    assert by_product[hist.QUBES] > 100
    assert by_product[hist.INTEL_MICROCODE] >= 5
    # CVE-2024-26687: first fixed in 6.7.6 (2024-02-23), 6.1 got it in 6.1.81 (2024-03-06).
    fix = next(f for f in h.fixes if f.vuln_id == "CVE-2024-26687" and f.line == "6.1")
    assert (fix.reference, fix.fixed, fix.fixed_version) == (
        dt.date(2024, 2, 23), dt.date(2024, 3, 6), "6.1.81")


def test_backtest_scores_the_kernel_against_the_baselines(real_db: Pvdb) -> None:
    h = real_db.history()
    result = backtest.run(h, calendars.default(), dt.date(2024, 1, 1), dt.date(2025, 6, 30),
                          step=7)
    kernel = result.scores[backtest.PRODUCT_NAMES[hist.KERNEL]]
    assert kernel.instances > 300 and kernel.dated > 20
    assert kernel.mae is not None and kernel.next_mae is not None
    assert kernel.median_mae is not None
    assert kernel.coverage is not None and 0.5 <= kernel.coverage <= 1.0
    assert kernel.brier is not None and kernel.brier < 0.25
    # Nothing after an as-of date leaks into its history: the first as-of date sees
    # only fixes released before it.
    first = [i for i in result.instances if i.as_of == dt.date(2024, 1, 1)]
    assert all(i.fix.reference < dt.date(2024, 1, 1) for i in first)
    checks = {c.name: c for c in result.calendar_checks}
    ms = checks["Microsoft security updates (Update Tuesday)"]
    assert ms.n > 10 and ms.exact_share is not None and ms.exact_share >= 0.9


def test_affecting_estimates_an_open_backport_on_real_data(real_db: Pvdb) -> None:
    """6.1 on 2025-03-04: CVE-2025-21839 was fixed in 6.12.16/6.13.4 on 2025-02-21 and
    reached 6.1 only in 6.1.138 (2025-05-09). As of 2025-03-04 that fix was not out: the
    answer is the other line's fix and an estimate for 6.1; asked later, 6.1.138."""
    host = [Component(kind="kernel", vendor="linux", product="linux_kernel",
                      version="6.1.129")]
    when = dt.datetime(2025, 3, 4, tzinfo=dt.UTC)
    report = real_db.affecting(host, as_of=when, estimator=estimator_for(real_db, when))
    found = {f.vuln_id: f for f in report.findings}
    fix = found["CVE-2025-21839"].fix
    assert fix.closing_version == "6.12.16" and fix.line is not None
    assert fix.line.value == "other"  # 6.1.138 was released after the as-of date
    assert "6.1.138" not in fix.fixed_versions
    assert fix.availability.basis.value == "estimated"
    assert report.past is not None and report.past.fixes_left_out > 0
    later = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)
    report = real_db.affecting(host, as_of=later, estimator=estimator_for(real_db, later))
    fix = {f.vuln_id: f for f in report.findings}["CVE-2025-21839"].fix
    assert (fix.closing_version, fix.availability.basis.value) == ("6.1.138", "vendor")
    # Another host line with no fix in the data: 5.10 never got CVE-2025-21839.
    host = [Component(kind="kernel", vendor="linux", product="linux_kernel",
                      version="5.10.234")]
    when = dt.datetime(2025, 3, 4, tzinfo=dt.UTC)
    report = real_db.affecting(host, as_of=when, estimator=estimator_for(real_db, when))
    f = {f.vuln_id: f for f in report.findings}["CVE-2025-21839"]
    assert f.fix.availability.basis.value in ("estimated", "none")
    assert (f.fix.availability.source or "").startswith("predicted")
