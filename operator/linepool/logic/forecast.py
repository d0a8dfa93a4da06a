"""The operator's capacity forecast, ``status.forecast``: when it is due, what it computes, what it says (pure).

It is ``linepool plan --from-cluster`` run by the operator: the pool's daily history is fitted
(:func:`~linepool.logic.plan_fit.fit_history`) and the pool, as it stands, is simulated ahead with
that model (:func:`~linepool.logic.plan.simulate`, which drives the operator's own assignment and
scaling decisions). The figures are the inventory runway (when the spare lines run out) and the
next scale-up, with the lines to order and by when.

Cost: the history is one range query, made at most once per :data:`REFRESH` per pool (after a
restart, ``computedAt`` in status says when the last one was). A change of the pool's spec or
servers between two queries re-simulates from the fit held in memory, without a query.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import Any

from linepool.api.conditions import format_time, parse_time
from linepool.api.spec import PoolSpec, ServerSpec
from linepool.logic.plan import PlanServer, TrafficModel, simulate
from linepool.logic.plan_fit import MIN_DAYS, HistoryFit

REFRESH = timedelta(hours=1)
DAY = timedelta(days=1)


@dataclass(frozen=True, kw_only=True)
class Forecast:
    """One forecast of a pool, or why there is none (``fit`` None, ``message`` says why)."""

    computed_at: datetime
    horizon: timedelta
    history_days: int
    message: str
    fit: HistoryFit | None = None
    next_scale_up: datetime | None = None
    inventory_exhausted: datetime | None = None
    lines_to_order: int = 0
    order_by: date | None = None

    @property
    def runway_days(self) -> int | None:
        """Whole days until the inventory runs out; None when it lasts beyond the horizon."""
        return _days_until(self.inventory_exhausted, self.computed_at)

    @property
    def next_scale_up_days(self) -> int | None:
        return _days_until(self.next_scale_up, self.computed_at)


def _days_until(moment: datetime | None, now: datetime) -> int | None:
    # The plan starts on the hour, so its first hour may lie minutes before now: that is day 0.
    return None if moment is None else max((moment - now) // DAY, 0)


def query_due(*, previous: Mapping[str, Any] | None, last_attempt: datetime | None, now: datetime) -> bool:
    """Whether this pass may make the hour's range query.

    ``last_attempt`` is this process's last try (successful or not); ``previous`` the forecast in
    status, whose ``computedAt`` stands in for it after a restart.
    """
    last = last_attempt
    if last is None and previous:
        last = parse_time(previous.get("computedAt"))
    return last is None or now - last >= REFRESH or now < last  # a clock set back must not stall it


def plan_servers(specs: Mapping[str, ServerSpec]) -> list[PlanServer]:
    """The pool's valid servers as the plan starts from them, sorted by name as the operator reads them."""
    return [PlanServer(name=name, lines=tuple(line.id for line in spec.lines), quota=spec.daily_message_quota,
                       cordoned=spec.cordoned)
            for name, spec in sorted(specs.items())]


def live_model(*, fit: HistoryFit, weekly_churn: float = 0.0, inbound_first: float = 1.0) -> TrafficModel:
    """The traffic model a fit gives: today's new users, their growth and messages, the users there now."""
    return TrafficModel(new_users_per_day=fit.new_users_per_day, weekly_growth=fit.weekly_growth,
                        messages_per_user_per_day=fit.messages_per_user_per_day, weekly_churn=weekly_churn,
                        inbound_first=inbound_first, initial_users=fit.users)


def plan_start(now: datetime) -> datetime:
    """Plans start on the hour, so that two plans made within the same hour agree."""
    return now.replace(minute=0, second=0, microsecond=0)


def compute(*, pool: str, spec: PoolSpec, servers: Mapping[str, ServerSpec], fit: HistoryFit,
            last_scale_time: datetime | None, now: datetime) -> Forecast:
    """Simulate the pool over ``spec.forecast.horizon`` with the fitted model; the figures it gives."""
    settings = spec.forecast
    days = max(settings.horizon // DAY, 1)
    result = simulate(spec=spec, servers=plan_servers(servers), model=live_model(fit=fit), days=days,
                      start=plan_start(now), pool=pool, lead_time=settings.lead_time,
                      last_scale_time=last_scale_time)
    summary = result.summary
    found = Forecast(
        computed_at=now, horizon=settings.horizon, history_days=fit.days, message="", fit=fit,
        next_scale_up=summary.first_scale_up_time, inventory_exhausted=summary.inventory_exhausted_time,
        lines_to_order=summary.lines_to_order, order_by=summary.order_by,
    )
    return _with_message(found)


def without_fit(*, spec: PoolSpec, history_days: int, reason: str, now: datetime) -> Forecast:
    """No forecast: too little history (``reason`` says how much was found)."""
    return Forecast(computed_at=now, horizon=spec.forecast.horizon, history_days=history_days,
                    message=f"no forecast: Prometheus {reason} (at least {MIN_DAYS} days of traffic)")


def _with_message(found: Forecast) -> Forecast:
    fit = found.fit
    assert fit is not None
    horizon = found.horizon // DAY
    parts = [f"{fit.new_users_per_day:,.0f} new users a day growing {fit.weekly_growth:.1%} a week and "
             f"{fit.messages_per_user_per_day:.2f} messages per user a day (fit over {fit.days} days, "
             f"R² {fit.growth_r2:.2f})"]
    scale = found.next_scale_up_days
    parts.append(f"next scale-up in {scale} days" if scale is not None else f"no scale-up within {horizon} days")
    runway = found.runway_days
    if runway is None:
        parts.append(f"the spare inventory lasts beyond {horizon} days")
    elif found.lines_to_order and found.order_by is not None:
        parts.append(f"the spare inventory runs out in {runway} days: order {found.lines_to_order} lines "
                     f"by {found.order_by.isoformat()}")
    else:
        parts.append(f"the spare inventory runs out in {runway} days")
    return replace(found, message="; ".join(parts) + ".")


def forecast_status(found: Forecast) -> dict[str, Any]:
    """``status.forecast``: figures rounded so that a refit of the same history writes nothing new."""
    status: dict[str, Any] = {
        "computedAt": format_time(found.computed_at),
        "historyDays": found.history_days,
        "horizonDays": found.horizon // DAY,
        "message": found.message,
    }
    fit = found.fit
    if fit is None:
        return status
    status.update({
        "newUsersPerDay": _rounded(fit.new_users_per_day),
        "weeklyGrowth": round(fit.weekly_growth, 4),
        "messagesPerUserPerDay": _rounded(fit.messages_per_user_per_day),
        "growthR2": round(fit.growth_r2, 3),
        "linesToOrder": found.lines_to_order,
    })
    if found.next_scale_up is not None:
        status["nextScaleUpTime"] = format_time(found.next_scale_up)
        status["nextScaleUpInDays"] = found.next_scale_up_days
    if found.inventory_exhausted is not None:
        status["inventoryExhaustedTime"] = format_time(found.inventory_exhausted)
        status["inventoryRunwayDays"] = found.runway_days
    if found.order_by is not None:
        status["orderBy"] = found.order_by.isoformat()
    return status


def _rounded(value: float) -> float:
    """Three significant figures."""
    if value == 0 or not math.isfinite(value):
        return 0.0
    return float(round(value, 2 - math.floor(math.log10(abs(value)))))


def status_patch(*, previous: Mapping[str, Any] | None, current: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The merge patch that turns ``previous`` into ``current``: a figure that is gone is sent as null.

    A merge patch keeps the keys it does not name, so a runway that moved beyond the horizon
    would otherwise stay in status. None removes the whole forecast.
    """
    if current is None:
        return None
    patch = dict(current)
    for key in previous or {}:
        if key not in patch:
            patch[key] = None
    return patch


def runs_out_within(forecast: Mapping[str, Any] | None, *, lead_time: timedelta) -> bool:
    """Whether a ``status.forecast`` has the inventory run out within ``lead_time``."""
    runway = (forecast or {}).get("inventoryRunwayDays")
    return isinstance(runway, int) and runway * DAY <= lead_time
