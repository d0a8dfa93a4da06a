"""The quota window, rolling and calendar, across daylight-saving changes."""

from datetime import UTC, datetime, timedelta

from linepool.api.types import QuotaWindow
from linepool.logic.window import promql_range, window_length


def test_rolling_window_is_a_day() -> None:
    now = datetime(2026, 3, 8, 12, 0, tzinfo=UTC)
    assert window_length(window=QuotaWindow.ROLLING_24H, timezone="UTC", now=now) == timedelta(hours=24)


def test_calendar_day_starts_at_local_midnight() -> None:
    # 15:30 UTC is 10:30 in New York (EST, UTC-5) in January.
    now = datetime(2026, 1, 15, 15, 30, tzinfo=UTC)
    length = window_length(window=QuotaWindow.CALENDAR_DAY, timezone="America/New_York", now=now)
    assert length == timedelta(hours=10, minutes=30)


def test_calendar_day_on_the_spring_forward_day_is_real_elapsed_time() -> None:
    # 2026-03-08 clocks jump from 02:00 to 03:00 in New York. At 12:00 local (EDT, 16:00 UTC)
    # only 11 real hours have passed since midnight.
    now = datetime(2026, 3, 8, 16, 0, tzinfo=UTC)
    length = window_length(window=QuotaWindow.CALENDAR_DAY, timezone="America/New_York", now=now)
    assert length == timedelta(hours=11)


def test_calendar_day_just_after_midnight_has_a_usable_range() -> None:
    now = datetime(2026, 1, 15, 5, 0, 5, tzinfo=UTC)  # 00:00:05 in New York
    length = window_length(window=QuotaWindow.CALENDAR_DAY, timezone="America/New_York", now=now)
    assert length == timedelta(minutes=1)
    assert promql_range(length) == "60s"
