"""Fit a traffic model to a pool's history, for ``linepool plan --from-cluster`` (pure).

The history is one figure per day, oldest first: new users (new conversations) and messages sent.

- **Growth** is exponential: ``log(new users)`` is fitted against the day by least squares, so the
  slope gives the weekly growth and the line's last value today's new users per day. A shrinking
  pool plans with no growth (the model has no negative growth) and says so.
- **Messages per user** come from ``messages(d) = m * (U0 + new users up to d)``: a straight line of
  messages against the cumulative new users, whose slope is ``m`` and whose intercept is ``m * U0``,
  the users the pool had before the history starts. When the history is too flat for a slope,
  ``m`` is the last day's messages over the users counted.

Each fit reports its R², so the caller can say how good it is.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

MIN_DAYS = 3
# The history a fit reads: linepool plan --from-cluster and the operator's status.forecast alike.
HISTORY_DAYS = 28


class NotEnoughHistory(ValueError):
    """Fewer than ``MIN_DAYS`` days with data."""


@dataclass(frozen=True, kw_only=True)
class HistoryFit:
    days: int
    new_users_per_day: float  # today's, on the fitted curve
    weekly_growth: float
    growth_r2: float
    shrinking: bool  # the fitted growth was negative; the plan uses none
    messages_per_user_per_day: float
    messages_r2: float
    users: int  # users on the pool's lines today, as the fit estimates them


def daily_series(*, new_users: Mapping[float, float], messages: Mapping[float, float],
                 days: int) -> tuple[list[float], list[float]]:
    """The days (by the Unix time each ends) that both series have, oldest first, as two lists.

    ``days`` is how many days the range asked for: when a series holds no more points than that, it
    began inside the range, and its first day was only partly counted, so it is dropped.
    """
    both = sorted(set(new_users) & set(messages))
    if 0 < len(both) <= days:
        both = both[1:]
    return [new_users[t] for t in both], [messages[t] for t in both]


def _line(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float, float]:
    """Least squares ``y = a + b x``: (a, b, R²). R² is 1 for a perfect fit, 0 for a flat one."""
    n = len(xs)
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mean_x) ** 2 for x in xs)
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    slope = sxy / sxx if sxx else 0.0
    intercept = mean_y - slope * mean_x
    total = sum((y - mean_y) ** 2 for y in ys)
    residual = sum((y - intercept - slope * x) ** 2 for x, y in zip(xs, ys, strict=True))
    # A flat series (within rounding) is fitted perfectly by a flat line.
    flat = total <= 1e-12 * max(1.0, mean_y * mean_y) * n
    return intercept, slope, 1.0 if flat else 1.0 - residual / total


def fit_history(*, new_users: Sequence[float], messages: Sequence[float]) -> HistoryFit:
    """The traffic model that best explains ``new_users`` and ``messages`` per day (oldest first)."""
    if len(new_users) != len(messages):
        raise ValueError("new_users and messages must cover the same days")
    days = len(new_users)
    if days < MIN_DAYS:
        raise NotEnoughHistory(f"found {days} day(s) of history; at least {MIN_DAYS} are needed to fit growth")
    index = [float(d) for d in range(days)]
    # Half a user keeps a day without sign-ups on the log scale without dominating the fit.
    logs = [math.log(max(value, 0.5)) for value in new_users]
    intercept, slope, growth_r2 = _line(index, logs)
    weekly = math.exp(7 * slope) - 1
    today = math.exp(intercept + slope * (days - 1))

    cumulative: list[float] = []
    running = 0.0
    for value in new_users:
        running += max(value, 0.0)
        cumulative.append(running)
    base, per_user, messages_r2 = _line(cumulative, list(messages))
    if per_user > 0:
        # A negative intercept is noise (or rounding): no pool has fewer than zero users.
        before = max(base / per_user, 0.0)
    else:
        per_user = messages[-1] / cumulative[-1] if cumulative[-1] else 0.0
        before, messages_r2 = 0.0, 0.0
    return HistoryFit(
        days=days, new_users_per_day=today, weekly_growth=max(weekly, 0.0), growth_r2=growth_r2,
        shrinking=weekly < 0, messages_per_user_per_day=per_user, messages_r2=messages_r2,
        users=round(before + cumulative[-1]),
    )
