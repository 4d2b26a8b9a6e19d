"""Five-field cron expressions and their fire times in an IANA time zone.

Pure: the standard library only, no clock, no database. ``cron_parse`` checks an expression (CronError says
what is wrong); ``fire_before`` and ``fire_after`` search its fire times around an instant, bounded by a
horizon the caller gives, so a schedule is never searched further than its answer can matter.

Syntax (Vixie cron's): ``minute hour day-of-month month day-of-week``, with minute 0-59, hour 0-23, day
1-31, month 1-12 or ``jan``-``dec``, weekday 0-7 (0 and 7 are Sunday) or ``sun``-``sat``. A field is ``*``,
a value, a range ``a-b``, either with a step ``/n`` (``a/n`` means ``a`` to the field's end every ``n``),
or a comma list of those. When both day fields are restricted (neither starts with ``*``) a day matches if
either does, as cron has it; otherwise it must match both.

Daylight saving time: fire times are wall-clock times in the zone. A wall time that happens twice (clocks
go back) fires once, at its first occurrence; a wall time that never happens (clocks go forward) fires at
the instant the clocks jump, so a schedule is never skipped on the night of a change. This mapping never
goes backwards as the wall time advances, which is what lets the searches stop at their first hit.
"""

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

MONTHS = {name: i for i, name in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), start=1)}
WEEKDAYS = {name: i for i, name in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
# (name, lowest, highest, names) per field, in order.
FIELDS = (("minute", 0, 59, {}), ("hour", 0, 23, {}), ("day of month", 1, 31, {}), ("month", 1, 12, MONTHS),
          ("day of week", 0, 7, WEEKDAYS))
NUMBER = re.compile(r"[0-9]{1,2}")
# Every (month, day, weekday) combination comes round within 28 years of the Gregorian calendar (leap days
# included, away from century years): an expression that fires in none of them never fires.
CYCLE_YEARS = range(2001, 2029)


class CronError(ValueError):
    """The expression is not a valid five-field cron expression (the message says why)."""


@dataclass(frozen=True)
class Cron:
    minutes: tuple[int, ...]  # ascending
    hours: tuple[int, ...]  # ascending
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    either_day: bool  # both day fields restricted: a day matches if either matches

    def matches_day(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        by_date, by_weekday = day.day in self.days, day.isoweekday() % 7 in self.weekdays
        return by_date or by_weekday if self.either_day else by_date and by_weekday


def _value(text: str, field: str, low: int, high: int, names: dict) -> int:
    if text.lower() in names:
        return names[text.lower()]
    if not NUMBER.fullmatch(text) or not low <= int(text) <= high:
        raise CronError(f"'{text}' is not a {field} ({low}-{high}{', or a name' if names else ''}).")
    return int(text)


def _field(text: str, field: str, low: int, high: int, names: dict) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        base, slash, step_text = item.partition("/")
        step = 1
        if slash:
            if not NUMBER.fullmatch(step_text) or int(step_text) == 0:
                raise CronError(f"'{item}': the step of a {field} is a number from 1.")
            step = int(step_text)
        if base == "*":
            start, end = low, high
        elif "-" in base:
            first, _, last = base.partition("-")
            start, end = _value(first, field, low, high, names), _value(last, field, low, high, names)
            if start > end:
                raise CronError(f"'{item}': a {field} range runs from low to high.")
        else:
            start = _value(base, field, low, high, names)
            end = high if slash else start
        values.update(range(start, end + 1, step))
    return frozenset(values)


def cron_parse(expression: str) -> Cron:
    """The parsed expression; raises CronError for a bad one, or one that never fires (``0 0 30 2 *``)."""
    parts = expression.split() if isinstance(expression, str) else []
    if len(parts) != 5:
        raise CronError("Five fields separated by spaces: minute hour day-of-month month day-of-week.")
    minutes, hours, days, months, weekdays = (_field(text, *spec) for text, spec in zip(parts, FIELDS, strict=True))
    cron = Cron(minutes=tuple(sorted(minutes)), hours=tuple(sorted(hours)), days=days, months=months,
                weekdays=frozenset(d % 7 for d in weekdays),
                either_day=not parts[2].startswith("*") and not parts[4].startswith("*"))
    if not any(cron.matches_day(date(year, month, day)) for year in CYCLE_YEARS for month in sorted(months)
               for day in sorted(days) if day <= calendar.monthrange(year, month)[1]):
        raise CronError("Never fires: no month has that day.")
    return cron


def fire_instant(wall: datetime, zone: ZoneInfo) -> datetime:
    """The UTC instant at which the naive wall-clock time ``wall`` fires in ``zone`` (see the module's DST rule)."""
    instant = wall.replace(tzinfo=zone).astimezone(UTC)  # fold=0: the first of a repeated wall time
    if instant.astimezone(zone).replace(tzinfo=None) == wall:
        return instant
    # Skipped by a forward change: the instant the clocks jumped, between the wall time read with the offset
    # after the change (earlier) and with the one before it (later). Transitions fall on whole seconds.
    low = int(wall.replace(tzinfo=zone, fold=1).timestamp())
    high = int(instant.timestamp())
    after = instant.astimezone(zone).utcoffset()
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, zone).utcoffset() == after:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)


def fire_before(cron: Cron, zone: ZoneInfo, moment: datetime, *, earliest: datetime) -> datetime | None:
    """The latest fire time at or before ``moment`` and not before ``earliest``, or None (both aware)."""
    day = moment.astimezone(zone).date() + timedelta(days=1)  # a repeated hour can reach past midnight
    last_day = earliest.astimezone(zone).date() - timedelta(days=1)
    while day >= last_day:
        if cron.matches_day(day) and fire_instant(datetime.combine(day, time(cron.hours[0], cron.minutes[0])),
                                                  zone) <= moment:
            for hour in reversed(cron.hours):
                if fire_instant(datetime.combine(day, time(hour, cron.minutes[0])), zone) > moment:
                    continue
                for minute in reversed(cron.minutes):
                    fired = fire_instant(datetime.combine(day, time(hour, minute)), zone)
                    if fired <= moment:
                        return fired if fired >= earliest else None
        day -= timedelta(days=1)
    return None


def fire_after(cron: Cron, zone: ZoneInfo, moment: datetime, *, latest: datetime) -> datetime | None:
    """The first fire time after ``moment`` and not after ``latest``, or None (both aware)."""
    day = moment.astimezone(zone).date() - timedelta(days=1)
    last_day = latest.astimezone(zone).date() + timedelta(days=1)
    while day <= last_day:
        if cron.matches_day(day) and fire_instant(datetime.combine(day, time(cron.hours[-1], cron.minutes[-1])),
                                                  zone) > moment:
            for hour in cron.hours:
                if fire_instant(datetime.combine(day, time(hour, cron.minutes[-1])), zone) <= moment:
                    continue
                for minute in cron.minutes:
                    fired = fire_instant(datetime.combine(day, time(hour, minute)), zone)
                    if fired > moment:
                        return fired if fired <= latest else None
        day += timedelta(days=1)
    return None
