"""rate(...) and AWS 6-field cron(...) expressions, and the scheduled event."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from local_runtime.schedule_expressions import (
    Cron,
    Rate,
    ScheduleExpressionError,
    parse_schedule,
)
from local_runtime.schedules import VirtualClock, scheduled_event


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def next_fire(expression: str, after: str) -> str:
    cron = parse_schedule(expression)
    assert isinstance(cron, Cron)
    return cron.next_after(at(after)).strftime("%Y-%m-%d %H:%M %a")


@pytest.mark.parametrize(
    ("expression", "seconds"),
    [
        ("rate(1 minute)", 60),
        ("rate(5 minutes)", 300),
        ("rate(1 hour)", 3600),
        ("rate(2 hours)", 7200),
        ("rate(1 day)", 86400),
        ("rate(7 days)", 604800),
    ],
)
def test_rates(expression: str, seconds: int) -> None:
    assert parse_schedule(expression) == Rate(seconds)


@pytest.mark.parametrize(
    "bad",
    [
        "rate(1 minutes)",
        "rate(5 minute)",
        "rate(0 minutes)",
        "rate(1 week)",
        "every 5 minutes",
        "cron(* * * * *)",
        "cron(0 12 * * * *)",
        "cron(0 12 ? * ? *)",
        "cron(61 * * * ? *)",
    ],
)
def test_expressions_aws_would_reject_are_rejected(bad: str) -> None:
    with pytest.raises(ScheduleExpressionError):
        parse_schedule(bad)


def test_cron_every_day_at_a_fixed_time() -> None:
    assert next_fire("cron(0 10 * * ? *)", "2026-01-01T09:59:30") == "2026-01-01 10:00 Thu"
    assert next_fire("cron(0 10 * * ? *)", "2026-01-01T10:00:00") == "2026-01-02 10:00 Fri"


def test_cron_steps_ranges_and_named_days() -> None:
    assert next_fire("cron(0/15 * * * ? *)", "2026-01-01T10:16:00") == "2026-01-01 10:30 Thu"
    # MON-FRI at 18:00: from Friday evening the next one is Monday.
    assert next_fire("cron(0 18 ? * MON-FRI *)", "2026-01-02T18:30:00") == "2026-01-05 18:00 Mon"
    # Day-of-week 1 is Sunday in AWS cron.
    assert next_fire("cron(0 8 ? * 1 *)", "2026-01-01T00:00:00") == "2026-01-04 08:00 Sun"


def test_cron_last_day_nth_weekday_and_years() -> None:
    assert next_fire("cron(0 0 L * ? *)", "2026-02-03T00:00:00") == "2026-02-28 00:00 Sat"
    assert next_fire("cron(0 9 ? * 6#3 *)", "2026-01-01T00:00:00") == "2026-01-16 09:00 Fri"
    assert next_fire("cron(0 9 1 JAN ? 2028)", "2026-01-01T00:00:00") == "2028-01-01 09:00 Sat"


def test_a_rate_fires_one_period_after_start_and_then_every_period() -> None:
    rate = Rate(60)
    start = at("2026-01-01T00:00:00")
    first = rate.next_after(start, start)
    assert first == at("2026-01-01T00:01:00")
    assert rate.next_after(first, start) == at("2026-01-01T00:02:00")


def test_the_virtual_clock_speeds_time_up() -> None:
    clock = VirtualClock(60)
    seconds = clock.real_seconds_until(clock.now() + timedelta(minutes=1))
    assert 0.9 < seconds <= 1.0  # a virtual minute lasts a real second


def test_scheduled_event_is_eventbridge_shaped() -> None:
    event = scheduled_event(
        account_id="123456789012",
        region="eu-west-1",
        rule_arn="arn:aws:events:eu-west-1:123456789012:rule/r",
        at=at("2026-01-01T10:00:00"),
    )
    assert event["detail-type"] == "Scheduled Event" and event["source"] == "aws.events"
    assert event["time"] == "2026-01-01T10:00:00Z" and event["detail"] == {}
    assert event["resources"] == ["arn:aws:events:eu-west-1:123456789012:rule/r"]
    assert set(event) == {
        "version",
        "id",
        "detail-type",
        "source",
        "account",
        "time",
        "region",
        "resources",
        "detail",
    }
