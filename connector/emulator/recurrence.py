"""Time zones and recurrence for events: Windows zone names, dateTimeTimeZone values, patternedRecurrence.

Graph accepts Windows zone names ("Pacific Standard Time") and IANA names ("America/Los_Angeles") in
`start.timeZone`, `recurrence.range.recurrenceTimeZone` and `Prefer: outlook.timezone`; both resolve to a
`zoneinfo` zone here. Expansion follows Exchange's rules and is always bounded by a window, so a
`noEnd` series never loops forever.
"""

from __future__ import annotations

import calendar as _cal
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

WINDOWS_TO_IANA: dict[str, str] = {
    "UTC": "UTC",
    "Coordinated Universal Time": "UTC",
    "Greenwich Standard Time": "Atlantic/Reykjavik",
    "GMT Standard Time": "Europe/London",
    "W. Europe Standard Time": "Europe/Berlin",
    "Central Europe Standard Time": "Europe/Budapest",
    "Central European Standard Time": "Europe/Warsaw",
    "Romance Standard Time": "Europe/Paris",
    "E. Europe Standard Time": "Europe/Chisinau",
    "FLE Standard Time": "Europe/Kiev",
    "GTB Standard Time": "Europe/Bucharest",
    "Russian Standard Time": "Europe/Moscow",
    "Turkey Standard Time": "Europe/Istanbul",
    "Israel Standard Time": "Asia/Jerusalem",
    "South Africa Standard Time": "Africa/Johannesburg",
    "Egypt Standard Time": "Africa/Cairo",
    "Arabian Standard Time": "Asia/Dubai",
    "India Standard Time": "Asia/Kolkata",
    "China Standard Time": "Asia/Shanghai",
    "Singapore Standard Time": "Asia/Singapore",
    "Tokyo Standard Time": "Asia/Tokyo",
    "Korea Standard Time": "Asia/Seoul",
    "AUS Eastern Standard Time": "Australia/Sydney",
    "E. Australia Standard Time": "Australia/Brisbane",
    "W. Australia Standard Time": "Australia/Perth",
    "New Zealand Standard Time": "Pacific/Auckland",
    "Hawaiian Standard Time": "Pacific/Honolulu",
    "Alaskan Standard Time": "America/Anchorage",
    "Pacific Standard Time": "America/Los_Angeles",
    "US Mountain Standard Time": "America/Phoenix",
    "Mountain Standard Time": "America/Denver",
    "Central Standard Time": "America/Chicago",
    "Canada Central Standard Time": "America/Regina",
    "Central America Standard Time": "America/Guatemala",
    "Central Standard Time (Mexico)": "America/Mexico_City",
    "Eastern Standard Time": "America/New_York",
    "US Eastern Standard Time": "America/Indianapolis",
    "Atlantic Standard Time": "America/Halifax",
    "Newfoundland Standard Time": "America/St_Johns",
    "SA Pacific Standard Time": "America/Bogota",
    "E. South America Standard Time": "America/Sao_Paulo",
    "Argentina Standard Time": "America/Buenos_Aires",
}
_LOWER = {k.lower(): v for k, v in WINDOWS_TO_IANA.items()}
UTC = timezone.utc
DAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
INDEXES = ("first", "second", "third", "fourth", "last")
PATTERNS = ("daily", "weekly", "absoluteMonthly", "relativeMonthly", "absoluteYearly", "relativeYearly")
RANGES = ("endDate", "noEnd", "numbered")
NO_DATE = "0001-01-01"  # what Graph reports for an unset date (e.g. range.endDate of a noEnd series)
MAX_INSTANCES = 10_000  # per series and window; a guard, not a Graph limit


class RecurrenceError(ValueError):
    """A recurrence or date value Graph would reject."""


@lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    """The zone for a Windows or IANA name; `ValueError` for names Outlook does not know."""
    iana = _LOWER.get(name.strip().lower(), name.strip())
    try:
        return ZoneInfo(iana)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(name) from None


def parse_local(value: str) -> datetime:
    """The wall-clock part of a dateTimeTimeZone `dateTime` (up to 7 fractional digits); offsets are kept."""
    v = value.strip().replace("Z", "+00:00")
    head, dot, rest = v.partition(".")
    if dot:
        digits = "".join(c for c in rest if c.isdigit())
        tail = rest[len(digits):]
        v = f"{head}.{(digits + '000000')[:6]}{tail}"
    return datetime.fromisoformat(v)


def to_utc(value: dict[str, Any]) -> datetime:
    """A dateTimeTimeZone as an aware UTC datetime."""
    local = parse_local(str(value.get("dateTime") or ""))
    if local.tzinfo is not None:
        return local.astimezone(UTC)
    return local.replace(tzinfo=zone(str(value.get("timeZone") or "UTC"))).astimezone(UTC)


def fmt_local(dt: datetime) -> str:
    """Graph's dateTime text: seven fractional digits, no offset."""
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0"


def in_zone(dt: datetime, tz_name: str) -> dict[str, str]:
    """An aware datetime as a dateTimeTimeZone in `tz_name` (the name is echoed as given)."""
    return {"dateTime": fmt_local(dt.astimezone(zone(tz_name))), "timeZone": tz_name}


def normalise(rec: dict[str, Any], start_local: datetime, tz_name: str) -> dict[str, Any]:
    """patternedRecurrence as Graph echoes it (graph-samples/event-create-response-recurring-seriesMaster.json)."""
    pat = dict(rec.get("pattern") or {})
    rng = dict(rec.get("range") or {})
    ptype = _enum(pat.get("type"), PATTERNS, "pattern type")
    rtype = _enum(rng.get("type") or "noEnd", RANGES, "range type")
    days = [_enum(d, DAYS, "day of week") for d in pat.get("daysOfWeek") or []]
    if ptype == "weekly" and not days:
        days = [DAYS[start_local.weekday()]]
    if ptype in ("relativeMonthly", "relativeYearly") and not days:
        raise RecurrenceError("DaysOfWeek must be specified for a relative recurrence pattern.")
    interval = int(pat.get("interval") or 1)
    if interval < 1:
        raise RecurrenceError("The recurrence interval must be greater than zero.")
    start_date = _date(rng.get("startDate") or start_local.date().isoformat())
    out_range: dict[str, Any] = {
        "type": rtype,
        "startDate": start_date.isoformat(),
        "endDate": NO_DATE,
        "recurrenceTimeZone": rng.get("recurrenceTimeZone") or tz_name,
        "numberOfOccurrences": 0,
    }
    if rtype == "endDate":
        end = _date(rng.get("endDate"))
        if end < start_date:
            raise RecurrenceError("The recurrence range end date is earlier than its start date.")
        out_range["endDate"] = end.isoformat()
    elif rtype == "numbered":
        n = int(rng.get("numberOfOccurrences") or 0)
        if n < 1:
            raise RecurrenceError("numberOfOccurrences must be greater than zero for a numbered range.")
        out_range["numberOfOccurrences"] = n
    try:
        zone(out_range["recurrenceTimeZone"])
    except ValueError:
        raise RecurrenceError(f"The time zone '{out_range['recurrenceTimeZone']}' is not supported.") from None
    month = int(pat.get("month") or 0)
    dom = int(pat.get("dayOfMonth") or 0)
    if ptype in ("absoluteYearly", "relativeYearly") and not 1 <= month <= 12:
        month = start_local.month
    if ptype in ("absoluteMonthly", "absoluteYearly") and not 1 <= dom <= 31:
        dom = start_local.day
    return {
        "pattern": {
            "type": ptype,
            "interval": interval,
            "month": month,
            "dayOfMonth": dom,
            "daysOfWeek": days,
            "firstDayOfWeek": _enum(pat.get("firstDayOfWeek") or "sunday", DAYS, "first day of week"),
            "index": _enum(pat.get("index") or "first", INDEXES, "week index"),
        },
        "range": out_range,
    }


def _enum(value: Any, allowed: tuple[str, ...], what: str) -> str:
    for a in allowed:
        if isinstance(value, str) and a.lower() == value.lower():
            return a
    raise RecurrenceError(f"The {what} '{value}' is not valid.")


def _date(value: Any) -> date:
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        raise RecurrenceError(f"'{value}' is not a valid date.") from None


def _add_months(d: date, months: int) -> tuple[int, int]:
    m = d.month - 1 + months
    return d.year + m // 12, m % 12 + 1


def _nth(year: int, month: int, days: set[int], index: str) -> date | None:
    """The index-th day of the month whose weekday is in `days` (Exchange's first/second/.../last)."""
    n = _cal.monthrange(year, month)[1]
    hits = [d for d in range(1, n + 1) if date(year, month, d).weekday() in days]
    if not hits:
        return None
    i = INDEXES.index(index)
    if i == 4:
        return date(year, month, hits[-1])
    return date(year, month, hits[i]) if i < len(hits) else None


def _clamped(year: int, month: int, day: int) -> date:
    return date(year, month, min(day, _cal.monthrange(year, month)[1]))


def dates(rec: dict[str, Any], lo: date | None, hi: date) -> Iterator[date]:
    """Occurrence dates of a normalised recurrence, in order, up to `hi`.

    `lo` lets unbounded-count ranges skip whole periods before the window; numbered ranges always
    count from the start.
    """
    pat, rng = rec["pattern"], rec["range"]
    start = date.fromisoformat(rng["startDate"])
    end = date.fromisoformat(rng["endDate"]) if rng["type"] == "endDate" else None
    limit = rng["numberOfOccurrences"] if rng["type"] == "numbered" else None
    if limit is not None:
        lo = None
    stop = min(hi, end) if end else hi
    count = 0
    for d in _candidates(pat, start, lo):
        if d > stop:
            return
        if d < start:
            continue
        yield d
        count += 1
        if limit is not None and count >= limit:
            return


def _candidates(pat: dict[str, Any], start: date, lo: date | None) -> Iterator[date]:
    kind, n = pat["type"], pat["interval"]
    days = {DAYS.index(d) for d in pat["daysOfWeek"]}
    skip = max(0, (lo - start).days) if lo and lo > start else 0
    if kind == "daily":
        k = skip // n
        while True:
            yield start + timedelta(days=k * n)
            k += 1
    elif kind == "weekly":
        fdw = DAYS.index(pat["firstDayOfWeek"])
        week0 = start - timedelta(days=(start.weekday() - fdw) % 7)
        order = sorted(days, key=lambda wd: (wd - fdw) % 7)
        j = skip // (7 * n)
        while True:
            w = week0 + timedelta(days=7 * n * j)
            for wd in order:
                yield w + timedelta(days=(wd - fdw) % 7)
            j += 1
    elif kind in ("absoluteMonthly", "relativeMonthly"):
        j = max(0, (skip // 31) // n - 1)
        while True:
            y, m = _add_months(start, n * j)
            d = _clamped(y, m, pat["dayOfMonth"]) if kind == "absoluteMonthly" else _nth(y, m, days, pat["index"])
            if d is not None:
                yield d
            j += 1
    else:  # absoluteYearly / relativeYearly
        j = max(0, (skip // 366) // n - 1)
        while True:
            y = start.year + n * j
            d = _clamped(y, pat["month"], pat["dayOfMonth"]) if kind == "absoluteYearly" else _nth(y, pat["month"], days, pat["index"])
            if d is not None:
                yield d
            j += 1


def originals(rec: dict[str, Any], first_start: datetime, duration: timedelta, lo: datetime, hi: datetime) -> list[datetime]:
    """Original starts (aware UTC) of the occurrences whose span overlaps [lo, hi).

    Each occurrence keeps the series' wall-clock start time in `recurrenceTimeZone`, so it follows DST.
    """
    tz = zone(rec["range"]["recurrenceTimeZone"])
    local = first_start.astimezone(tz)
    clock = time(local.hour, local.minute, local.second, local.microsecond)
    lo_date = (lo - duration).astimezone(tz).date() - timedelta(days=1)
    hi_date = hi.astimezone(tz).date() + timedelta(days=1)
    out: list[datetime] = []
    for d in dates(rec, lo_date, hi_date):
        s = datetime.combine(d, clock, tz).astimezone(UTC)
        if overlaps(s, s + duration, lo, hi):
            out.append(s)
            if len(out) >= MAX_INSTANCES:
                break
    return out


def overlaps(start: datetime, end: datetime, lo: datetime, hi: datetime) -> bool:
    """calendarView membership: the event's span meets the window (a zero-length event must start inside)."""
    if end <= start:
        return lo <= start < hi
    return start < hi and end > lo
