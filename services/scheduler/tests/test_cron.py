"""Cron expressions: the grammar, the next run time across calendar edges, and refusals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from services.scheduler.cron import CronError, CronSchedule, parse


def at(text: str) -> datetime:
    """An aware UTC datetime from ``YYYY-MM-DD HH:MM``."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)


def calendar_schedule(expression: str) -> CronSchedule:
    """``parse(expression)``, which must be a calendar schedule (not ``@every``)."""
    schedule = parse(expression)
    assert isinstance(schedule, CronSchedule)
    return schedule


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("* * * * *", "2026-01-01 00:00", "2026-01-01 00:01"),
        ("*/15 * * * *", "2026-01-01 00:14", "2026-01-01 00:15"),
        ("*/15 * * * *", "2026-01-01 00:45", "2026-01-01 01:00"),
        ("0 * * * *", "2026-01-01 23:30", "2026-01-02 00:00"),
        ("30 2 * * *", "2026-01-01 02:30", "2026-01-02 02:30"),
        ("5,10-12 3 * * *", "2026-01-01 03:10", "2026-01-01 03:11"),
        ("5,10-12 3 * * *", "2026-01-01 03:12", "2026-01-02 03:05"),
        ("10-20/5 * * * *", "2026-01-01 00:16", "2026-01-01 00:20"),
        ("40/10 * * * *", "2026-01-01 00:51", "2026-01-01 01:40"),
        # year end
        ("0 0 1 1 *", "2026-06-15 12:00", "2027-01-01 00:00"),
        ("59 23 31 12 *", "2026-12-31 23:58", "2026-12-31 23:59"),
        # months without a 31st are skipped
        ("0 0 31 * *", "2026-04-01 00:00", "2026-05-31 00:00"),
        # Feb 29: the next leap year (2028)
        ("0 12 29 2 *", "2026-01-01 00:00", "2028-02-29 12:00"),
        # weekdays: 2026-01-01 is a Thursday
        ("0 9 * * MON-FRI", "2026-01-02 09:00", "2026-01-05 09:00"),
        ("0 9 * * 1-5", "2026-01-02 09:00", "2026-01-05 09:00"),
        ("0 0 * * 7", "2026-01-01 00:00", "2026-01-04 00:00"),
        ("0 0 * * sun", "2026-01-01 00:00", "2026-01-04 00:00"),
        ("0 0 * JUN *", "2026-01-01 00:00", "2026-06-01 00:00"),
        ("0 0 * jan-feb/1 *", "2026-02-28 00:00", "2027-01-01 00:00"),
        # both days restricted: either matches (Vixie cron): the 15th or a Monday
        ("0 0 15 * MON", "2026-01-01 00:00", "2026-01-05 00:00"),
        ("0 0 15 * MON", "2026-01-12 00:00", "2026-01-15 00:00"),
        # day-of-month starting with * combines with AND
        ("0 0 */2 * MON", "2026-01-01 00:00", "2026-01-05 00:00"),
        ("0 0 */2 * MON", "2026-01-05 00:00", "2026-01-19 00:00"),
        # macros
        ("@hourly", "2026-01-01 00:00", "2026-01-01 01:00"),
        ("@daily", "2026-01-01 00:00", "2026-01-02 00:00"),
        ("@weekly", "2026-01-01 00:00", "2026-01-04 00:00"),
        ("@monthly", "2026-01-01 00:00", "2026-02-01 00:00"),
        ("@yearly", "2026-01-01 00:00", "2027-01-01 00:00"),
        ("  0  0  *  *  *  ", "2026-01-01 00:00", "2026-01-02 00:00"),
    ],
)
def test_next_run_time(expression: str, after: str, expected: str) -> None:
    schedule = calendar_schedule(expression)
    result = schedule.next_after(at(after))
    assert result == at(expected)
    assert result.tzinfo is UTC
    assert schedule.matches(result)


def test_next_is_strictly_after_and_ignores_seconds() -> None:
    schedule = parse("* * * * *")
    start = at("2026-03-01 10:00") + timedelta(seconds=59, microseconds=1)
    assert schedule.next_after(start) == at("2026-03-01 10:01")
    assert schedule.next_after(at("2026-03-01 10:01")) == at("2026-03-01 10:02")


def test_other_time_zones_are_converted_and_naive_times_refused() -> None:
    schedule = parse("0 12 * * *")
    plus_two = timezone(timedelta(hours=2))
    # 13:00 at UTC+2 is 11:00 UTC: noon UTC comes the same day
    assert schedule.next_after(datetime(2026, 1, 1, 13, 0, tzinfo=plus_two)) == at(
        "2026-01-01 12:00"
    )
    assert schedule.next_after(datetime(2026, 1, 1, 15, 0, tzinfo=plus_two)) == at(
        "2026-01-02 12:00"
    )
    with pytest.raises(ValueError, match="timezone-aware"):
        schedule.next_after(datetime(2026, 1, 1))


def test_milliseconds_round_trip() -> None:
    schedule = parse("*/5 * * * *")
    after_ms = int(at("2026-01-01 00:07").timestamp() * 1000) + 123
    assert schedule.next_after_ms(after_ms) == int(at("2026-01-01 00:10").timestamp() * 1000)


def test_every_match_over_a_year_follows_the_previous_one() -> None:
    schedule = calendar_schedule("17 */7 1,15 * *")
    moment = at("2026-01-01 00:00")
    end = at("2027-01-01 00:00")
    seen = 0
    while (following := schedule.next_after(moment)) < end:
        # nothing matches between two consecutive results (checked minute by minute in
        # the first hours after each)
        probe = moment + timedelta(minutes=1)
        while probe < min(following, moment + timedelta(hours=8)):
            assert not schedule.matches(probe)
            probe += timedelta(minutes=1)
        moment = following
        seen += 1
    assert seen == 24 * 4  # 24 days a year, hours 0, 7, 14, 21


@pytest.mark.parametrize(
    ("expression", "field", "detail"),
    [
        ("", None, "expected 5 fields"),
        ("* * * *", None, "expected 5 fields"),
        ("* * * * * *", None, "expected 5 fields"),
        ("60 * * * *", "minute", "60 is out of range 0-59"),
        ("* 24 * * *", "hour", "24 is out of range 0-23"),
        ("* * 0 * *", "day-of-month", "0 is out of range 1-31"),
        ("* * 32 * *", "day-of-month", "out of range"),
        ("* * * 13 *", "month", "13 is out of range 1-12"),
        ("* * * * 8", "day-of-week", "8 is out of range 0-7"),
        ("* * * FOO *", "month", "not a number or a name"),
        ("* * * * MONDAY", "day-of-week", "not a number or a name"),
        ("MON * * * *", "minute", "'MON' is not a number"),
        ("*/0 * * * *", "minute", "step '0' must be a positive number"),
        ("*/x * * * *", "minute", "step 'x'"),
        ("5-1 * * * *", "minute", "goes backwards"),
        ("1,,2 * * * *", "minute", "empty list item"),
        ("-5 * * * *", "minute", "is not a number"),
        ("* * 30 2 *", "day-of-month", "never occurs"),
        ("* * 31 4,6 *", "day-of-month", "never occurs"),
        ("@often", None, "unknown macro"),
        ("@every", None, "expected '@every <n><unit>'"),
        ("@every 5", None, "expected '@every <n><unit>'"),
        ("@every 5d", None, "expected '@every <n><unit>'"),
        ("@every -5s", None, "expected '@every <n><unit>'"),
        ("@every 1.5s", None, "expected '@every <n><unit>'"),
        ("@every 99ms", None, "between 100 ms and 31 days, got 99 ms"),
        ("@every 745h", None, "between 100 ms and 31 days"),
    ],
)
def test_bad_expressions_name_the_field(expression: str, field: str | None, detail: str) -> None:
    with pytest.raises(CronError) as caught:
        parse(expression)
    assert caught.value.field == field
    assert detail in str(caught.value)
    if field is not None:
        assert f"{field} field" in str(caught.value)


def test_impossible_days_are_allowed_when_a_weekday_can_match() -> None:
    # day 30 never occurs in February, but with a restricted weekday the OR rule applies
    schedule = parse("0 0 30 2 MON")
    assert schedule.next_after(at("2026-01-01 00:00")) == at("2026-02-02 00:00")


def test_overlong_expression_is_refused() -> None:
    with pytest.raises(CronError, match="longer than"):
        parse("1," * 200 + "2 * * * *")


@pytest.mark.parametrize(
    ("expression", "interval_ms"),
    [
        ("@every 100ms", 100),
        ("@every 250ms", 250),
        ("@every 2s", 2000),
        ("@every  5m", 300_000),
        ("@EVERY 1H", 3_600_000),
        (" @every 744h ", 744 * 3_600_000),
    ],
)
def test_every_is_a_fixed_interval_after_the_instant(expression: str, interval_ms: int) -> None:
    schedule = parse(expression)
    assert schedule.next_after_ms(1_000_000_123) == 1_000_000_123 + interval_ms
    start = at("2026-03-01 10:00")
    assert schedule.next_after(start) - start == timedelta(milliseconds=interval_ms)
    # not minute-aligned: the period runs from the instant asked about
    assert schedule.next_after_ms(1_000_000_001) % 1000 == (1 + interval_ms) % 1000
