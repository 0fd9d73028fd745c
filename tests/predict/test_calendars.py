"""Release calendars: RRULE expansion in the vendor's time zone, overrides, bad rules."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from engine.predict import calendars
from engine.predict.errors import CalendarError

UTC = dt.UTC


def ics(body: str, uid: str = "test@vigil") -> str:
    return ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\nBEGIN:VEVENT\r\n"
            f"UID:{uid}\r\n{body}END:VEVENT\r\nEND:VCALENDAR\r\n")


PATCH_TUESDAY = ics("DTSTART;TZID=America/Los_Angeles:20031014T100000\r\n"
                    "RRULE:FREQ=MONTHLY;BYDAY=2TU\r\nX-VIGIL-VENDOR:microsoft\r\n")


def test_builtin_patch_tuesday_is_the_second_tuesday() -> None:
    cal = calendars.find(calendars.default(), "microsoft", "windows_server_2022")
    assert cal is not None and cal.precision == "exact"
    got = [d.date() for d in cal.releases_after(dt.datetime(2024, 1, 1, tzinfo=UTC), 4)]
    assert got == [dt.date(2024, 1, 9), dt.date(2024, 2, 13), dt.date(2024, 3, 12),
                   dt.date(2024, 4, 9)]


def test_release_instant_follows_daylight_saving_time() -> None:
    [cal] = calendars.parse(PATCH_TUESDAY, "pt.ics")
    winter, summer = cal.releases_after(dt.datetime(2024, 1, 1, tzinfo=UTC), 1)[0], \
        cal.releases_after(dt.datetime(2024, 7, 1, tzinfo=UTC), 1)[0]
    assert (winter.hour, summer.hour) == (18, 17)  # 10:00 PST / PDT in UTC
    assert winter.tzinfo == UTC


def test_as_of_on_release_day_before_and_after_the_release_hour() -> None:
    [cal] = calendars.parse(PATCH_TUESDAY, "pt.ics")
    before = dt.datetime(2024, 3, 12, 16, 30, tzinfo=UTC)  # 09:30 in Redmond
    after = dt.datetime(2024, 3, 12, 17, 30, tzinfo=UTC)
    assert cal.next_release(before) == dt.datetime(2024, 3, 12, 17, 0, tzinfo=UTC)
    assert cal.next_release(after).date() == dt.date(2024, 4, 9)  # type: ignore[union-attr]
    # The same instant written in another zone is the same question.
    sydney = before.astimezone(dt.timezone(dt.timedelta(hours=11)))
    assert sydney.date() == dt.date(2024, 3, 13)
    assert cal.next_release(sydney) == cal.next_release(before)


def test_naive_times_are_refused() -> None:
    [cal] = calendars.parse(PATCH_TUESDAY, "pt.ics")
    with pytest.raises(CalendarError, match="no time zone"):
        cal.next_release(dt.datetime(2024, 3, 12))


def test_oracle_cpu_is_the_tuesday_nearest_the_17th() -> None:
    cal = calendars.find(calendars.default(), "oracle", "database_server")
    assert cal is not None
    got = [d.date() for d in cal.releases_after(dt.datetime(2024, 1, 1, tzinfo=UTC), 4)]
    assert got == [dt.date(2024, 1, 16), dt.date(2024, 4, 16), dt.date(2024, 7, 16),
                   dt.date(2024, 10, 15)]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("DTSTART;TZID=America/Los_Angeles:20031014T100000\r\nRRULE:FREQ=MONTHLY;BYDAY=2XX\r\n"
         "X-VIGIL-VENDOR:microsoft\r\n", "invalid RRULE"),
        ("DTSTART;TZID=America/Los_Angeles:20031014T100000\r\nRRULE:FREQ=SOMETIMES\r\n"
         "X-VIGIL-VENDOR:microsoft\r\n", "invalid RRULE"),
        ("DTSTART:20031014T100000\r\nRRULE:FREQ=MONTHLY;BYDAY=2TU\r\n"
         "X-VIGIL-VENDOR:microsoft\r\n", "floating time"),
        ("DTSTART;VALUE=DATE:20031014\r\nRRULE:FREQ=MONTHLY;BYDAY=2TU\r\n"
         "X-VIGIL-VENDOR:microsoft\r\n", "without a time"),
        ("RRULE:FREQ=MONTHLY;BYDAY=2TU\r\nX-VIGIL-VENDOR:microsoft\r\n", "no DTSTART"),
        ("DTSTART:20031014T100000Z\r\nX-VIGIL-VENDOR:microsoft\r\n", "no RRULE"),
        ("DTSTART:20031014T100000Z\r\nRRULE:FREQ=WEEKLY\r\n", "no X-VIGIL-VENDOR"),
        ("DTSTART:20031014T100000Z\r\nRRULE:FREQ=WEEKLY\r\nX-VIGIL-VENDOR:x\r\n"
         "X-VIGIL-PRECISION:roughly\r\n", "X-VIGIL-PRECISION"),
        ("DTSTART:20031014T100000Z\r\nRRULE:FREQ=WEEKLY\r\nX-VIGIL-VENDOR:x\r\n"
         "X-VIGIL-P-NEXT:1.5\r\n", "outside"),
    ],
)
def test_invalid_calendars_are_named_errors(body: str, message: str) -> None:
    with pytest.raises(CalendarError, match=message) as err:
        calendars.parse(ics(body), "bad.ics")
    assert "bad.ics" in err.value.summary


def test_not_a_calendar() -> None:
    with pytest.raises(CalendarError, match="not an iCalendar file"):
        calendars.parse("hello", "x.ics")


def test_operator_folder_replaces_by_uid(tmp_path: Path) -> None:
    (tmp_path / "mine.ics").write_text(ics(
        "DTSTART;TZID=Europe/Berlin:20200101T090000\r\nRRULE:FREQ=MONTHLY;BYDAY=1WE\r\n"
        "X-VIGIL-VENDOR:microsoft\r\nEXDATE;TZID=Europe/Berlin:20240103T090000\r\n",
        uid="microsoft-patch-tuesday@vigil"))
    cals = calendars.default(tmp_path)
    cal = cals["microsoft-patch-tuesday@vigil"]
    assert cal.origin.startswith(str(tmp_path))
    # First Wednesday, with the January 2024 release removed by EXDATE.
    first = cal.next_release(dt.datetime(2024, 1, 1, tzinfo=UTC))
    assert first == dt.datetime(2024, 2, 7, 8, 0, tzinfo=UTC)
    assert "intel-platform-update@vigil" in cals  # the others stay


def test_missing_operator_folder(tmp_path: Path) -> None:
    with pytest.raises(CalendarError, match="does not exist"):
        calendars.default(tmp_path / "nope")
