"""The estimator on constructed histories where the right answer is known."""

from __future__ import annotations

import datetime as dt
import math

import pytest

from engine.errors import UsageError
from engine.predict import calendars
from engine.predict.estimator import Announcement, Basis, Estimator, Question
from engine.pvdb.history import History, LineFix, ReleaseLog

UTC = dt.UTC
ACME = ("acme", "hypervisor")
AS_OF = dt.datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


def exponential(n: int, mean: float) -> list[float]:
    return [-mean * math.log(1 - (i + 0.5) / n) for i in range(n)]


def weekly_log(line: str = "2.1", start: dt.date = dt.date(2022, 1, 3),
               end: dt.date = dt.date(2024, 5, 27)) -> ReleaseLog:
    log = ReleaseLog()
    day, n = start, 0
    while day <= end:
        log.add(ACME, line, day, f"{line}.{n}")
        day += dt.timedelta(days=7)
        n += 1
    log.seal()
    return log


def history(lags: list[float], log: ReleaseLog | None = None) -> History:
    """One line fix per lag, references spread over 2023 (all fixed before AS_OF)."""
    fixes = [
        LineFix(f"CVE-2023-{i:05d}", ACME, "2.1", "x",
                dt.date(2023, 1, 1) + dt.timedelta(days=i % 300), "first fix",
                dt.date(2023, 1, 1) + dt.timedelta(days=i % 300 + round(lag)), None)
        for i, lag in enumerate(lags)
    ]
    return History(fixes, log or weekly_log(), dt.date(2024, 5, 31))


def question(reference: dt.date | None, **kw: object) -> Question:
    return Question(ACME, kw.pop("line", "2.1"), kw.pop("as_of", AS_OF),  # type: ignore[arg-type]
                    reference, "2.2.5 (2.2)", **kw)  # type: ignore[arg-type]


def test_known_lag_distribution_gives_its_median_and_interval() -> None:
    """Lags exponential with mean 14 days; a case whose first fix came out yesterday:
    memorylessness makes the answer the same as for a fresh case."""
    est = Estimator(history(exponential(400, 14.0)), {}).estimate(
        question(dt.date(2024, 5, 31)))
    assert est.basis is Basis.HISTORY
    assert est.date is not None and est.low is not None and est.high is not None
    waited = (est.date - dt.date(2024, 6, 1)).days
    assert waited == pytest.approx(14 * math.log(2), abs=1.6)
    assert (est.low - dt.date(2024, 6, 1)).days <= 2
    assert (est.high - dt.date(2024, 6, 1)).days == pytest.approx(14 * math.log(10), abs=4)
    assert est.p_within == pytest.approx(1 - math.exp(-30 / 14), abs=0.05)
    assert est.p_ever == pytest.approx(1.0)


def test_interval_covers_its_nominal_share_of_new_cases() -> None:
    lags = exponential(300, 20.0)
    est = Estimator(history(lags), {}).estimate(question(dt.date(2024, 5, 31)))
    assert est.low is not None and est.high is not None
    start = dt.date(2024, 5, 31)
    fresh = exponential(1000, 20.0)
    inside = sum(1 for lag in fresh
                 if est.low <= start + dt.timedelta(days=round(lag)) <= est.high)
    # Nominal 80%; whole days with both ends included (and the band that accounts for a
    # finite history) cover a little more, never less.
    assert 0.78 <= inside / len(fresh) <= 0.9


def test_fixed_cadence_ships_on_the_calendar() -> None:
    """A vendor that releases on the second Tuesday and whose fixes always ship in the
    next release: the estimate is the next second Tuesday."""
    cal = calendars.parse(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\nUID:acme@t\r\n"
        "DTSTART:20200114T170000Z\r\nRRULE:FREQ=MONTHLY;BYDAY=2TU\r\nX-VIGIL-VENDOR:acme\r\n"
        "X-VIGIL-P-NEXT:0.9\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n", "acme.ics")
    cals = {c.uid: c for c in cal}
    # No history at all: the calendar's prior.
    est = Estimator(History([], ReleaseLog(), dt.date(2024, 5, 31)), cals).estimate(
        question(dt.date(2024, 5, 20), line=None))
    assert est.basis is Basis.CALENDAR
    assert est.date == dt.date(2024, 6, 11)
    assert est.interval == (dt.date(2024, 6, 11), dt.date(2024, 6, 11))  # P(next) = 0.9
    assert est.p_within == pytest.approx(0.9)
    # With a history of fixes that each shipped in the following release.
    fixes = []
    for month in range(1, 13):
        reference = dt.date(2023, month, 1)
        second_tuesday = next(d for d in (dt.date(2023, month, k) for k in range(8, 15))
                              if d.weekday() == 1)
        for k in range(3):
            fixes.append(LineFix(f"V-{month}-{k}", ACME, "all", "x", reference, "advisory",
                                 second_tuesday, None))
    est = Estimator(History(fixes, ReleaseLog(), dt.date(2024, 5, 31)), cals).estimate(
        question(dt.date(2024, 5, 30), line=None))
    assert est.basis is Basis.CALENDAR
    assert est.date == dt.date(2024, 6, 11)
    assert est.low == dt.date(2024, 6, 11)


def test_thin_history_is_unknown_with_a_wide_interval() -> None:
    est = Estimator(history([3.0, 5.0, 9.0]), {}).estimate(question(dt.date(2024, 5, 25)))
    assert est.basis is Basis.UNKNOWN
    assert est.date is None and est.confidence is None
    assert "too thin" in est.reason
    assert est.interval == (dt.date(2024, 6, 1), dt.date(2025, 6, 1))


def test_waiting_longer_than_any_case_seen_is_unknown() -> None:
    est = Estimator(history(exponential(100, 5.0)), {}).estimate(
        question(dt.date(2023, 6, 1)))
    assert est.basis is Basis.UNKNOWN
    assert "longer than" in est.reason


def test_lines_that_mostly_never_get_the_fix_give_no_date() -> None:
    lags = [float(d) for d in range(1, 6)]
    h = history(lags)
    never = [LineFix(f"N-{i}", ACME, "2.1", "x", dt.date(2023, 3, 1), "first fix", None, None)
             for i in range(60)]
    h = History(h.fixes + never, h.releases, h.end)
    est = Estimator(h, {}, min_events=5, min_later=2).estimate(question(dt.date(2024, 5, 30)))
    assert est.basis is Basis.UNKNOWN
    assert est.p_within is not None and est.p_within < 0.1


def test_announced_date_wins() -> None:
    est = Estimator(history(exponential(100, 14.0)), {},
                    announced={"CVE-2024-0001": Announcement(dt.date(2024, 6, 11), "XSA-999")}
                    ).estimate(question(dt.date(2024, 5, 31), vuln_id="CVE-2024-0001"))
    assert (est.basis, est.date, est.interval) == (
        Basis.ANNOUNCED, dt.date(2024, 6, 11), (dt.date(2024, 6, 11), dt.date(2024, 6, 11)))
    assert est.p_within == 1.0 and est.confidence == 1.0


def test_unmaintained_line_is_unknown() -> None:
    log = weekly_log(end=dt.date(2024, 1, 1))
    est = Estimator(history(exponential(100, 14.0), log), {}).estimate(
        question(dt.date(2024, 5, 31)))
    assert est.basis is Basis.UNKNOWN
    assert "unmaintained" in est.reason


def test_as_of_must_carry_a_time_zone() -> None:
    with pytest.raises(UsageError, match="no time zone"):
        question(dt.date(2024, 5, 31), as_of=dt.datetime(2024, 6, 1))


def test_as_of_in_another_zone_is_read_in_utc() -> None:
    """01:00 on 1 June in UTC+3 is still 31 May in UTC: a release dated 31 May is not
    yet known."""
    east = dt.datetime(2024, 6, 1, 1, 0, tzinfo=dt.timezone(dt.timedelta(hours=3)))
    assert question(None, as_of=east).day == dt.date(2024, 5, 31)
