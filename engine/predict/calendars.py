"""Vendor release calendars: RFC 5545 recurrence rules kept as iCalendar files.

A calendar is one ``VEVENT`` in a ``.ics`` file (``feeds/calendars/`` ships the built-in
ones; an operator folder, ``VIGIL_CALENDARS``, adds to them and replaces any with the same
``UID``). Each event says when a vendor publishes fixes:

* ``DTSTART`` with a ``TZID`` (or in UTC, ``…Z``): the first release and its wall-clock
  time in the vendor's time zone. A floating time (no zone) is refused: a release instant
  must be unambiguous, since "Tuesday" in Redmond is already Wednesday in Sydney.
* ``RRULE``: the recurrence (``FREQ=MONTHLY;BYDAY=2TU`` is Microsoft's second Tuesday),
  expanded with :mod:`dateutil.rrule`; ``EXDATE`` / ``RDATE`` remove or add releases.
* ``X-VIGIL-VENDOR`` and ``X-VIGIL-PRODUCTS`` (comma-separated CPE-style product names,
  ``*`` for all): what the calendar applies to.
* ``X-VIGIL-PRECISION``: ``exact`` (releases fall on the rule's dates) or ``approximate``
  (the rule is a cadence, e.g. Linux stable "every week or so" per branch; the line's own
  release history is then projected instead).
* ``X-VIGIL-P-NEXT``: the prior probability that a fix that is pending now ships in the
  next release (else the one after, and so on), used when history is too thin.

Every problem raises :class:`~engine.predict.errors.CalendarError` naming the file and
the event.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import icalendar
from dateutil import rrule

from engine.predict.errors import CalendarError

BUILTIN_DIR = Path(__file__).resolve().parent.parent.parent / "feeds" / "calendars"
"""The calendars shipped with Vigil (``feeds/calendars`` in the source tree)."""

_PRECISIONS = ("exact", "approximate")


@dataclass(frozen=True, slots=True)
class Calendar:
    """One vendor's release cadence."""

    uid: str
    summary: str
    vendor: str
    products: tuple[str, ...]
    """CPE-style product names the calendar covers; ``("*",)`` for all of the vendor's."""
    rule: str
    """The RRULE value, as written."""
    dtstart: dt.datetime
    """First release, timezone-aware."""
    precision: str
    p_next: float
    origin: str
    exdates: tuple[dt.datetime, ...] = ()
    rdates: tuple[dt.datetime, ...] = ()
    _set: Any = field(default=None, compare=False, repr=False)

    def applies_to(self, vendor: str, product: str) -> bool:
        return self.vendor == vendor.lower() and (
            "*" in self.products or product.lower() in self.products
        )

    def _ruleset(self) -> rrule.rruleset:
        if self._set is None:
            rs = rrule.rruleset()
            rs.rrule(rrule.rrulestr(self.rule, dtstart=self.dtstart))
            for day in self.exdates:
                rs.exdate(day)
            for day in self.rdates:
                rs.rdate(day)
            object.__setattr__(self, "_set", rs)
        ruleset: rrule.rruleset = self._set
        return ruleset

    def releases_after(self, after: dt.datetime, count: int) -> list[dt.datetime]:
        """The next ``count`` release instants strictly after ``after`` (aware, UTC)."""
        _aware(after, "after")
        out: list[dt.datetime] = []
        cursor = after
        rs = self._ruleset()
        while len(out) < count:
            nxt = rs.after(cursor, inc=False)
            if nxt is None:
                break
            out.append(nxt.astimezone(dt.UTC))
            cursor = nxt
        return out

    def next_release(self, after: dt.datetime) -> dt.datetime | None:
        found = self.releases_after(after, 1)
        return found[0] if found else None

    def releases_between(self, start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
        """Release instants in ``[start, end)``, in UTC."""
        _aware(start, "start")
        _aware(end, "end")
        return [d.astimezone(dt.UTC) for d in self._ruleset().between(start, end, inc=True)
                if d < end]


def _aware(value: dt.datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise CalendarError(f"{name} {value.isoformat()} has no time zone",
                            tip="pass timezone-aware datetimes (UTC if in doubt)")


def parse(text: str | bytes, origin: str) -> list[Calendar]:
    """Every calendar (``VEVENT``) in one iCalendar document."""
    try:
        cal = icalendar.Calendar.from_ical(text)
    except ValueError as exc:
        raise CalendarError(f"{origin}: not an iCalendar file: {exc}") from exc
    out: list[Calendar] = []
    for n, event in enumerate(cal.walk("VEVENT")):
        out.append(_event(event, f"{origin} VEVENT #{n + 1}"))
    if not out:
        raise CalendarError(f"{origin}: no VEVENT in the calendar",
                            tip="each release calendar is one VEVENT with an RRULE")
    return out


def _event(event: Any, where: str) -> Calendar:
    uid = str(event.get("UID") or "").strip()
    if not uid:
        raise CalendarError(f"{where}: no UID")
    where = f"{where} ({uid})"
    if event.get("DTSTART") is None:
        raise CalendarError(f"{where}: no DTSTART", tip="give the first release with a TZID")
    try:
        start = event.decoded("DTSTART")
    except (ValueError, KeyError) as exc:
        raise CalendarError(f"{where}: unreadable DTSTART: {exc}") from exc
    if not isinstance(start, dt.datetime):
        raise CalendarError(f"{where}: DTSTART is a date without a time",
                            tip="write DTSTART;TZID=Zone/Name:YYYYMMDDTHHMMSS")
    if start.tzinfo is None:
        raise CalendarError(
            f"{where}: DTSTART {start.isoformat()} is a floating time (no time zone)",
            tip="add a TZID (e.g. DTSTART;TZID=America/Los_Angeles:…) or write it in UTC (…Z)",
        )
    recur = event.get("RRULE")
    if recur is None:
        raise CalendarError(f"{where}: no RRULE", tip="e.g. RRULE:FREQ=MONTHLY;BYDAY=2TU")
    if isinstance(recur, list):
        raise CalendarError(f"{where}: more than one RRULE; write one event per rule")
    rule = recur.to_ical().decode()
    try:
        rrule.rrulestr(rule, dtstart=start)
    except (ValueError, TypeError) as exc:
        raise CalendarError(f"{where}: invalid RRULE {rule!r}: {exc}") from exc
    if "UNTIL=" in rule.upper() and "Z" not in rule.upper().split("UNTIL=", 1)[1][:17]:
        raise CalendarError(f"{where}: RRULE UNTIL must be in UTC (…Z) when DTSTART has a zone")
    vendor = str(event.get("X-VIGIL-VENDOR") or "").strip().lower()
    if not vendor:
        raise CalendarError(f"{where}: no X-VIGIL-VENDOR", tip="name the CPE-style vendor")
    products = tuple(
        p.strip().lower() for p in str(event.get("X-VIGIL-PRODUCTS") or "*").split(",")
        if p.strip()
    ) or ("*",)
    precision = str(event.get("X-VIGIL-PRECISION") or "exact").strip().lower()
    if precision not in _PRECISIONS:
        raise CalendarError(f"{where}: X-VIGIL-PRECISION {precision!r} is not one of "
                            f"{', '.join(_PRECISIONS)}")
    raw_p = str(event.get("X-VIGIL-P-NEXT") or "0.7").strip()
    try:
        p_next = float(raw_p)
    except ValueError:
        raise CalendarError(f"{where}: X-VIGIL-P-NEXT {raw_p!r} is not a number") from None
    if not 0.0 < p_next <= 1.0:
        raise CalendarError(f"{where}: X-VIGIL-P-NEXT {p_next} is outside (0, 1]")
    return Calendar(
        uid=uid, summary=str(event.get("SUMMARY") or uid), vendor=vendor, products=products,
        rule=rule, dtstart=start, precision=precision, p_next=p_next, origin=where,
        exdates=tuple(_dates(event, "EXDATE", where)), rdates=tuple(_dates(event, "RDATE", where)),
    )


def _dates(event: Any, name: str, where: str) -> Iterable[dt.datetime]:
    value = event.get(name)
    if value is None:
        return
    for prop in value if isinstance(value, list) else [value]:
        for item in prop.dts:
            day = item.dt
            if not isinstance(day, dt.datetime) or day.tzinfo is None:
                raise CalendarError(f"{where}: {name} {day} needs a time and a time zone")
            yield day


def load(folders: Sequence[Path | None]) -> dict[str, Calendar]:
    """Calendars from ``.ics`` files in ``folders``, by UID; later folders replace earlier
    ones' calendars with the same UID (so an operator folder overrides the built-ins)."""
    out: dict[str, Calendar] = {}
    for folder in folders:
        if folder is None:
            continue
        if not folder.is_dir():
            raise CalendarError(f"calendar folder {folder} does not exist",
                                tip="check VIGIL_CALENDARS")
        for path in sorted(folder.glob("*.ics")):
            try:
                text = path.read_bytes()
            except OSError as exc:
                raise CalendarError(f"{path}: cannot read: {exc}") from exc
            for calendar in parse(text, str(path)):
                out[calendar.uid] = calendar
    return out


def default(operator_dir: Path | None = None) -> dict[str, Calendar]:
    """The built-in calendars (when shipped) overridden by ``operator_dir``."""
    return load([BUILTIN_DIR if BUILTIN_DIR.is_dir() else None, operator_dir])


def find(calendars: dict[str, Calendar], vendor: str, product: str) -> Calendar | None:
    """The calendar for a vendor's product: a product-specific one before a vendor-wide
    one."""
    matches = [c for c in calendars.values() if c.applies_to(vendor, product)]
    matches.sort(key=lambda c: ("*" in c.products, c.uid))
    return matches[0] if matches else None
