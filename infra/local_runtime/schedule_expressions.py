"""EventBridge schedule expressions: `rate(...)` and the 6-field AWS `cron(...)`.

AWS cron is not Unix cron: six fields (minutes hours day-of-month month day-of-week
year), day-of-week 1-7 = SUN-SAT, exactly one of day-of-month/day-of-week is `?`, and
`L`, `W` and `#` have their Quartz meanings. All times are UTC.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}
_MONTHS = {m.upper(): i for i, m in enumerate(calendar.month_abbr) if m}
_DAYS = {"SUN": 1, "MON": 2, "TUE": 3, "WED": 4, "THU": 5, "FRI": 6, "SAT": 7}


class ScheduleExpressionError(ValueError):
    """An expression AWS would reject; the message says what is wrong."""


@dataclass(frozen=True)
class Rate:
    seconds: int

    def next_after(self, moment: datetime, start: datetime) -> datetime:
        elapsed = (moment - start).total_seconds()
        periods = int(elapsed // self.seconds) + 1
        return start + timedelta(seconds=periods * self.seconds)


def parse_rate(expression: str) -> Rate:
    match = _RATE.match(expression.strip())
    if not match:
        raise ScheduleExpressionError(f"{expression!r}: expected rate(N minute(s)|hour(s)|day(s))")
    value, unit = int(match.group(1)), match.group(2)
    if value <= 0:
        raise ScheduleExpressionError(f"{expression!r}: the rate must be positive")
    # AWS insists on the singular for 1 and the plural otherwise.
    if (value == 1) != (not unit.endswith("s")):
        raise ScheduleExpressionError(
            f"{expression!r}: AWS wants '{value} {unit.rstrip('s')}{'' if value == 1 else 's'}'"
        )
    return Rate(value * _UNIT_SECONDS[unit.rstrip("s")])


def _values(field: str, low: int, high: int, names: dict[str, int]) -> frozenset[int]:
    result: set[int] = set()
    for part in field.split(","):
        step = 1
        if "/" in part:
            part, step_text = part.split("/", 1)
            step = int(step_text)
            if step <= 0:
                raise ScheduleExpressionError(f"bad step in {field!r}")
        if part in ("*", "?"):
            start, end = low, high
        elif "-" in part:
            first, last = part.split("-", 1)
            start, end = _number(first, names), _number(last, names)
        else:
            start = _number(part, names)
            end = high if step != 1 else start
        if not (low <= start <= high and low <= end <= high):
            raise ScheduleExpressionError(f"{field!r}: values must be within {low}-{high}")
        if end >= start:
            result.update(range(start, end + 1, step))
        else:  # wrapping range such as FRI-MON
            span = list(range(start, high + 1)) + list(range(low, end + 1))
            result.update(span[::step])
    return frozenset(result)


def _number(text: str, names: dict[str, int]) -> int:
    text = text.strip().upper()
    if text in names:
        return names[text]
    if not text.isdigit():
        raise ScheduleExpressionError(f"{text!r} is not a number or a known name")
    return int(text)


@dataclass(frozen=True)
class Cron:
    minutes: frozenset[int]
    hours: frozenset[int]
    day_of_month: str
    months: frozenset[int]
    day_of_week: str
    years: frozenset[int]

    def _day_matches(self, day: datetime) -> bool:
        last_day = calendar.monthrange(day.year, day.month)[1]
        aws_weekday = (day.isoweekday() % 7) + 1  # SUN=1 ... SAT=7
        if self.day_of_month != "?":
            field = self.day_of_month
            if field == "L":
                return day.day == last_day
            if field.endswith("W"):
                return day.day == _nearest_weekday(day.year, day.month, int(field[:-1]))
            return day.day in _values(field, 1, 31, {})
        field = self.day_of_week
        if field.endswith("L") and field != "L":  # last such weekday of the month
            return aws_weekday == _number(field[:-1], _DAYS) and day.day + 7 > last_day
        if field == "L":
            return aws_weekday == 7
        if "#" in field:
            weekday, nth = field.split("#", 1)
            return aws_weekday == _number(weekday, _DAYS) and (day.day - 1) // 7 + 1 == int(nth)
        return aws_weekday in _values(field, 1, 7, _DAYS)

    def next_after(self, moment: datetime) -> datetime:
        """The first minute strictly after `moment` that the expression selects."""
        candidate = (moment.astimezone(UTC) + timedelta(minutes=1)).replace(second=0, microsecond=0)
        day = candidate.replace(hour=0, minute=0)
        for _ in range(366 * 5):
            if day.year in self.years and day.month in self.months and self._day_matches(day):
                for hour in sorted(self.hours):
                    for minute in sorted(self.minutes):
                        at = day.replace(hour=hour, minute=minute)
                        if at >= candidate:
                            return at
            day += timedelta(days=1)
        raise ScheduleExpressionError("the expression selects no time in the next five years")


def _nearest_weekday(year: int, month: int, wanted: int) -> int:
    last_day = calendar.monthrange(year, month)[1]
    wanted = min(wanted, last_day)
    weekday = calendar.weekday(year, month, wanted)  # MON=0 ... SUN=6
    if weekday == 5:
        return wanted - 1 if wanted > 1 else wanted + 2
    if weekday == 6:
        return wanted + 1 if wanted < last_day else wanted - 2
    return wanted


def parse_cron(expression: str) -> Cron:
    match = re.match(r"^cron\((.*)\)$", expression.strip())
    if not match:
        raise ScheduleExpressionError(f"{expression!r}: expected cron(...)")
    fields = match.group(1).split()
    if len(fields) != 6:
        raise ScheduleExpressionError(
            f"{expression!r}: AWS cron has 6 fields (minutes hours day-of-month month "
            f"day-of-week year), got {len(fields)}"
        )
    minutes, hours, dom, month, dow, year = (f.upper() for f in fields)
    if (dom == "?") == (dow == "?"):
        raise ScheduleExpressionError(
            f"{expression!r}: exactly one of day-of-month and day-of-week must be '?'"
        )
    cron = Cron(
        _values(minutes, 0, 59, {}),
        _values(hours, 0, 23, {}),
        dom,
        _values(month, 1, 12, _MONTHS),
        dow,
        _values(year, 1970, 2199, {}),
    )
    cron._day_matches(datetime(2024, 1, 1, tzinfo=UTC))  # validates the day fields now
    return cron


def parse_schedule(expression: str) -> Rate | Cron:
    text = expression.strip()
    if text.startswith("rate("):
        return parse_rate(text)
    if text.startswith("cron("):
        return parse_cron(text)
    raise ScheduleExpressionError(f"{expression!r}: a schedule is rate(...) or cron(...)")
