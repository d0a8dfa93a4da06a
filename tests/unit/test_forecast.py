"""The operator's capacity forecast (status.forecast): when the hour's query is due, what status says."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from linepool.api.errors import SpecError
from linepool.api.spec import ForecastSettings, parse_pool_spec, parse_server_spec
from linepool.logic import forecast
from linepool.logic.plan import simulate
from linepool.logic.plan_fit import HistoryFit, daily_series

NOW = datetime(2026, 3, 2, 9, 20, tzinfo=UTC)
METRICS = {"prometheusURL": "http://prometheus:9090"}


def fit(*, new_users: float = 240, growth: float = 0.0, messages: float = 10, users: int = 0,
        days: int = 14) -> HistoryFit:
    return HistoryFit(days=days, new_users_per_day=new_users, weekly_growth=growth, growth_r2=0.99,
                      shrinking=False, messages_per_user_per_day=messages, messages_r2=0.98, users=users)


def spec(*, inventory: int = 4, forecast_section: dict[str, Any] | None = None, cooldown: str = "1m") -> Any:
    return parse_pool_spec({
        "metrics": METRICS,
        "quotas": {"messagesPerServerPerDay": 10000, "newConversationsPerLinePerDay": 1000},
        "scaling": {"scaleUpAt": 0.5, "linesPerServer": 2, "cooldown": cooldown, "maxServers": 100},
        "inventory": [f"+1415555{n:04d}" for n in range(inventory)],
        "forecast": forecast_section or {"horizon": "30d", "leadTime": "3d"},
    })


def servers(count: int = 1) -> dict[str, Any]:
    return {f"pool-{s}": parse_server_spec({"pool": "pool", "endpoint": "https://relay.example",
                                            "lines": [{"id": f"+165055{s}{n:04d}"} for n in range(2)]})
            for s in range(count)}


# --- the spec --------------------------------------------------------------------------------------


def test_forecast_defaults_are_the_documented_ones() -> None:
    assert parse_pool_spec({"metrics": METRICS}).forecast == ForecastSettings(
        enabled=True, lead_time=timedelta(days=7), horizon=timedelta(days=90))


@pytest.mark.parametrize(("section", "field"), [
    ({"enabled": "yes"}, "spec.forecast.enabled"),
    ({"leadTime": "91d"}, "spec.forecast.leadTime"),
    ({"leadTime": "soon"}, "spec.forecast.leadTime"),
    ({"horizon": "6d"}, "spec.forecast.horizon"),
    ({"horizon": "366d"}, "spec.forecast.horizon"),
    ({"leadTime": "30d", "horizon": "14d"}, "spec.forecast.leadTime"),
])
def test_a_bad_forecast_section_names_the_field(section: dict[str, Any], field: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_pool_spec({"metrics": METRICS, "forecast": section})
    assert caught.value.field == field


# --- when the hour's query is made ---------------------------------------------------------------


def test_the_first_pass_queries() -> None:
    assert forecast.query_due(previous=None, last_attempt=None, now=NOW)


def test_one_query_an_hour() -> None:
    assert not forecast.query_due(previous=None, last_attempt=NOW - timedelta(minutes=59), now=NOW)
    assert forecast.query_due(previous=None, last_attempt=NOW - timedelta(hours=1), now=NOW)


def test_after_a_restart_status_says_when_the_last_query_was() -> None:
    recent = {"computedAt": "2026-03-02T09:00:00Z"}
    assert not forecast.query_due(previous=recent, last_attempt=None, now=NOW)
    assert forecast.query_due(previous={"computedAt": "2026-03-02T08:10:00Z"}, last_attempt=None, now=NOW)


def test_a_failed_try_also_waits_the_hour() -> None:
    # The last try failed (status still says 07:00): the try at 09:00 counts, not the status.
    old = {"computedAt": "2026-03-02T07:00:00Z"}
    assert not forecast.query_due(previous=old, last_attempt=NOW - timedelta(minutes=20), now=NOW)


def test_a_clock_set_back_does_not_stall_the_forecast() -> None:
    assert forecast.query_due(previous=None, last_attempt=NOW + timedelta(hours=3), now=NOW)


# --- what it computes ------------------------------------------------------------------------------


def test_the_forecast_is_the_plan_of_the_fitted_model() -> None:
    # The same pool and model as linepool plan: the figures are that plan's, from the hour's start.
    pool_spec, found = spec(), fit(new_users=240, messages=10)
    result = forecast.compute(pool="pool", spec=pool_spec, servers=servers(), fit=found, last_scale_time=None,
                              now=NOW)
    plan = simulate(spec=pool_spec, servers=forecast.plan_servers(servers()), model=forecast.live_model(fit=found),
                    days=30, start=forecast.plan_start(NOW), pool="pool", lead_time=timedelta(days=3))
    assert plan.summary.first_scale_up_day is not None and plan.summary.inventory_exhausted_day is not None
    assert result.next_scale_up_days == plan.summary.first_scale_up_day
    assert result.runway_days == plan.summary.inventory_exhausted_day
    assert result.lines_to_order == plan.summary.lines_to_order > 0
    assert result.order_by == plan.summary.order_by


def test_plenty_of_inventory_has_no_runway() -> None:
    result = forecast.compute(pool="pool", spec=spec(inventory=400), servers=servers(), fit=fit(), last_scale_time=None,
                              now=NOW)
    assert result.next_scale_up_days is not None
    assert result.runway_days is None and result.lines_to_order == 0
    status = forecast.forecast_status(result)
    assert "inventoryRunwayDays" not in status and "orderBy" not in status
    assert "lasts beyond 30 days" in status["message"]


def test_no_traffic_no_scale_up() -> None:
    result = forecast.compute(pool="pool", spec=spec(), servers=servers(), fit=fit(new_users=0, messages=0),
                              last_scale_time=None, now=NOW)
    assert result.next_scale_up is None and result.runway_days is None
    assert "no scale-up within 30 days" in result.message


def test_the_cooldown_of_the_last_scale_up_holds_back_the_next() -> None:
    # 3,000 users x 10 messages = 30,000 a day against one server's 5,000 at scaleUpAt: it must scale
    # now, but the pool scaled 10 minutes ago with a 2h cooldown.
    busy = fit(new_users=0, messages=10, users=3000)
    free = forecast.compute(pool="pool", spec=spec(inventory=40, cooldown="2h"), servers=servers(), fit=busy,
                            last_scale_time=None, now=NOW)
    held = forecast.compute(pool="pool", spec=spec(inventory=40, cooldown="2h"), servers=servers(), fit=busy,
                            last_scale_time=NOW - timedelta(minutes=10), now=NOW)
    assert free.next_scale_up == forecast.plan_start(NOW)
    assert held.next_scale_up is not None
    assert held.next_scale_up >= NOW - timedelta(minutes=10) + timedelta(hours=2)


def test_status_carries_the_figures_and_a_sentence() -> None:
    result = forecast.compute(pool="pool", spec=spec(), servers=servers(), fit=fit(new_users=240, messages=10),
                              last_scale_time=None, now=NOW)
    status = forecast.forecast_status(result)
    assert status["computedAt"] == "2026-03-02T09:20:00Z"
    assert status["horizonDays"] == 30 and status["historyDays"] == 14
    assert status["inventoryRunwayDays"] == result.runway_days
    assert status["nextScaleUpInDays"] == result.next_scale_up_days
    assert status["linesToOrder"] == result.lines_to_order
    assert status["orderBy"] == result.order_by.isoformat() if result.order_by else False
    assert (f"runs out in {result.runway_days} days: order {result.lines_to_order} lines by "
            f"{status['orderBy']}") in status["message"]
    assert status["newUsersPerDay"] == 240 and status["messagesPerUserPerDay"] == 10


def test_too_little_history_says_so_without_figures() -> None:
    status = forecast.forecast_status(forecast.without_fit(
        spec=spec(), history_days=2, reason="found 2 day(s) of history; at least 3 are needed", now=NOW))
    assert set(status) == {"computedAt", "historyDays", "horizonDays", "message"}
    assert status["historyDays"] == 2
    assert "no forecast" in status["message"] and "found 2 day(s)" in status["message"]


@pytest.mark.parametrize(("value", "expected"), [(1234.5678, 1230), (12.345, 12.3), (0.012345, 0.0123), (0, 0)])
def test_figures_keep_three_significant_digits(value: float, expected: float) -> None:
    assert forecast._rounded(value) == pytest.approx(expected)


# --- the status patch and the alert's condition -------------------------------------------------------


def test_a_figure_that_left_the_forecast_is_removed_from_status() -> None:
    previous = {"computedAt": "a", "inventoryRunwayDays": 4, "orderBy": "2026-03-03", "message": "m"}
    current = {"computedAt": "b", "message": "lasts"}
    assert forecast.status_patch(previous=previous, current=current) == {
        "computedAt": "b", "message": "lasts", "inventoryRunwayDays": None, "orderBy": None}
    assert forecast.status_patch(previous=previous, current=None) is None
    assert forecast.status_patch(previous=None, current=current) == current


@pytest.mark.parametrize(("runway", "lead", "within"), [(3, 7, True), (7, 7, True), (8, 7, False), (None, 7, False),
                                                        (0, 0, True)])
def test_runs_out_within_the_lead_time(runway: int | None, lead: int, within: bool) -> None:
    status = {} if runway is None else {"inventoryRunwayDays": runway}
    assert forecast.runs_out_within(status, lead_time=timedelta(days=lead)) is within
    assert forecast.runs_out_within(None, lead_time=timedelta(days=lead)) is False


# --- the history -----------------------------------------------------------------------------------


def test_the_history_keeps_days_both_series_have_and_drops_a_partly_counted_first_day() -> None:
    day = 86400.0
    new_users = {0 * day: 1.0, 1 * day: 10.0, 2 * day: 11.0, 3 * day: 12.0}
    messages = {1 * day: 100.0, 2 * day: 110.0, 3 * day: 120.0}
    # Three shared days out of a 28-day range: the series began inside it, so its first day goes.
    assert daily_series(new_users=new_users, messages=messages, days=28) == ([11.0, 12.0], [110.0, 120.0])
    # A range no longer than the series: every shared day is whole.
    assert daily_series(new_users=new_users, messages=messages, days=2) == ([10.0, 11.0, 12.0],
                                                                          [100.0, 110.0, 120.0])
