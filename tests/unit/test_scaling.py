"""Scale-up plans: triggers, cooldown, limits, naming, and the never-above-maxServers property."""

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from linepool.api import CREATED_BY_ANNOTATION, POOL_LABEL
from linepool.api.spec import Scaling, ServerTemplate
from linepool.api.types import Reason, RecommendedAction
from linepool.logic.scaling import (
    NewServer,
    ScaleInputs,
    next_ordinals,
    plan_scale,
    remaining_inventory,
    render_server,
)

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
INVENTORY = tuple(f"+1415555{i:04d}" for i in range(12))


def inputs(**overrides: object) -> ScaleInputs:
    base = ScaleInputs(
        pool="support", scaling=Scaling(min_servers=1, max_servers=3, lines_per_server=4),
        metrics_ok=True, utilization=0.5, assignable_lines=4, server_names={"support-0"},
        remaining_inventory=INVENTORY, last_scale_time=None, now=NOW,
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


def test_below_threshold_does_nothing() -> None:
    plan = plan_scale(inputs())
    assert plan.action is RecommendedAction.NONE and not plan.creates


def test_at_scale_up_at_adds_one_server_with_inventory_lines() -> None:
    plan = plan_scale(inputs(utilization=0.75))
    assert plan.action is RecommendedAction.SCALE_UP
    assert plan.new_servers == (NewServer(name="support-1", ordinal=1, lines=INVENTORY[:4]),)
    assert "75%" in plan.reason


def test_no_assignable_line_adds_a_server_even_at_low_utilization() -> None:
    plan = plan_scale(inputs(utilization=0.2, assignable_lines=0))
    assert plan.action is RecommendedAction.SCALE_UP
    assert "no line" in plan.reason


def test_cooldown_holds_a_second_scale_up() -> None:
    plan = plan_scale(inputs(utilization=0.9, last_scale_time=NOW - timedelta(minutes=5)))
    assert plan.action is RecommendedAction.NONE and plan.needed
    assert "cooldown" in plan.reason
    later = plan_scale(inputs(utilization=0.9, last_scale_time=NOW - timedelta(minutes=15)))
    assert later.action is RecommendedAction.SCALE_UP


def test_max_servers_blocks() -> None:
    plan = plan_scale(inputs(utilization=0.9, server_names={"support-0", "support-1", "support-2"}))
    assert plan.action is RecommendedAction.BLOCKED
    assert plan.limited_by is Reason.AT_MAX_SERVERS
    assert "maxServers is 3" in plan.reason


def test_small_inventory_blocks() -> None:
    plan = plan_scale(inputs(utilization=0.9, remaining_inventory=INVENTORY[:3]))
    assert plan.action is RecommendedAction.BLOCKED
    assert plan.limited_by is Reason.INVENTORY_EXHAUSTED


def test_limit_is_reported_even_when_no_scale_up_is_needed() -> None:
    plan = plan_scale(inputs(remaining_inventory=()))
    assert plan.action is RecommendedAction.NONE
    assert plan.limited_by is Reason.INVENTORY_EXHAUSTED


def test_missing_metrics_never_scale() -> None:
    plan = plan_scale(inputs(utilization=0.99, assignable_lines=0, metrics_ok=False))
    assert plan.action is RecommendedAction.NONE and not plan.creates


def test_below_min_servers_fills_up_without_metrics_or_cooldown() -> None:
    plan = plan_scale(inputs(
        scaling=Scaling(min_servers=3, max_servers=5, lines_per_server=4), server_names=set(),
        metrics_ok=False, last_scale_time=NOW,
    ))
    assert [s.name for s in plan.new_servers] == ["support-0", "support-1", "support-2"]
    assert [s.lines for s in plan.new_servers] == [INVENTORY[0:4], INVENTORY[4:8], INVENTORY[8:12]]


def test_below_min_servers_with_too_little_inventory_is_blocked() -> None:
    plan = plan_scale(inputs(scaling=Scaling(min_servers=2, lines_per_server=4), server_names=set(),
                             remaining_inventory=INVENTORY[:2]))
    assert plan.action is RecommendedAction.BLOCKED


@pytest.mark.parametrize(("names", "expected"), [
    (set(), [0, 1]),
    ({"support-0"}, [1, 2]),
    ({"support-0", "support-7"}, [8, 9]),
    ({"relay-a", "relay-b"}, [2, 3]),           # user names: start after their count
    ({"relay-a", "support-2"}, [3, 4]),
])
def test_ordinals(names: set[str], expected: list[int]) -> None:
    assert next_ordinals(pool="support", server_names=names, count=2) == expected


def test_remaining_inventory_keeps_spec_order() -> None:
    assert remaining_inventory(inventory=["a", "b", "c", "d"], allocated={"c", "a"}) == ("b", "d")


def test_rendered_server_carries_label_owner_and_template() -> None:
    scaling = Scaling(server_template=ServerTemplate(
        labels={"team": "support"},
        spec={"endpoint": "http://relay-{ordinal}.messaging.svc:8080",
              "credentialsSecretRef": {"name": "relay-token", "key": "token"}},
    ))
    body = render_server(pool="support", namespace="messaging", pool_uid="uid-1", scaling=scaling,
                         server=NewServer(name="support-3", ordinal=3, lines=("+14155550190",)))
    assert body["metadata"]["labels"] == {"team": "support", POOL_LABEL: "support"}
    assert body["metadata"]["annotations"][CREATED_BY_ANNOTATION] == "linepool-operator"
    assert body["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert body["spec"]["endpoint"] == "http://relay-3.messaging.svc:8080"
    assert body["spec"]["pool"] == "support"
    assert body["spec"]["lines"] == [{"id": "+14155550190", "role": "Primary"}]


@given(
    count=st.integers(min_value=0, max_value=12),
    min_servers=st.integers(min_value=0, max_value=12),
    max_servers=st.integers(min_value=1, max_value=12),
    utilization=st.floats(min_value=0, max_value=2),
    assignable=st.integers(min_value=0, max_value=10),
    spare=st.integers(min_value=0, max_value=60),
    per=st.integers(min_value=1, max_value=8),
    metrics_ok=st.booleans(),
)
def test_never_above_max_servers_and_never_without_lines(
    count: int, min_servers: int, max_servers: int, utilization: float, assignable: int, spare: int,
    per: int, metrics_ok: bool,
) -> None:
    min_servers = min(min_servers, max_servers)
    names = {f"support-{i}" for i in range(count)}
    inventory = tuple(f"+1415556{i:04d}" for i in range(spare))
    plan = plan_scale(inputs(
        scaling=Scaling(min_servers=min_servers, max_servers=max_servers, lines_per_server=per),
        server_names=names, utilization=utilization, assignable_lines=assignable,
        remaining_inventory=inventory, metrics_ok=metrics_ok,
    ))
    assert len(names) + len(plan.new_servers) <= max(max_servers, len(names))
    handed_out = [line for server in plan.new_servers for line in server.lines]
    assert len(handed_out) == len(set(handed_out)), "a line was given to two servers"
    assert all(len(server.lines) == per for server in plan.new_servers)
    assert set(handed_out) <= set(inventory)
    assert not {s.name for s in plan.new_servers} & names
    if not metrics_ok and count >= min_servers:
        assert not plan.creates
