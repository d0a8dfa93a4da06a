"""The quota window: how far back PromQL looks when it counts a day's messages."""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from linepool.api.types import QuotaWindow

ROLLING_DAY = timedelta(hours=24)
# A calendar day that started seconds ago still needs a range Prometheus accepts and that
# holds at least one scrape; a minute is both.
MIN_RANGE = timedelta(minutes=1)


def window_length(*, window: QuotaWindow, timezone: str, now: datetime) -> timedelta:
    """The span that counts toward today's quota at ``now``.

    Rolling24h looks back 24 hours. CalendarDay looks back to the last local midnight in the
    pool's time zone, which is 23 or 25 hours away on daylight-saving days; zoneinfo handles that.
    """
    if window is QuotaWindow.ROLLING_24H:
        return ROLLING_DAY
    local_now = now.astimezone(ZoneInfo(timezone))
    midnight = local_now.replace(hour=0, minute=0, second=0, microsecond=0)
    # Subtract in UTC: wall-clock subtraction across a DST change would be off by an hour.
    elapsed = now - midnight.astimezone(now.tzinfo)
    return max(elapsed, MIN_RANGE)


def promql_range(length: timedelta) -> str:
    """Render a window as a PromQL range, in whole seconds."""
    return f"{max(int(length.total_seconds()), 1)}s"
