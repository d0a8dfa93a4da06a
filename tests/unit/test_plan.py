"""Capacity planning (model mode) against hand-computed cases: fill, budget, cooldown, run-out, churn.

Also: what the pool needs (the unlimited-inventory run, forked from the real run where the two
part) is what a whole unlimited run from day 0 finds.
"""

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from linepool.api.spec import PoolSpec, parse_pool_spec
from linepool.logic.plan import FLAT_HOUR_SHAPE, PlanServer, TrafficModel, _run, _runs, simulate

START = datetime(2026, 1, 1, tzinfo=UTC)


def pool_spec(*, inventory: int = 0, quota: int = 5000, budget: int = 1000, scale_up_at: float = 0.75,
              stop_at: float = 0.95, lines_per_server: int = 2, cooldown: str = "1m", max_servers: int = 1000,
              min_servers: int = 1, mode: str = "Auto") -> PoolSpec:
    raw: dict[str, Any] = {
        "metrics": {"prometheusURL": "http://prometheus:9090"},
        "quotas": {"messagesPerServerPerDay": quota, "newConversationsPerLinePerDay": budget},
        "assignment": {"stopAt": stop_at},
        "scaling": {"mode": mode, "scaleUpAt": scale_up_at, "linesPerServer": lines_per_server,
                    "cooldown": cooldown, "maxServers": max_servers, "minServers": min_servers},
        "inventory": [f"+1415555{n:04d}" for n in range(inventory)],
    }
    return parse_pool_spec(raw)


def one_server(lines: int = 2) -> list[PlanServer]:
    return [PlanServer(name="pool-0", lines=tuple(f"+1650555{n:04d}" for n in range(lines)))]


@pytest.mark.parametrize(("users", "messages", "quota"), [
    (1000, 10, 5000),    # 10,000 / 3,750 = 2.67 -> 3
    (5000, 4, 5000),     # 20,000 / 3,750 = 5.33 -> 6
    (12345, 3, 10000),   # 37,035 / 7,500 = 4.94 -> 5
    (300, 50, 2000),     # 15,000 / 1,500 = 10 exactly: 10 or 11
    (100, 10, 5000),     # 1,000 / 3,750 = 0.27 -> 1 (no scale-up)
])
def test_no_growth_fills_the_hand_computed_number_of_servers(users: int, messages: int, quota: int) -> None:
    expected = math.ceil(users * messages / (quota * 0.75))
    result = simulate(
        spec=pool_spec(inventory=2 * (expected + 2), quota=quota, scale_up_at=0.75),
        servers=one_server(),
        model=TrafficModel(new_users_per_day=0, messages_per_user_per_day=messages, initial_users=users),
        days=2, start=START,
    )
    servers = result.days[-1].servers
    assert abs(servers - expected) <= 1
    if users * messages % (quota * 0.75):
        assert servers == expected  # not on a boundary: exact
    assert result.summary.servers_needed_at_end == servers
    assert result.summary.lines_to_order == 0
    assert result.days[-1].users == users


def test_the_new_conversation_budget_limits_new_users_per_day() -> None:
    # 2 servers x 3 lines x 5 new conversations a day = 30 new users a day; the rest are refused.
    servers = [PlanServer(name=f"pool-{s}", lines=tuple(f"+165055{s}{n:04d}" for n in range(3))) for s in range(2)]
    result = simulate(
        spec=pool_spec(budget=5, mode="Off", inventory=10), servers=servers,
        model=TrafficModel(new_users_per_day=1000, messages_per_user_per_day=1, hour_shape=FLAT_HOUR_SHAPE),
        days=5, start=START,
    )
    assert [row.users for row in result.days] == [30, 60, 90, 120, 150]
    # 1000/24 an hour does not add up to exactly 1,000 in floating point: a user may slip to the next day.
    assert all(969 <= row.refused <= 971 for row in result.days)
    assert abs(sum(row.refused for row in result.days) + 150 - 5000) <= 1
    # Off: the operator recommends a server (no line can take new users) but adds none.
    assert all(row.servers == 2 for row in result.days)
    assert sum(row.recommended for row in result.days) > 0
    assert sum(row.scale_ups for row in result.days) == 0


@pytest.mark.parametrize(("cooldown", "gap"), [("1m", timedelta(hours=1)), ("6h", timedelta(hours=6))])
def test_cooldown_delays_the_second_scale_up(cooldown: str, gap: timedelta) -> None:
    # 1,000 users x 10 messages on one 5,000 server: 3 servers needed, two scale-ups in a row.
    result = simulate(
        spec=pool_spec(inventory=10, cooldown=cooldown), servers=one_server(),
        model=TrafficModel(new_users_per_day=0, messages_per_user_per_day=10, initial_users=1000),
        days=1, start=START,
    )
    first, second = result.scale_up_times
    assert first == START  # the first pass already sees 200% utilization
    assert second - first == gap
    assert result.summary.first_scale_up_day == 0


def test_inventory_runs_out_on_the_hand_computed_day_for_linear_growth() -> None:
    # 240 new users a day, 10 an hour (flat shape), 10 messages each a day. Users placed in hour k
    # send from hour k on, so after hour t >= 23 the 24-hour window holds
    #   sum_{k=t-23..t} 10(k+1) * 10/24 = 100t - 1050 messages.
    # With quota 10,000 and scaleUpAt 50%, n servers scale up at 100t - 1050 >= 5,000n:
    #   n=1 at t=61 (day 2), n=2 at t=111 (day 4), n=3 at t=161 (day 6), n=4 at t=211 (day 8).
    # The inventory holds 2 servers' lines: the second scale-up (day 4) uses the last of them.
    result = simulate(
        spec=pool_spec(inventory=4, quota=10000, scale_up_at=0.5), servers=one_server(),
        model=TrafficModel(new_users_per_day=240, messages_per_user_per_day=10, hour_shape=FLAT_HOUR_SHAPE),
        days=10, start=START, lead_time=timedelta(days=2),
    )
    assert [time - START for time in result.scale_up_times] == [timedelta(hours=61), timedelta(hours=111)]
    summary = result.summary
    assert summary.first_scale_up_day == 2
    assert summary.first_scale_up_time == START + timedelta(hours=61)
    assert summary.inventory_exhausted_day == 4
    assert summary.inventory_exhausted_time == START + timedelta(hours=111)
    assert [row.spare_inventory for row in result.days[:5]] == [4, 4, 2, 2, 0]
    # With unlimited inventory it would also scale at t=161 and t=211: 5 servers, 10 lines, 4 to order.
    assert summary.servers_needed_at_end == 5
    assert summary.lines_needed_at_end == 10
    assert summary.lines_to_order == 4
    assert summary.order_by == (START + timedelta(days=4 - 2)).date()
    assert result.days[-1].servers == 3  # the real pool is stuck


def test_an_empty_inventory_is_exhausted_the_first_hour_the_pool_needs_a_server() -> None:
    # The linear growth above, with no spare line: the pool needs its second server at t=61 and
    # never gets it. Without limits it would have grown at t=61, 111, 161 and 211: 8 lines to order.
    result = simulate(
        spec=pool_spec(inventory=0, quota=10000, scale_up_at=0.5), servers=one_server(),
        model=TrafficModel(new_users_per_day=240, messages_per_user_per_day=10, hour_shape=FLAT_HOUR_SHAPE),
        days=10, start=START,
    )
    summary = result.summary
    assert result.scale_up_times == ()
    assert (summary.first_scale_up_day, summary.first_scale_up_time) == (None, None)
    assert summary.inventory_exhausted_day == 2
    assert summary.inventory_exhausted_time == START + timedelta(hours=61)
    assert (summary.servers_needed_at_end, summary.lines_needed_at_end, summary.lines_to_order) == (5, 10, 8)


def test_order_by_is_never_before_the_start() -> None:
    result = simulate(
        spec=pool_spec(inventory=4, quota=10000, scale_up_at=0.5), servers=one_server(),
        model=TrafficModel(new_users_per_day=240, messages_per_user_per_day=10, hour_shape=FLAT_HOUR_SHAPE),
        days=10, start=START,
    )
    assert result.summary.order_by == START.date()


@pytest.mark.parametrize(("cooldown", "last_scale_ago", "first_scale_up_after"), [
    ("1h", timedelta(minutes=10), timedelta(hours=1)),  # cooldown ends at 0:50: the 1:00 pass scales
    ("3h", timedelta(minutes=10), timedelta(hours=3)),  # ends at 2:50
    ("1h", timedelta(hours=2), timedelta(0)),  # already over: the first pass scales, as with no last scale
])
@pytest.mark.parametrize("mode", ["Auto", "DryRun"])
def test_the_cooldown_counts_from_the_pools_last_scale_up_before_the_start(
        cooldown: str, last_scale_ago: timedelta, first_scale_up_after: timedelta, mode: str) -> None:
    # 1,000 users x 10 messages on one 5,000 server: 200% from the first pass, far over scaleUpAt.
    result = simulate(
        spec=pool_spec(inventory=10, cooldown=cooldown, mode=mode), servers=one_server(),
        model=TrafficModel(new_users_per_day=0, messages_per_user_per_day=10, initial_users=1000),
        days=1, start=START, last_scale_time=START - last_scale_ago,
    )
    # In DryRun the scale-up is only recommended, and the recommendation waits for the cooldown too.
    assert result.summary.first_scale_up_time == START + first_scale_up_after
    assert result.summary.first_scale_up_day == 0
    if mode == "Auto":
        assert result.scale_up_times[0] == START + first_scale_up_after
    else:
        assert result.scale_up_times == ()


def test_with_no_last_scale_time_the_first_pass_scales_up() -> None:
    result = simulate(
        spec=pool_spec(inventory=10, cooldown="1h"), servers=one_server(),
        model=TrafficModel(new_users_per_day=0, messages_per_user_per_day=10, initial_users=1000),
        days=1, start=START, last_scale_time=None,
    )
    assert result.scale_up_times[0] == result.summary.first_scale_up_time == START


LINEAR = TrafficModel(new_users_per_day=240, messages_per_user_per_day=10, hour_shape=FLAT_HOUR_SHAPE)
GROWING = TrafficModel(new_users_per_day=300, weekly_growth=0.3, messages_per_user_per_day=5, weekly_churn=0.05,
                       initial_users=200, inbound_first=0.7)


@pytest.mark.parametrize(("spec_args", "servers", "model", "days", "last_scale_ago"), [
    pytest.param({"inventory": 4, "quota": 10000, "scale_up_at": 0.5}, one_server(), LINEAR, 10, None,
                 id="linear growth"),
    pytest.param({"inventory": 0, "quota": 10000, "scale_up_at": 0.5}, one_server(), LINEAR, 10, None,
                 id="empty inventory"),
    pytest.param({"inventory": 5, "quota": 10000, "scale_up_at": 0.5}, one_server(), LINEAR, 10, None,
                 id="spare lines short of a whole server"),
    pytest.param({"inventory": 6, "quota": 3000, "lines_per_server": 3}, one_server(3), GROWING, 28, None,
                 id="compound growth and churn"),
    pytest.param({"inventory": 6, "cooldown": "6h"}, one_server(),
                 TrafficModel(new_users_per_day=50, messages_per_user_per_day=10, initial_users=3000), 3, None,
                 id="cooldown"),
    pytest.param({"inventory": 4, "quota": 10000, "scale_up_at": 0.5, "cooldown": "1d"}, one_server(), LINEAR,
                 10, timedelta(hours=2), id="last scale before the start"),
    pytest.param({"inventory": 3, "min_servers": 3}, [], GROWING, 14, None, id="minServers, inventory short"),
    pytest.param({"inventory": 0, "min_servers": 2}, [], GROWING, 14, None, id="minServers, no inventory"),
    pytest.param({"inventory": 1, "quota": 10000, "scale_up_at": 0.5, "mode": "DryRun"}, one_server(), LINEAR, 10,
                 None, id="DryRun"),
    pytest.param({"inventory": 1, "budget": 5, "mode": "Off"}, one_server(), LINEAR, 5, None,
                 id="Off, out of new-conversation budget"),
])
def test_what_the_pool_needs_is_what_a_whole_unlimited_run_finds(
        spec_args: dict[str, Any], servers: list[PlanServer], model: TrafficModel, days: int,
        last_scale_ago: timedelta | None) -> None:
    spec = pool_spec(**spec_args)
    last_scale_time = None if last_scale_ago is None else START - last_scale_ago
    result = simulate(spec=spec, servers=servers, model=model, days=days, start=START,
                      last_scale_time=last_scale_time)
    whole_real, whole_unlimited = (
        _run(spec=spec, servers=servers, model=model, days=days, start=START, unlimited=unlimited,
             last_scale_time=last_scale_time)
        for unlimited in (False, True)
    )
    assert whole_real.inventory_short  # the case this test is about: the real inventory holds the pool back
    summary = result.summary
    assert (summary.servers_needed_at_end, summary.lines_needed_at_end, summary.lines_to_order) == (
        whole_unlimited.servers, whole_unlimited.lines, whole_unlimited.planned_used)
    # The table is the real run's, untouched by the unlimited one.
    assert list(result.days) == whole_real.days
    assert list(result.scale_up_times) == whole_real.scale_up_times
    if spec.scaling.mode == "Auto":
        assert summary.lines_to_order > 0 and summary.servers_needed_at_end > result.days[-1].servers
        # Hour for hour, the unlimited run forked from the real one is the whole one: the same days
        # and the same scale-ups at the same hours, not merely the same figures at the end.
        _, forked = _runs(spec=spec, servers=servers, model=model, days=days, start=START, pool="pool",
                          last_scale_time=last_scale_time)
        assert forked.days == whole_unlimited.days
        assert forked.scale_up_times == whole_unlimited.scale_up_times
    else:
        # Off and DryRun add no server, with or without inventory: nothing to order.
        assert summary.lines_to_order == 0 and summary.servers_needed_at_end == result.days[-1].servers


def test_churn_removes_users_proportionally() -> None:
    result = simulate(
        spec=pool_spec(quota=10**6), servers=one_server(lines=10),
        model=TrafficModel(new_users_per_day=0, messages_per_user_per_day=1, initial_users=10000, weekly_churn=0.1),
        days=8, start=START,
    )
    # Churn applies at the start of each day after the first: 7 days of it by day 7 is one week.
    assert result.days[0].users == 10000
    assert abs(result.days[7].users - 9000) <= 10
    assert all(a.users >= b.users for a, b in zip(result.days, result.days[1:], strict=False))


def test_no_traffic_no_scale_up_nothing_to_order() -> None:
    result = simulate(spec=pool_spec(inventory=4), servers=one_server(),
                      model=TrafficModel(new_users_per_day=0, messages_per_user_per_day=0), days=3, start=START)
    summary = result.summary
    assert (summary.first_scale_up_day, summary.inventory_exhausted_day, summary.lines_to_order,
            summary.order_by) == (None, None, 0, None)
    assert (summary.servers_needed_at_end, summary.lines_needed_at_end) == (1, 2)


def test_min_servers_are_built_from_the_inventory() -> None:
    result = simulate(spec=pool_spec(inventory=4), servers=[],
                      model=TrafficModel(new_users_per_day=10, messages_per_user_per_day=1), days=1, start=START)
    assert result.days[0].servers == 1 and result.days[0].spare_inventory == 2


@pytest.mark.parametrize("bad", [
    {"new_users_per_day": -1, "messages_per_user_per_day": 1},
    {"new_users_per_day": 1, "messages_per_user_per_day": 1, "weekly_churn": 1.5},
    {"new_users_per_day": 1, "messages_per_user_per_day": 1, "hour_shape": (1.0,) * 24},
    {"new_users_per_day": 1, "messages_per_user_per_day": 1, "inbound_first": 2},
])
def test_a_bad_model_is_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"must|share"):
        TrafficModel(**bad)


def test_days_out_of_range_are_refused() -> None:
    model = TrafficModel(new_users_per_day=1, messages_per_user_per_day=1)
    with pytest.raises(ValueError, match="days must be between 1 and 730"):
        simulate(spec=pool_spec(), servers=one_server(), model=model, days=731, start=START)
