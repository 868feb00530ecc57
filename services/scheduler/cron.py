"""Standard 5-field cron expressions: parsing and the next run time (UTC).

No maintained cron library is among the project's dependencies, and the grammar is small, so
it is implemented here. An expression has five fields separated by blanks::

    minute  hour  day-of-month  month  day-of-week
    0-59    0-23  1-31          1-12   0-7 (0 and 7 are Sunday)

Each field is ``*`` or a comma-separated list of items; an item is a value, a range ``a-b``,
or either of those (or ``*``) followed by a step ``/n``; ``a/n`` means ``a-<max>/n``. Months
and weekdays may be written by their English three-letter names (``JAN``, ``MON``; any
case), also in ranges (``MON-FRI``). The macros ``@yearly`` (``@annually``), ``@monthly``,
``@weekly``, ``@daily`` (``@midnight``) and ``@hourly`` are accepted.

``@every <n><unit>`` (units ``ms``, ``s``, ``m``, ``h``; at least 100 ms, at most 31 days)
is a fixed interval instead of calendar times: the next run is ``n`` units after the
instant asked about (the release of the previous run), so runs never overlap and the
period is measured from the end of one run to the start of the next. It serves short
periods that minute-grained cron cannot express (a heartbeat every few seconds).

Day-of-month and day-of-week combine as in Vixie cron: when both are restricted (neither
starts with ``*``) a day matches if *either* matches; otherwise both must match.

Times are UTC and minute-grained: :meth:`CronSchedule.next_after` is the first matching
minute strictly after the given instant. An expression that can never match (``0 0 30 2
*``) is refused when parsed, naming the field.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

FIELD_NAMES: Final = ("minute", "hour", "day-of-month", "month", "day-of-week")

_MONTH_NAMES: Final = {
    name: number
    for number, name in enumerate(
        ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"),
        start=1,
    )
}
_WEEKDAY_NAMES: Final = {
    name: number for number, name in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"))
}
_MACROS: Final = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
# Longest gap between two matches of a valid expression: Feb 29 skips at most 8 years
# (2096 to 2104); the search gives up beyond this many years (never, for a parsed schedule).
_SEARCH_YEARS: Final = 9
_MAX_EXPRESSION_LENGTH: Final = 256
_EVERY: Final = re.compile(r"@every\s+(\d{1,10})(ms|s|m|h)", re.IGNORECASE)
_UNIT_MS: Final = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}
MIN_INTERVAL_MS: Final = 100
MAX_INTERVAL_MS: Final = 31 * 24 * 3_600_000


class CronError(ValueError):
    """A malformed or impossible cron expression; ``field`` names the culprit, if one."""

    def __init__(self, expression: str, message: str, *, field: str | None = None) -> None:
        where = f"{field} field: " if field else ""
        super().__init__(f"bad cron expression {expression!r}: {where}{message}")
        self.expression = expression
        self.field = field
        self.detail = message


@dataclass(frozen=True, slots=True)
class _FieldSpec:
    name: str
    low: int
    high: int
    names: dict[str, int]


_SPECS: Final = (
    _FieldSpec("minute", 0, 59, {}),
    _FieldSpec("hour", 0, 23, {}),
    _FieldSpec("day-of-month", 1, 31, {}),
    _FieldSpec("month", 1, 12, _MONTH_NAMES),
    # 7 is accepted as Sunday and folded onto 0 after parsing.
    _FieldSpec("day-of-week", 0, 7, _WEEKDAY_NAMES),
)


def _value(text: str, spec: _FieldSpec, expression: str) -> int:
    upper = text.upper()
    if upper in spec.names:
        return spec.names[upper]
    if not text.isdigit():
        known = f" or a name ({', '.join(spec.names)})" if spec.names else ""
        raise CronError(
            expression,
            f"{text!r} is not a number{known}",
            field=spec.name,
        )
    number = int(text)
    if not spec.low <= number <= spec.high:
        raise CronError(
            expression,
            f"{number} is out of range {spec.low}-{spec.high}",
            field=spec.name,
        )
    return number


def _item(item: str, spec: _FieldSpec, expression: str) -> set[int]:
    base, slash, step_text = item.partition("/")
    step = 1
    if slash:
        if not step_text.isdigit() or int(step_text) == 0:
            raise CronError(
                expression, f"step {step_text!r} must be a positive number", field=spec.name
            )
        step = int(step_text)
    if base == "*":
        low, high = spec.low, spec.high
    elif "-" in base:
        first, _, last = base.partition("-")
        low, high = _value(first, spec, expression), _value(last, spec, expression)
        if low > high:
            raise CronError(
                expression, f"range {base!r} goes backwards ({low} > {high})", field=spec.name
            )
    elif base:
        low = _value(base, spec, expression)
        high = spec.high if slash else low
    else:
        raise CronError(expression, f"empty item in {item!r}", field=spec.name)
    return set(range(low, high + 1, step))


def _field(text: str, spec: _FieldSpec, expression: str) -> frozenset[int]:
    values: set[int] = set()
    for item in text.split(","):
        if not item:
            raise CronError(expression, f"empty list item in {text!r}", field=spec.name)
        values |= _item(item, spec, expression)
    return frozenset(values)


@dataclass(frozen=True, slots=True)
class CronSchedule:
    """A parsed cron expression: the allowed values of each field (weekdays 0 = Sunday)."""

    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    days_restricted: bool
    weekdays_restricted: bool

    def _day_matches(self, year: int, month: int, day: int) -> bool:
        weekday = (calendar.weekday(year, month, day) + 1) % 7  # Monday=0 -> Sunday=0
        in_days = day in self.days
        in_weekdays = weekday in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return in_days or in_weekdays
        return in_days and in_weekdays

    def matches(self, at: datetime) -> bool:
        """Whether the minute of ``at`` (converted to UTC) is one of the schedule's."""
        utc = _as_utc(at)
        return (
            utc.minute in self.minutes
            and utc.hour in self.hours
            and utc.month in self.months
            and self._day_matches(utc.year, utc.month, utc.day)
        )

    def next_after(self, after: datetime) -> datetime:
        """The first matching minute strictly after ``after``, as an aware UTC datetime."""
        start = _as_utc(after).replace(second=0, microsecond=0, tzinfo=None)
        moment = start + timedelta(minutes=1)
        limit_year = moment.year + _SEARCH_YEARS
        while moment.year <= limit_year:
            if moment.month not in self.months:
                moment = _first_of_next_month(moment)
                continue
            if not self._day_matches(moment.year, moment.month, moment.day):
                moment = datetime(moment.year, moment.month, moment.day) + timedelta(days=1)
                continue
            if moment.hour not in self.hours:
                moment = moment.replace(minute=0) + timedelta(hours=1)
                continue
            later = [minute for minute in self.minutes if minute >= moment.minute]
            if not later:
                moment = moment.replace(minute=0) + timedelta(hours=1)
                continue
            return moment.replace(minute=min(later), tzinfo=UTC)
        # Unreachable for a schedule built by parse(), which refuses impossible dates.
        raise CronError(self.expression, f"no matching time within {_SEARCH_YEARS} years")

    def next_after_ms(self, after_ms: int) -> int:
        """:meth:`next_after` in Unix epoch milliseconds."""
        after = datetime.fromtimestamp(after_ms / 1000, tz=UTC)
        return int(self.next_after(after).timestamp()) * 1000


@dataclass(frozen=True, slots=True)
class EverySchedule:
    """``@every <n><unit>``: a fixed interval after the instant asked about."""

    expression: str
    interval_ms: int

    def next_after(self, after: datetime) -> datetime:
        """``after`` plus the interval, as an aware UTC datetime."""
        return _as_utc(after) + timedelta(milliseconds=self.interval_ms)

    def next_after_ms(self, after_ms: int) -> int:
        """``after_ms`` plus the interval."""
        return after_ms + self.interval_ms


Schedule = CronSchedule | EverySchedule
"""What :func:`parse` returns: calendar times or a fixed interval; both answer
``next_after`` and ``next_after_ms``."""


def _parse_every(expression: str, text: str) -> EverySchedule:
    match = _EVERY.fullmatch(text)
    if match is None:
        raise CronError(
            expression, "expected '@every <n><unit>' with unit ms, s, m or h (e.g. @every 30s)"
        )
    interval = int(match.group(1)) * _UNIT_MS[match.group(2).lower()]
    if not MIN_INTERVAL_MS <= interval <= MAX_INTERVAL_MS:
        raise CronError(
            expression,
            f"interval must be between {MIN_INTERVAL_MS} ms and {MAX_INTERVAL_MS // 86_400_000} "
            f"days, got {interval} ms",
        )
    return EverySchedule(expression=expression, interval_ms=interval)


def _as_utc(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise ValueError("cron times must be timezone-aware (UTC)")
    return at.astimezone(UTC)


def _first_of_next_month(moment: datetime) -> datetime:
    if moment.month == 12:
        return datetime(moment.year + 1, 1, 1)
    return datetime(moment.year, moment.month + 1, 1)


def _check_possible(schedule: CronSchedule) -> None:
    """Refuse a day-of-month that no allowed month ever has (when weekdays do not rescue it)."""
    if schedule.weekdays_restricted and schedule.days_restricted:
        return  # either matches: some weekday of an allowed month always does
    longest = max(
        29 if month == 2 else calendar.monthrange(2001, month)[1] for month in schedule.months
    )
    if min(schedule.days) > longest:
        months = ",".join(str(month) for month in sorted(schedule.months))
        raise CronError(
            schedule.expression,
            f"day {min(schedule.days)} never occurs in month(s) {months}",
            field="day-of-month",
        )


def parse(expression: str) -> Schedule:
    """Parse ``expression``; :class:`CronError` (naming the bad field) when malformed."""
    if len(expression) > _MAX_EXPRESSION_LENGTH:
        raise CronError(expression[:32] + "...", f"longer than {_MAX_EXPRESSION_LENGTH} characters")
    text = expression.strip()
    if text[:6].lower() == "@every":
        return _parse_every(expression, text)
    if text.startswith("@"):
        if text.lower() not in _MACROS:
            known = ", ".join(sorted(_MACROS))
            raise CronError(expression, f"unknown macro {text!r} (known: {known})")
        text = _MACROS[text.lower()]
    parts = text.split()
    if len(parts) != len(_SPECS):
        raise CronError(
            expression,
            f"expected 5 fields ({' '.join(FIELD_NAMES)}), got {len(parts)}",
        )
    minutes, hours, days, months, weekdays = (
        _field(part, spec, expression) for part, spec in zip(parts, _SPECS, strict=True)
    )
    schedule = CronSchedule(
        expression=expression,
        minutes=minutes,
        hours=hours,
        days=days,
        months=months,
        weekdays=frozenset(day % 7 for day in weekdays),
        days_restricted=not parts[2].startswith("*"),
        weekdays_restricted=not parts[4].startswith("*"),
    )
    _check_possible(schedule)
    return schedule
