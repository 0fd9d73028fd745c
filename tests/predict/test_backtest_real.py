"""The backtest on the real data in ../shared/data/feeds (skipped where absent)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from engine.predict import backtest, calendars, estimator_for
from engine.pvdb import Component, Pvdb
from engine.pvdb import history as hist

pytestmark = [pytest.mark.shared_data, pytest.mark.slow]


FULL_CORPUS = "kernel_cna_full"
"""Every record the kernel CNA published (ingested with the other feeds; the honest
protocol on its record history is tested on a sample below)."""


@pytest.fixture(scope="module")
def real_db(feeds_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pvdb]:
    with Pvdb.open(tmp_path_factory.mktemp("real") / "pvdb.duckdb") as db:
        db.ingest([str(p) for p in sorted(feeds_dir.iterdir())
                   if p.is_dir()])
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
    # every four weeks through 2024: the full kernel CNA history is ~67,000 line fixes
    result = backtest.run(h, calendars.default(), dt.date(2024, 1, 1), dt.date(2024, 12, 31),
                          step=28)
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
    assert ms.n >= 5 and ms.exact_share is not None and ms.exact_share >= 0.9


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


def test_kernel_cna_protocol_on_a_sample_of_the_full_history(feeds_dir: Path) -> None:
    """The honest protocol on a seeded tenth of the kernel CNA's records (the full run is
    `vigil predict backtest --kernel-cna`, docs/prediction.md): every question comes after
    its CVE was public and sees the record of its day."""
    from engine.predict import kernel_cna, protocol

    folder = feeds_dir / FULL_CORPUS
    if not folder.is_dir():
        pytest.skip(f"{folder} not found")
    corpus = kernel_cna.load(folder, feeds_dir / "releases")
    assert len(corpus.records) > 14_000
    sample = kernel_cna.sample(corpus, 0.1)
    assert sample is not None
    result = protocol.run(corpus, calendars.default(), dt.date(2024, 4, 1), corpus.end,
                          methods=("base-rate", "conditional-median", "next-release"),
                          sample=sample, draws=100)
    q = result.questions
    assert len(q) > 3000 and len({int(i) for i in q.pair}) > 1000
    assert bool((q.day > q.published).all())
    for i in range(0, len(q), 97):
        pair = q.pairs[int(q.pair[i])]
        day = dt.date.fromordinal(int(q.day[i]))
        record = corpus.records[pair.cve]
        named = record.fixed_as_of(day)
        before = [f for d, f in zip(record.days, record.fixed_sets, strict=True) if d < day]
        assert named == (before[-1] if before else frozenset())
        lines = {kernel_cna.line_of(v) for v in named
                 if v in corpus.dated and corpus.dated[v] < day} - {pair.line}
        assert q.x["n_fixed"][i] == len(lines)
        assert pair.fixed is None or pair.fixed >= day  # open on the day it is asked
    # Never-fixed pairs are asked and scored.
    never = q.fixed == protocol.NEVER
    assert never.any() and not np.isnan(result.y30[never]).all()
    s = result.overall
    assert s["base-rate"].bss30.value == 0.0
    cm = s["conditional-median"]
    assert cm.bss30.value is not None and cm.bss30.value < 0  # a 0/1 forecast: worse
