"""status.forecast written by the operator, against real processes: the pool on the genuine kube-apiserver,
its history in a real Prometheus backfilled with twelve days of known growth (tests/integration/history.py).

The operator's figures must be those of ``linepool plan --from-cluster`` on the same pool; the
history is read with one range query an hour, also across a restart; the gauge behind the chart's
alert matches status; disabling the forecast removes it; too little history and an unreachable
Prometheus leave a clear message or the last forecast, never a crash.
"""

import json
import math
import os
import subprocess
import sys
import time
from typing import Any

import pytest

from linepool.sandbox.prometheus import PrometheusProcess, free_port
from tests.integration.conftest import Sandbox, wait_for
from tests.integration.history import GROWTH, LINES

pytestmark = pytest.mark.integration

INVENTORY = [f"+1415555{4000 + n}" for n in range(8)]


def history_pool(sandbox: Sandbox, name: str, url: str, **spec: Any) -> None:
    sandbox.pool(name, metrics={"prometheusURL": url, "pollInterval": "1s", "staleAfter": "30s"},
                 scaling={"maxServers": 20, "linesPerServer": 2}, inventory=INVENTORY, **spec)


def history_servers(sandbox: Sandbox, pool: str) -> None:
    # The backfilled series carry these server names; the fleet exports nothing for them.
    for server, ids in LINES.items():
        sandbox.server(server, pool, ids, exported=False)


def metric(page: str, name: str, **labels: str) -> float | None:
    for line in page.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def forecast_of(sandbox: Sandbox, pool: str) -> dict[str, Any]:
    return dict(sandbox.status("linepools", pool).get("forecast") or {})


def plan_json(sandbox: Sandbox, pool: str) -> dict[str, Any]:
    kubeconfig = sandbox.api.write_kubeconfig(sandbox.workdir / "admin-kubeconfig")
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "NO_PROXY": "127.0.0.1,localhost",
           "no_proxy": "127.0.0.1,localhost"}
    result = subprocess.run([sys.executable, "-m", "linepool", "plan", "--from-cluster", f"{sandbox.namespace}/{pool}",
                             "--days", "90", "--output", "json"], env=env, capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    plan: dict[str, Any] = json.loads(result.stdout)
    return plan


def test_the_operator_forecasts_what_linepool_plan_does_with_one_query_an_hour(
        sandbox: Sandbox, history: PrometheusProcess) -> None:
    history_pool(sandbox, "grow", history.url, forecast={"leadTime": "60d"})
    history_servers(sandbox, "grow")
    operator = sandbox.start_operator()
    found = wait_for(lambda: forecast_of(sandbox, "grow").get("linesToOrder") is not None, timeout=60,
                     what="status.forecast with figures")
    assert found
    forecast = forecast_of(sandbox, "grow")
    assert forecast["historyDays"] >= 10 and forecast["horizonDays"] == 90
    assert math.isclose(forecast["weeklyGrowth"], GROWTH, rel_tol=0.10), forecast

    # linepool plan on the same pool, from the same history, gives the same figures (a few seconds
    # later, so the day's sums, and at most the day a threshold is crossed, may move by one).
    plan = plan_json(sandbox, "grow")
    assert plan["inventoryExhaustedDay"] is not None, plan["history"]
    assert abs(forecast["inventoryRunwayDays"] - plan["inventoryExhaustedDay"]) <= 1, (forecast, plan["history"])
    assert abs(forecast["nextScaleUpInDays"] - plan["firstScaleUpDay"]) <= 1
    assert forecast["linesToOrder"] > 0 and forecast["orderBy"]
    assert f"runs out in {forecast['inventoryRunwayDays']} days" in forecast["message"]

    # The gauge the chart's alert reads says the same, next to the lead time.
    page = operator.metrics()
    labels = {"namespace": sandbox.namespace, "pool": "grow"}
    assert metric(page, "linepool_pool_inventory_runway_days", **labels) == forecast["inventoryRunwayDays"]
    assert metric(page, "linepool_pool_forecast_lead_time_days", **labels) == 60
    # Within the 60-day lead time: a Warning event says how many lines to order.
    events = wait_for(lambda: sandbox.events(reason="InventoryRunningOut", involving="grow"),
                      what="an InventoryRunningOut event")
    assert f"order {forecast['linesToOrder']} lines" in events[0]["message"]

    # Many polls later the history was still read once, and the forecast was not rewritten.
    sandbox.api.reset_counters()
    polls_before = metric(operator.metrics(), "linepool_reconcile_duration_seconds_count", **labels) or 0
    wait_for(lambda: (metric(operator.metrics(), "linepool_reconcile_duration_seconds_count", **labels) or 0)
             >= polls_before + 5, what="five more polls")
    assert metric(operator.metrics(), "linepool_forecast_history_queries_total", outcome="ok", **labels) == 1
    assert forecast_of(sandbox, "grow") == forecast

    # A restarted operator finds this hour's forecast in status: no query, no change.
    operator.stop()
    restarted = sandbox.start_operator()
    wait_for(lambda: (metric(restarted.metrics(), "linepool_reconcile_duration_seconds_count", **labels) or 0) >= 5,
             what="five polls after the restart")
    page = restarted.metrics()
    assert metric(page, "linepool_forecast_history_queries_total", outcome="ok", **labels) is None
    assert metric(page, "linepool_pool_inventory_runway_days", **labels) == forecast["inventoryRunwayDays"]
    assert forecast_of(sandbox, "grow") == forecast
    assert len(sandbox.events(reason="InventoryRunningOut", involving="grow")) == 1

    # Disabled: status.forecast and the gauges go.
    sandbox.api.patch("linepools", sandbox.namespace, "grow", {"spec": {"forecast": {"enabled": False}}})
    wait_for(lambda: "forecast" not in sandbox.status("linepools", "grow"), what="status.forecast removed")
    wait_for(lambda: metric(restarted.metrics(), "linepool_pool_inventory_runway_days", **labels) is None,
             what="the runway gauge removed")


def test_too_little_history_and_an_unreachable_prometheus(sandbox: Sandbox, history: PrometheusProcess) -> None:
    # "fresh" has servers Prometheus has never seen; "cut-off" points at a port nobody listens on.
    history_pool(sandbox, "fresh", history.url)
    sandbox.server("fresh-0", "fresh", ["+14155553100"], exported=False)
    history_pool(sandbox, "cut-off", f"http://127.0.0.1:{free_port()}")
    sandbox.server("cut-0", "cut-off", ["+14155553200"], exported=False)
    operator = sandbox.start_operator()
    forecast = wait_for(lambda: forecast_of(sandbox, "fresh"), timeout=60, what="status.forecast of fresh")
    assert "no forecast" in forecast["message"] and "found 0 day(s) of history" in forecast["message"]
    assert forecast["historyDays"] == 0
    assert "inventoryRunwayDays" not in forecast and "linesToOrder" not in forecast

    cut = {"namespace": sandbox.namespace, "pool": "cut-off"}
    wait_for(lambda: metric(operator.metrics(), "linepool_forecast_history_queries_total", outcome="failed", **cut),
             what="the failed forecast query counted")
    time.sleep(5)  # five polls: an unreachable Prometheus is tried once an hour, not every poll
    page = operator.metrics()
    assert metric(page, "linepool_forecast_history_queries_total", outcome="failed", **cut) == 1
    assert metric(page, "linepool_pool_inventory_runway_days", **cut) is None
    assert "forecast" not in sandbox.status("linepools", "cut-off")
    assert sandbox.condition("linepools", "cut-off", "MetricsAvailable").get("status") == "False"
    assert operator.running
