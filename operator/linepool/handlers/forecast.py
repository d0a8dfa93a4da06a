"""The pool loop's capacity forecast: the hour's range query, the fit, the simulation, and status.forecast.

Called once per pass by ``handlers.pools.reconcile_once``. The decisions (when a query is due,
what the figures are, what status says) are ``logic.forecast``'s; this module reads the history
through the Prometheus adapter and runs the simulation off the event loop.

It fails static: when Prometheus does not answer, status keeps the last forecast (its
``computedAt`` says how old it is) and the next try waits for the next hour, so an outage costs
one query an hour, not one a poll.
"""

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import kopf

from linepool import telemetry
from linepool.adapters.prometheus import PrometheusClient, PrometheusError
from linepool.api.conditions import parse_time
from linepool.logic import forecast as logic
from linepool.logic.plan_fit import HISTORY_DAYS, HistoryFit, NotEnoughHistory, daily_series, fit_history
from linepool.logic.pool import PoolDecision, PoolView


@dataclass(kw_only=True)
class ForecastMemory:
    """What a pool's loop keeps between passes: the last query, the fit, and what it was simulated on."""

    attempted: datetime | None = None
    fit: HistoryFit | None = None
    # The pool generation, servers and last scale the status below was simulated on.
    inputs: tuple[Any, ...] | None = None
    status: dict[str, Any] | None = None


async def refresh(*, pool: PoolView, decision: PoolDecision, memory: ForecastMemory, prometheus: PrometheusClient,
                  servers: Mapping[str, Any], now: datetime, logger: kopf.Logger) -> dict[str, Any] | None:
    """``status.forecast`` for this pass: new when due (or when the pool changed), else the last one.

    ``servers`` maps the pool's server names to their generations. None when forecasting is disabled.
    """
    spec = pool.spec
    ns, name = pool.namespace, pool.name
    if not spec.forecast.enabled:
        memory.attempted, memory.fit, memory.inputs, memory.status = None, None, None, None
        telemetry.forget_forecast(namespace=ns, pool=name)
        return None
    previous = pool.status.get("forecast")
    previous = previous if isinstance(previous, Mapping) else None
    last_scale = parse_time(decision.pool_status.get("lastScaleTime"))
    inputs = (pool.generation, tuple(sorted(servers.items())), tuple(sorted(decision.server_specs)), last_scale)
    if logic.query_due(previous=previous, last_attempt=memory.attempted, now=now):
        memory.attempted = now
        telemetry.PROMETHEUS_QUERIES.labels(ns, name).inc()
        try:
            new_users, messages = await prometheus.daily_history(
                base_url=spec.metrics.prometheus_url, templates=spec.metrics.queries, servers=list(servers), now=now,
                days=HISTORY_DAYS)
        except PrometheusError as error:
            telemetry.FORECAST_QUERIES.labels(ns, name, "failed").inc()
            logger.warning("No capacity forecast for pool %s/%s this hour: %s", ns, name, error)
            return memory.status or (dict(previous) if previous is not None else None)
        telemetry.FORECAST_QUERIES.labels(ns, name, "ok").inc()
        users, sent = daily_series(new_users=new_users, messages=messages, days=HISTORY_DAYS)
        try:
            memory.fit = fit_history(new_users=users, messages=sent)
        except NotEnoughHistory as exc:
            memory.fit, memory.inputs = None, inputs
            memory.status = logic.forecast_status(logic.without_fit(spec=spec, history_days=len(users),
                                                                    reason=str(exc), now=now))
            _export(pool=pool, status=memory.status)
            return memory.status
        memory.inputs = None  # a new fit is simulated whatever the inputs
    if memory.fit is not None and memory.inputs != inputs:
        found = await asyncio.to_thread(
            logic.compute, pool=name, spec=spec, servers=decision.server_specs, fit=memory.fit,
            last_scale_time=last_scale, now=now)
        memory.status, memory.inputs = logic.forecast_status(found), inputs
        _export(pool=pool, status=memory.status)
    if memory.status is None:
        # Restarted within the hour of the last forecast: status still holds it.
        if previous is not None:
            _export(pool=pool, status=previous)
        return dict(previous) if previous is not None else None
    return memory.status


def _export(*, pool: PoolView, status: Mapping[str, Any]) -> None:
    ns, name = pool.namespace, pool.name
    if "linesToOrder" not in status:  # no fit, so no figures
        telemetry.forget_forecast(namespace=ns, pool=name)
        return
    runway, scale = status.get("inventoryRunwayDays"), status.get("nextScaleUpInDays")
    telemetry.FORECAST_RUNWAY.labels(ns, name).set(float("inf") if runway is None else runway)
    telemetry.FORECAST_NEXT_SCALE_UP.labels(ns, name).set(float("inf") if scale is None else scale)
    telemetry.FORECAST_LEAD_TIME.labels(ns, name).set(pool.spec.forecast.lead_time / logic.DAY)
