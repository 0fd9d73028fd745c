"""The kernel CNA backtest protocol on constructed histories where the answer is known."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import math
import zipfile
from pathlib import Path

import numpy as np
import orjson
import pytest

from engine.predict import hazard, protocol
from engine.predict import kernel_cna as kc
from engine.pvdb import history as hist

D = dt.date
START = D(2024, 1, 1)


def weekly(log: hist.ReleaseLog, line: str, first: dt.date, last: dt.date, start: int = 0
           ) -> dict[str, dt.date]:
    """Releases of ``line`` every week from ``first`` to ``last`` (``line.start`` on)."""
    out: dict[str, dt.date] = {}
    day, n = first, start
    while day <= last:
        version = f"{line}.{n}" if n else line
        log.add(kc.KERNEL, line, day, version)
        out[version] = day
        day += dt.timedelta(days=7)
        n += 1
    return out


END = D(2024, 12, 31)


def corpus(records: list[kc.Record], end: dt.date = END) -> kc.Corpus:
    log = hist.ReleaseLog()
    dated: dict[str, dt.date] = {}
    dated |= weekly(log, "6.1", D(2022, 12, 11), end, start=0)
    dated |= weekly(log, "6.6", D(2023, 10, 29), end, start=0)
    log.newest = end
    log.seal()
    return kc.Corpus({r.cve: r for r in records}, log, end, dated)


def record(cve: str, published: dt.date, rows: list[tuple[dt.date, set[str]]],
           dyad: tuple[tuple[str, str | None], ...]) -> kc.Record:
    return kc.Record(cve, published, tuple(d for d, _ in rows),
                     tuple(frozenset(v) for _, v in rows), dyad, ("net/ipv4/tcp.c",))


def version_on(c: kc.Corpus, line: str, day: dt.date) -> str:
    return next(v for v, d in sorted(c.dated.items(), key=lambda x: x[1], reverse=True)
                if kc.line_of(v) == line and d <= day)


def test_a_case_is_not_asked_before_its_cve_is_public_nor_sees_a_later_record() -> None:
    """The fix on 6.6 shipped long before publication; the record named the 6.1 backport
    only 20 days after publication. Questions start the day after publication, and until
    that later commit they see the record without the 6.1 fix."""
    published = D(2024, 6, 3)
    c = corpus([])
    fix66 = version_on(c, "6.6", D(2024, 2, 1))
    fix61 = version_on(c, "6.1", published + dt.timedelta(days=18))
    rec = record("CVE-2024-0001", published,
                 [(published, {fix66, "6.8"}), (published + dt.timedelta(days=20),
                                                {fix66, fix61, "6.8"})],
                 (("5.10", fix66), ("5.10", fix61), ("5.10", "6.8")))
    c = corpus([rec])
    [pair] = c.pairs()
    assert (pair.line, pair.fixed) == ("6.1", published + dt.timedelta(days=20))
    assert pair.released == c.dated[fix61] < pair.fixed  # released, but not yet named
    q = protocol.build_questions(c)
    days = [dt.date.fromordinal(int(d)) for d in q.day]
    assert days == [published + dt.timedelta(days=a) for a in (1, 7, 14)]
    assert min(days) > published
    # Each question sees the record of its day: 6.6 fixed, 6.1 not yet named.
    assert q.x["n_fixed"].tolist() == [1.0, 1.0, 1.0]
    assert q.x["next_newer_fixed"].tolist() == [1.0, 1.0, 1.0]
    assert q.x["wait"].tolist() == [1.0, 7.0, 14.0]
    # The outcome: the fix became known 20 days after publication.
    assert protocol.outcome(q, 30).tolist() == [1.0, 1.0, 1.0]
    assert protocol.outcome(q, 7).tolist() == [0.0, 0.0, 1.0]


def test_a_record_published_later_is_not_seen_earlier() -> None:
    rec = record("CVE-2024-0002", D(2024, 9, 1), [(D(2024, 9, 1), {"6.6.30", "6.8"})],
                 (("6.1", "6.6.30"), ("6.1", "6.8")))
    assert not rec.public(D(2024, 9, 1)) and rec.public(D(2024, 9, 2))
    assert rec.fixed_as_of(D(2024, 9, 1)) == frozenset()
    assert rec.fixed_as_of(D(2024, 9, 2)) == {"6.6.30", "6.8"}


def test_affected_lines_follow_the_dyad() -> None:
    lines = [("6.6", "6.6.40"), ("6.1", "6.1.100"), ("5.15", "5.15.160")]
    # Brought in by 5.18 (so 5.15 never had it), fixed in mainline 6.9 and 6.6; 6.1 has none.
    rec = record("CVE-1", D(2024, 7, 1), [], (("5.18", "6.6.35"), ("5.18", "6.9")))
    assert list(kc.affected_lines(rec, lines)) == ["6.6", "6.1"]
    # Fixed in mainline 6.1: every later branch was cut with the fix.
    rec = record("CVE-2", D(2024, 7, 1), [], (("4.9", "5.15.80"), ("4.9", "6.1")))
    assert list(kc.affected_lines(rec, lines)) == ["5.15"]
    # Brought in by a stable backport (6.1.90) and not fixed there.
    rec = record("CVE-3", D(2024, 7, 1), [], (("6.1.90", None),))
    assert list(kc.affected_lines(rec, lines)) == ["6.1"]


def test_never_fixed_pairs_are_scored_with_censoring() -> None:
    published = D(2024, 3, 4)
    fix66 = version_on(corpus([]), "6.6", D(2024, 2, 20))
    rec = record("CVE-2024-0003", published, [(published, {fix66, "6.8"})],
                 (("5.4", fix66), ("5.4", "6.8")))
    c = corpus([rec], end=D(2024, 5, 1))
    [pair] = c.pairs()
    assert pair.line == "6.1" and pair.fixed is None and pair.observable == D(2024, 5, 1)
    q = protocol.build_questions(c)
    ages = (q.day - q.published).tolist()
    assert ages == [1, 7, 14, 30]  # 60 is past the data's end
    y = protocol.outcome(q, 30).tolist()
    assert y[:3] == [0.0, 0.0, 0.0]  # the data runs 30 days past these
    assert all(math.isnan(v) for v in y[3:])  # not observable for 30 days: left out
    # No date for a fix that never came: no error; a date: its distance to the data end.
    none = protocol.date_error(q, np.full(len(q), np.nan))
    assert none.tolist() == [0.0] * 4
    guess = q.day.astype(float) + 10
    cut = q.observable.astype(float)
    assert protocol.date_error(q, guess).tolist() == (cut - guess).tolist()


def test_life_table_matches_a_known_censored_sample() -> None:
    """100 questions: 20 fixed within a week, 30 watched only 3 days of it (censored), the
    rest watched a year without a fix: the censored ones count for 3/7 of the week at risk
    (the actuarial life table)."""
    to_fix = np.array([3.0] * 20 + [np.nan] * 80)
    watched = np.array([365.0] * 20 + [3.0] * 30 + [365.0] * 50)
    cdf = protocol.life_table(to_fix, watched)
    week = 20 / (70 + 30 * 3 / 7)
    assert cdf[hazard.EDGES.index(7)] == pytest.approx(week)
    assert cdf[-1] == pytest.approx(week)


def test_hazard_model_recovers_an_exponential_wait() -> None:
    """Fixes after an exponential wait of mean 20 days for one kind of branch, never for
    the other: the model's P(within 30 days) is 1 - e^(-1.5) and about 0."""
    rng = np.random.default_rng(1)
    n = 4000
    kind = rng.integers(0, 2, n).astype(float)
    wait = rng.exponential(20.0, n)
    to_fix = np.where(kind == 0, wait, np.nan)
    watched = np.full(n, 365.0)
    m = hazard.HazardModel(["kind"], ["kind"], min_samples_leaf=50)
    assert m.fit(kind[:, None], to_fix, watched)
    f = m.forecast(np.array([[0.0], [1.0]]))
    p = f.p_within(30)
    assert p[0] == pytest.approx(1 - math.exp(-1.5), abs=0.04)
    assert p[1] < 0.02
    median = f.quantile_if_fixed(0.5)[0]
    assert median == pytest.approx(20 * math.log(2), abs=2.0)


def test_hazard_model_needs_enough_fixes() -> None:
    m = hazard.HazardModel(["x"])
    assert not m.fit(np.zeros((50, 1)), np.full(50, 5.0), np.full(50, 365.0))
    with pytest.raises(RuntimeError):
        m.forecast(np.zeros((1, 1)))


def test_resampler_weighs_questions_and_resamples_pairs() -> None:
    pair = np.array([0, 0, 0, 1])
    rs = protocol.Resampler(pair, 2, draws=200)
    values = np.array([1.0, 1.0, 1.0, 0.0])
    assert rs.mean(values).value == pytest.approx(0.75)
    assert rs.pair_mean(values).value == pytest.approx(0.5)
    s = rs.skill(np.array([0.1, 0.1, 0.1, 0.1]), np.array([0.2, 0.2, 0.2, 0.2]))
    assert s.value == pytest.approx(0.5)
    assert s.low == pytest.approx(0.5) and s.high == pytest.approx(0.5)


def write_corpus(folder: Path) -> tuple[Path, Path]:
    """A two-record kernel CNA folder (zip, history.csv.gz) and a release file."""
    c = corpus([])
    releases = {"versions": {v: {"name": v, "date": d.isoformat()} for v, d in c.dated.items()}}
    rel = folder / "linux-kernel.json"
    rel.write_bytes(orjson.dumps(releases))
    cna = folder / "cna"
    cna.mkdir()
    rows = []
    with zipfile.ZipFile(cna / "records.zip", "w") as zf:
        for n, day in enumerate((D(2024, 3, 4), D(2024, 5, 6))):
            cve = f"CVE-2024-{n + 1:04d}"
            fix66 = version_on(c, "6.6", day - dt.timedelta(days=3))
            zf.writestr(f"cve/published/2024/{cve}.json", orjson.dumps({
                "cveMetadata": {"cveId": cve, "state": "PUBLISHED"},
                "containers": {"cna": {"affected": [{"programFiles": ["fs/ext4/inode.c"]}]}}}))
            zf.writestr(f"cve/published/2024/{cve}.dyad",
                        f"# dyad\n5.4:a:{fix66}:b\n5.4:a:6.8:c\n")
            rows.append([cve, "0" * 40, f"{day}T10:00:00Z", "A", f"{fix66} 6.8"])
    text = io.StringIO()
    w = csv.writer(text, lineterminator="\n")
    w.writerow(["cve_id", "commit", "commit_date_utc", "change", "fixed_versions"])
    w.writerows(rows)
    (cna / "history.csv.gz").write_bytes(gzip.compress(text.getvalue().encode()))
    return cna, rel


def test_load_reads_the_zip_history_and_releases(tmp_path: Path) -> None:
    cna, rel = write_corpus(tmp_path)
    c = kc.load(cna, rel)
    assert sorted(c.records) == ["CVE-2024-0001", "CVE-2024-0002"]
    r = c.records["CVE-2024-0001"]
    assert r.published == D(2024, 3, 4) and r.files == ("fs/ext4/inode.c",)
    assert [p.line for p in c.pairs()] == ["6.1", "6.1"]


def test_run_scores_every_method_on_the_same_questions(tmp_path: Path) -> None:
    cna, rel = write_corpus(tmp_path)
    c = kc.load(cna, rel)
    result = protocol.run(c, {}, START, c.end, methods=(*protocol.POINT_BASELINES,
                                                   "base-rate"), draws=50)
    n = int(result.scored.sum())
    assert n == len(result.questions) > 0
    for name, s in result.overall.items():
        assert sum(s.by_basis.values()) == n, name
    # The base rate is the reference: its own skill is 0.
    assert result.overall["base-rate"].bss30.value in (0.0, None)



def three_lines(end: dt.date = END) -> tuple[hist.ReleaseLog, dict[str, dt.date]]:
    log = hist.ReleaseLog()
    dated: dict[str, dt.date] = {}
    dated |= weekly(log, "5.15", D(2021, 10, 31), end, start=0)
    dated |= weekly(log, "6.1", D(2022, 12, 11), end, start=0)
    dated |= weekly(log, "6.6", D(2023, 10, 29), end, start=0)
    log.newest = end
    log.seal()
    return log, dated


def test_features_count_the_maintained_branches_already_fixed() -> None:
    """The 6.6 backport is named 10 days after publication; 6.1 and 5.15 never get one.
    Their questions see no other maintained branch fixed before that day, and one of the two
    other maintained branches (a share of 1/2) after it."""
    log, dated = three_lines()
    published = D(2024, 6, 3)
    fix66 = next(v for v, d in sorted(dated.items(), key=lambda x: x[1], reverse=True)
                 if kc.line_of(v) == "6.6" and d <= published)
    rec = record("CVE-2024-0010", published,
                 [(published, {"6.8"}), (published + dt.timedelta(days=10), {fix66, "6.8"})],
                 (("5.10", fix66), ("5.10", "6.8")))
    c = kc.Corpus({rec.cve: rec}, log, END, dated)
    q = protocol.build_questions(c)
    for line in ("6.1", "5.15"):
        rows = [i for i in range(len(q)) if q.pairs[q.pair[i]].line == line]
        ages = [int(q.day[i] - q.published[i]) for i in rows]
        assert ages == list(protocol.AGES)[:len(ages)] and len(ages) > 3
        fixed = [q.x["alive_fixed"][i] for i in rows]
        share = [q.x["alive_fixed_share"][i] for i in rows]
        assert fixed == [0.0, 0.0] + [1.0] * (len(rows) - 2)
        assert share == [0.0, 0.0] + [0.5] * (len(rows) - 2)
        # No mainline release named yet (6.8 is not out in this log).
        assert {q.x["since_mainline"][i] for i in rows} == {-1.0}


def test_days_since_the_mainline_fix_counts_from_its_release() -> None:
    """Fixed in mainline 6.6 (released 2023-10-29): the branches cut before it (6.1, 5.15)
    are asked; each question sees the days since that release, and the days it has
    waited since publication."""
    log, dated = three_lines()
    published = D(2024, 6, 3)
    rec = record("CVE-2024-0011", published, [(published, {"6.6"})], (("5.10", "6.6"),))
    c = kc.Corpus({rec.cve: rec}, log, END, dated)
    q = protocol.build_questions(c)
    assert sorted({p.line for p in q.pairs}) == ["5.15", "6.1"]
    days = np.array([dt.date.fromordinal(int(d)) for d in q.day])
    expect = [float((d - D(2023, 10, 29)).days) for d in days]
    assert q.x["since_mainline"].tolist() == expect
    assert q.x["wait"].tolist() == [float((d - published).days) for d in days]


def test_a_mainline_release_after_the_question_is_not_seen() -> None:
    """The record names mainline 6.6 before it is released: questions before its release
    day see no mainline fix."""
    log, dated = three_lines()
    published = D(2023, 10, 1)
    rec = record("CVE-2023-0012", published, [(published, {"6.6"})], (("5.10", "6.6"),))
    c = kc.Corpus({rec.cve: rec}, log, END, dated)
    q = protocol.build_questions(c)
    days = [dt.date.fromordinal(int(d)) for d in q.day]
    seen = q.x["since_mainline"].tolist()
    assert any(d <= D(2023, 10, 29) for d in days)
    for d, s in zip(days, seen, strict=True):
        assert s == (-1.0 if d <= D(2023, 10, 29) else float((d - D(2023, 10, 29)).days))


def test_recalibration_uses_only_answers_whose_outcome_was_known() -> None:
    """1,000 past answers said 0.9 and half of them got the fix within 30 days: a new 0.9
    becomes 0.5. Answers asked less than 30 days before the cut, whose outcome was not yet
    known, are not used, even if every one of them was later fixed."""
    cut = D(2025, 1, 1).toordinal()
    n_old, n_recent = 1000, 400
    day = np.r_[np.full(n_old, cut - 60), np.full(n_recent, cut - 10), [cut]].astype(np.int64)
    fixed = np.r_[np.where(np.arange(n_old) % 2 == 0, cut - 50, protocol.NEVER),
                  np.full(n_recent, cut + 5), [protocol.NEVER]].astype(np.int64)
    n = day.size
    q = protocol.Questions(pairs=[], pair=np.arange(n), day=day, x={},
                           kind=np.zeros(n, dtype=np.int64), fixed=fixed,
                           observable=np.full(n, cut + 400), published=day - 1,
                           reference=np.full(n, -1), next_release=np.full(n, -1))
    raw = np.r_[np.full(n - 1, 0.9), [np.nan]]
    raw[-1] = np.nan
    rows = np.array([n - 1])
    raw_new = raw.copy()
    raw_new[-1] = 0.9
    out = protocol._recalibrated(q, raw_new, 30, cut, rows)
    assert out.tolist() == [pytest.approx(0.5)]
    # Too few answers with a known outcome: the probability stays as it was.
    few = raw_new.copy()
    few[:n_old - protocol.MIN_RECALIBRATE + 1] = np.nan
    assert protocol._recalibrated(q, few, 30, cut, rows).tolist() == [pytest.approx(0.9)]


def synthetic_questions(rng: np.random.Generator, n_pairs: int, first: int
                        ) -> protocol.Questions:
    """Pairs published over a year, asked at 1, 30 and 90 days; the fix comes after an
    exponential wait of mean 40 days for half of them (feature 1), never for the others."""
    published = first + rng.integers(0, 365, n_pairs)
    fast = rng.integers(0, 2, n_pairs)
    lag = np.where(fast == 1, 1 + rng.exponential(40.0, n_pairs), np.inf)
    fixed_at = np.where(np.isfinite(lag), published + np.nan_to_num(lag, posinf=0),
                        protocol.NEVER).astype(np.int64)
    pair, day = [], []
    for i in range(n_pairs):
        for age in (1, 30, 90):
            if fixed_at[i] >= published[i] + age:
                pair.append(i)
                day.append(published[i] + age)
    p, d = np.array(pair), np.array(day, dtype=np.int64)
    x = {n: np.zeros(d.size) for n in protocol.HAZARD_FEATURES}
    x["n_fixed"] = fast[p].astype(float)
    x["wait"] = (d - published[p]).astype(float)
    return protocol.Questions(pairs=[None] * n_pairs, pair=p, day=d, x=x,  # type: ignore[list-item]
                              kind=np.zeros(d.size, dtype=np.int64), fixed=fixed_at[p],
                              observable=np.full(d.size, first + 2000),
                              published=published[p], reference=np.full(d.size, -1),
                              next_release=np.full(d.size, -1))


def test_hazard_answers_do_not_change_when_the_future_does() -> None:
    """The hazard method's answers (causal weights, recalibration) to questions before a
    day are the same whatever happens from that day on: fixes after it moved or removed."""
    rng = np.random.default_rng(3)
    first = D(2024, 1, 1).toordinal()
    q = synthetic_questions(rng, 1500, first)
    later = first + 300

    def answers(qq: protocol.Questions) -> protocol.Answers:
        return protocol.model(qq, protocol.HAZARD_FEATURES, label="hazard", refit=90,
                              weigh_pairs="causal", per_pair=9, recalibrate=True,
                              params={"max_iter": 10, "min_samples_leaf": 100})

    a = answers(q)
    changed = protocol.Questions(**{f: getattr(q, f) for f in protocol.Questions.__slots__})
    moved = q.fixed >= later
    changed.fixed = np.where(moved & (rng.random(len(q)) < 0.5), protocol.NEVER,
                             q.fixed + 17 * moved)
    b = answers(changed)
    before = q.day < later
    assert before.sum() > 500 and not np.isnan(a.p30[before]).all()
    assert np.array_equal(a.p30[before], b.p30[before], equal_nan=True)
    assert np.array_equal(a.p_ever[before], b.p_ever[before], equal_nan=True)
    assert np.array_equal(a.date[before], b.date[before], equal_nan=True)
    # The fast half is told apart from the never-fixed half.
    after = ~np.isnan(a.p30) & (q.x["wait"] == 1)
    fast = q.x["n_fixed"] == 1
    assert a.p30[after & fast].mean() > 0.3 > a.p30[after & ~fast].mean()


def calibrated_answers(qq: protocol.Questions, refit: int = 90) -> protocol.Answers:
    x = {n: qq.x.get(n, np.zeros(len(qq))) for n in protocol.CALIBRATED_FEATURES}
    qq = protocol.Questions(**{f: getattr(qq, f) for f in protocol.Questions.__slots__})
    qq.x = x
    return protocol.calibrated(qq, refit=refit,
                               params={"max_iter": 10, "min_samples_leaf": 100})


def test_calibrated_hazard_answers_do_not_change_when_the_future_does() -> None:
    """The calibrated hazard model's answers (decayed weights, censored recalibration,
    conformal levels) to questions before a day are the same whatever happens from that
    day on: fixes after it moved or removed."""
    rng = np.random.default_rng(5)
    first = D(2024, 1, 1).toordinal()
    q = synthetic_questions(rng, 2500, first)
    later = first + 330
    a = calibrated_answers(q)
    changed = protocol.Questions(**{f: getattr(q, f) for f in protocol.Questions.__slots__})
    moved = q.fixed >= later
    changed.fixed = np.where(moved & (rng.random(len(q)) < 0.5), protocol.NEVER,
                             q.fixed + 17 * moved)
    b = calibrated_answers(changed)
    before = q.day < later
    assert before.sum() > 500 and not np.isnan(a.p30[before]).all()
    for field_name in ("p30", "p_ever", "date", "low", "high"):
        assert np.array_equal(getattr(a, field_name)[before], getattr(b, field_name)[before],
                              equal_nan=True), field_name
    # The fast half is told apart from the never-fixed half, and only it gets dates.
    after = ~np.isnan(a.p30) & (q.x["wait"] == 1)
    fast = q.x["n_fixed"] == 1
    assert a.p30[after & fast].mean() > 0.3 > a.p30[after & ~fast].mean()
    dated = ~np.isnan(a.date)
    assert dated.any() and fast[dated].mean() > 0.9
    assert (a.date[dated] >= q.day[dated]).all() and (a.high[dated] >= a.low[dated]).all()


def test_calibrated_hazard_is_unknown_while_evidence_is_thin() -> None:
    """Fewer than ``hazard.MIN_EVENTS`` fixes seen before a refit: no date, basis
    ``unknown``, the fallback's probabilities (here none)."""
    rng = np.random.default_rng(11)
    first = D(2024, 1, 1).toordinal()
    q = synthetic_questions(rng, 120, first)  # about 60 fixes in all
    a = calibrated_answers(q)
    assert set(a.basis) == {"unknown"}
    assert np.isnan(a.date).all() and np.isnan(a.p30).all()


def test_censored_recalibration_counts_open_answers_as_censored() -> None:
    """2,000 earlier answers said 0.2 (1,000) or 0.8 (1,000). Of the 0.8 ones asked 60
    days before the refit, half got the fix within 30 days; 0.2 ones asked 10 days before,
    none fixed yet, are still open: censored at the refit, so they say nothing about days
    10-30 and the life table keeps their bin from claiming 0. A new 0.8 becomes 0.5."""
    cut = D(2025, 6, 1).toordinal()
    n = 2000
    day = np.r_[np.full(n // 2, cut - 60), np.full(n // 2, cut - 10), [cut]].astype(np.int64)
    fixed = np.r_[np.where(np.arange(n // 2) % 2 == 0, cut - 50, protocol.NEVER),
                  np.full(n // 2, protocol.NEVER), [protocol.NEVER]].astype(np.int64)
    m = day.size
    q = protocol.Questions(pairs=[], pair=np.arange(m), day=day, x={},
                           kind=np.zeros(m, dtype=np.int64), fixed=fixed,
                           observable=np.full(m, cut + 400), published=day - 1,
                           reference=np.full(m, -1), next_release=np.full(m, -1))
    raw = np.r_[np.full(n // 2, 0.8), np.full(n // 2, 0.2), [0.8]]
    past = np.arange(n)
    out = protocol._censored_isotonic(q, raw, 30, cut, past, np.array([m - 1]))
    assert out.tolist() == [pytest.approx(0.5)]
    # Too few earlier answers: the probability stays as it was.
    assert protocol._censored_isotonic(q, raw, 30, cut, past[:100],
                                       np.array([m - 1])).tolist() == [pytest.approx(0.8)]


def test_conformal_levels_cover_the_earlier_fixes() -> None:
    """Earlier dated answers whose fixes came after 1..100 days (uniform) and whose
    quantiles say "level L is L x 100 days": the date is 50 days on (level 0.5, the median
    wait, no cap below it), the interval ends 80 days on (level 0.8: the narrowest end
    covering 80% of them). With quantiles of L x 50 days no choice covers 80%: the highest
    level, uncapped; the date is the highest level's 48 days, nearest the median."""
    cut = D(2025, 6, 1).toordinal()
    n = 1000
    day = np.full(n, cut - 150, dtype=np.int64)
    fixed = day + 1 + np.arange(n) % 100
    q = protocol.Questions(pairs=[], pair=np.arange(n), day=day, x={},
                           kind=np.zeros(n, dtype=np.int64), fixed=fixed,
                           observable=np.full(n, cut + 400), published=day - 1,
                           reference=np.full(n, -1), next_release=np.full(n, -1))
    levels = np.asarray(protocol.LEVELS)
    dated = np.ones(n, dtype=bool)

    def span(choice: tuple[int, float], scale: float) -> float:
        return min(math.ceil(protocol.LEVELS[choice[0]] * scale), choice[1])

    point, high = protocol._levels(q, np.tile(levels * 100.0, (n, 1)), dated, cut)
    assert (span(point, 100.0), span(high, 100.0)) == (50, 80)
    point, high = protocol._levels(q, np.tile(levels * 50.0, (n, 1)), dated, cut)
    assert high == (len(protocol.LEVELS) - 1, float(protocol.EVER))
    assert span(point, 50.0) == 48
    # Answers that gave no date, asked too recently or too long ago, do not count: the
    # defaults.
    default = ((protocol.LEVELS.index(0.5), float(protocol.EVER)),
               (protocol.LEVELS.index(0.8), float(protocol.EVER)))
    assert protocol._levels(q, np.tile(levels * 50.0, (n, 1)), ~dated, cut) == default
    assert protocol._levels(q, np.tile(levels * 50.0, (n, 1)), dated,
                            int(day[0]) + protocol.CAME_AFTER) == default
    assert protocol._levels(q, np.tile(levels * 50.0, (n, 1)), dated,
                            int(day[0]) + protocol.CONFORMAL_DAYS + 1) == default
