"""Placement decisions, without I/O: the order new users take, budgets, who moves, windows, Retry-After."""

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from linepool.api.spec import PoolSpec
from linepool.api.types import LineRole, LineState
from linepool.logic.placement import (
    RETRY_NOT_READY,
    RETRY_STORE,
    LineFacts,
    MoveReason,
    PoolFacts,
    Unavailable,
    budget_left,
    candidates,
    has_budget,
    move_reason,
    rotation,
    window_start,
)
from linepool.logic.placement import retry_after as retry_after_of
from tests.placement.builders import facts, linepool, server

NEW_YORK = ZoneInfo("America/New_York")

# --- pool_facts: the order new users take -----------------------------------------------------------


def test_new_users_take_one_line_of_each_server_in_turn() -> None:
    # Servers come sorted by name whatever order the watch lists them in.
    pool = facts(None, server("b", ["b1", "b2", "b3"]), server("a", ["a1", "a2"]), server("c", ["c1"]))
    assert pool.order == ("a1", "b1", "c1", "a2", "b2", "b3")
    assert pool.unavailable is None
    assert pool.servers == {"a", "b", "c"}


@given(st.lists(st.integers(min_value=0, max_value=5), min_size=1, max_size=6))
def test_consecutive_new_users_land_on_different_servers_while_another_has_lines(sizes: list[int]) -> None:
    servers = [server(f"s{s}", [f"s{s}-l{i}" for i in range(size)]) for s, size in enumerate(sizes)]
    pool = facts(None, *servers)
    assert sorted(pool.order) == sorted(f"s{s}-l{i}" for s, size in enumerate(sizes) for i in range(size))
    owner = {line: pool.lines[line].server for line in pool.order}
    for i in range(1, len(pool.order)):
        if owner[pool.order[i]] == owner[pool.order[i - 1]]:
            # Only when every other server has given all its lines already.
            left = {owner[line] for line in pool.order[i:]}
            assert left == {owner[pool.order[i]]}
    for s, size in enumerate(sizes):  # each server's lines in the order it declares them
        assert [line for line in pool.order if owner[line] == f"s{s}"] == [f"s{s}-l{i}" for i in range(size)]


def test_fallback_lines_come_after_every_primary_line() -> None:
    pool = facts(None, server("a", ["af", "a1", "a2"], fallback={"af"}), server("b", ["bf", "b1"], fallback={"bf"}))
    assert pool.order == ("a1", "b1", "a2", "af", "bf")
    assert pool.lines["af"].role is LineRole.FALLBACK
    assert pool.lines["a1"].role is LineRole.PRIMARY


def test_fallback_lines_alone_still_take_new_users() -> None:
    pool = facts(None, server("a", ["a1", "af"], fallback={"af"}, state={"a1": "Flagged"}))
    assert pool.order == ("af",)
    assert pool.unavailable is None


@pytest.mark.parametrize(("case", "kwargs"), [
    ("saturated server", {"assignable": {"a1": False}}),
    ("at risk", {"state": {"a1": "AtRisk"}}),
    ("flagged", {"state": {"a1": "Flagged"}}),
    ("deactivated", {"state": {"a1": "Deactivated"}}),
    ("at its observed quota", {"observed": {"a1": 50}}),
    ("over its observed quota", {"observed": {"a1": 75}}),
])
def test_lines_that_cannot_take_a_new_user_are_not_in_the_order(case: str, kwargs: dict[str, Any]) -> None:
    pool = facts(linepool(quota=50), server("a", ["a1", "a2"], **kwargs))
    assert pool.order == ("a2",), case
    assert "a1" in pool.lines  # still the pool's: its users stay or move by move_reason


def test_a_line_one_short_of_its_quota_still_takes_one() -> None:
    pool = facts(linepool(quota=50), server("a", ["a1"], observed={"a1": 49}))
    assert pool.order == ("a1",)
    assert pool.lines["a1"].limit == 1


def test_lines_of_a_server_the_operator_has_not_reported_on_are_known_but_not_offered() -> None:
    pool = facts(None, server("a", ["a1"], reported=False), server("b", ["b1"]))
    assert pool.order == ("b1",)
    assert pool.lines["a1"].state is None
    assert pool.lines["a1"].assignable is False


def test_servers_of_another_pool_are_ignored() -> None:
    pool = facts(None, server("a", ["a1"]), server("z", ["z1"], pool="marketing"))
    assert pool.order == ("a1",)
    assert set(pool.lines) == {"a1"}
    assert pool.servers == {"a"}


def test_a_line_declared_by_two_servers_counts_once_for_the_first_by_name() -> None:
    pool = facts(None, server("b", ["dup", "b1"]), server("a", ["a1", "dup"]))
    assert pool.order.count("dup") == 1
    assert sorted(pool.order) == ["a1", "b1", "dup"]
    assert pool.lines["dup"].server == "a"


@pytest.mark.parametrize(("quota", "observed", "limit"), [
    (50, 0, 50), (50, 10, 40), (50, 49, 1), (50, 50, 0), (50, 80, 0), (3, 1, 2),
])
def test_a_lines_limit_is_its_quota_less_what_prometheus_counted(quota: int, observed: int, limit: int) -> None:
    line = facts(linepool(quota=quota), server("a", ["a1"], observed={"a1": observed})).lines["a1"]
    assert (line.limit, line.new_conversations) == (limit, observed)


# --- pool_facts: when nobody can be placed ---------------------------------------------------------


@pytest.mark.parametrize(("pool", "servers", "reason", "in_message"), [
    (linepool(metrics=None), [server("a", ["a1"])], Unavailable.POOL_NOT_READY, "not reported"),
    (linepool(metrics=None), [], Unavailable.POOL_NOT_READY, "not reported"),
    (linepool(metrics=False, metrics_message="Prometheus at http://p:9090 timed out"), [server("a", ["a1"])],
     Unavailable.METRICS_UNAVAILABLE, "Prometheus at http://p:9090 timed out"),
    (linepool(), [], Unavailable.POOL_FULL, "0 lines"),
    (linepool(), [server("a", ["a1", "a2"], state={"a1": "Flagged"}, assignable={"a2": False})],
     Unavailable.POOL_FULL, "2 lines"),
    (linepool(quota=5), [server("a", ["a1"], observed={"a1": 5})], Unavailable.POOL_FULL, "budget"),
    (linepool(quota=-1), [server("a", ["a1"])], Unavailable.INVALID_SPEC,
     "spec.quotas.newConversationsPerLinePerDay"),
    (linepool(first_message="Hey! See https://acme.example/start"), [server("a", ["a1"])],
     Unavailable.INVALID_SPEC, "spec.placement.firstMessage"),
    (linepool(first_message="Hi from www.acme.example"), [server("a", ["a1"])],
     Unavailable.INVALID_SPEC, "spec.placement.firstMessage"),
], ids=["no-condition", "no-condition-no-servers", "metrics-false", "no-servers", "no-assignable-line",
        "all-at-quota", "negative-quota", "link-in-first-message", "www-in-first-message"])
def test_why_a_pool_places_nobody(pool: dict[str, Any], servers: list[dict[str, Any]], reason: Unavailable,
                                  in_message: str) -> None:
    result = facts(pool, *servers)
    assert result.unavailable is reason
    assert in_message in result.message


def test_an_invalid_spec_offers_no_line() -> None:
    result = facts(linepool(quota=-1), server("a", ["a1"]))
    assert (result.spec, result.order, result.quota) == (None, (), 0)


def test_a_ready_pool_carries_its_settings() -> None:
    result = facts(linepool(quota=7, first_message="Hi, it's Ana"), server("a", ["a1"]))
    assert (result.unavailable, result.message) == (None, "")
    assert (result.quota, result.first_message) == (7, "Hi, it's Ana")


# --- move_reason: who keeps their line ------------------------------------------------------------


def _moved(line: str, on: str, *servers: dict[str, Any]) -> MoveReason | None:
    return move_reason(line=line, server=on, facts=facts(None, *servers))


@pytest.mark.parametrize(("kwargs", "reason"), [
    ({"state": {"a1": "Flagged"}}, MoveReason.FLAGGED),
    ({"state": {"a1": "Deactivated"}}, MoveReason.DEACTIVATED),
    # A flagged line is left even if a status claimed it could take users.
    ({"state": {"a1": "Flagged"}, "assignable": {"a1": True}}, MoveReason.FLAGGED),
    ({"state": {"a1": "AtRisk"}}, None),
    ({"state": {"a1": "Active"}, "assignable": {"a1": False}}, None),  # its server saturated
    ({"state": {"a1": "AtRisk"}, "assignable": {"a1": False}}, None),
    ({"state": {"a1": "Idle"}}, None),
    ({"state": {"a1": "Active"}}, None),
    ({"observed": {"a1": 50}}, None),  # at its daily quota: only new users avoid it
    ({"reported": False}, None),  # not measured yet: no news is not bad news
    ({"state": {"a1": "SomethingNew"}}, None),  # a state this version does not know
], ids=["flagged", "deactivated", "flagged-but-assignable", "at-risk", "saturated-server",
        "at-risk-on-saturated-server", "idle", "active", "at-quota", "unmeasured", "unknown-state"])
def test_a_users_line_by_its_state(kwargs: dict[str, Any], reason: MoveReason | None) -> None:
    assert _moved("a1", "a", server("a", ["a1", "a2"], **kwargs), server("b", ["b1"])) == reason


def test_a_deleted_server_moves_its_users() -> None:
    assert _moved("a1", "a", server("b", ["b1"])) is MoveReason.SERVER_GONE


def test_a_server_given_to_another_pool_moves_its_users() -> None:
    assert _moved("a1", "a", server("a", ["a1"], pool="marketing"), server("b", ["b1"])) is MoveReason.SERVER_GONE


def test_a_line_removed_from_its_servers_spec_moves_its_users() -> None:
    assert _moved("a1", "a", server("a", ["a2"]), server("b", ["b1"])) is MoveReason.LEFT_POOL


# --- rotation ---------------------------------------------------------------------------------------


@given(order=st.lists(st.text(min_size=1, max_size=4), unique=True, min_size=1, max_size=12),
       cursor=st.integers(min_value=0, max_value=10**12))
def test_rotation_offers_every_line_once_from_the_cursor(order: list[str], cursor: int) -> None:
    offered = list(rotation(order=order, cursor=cursor))
    assert sorted(offered) == sorted(order)
    assert offered[0] == order[cursor % len(order)]
    start = cursor % len(order)
    assert offered == order[start:] + order[:start]  # the pool's order, wrapped around


@pytest.mark.parametrize("cursor", [0, 1, 7])
def test_rotation_over_no_lines_offers_nothing(cursor: int) -> None:
    assert list(rotation(order=(), cursor=cursor)) == []


def _offered(pool: PoolFacts, cursor: int) -> list[str]:
    return [line for line, _ in candidates(facts=pool, cursor=cursor)]


@pytest.mark.parametrize(("cursor", "offered"), [
    (0, ["a1", "b1", "a2", "af", "bf"]),
    (1, ["b1", "a2", "a1", "bf", "af"]),
    (2, ["a2", "a1", "b1", "af", "bf"]),
    (4, ["b1", "a2", "a1", "af", "bf"]),
])
def test_new_users_are_offered_every_primary_line_before_any_fallback_line(cursor: int, offered: list[str]) -> None:
    pool = facts(None, server("a", ["af", "a1", "a2"], fallback={"af"}), server("b", ["bf", "b1"], fallback={"bf"}))
    assert _offered(pool, cursor) == offered


@given(sizes=st.lists(st.tuples(st.integers(min_value=0, max_value=4), st.integers(min_value=0, max_value=3)),
                     min_size=1, max_size=4),
       cursor=st.integers(min_value=0, max_value=10**9))
def test_candidates_offer_each_line_once_primaries_first_and_the_kept_cursor_moves_on(
        sizes: list[tuple[int, int]], cursor: int) -> None:
    servers = [server(f"s{s}", [f"s{s}-p{i}" for i in range(p)] + [f"s{s}-f{i}" for i in range(f)],
                      fallback={f"s{s}-f{i}" for i in range(f)}) for s, (p, f) in enumerate(sizes)]
    pool = facts(None, *servers)
    offered = list(candidates(facts=pool, cursor=cursor))
    lines = [line for line, _ in offered]
    assert sorted(lines) == sorted(pool.order)
    roles = [pool.lines[line].role for line in lines]
    assert roles == sorted(roles, key=lambda role: role is LineRole.FALLBACK)  # no primary after a fallback
    for line, kept in offered:
        # Taking a line keeps the cursor that offers the next line of its kind first.
        role = pool.lines[line].role
        kind = [other for other in pool.order if pool.lines[other].role is role]
        first_next = next(other for other in _offered(pool, kept) if pool.lines[other].role is role)
        assert first_next == kind[(kind.index(line) + 1) % len(kind)]


# --- budgets ------------------------------------------------------------------------------------------


def _line(limit: int) -> LineFacts:
    return LineFacts(line="a1", server="a", role=LineRole.PRIMARY, state=LineState.ACTIVE, assignable=True,
                     new_conversations=0, limit=limit)


@pytest.mark.parametrize(("limit", "placed", "fits", "left"), [
    (2, 0, True, 2), (2, 1, True, 1), (2, 2, False, 0), (2, 5, False, 0), (0, 0, False, 0), (50, 49, True, 1),
])
def test_budget_of_a_line(limit: int, placed: int, fits: bool, left: int) -> None:
    assert has_budget(placed=placed, facts=_line(limit)) is fits
    assert budget_left(facts=_line(limit), placed=placed) == left


@given(quota=st.integers(min_value=1, max_value=200), observed=st.integers(min_value=0, max_value=300),
       placed=st.integers(min_value=0, max_value=300))
def test_placements_plus_observed_never_pass_the_quota(quota: int, observed: int, placed: int) -> None:
    line = facts(linepool(quota=quota), server("a", ["a1"], observed={"a1": observed})).lines["a1"]
    fits = has_budget(placed=placed, facts=line)
    assert fits == (placed + observed < quota)
    assert fits == (budget_left(facts=line, placed=placed) > 0)
    assert budget_left(facts=line, placed=placed) == max(0, quota - observed - placed)


# --- the window the budgets count ------------------------------------------------------------------


def _spec(**kwargs: Any) -> PoolSpec:
    result = facts(linepool(**kwargs))
    assert result.spec is not None
    return result.spec


@given(st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 1, 1), timezones=st.just(UTC)))
def test_a_rolling_window_starts_24_hours_ago(now: datetime) -> None:
    assert window_start(spec=_spec(window="Rolling24h"), now=now) == now - timedelta(hours=24)


def test_the_default_window_is_rolling() -> None:
    now = datetime(2026, 6, 15, 13, 45, tzinfo=UTC)
    assert window_start(spec=_spec(), now=now) == now - timedelta(hours=24)


@pytest.mark.parametrize(("timezone", "now", "start"), [
    ("UTC", datetime(2026, 6, 15, 13, 45, tzinfo=UTC), datetime(2026, 6, 15, tzinfo=UTC)),
    ("UTC", datetime(2026, 6, 15, 23, 59, 59, tzinfo=UTC), datetime(2026, 6, 15, tzinfo=UTC)),
    # New York at noon on an ordinary winter and summer day: midnight was 05:00Z / 04:00Z.
    ("America/New_York", datetime(2026, 1, 15, 17, 0, tzinfo=UTC), datetime(2026, 1, 15, 5, 0, tzinfo=UTC)),
    ("America/New_York", datetime(2026, 7, 15, 16, 0, tzinfo=UTC), datetime(2026, 7, 15, 4, 0, tzinfo=UTC)),
    # Clocks spring forward on 2026-03-08: noon EDT is 16:00Z, the day began at midnight EST, 05:00Z (11 h).
    ("America/New_York", datetime(2026, 3, 8, 16, 0, tzinfo=UTC), datetime(2026, 3, 8, 5, 0, tzinfo=UTC)),
    # Clocks fall back on 2026-11-01: noon EST is 17:00Z, the day began at midnight EDT, 04:00Z (13 h).
    ("America/New_York", datetime(2026, 11, 1, 17, 0, tzinfo=UTC), datetime(2026, 11, 1, 4, 0, tzinfo=UTC)),
    # 20:30 in New York on 2026-06-15 is already the 16th in UTC: the window still began on the 15th.
    ("America/New_York", datetime(2026, 6, 16, 0, 30, tzinfo=UTC), datetime(2026, 6, 15, 4, 0, tzinfo=UTC)),
    ("Asia/Kolkata", datetime(2026, 6, 15, 12, 0, tzinfo=UTC), datetime(2026, 6, 14, 18, 30, tzinfo=UTC)),
])
def test_a_calendar_day_starts_at_the_pools_local_midnight(timezone: str, now: datetime, start: datetime) -> None:
    assert window_start(spec=_spec(window="CalendarDay", timezone=timezone), now=now) == start


def test_a_calendar_day_window_given_a_local_clock() -> None:
    now = datetime(2026, 11, 1, 12, 0, tzinfo=NEW_YORK)
    start = window_start(spec=_spec(window="CalendarDay", timezone="America/New_York"), now=now)
    assert start == datetime(2026, 11, 1, 4, 0, tzinfo=UTC)
    assert now.astimezone(UTC) - start == timedelta(hours=13)  # the day that falls back is 25 h long


# --- Retry-After ------------------------------------------------------------------------------------


@pytest.mark.parametrize("pool", [None, facts(linepool(poll_interval="45s"), server("a", ["a1"]))])
def test_an_unreachable_store_asks_for_5_seconds(pool: PoolFacts | None) -> None:
    assert retry_after_of(reason=Unavailable.STORE_UNAVAILABLE, facts=pool) == RETRY_STORE == 5


@pytest.mark.parametrize(("poll_interval", "seconds"), [("30s", 30), ("45s", 45), ("2m", 120), ("1s", 1)])
def test_a_full_pool_asks_to_wait_one_operator_poll(poll_interval: str, seconds: int) -> None:
    pool = facts(linepool(quota=1, poll_interval=poll_interval), server("a", ["a1"], observed={"a1": 1}))
    assert pool.unavailable is Unavailable.POOL_FULL
    assert retry_after_of(reason=Unavailable.POOL_FULL, facts=pool) == seconds


def test_a_pool_with_an_invalid_spec_asks_for_the_not_ready_delay() -> None:
    pool = facts(linepool(quota=-1), server("a", ["a1"]))
    assert retry_after_of(reason=Unavailable.INVALID_SPEC, facts=pool) == RETRY_NOT_READY
    assert retry_after_of(reason=Unavailable.POOL_NOT_READY, facts=None) == RETRY_NOT_READY
