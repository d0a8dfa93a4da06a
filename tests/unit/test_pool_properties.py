"""Properties of the decision pass over random pools: fail static, idempotence, limits."""

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from linepool.api.spec import parse_pool_spec
from linepool.logic.observations import LineSample, Observation
from linepool.logic.pool import PoolMemory, PoolView, ServerView, decide_pool, needs_write

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)

server_loads = st.lists(
    st.tuples(st.floats(min_value=0, max_value=7000), st.booleans()),  # (messages sent, cordoned)
    min_size=0, max_size=6,
)


def build(loads: list[tuple[float, bool]], statuses: dict[str, dict[str, Any]]) -> tuple[list[ServerView], Observation]:
    servers, samples = [], {}
    for index, (sent, cordoned) in enumerate(loads):
        name = f"p-{index}"
        lines = [f"+1415555{index:02d}{n:02d}" for n in range(2)]
        servers.append(ServerView(name=name, generation=1, created=T0, status=statuses.get(name, {}), spec={
            "pool": "p", "endpoint": "http://r", "cordoned": cordoned, "lines": [{"id": line} for line in lines]}))
        samples[name] = {line: LineSample(sent=sent / 2, activity=sent) for line in lines}
    return servers, Observation(time=T0, samples=samples)


def pool_spec(max_servers: int, mode: str) -> Any:
    return parse_pool_spec({"metrics": {"prometheusURL": "http://p:9090"},
                            "scaling": {"mode": mode, "minServers": 0, "maxServers": max_servers},
                            "inventory": [f"+1415556{n:04d}" for n in range(20)]})


@settings(max_examples=150, deadline=None)
@given(before=server_loads, after_sent=st.lists(st.floats(min_value=0, max_value=7000), min_size=6, max_size=6),
       max_servers=st.integers(min_value=1, max_value=8))
def test_missing_metrics_change_no_decision_and_plan_nothing(
    before: list[tuple[float, bool]], after_sent: list[float], max_servers: int,
) -> None:
    spec = pool_spec(max_servers, "Auto")
    servers, observation = build(before, {})
    first = decide_pool(pool=PoolView(name="p", namespace="n", spec=spec), servers=servers,
                        observation=observation, metrics_error=None, memory=PoolMemory(), now=T0)
    statuses = {s.name: s.status for s in first.servers}
    servers, _ = build([(sent, cordoned) for (_, cordoned), sent in zip(before, after_sent, strict=False)], statuses)
    held = decide_pool(pool=PoolView(name="p", namespace="n", spec=spec, status=first.pool_status), servers=servers,
                       observation=None, metrics_error="down", memory=first.memory, now=T0 + timedelta(minutes=9))
    assert [s.assignable for s in held.servers] == [s.assignable for s in first.servers]
    assert [s.status["phase"] for s in held.servers] == [s.status["phase"] for s in first.servers]
    assert not held.plan.creates
    assert held.pool_status["assignableLines"] == first.pool_status["assignableLines"]


@settings(max_examples=150, deadline=None)
@given(loads=server_loads, mode=st.sampled_from(["Auto", "DryRun", "Off"]), max_servers=st.integers(1, 8))
def test_the_same_inputs_twice_write_nothing_the_second_time(
    loads: list[tuple[float, bool]], mode: str, max_servers: int,
) -> None:
    spec = pool_spec(max_servers, mode)
    servers, observation = build(loads, {})
    first = decide_pool(pool=PoolView(name="p", namespace="n", spec=spec), servers=servers,
                        observation=observation, metrics_error=None, memory=PoolMemory(), now=T0)
    statuses = {s.name: s.status for s in first.servers}
    servers, observation = build(loads, statuses)
    second = decide_pool(pool=PoolView(name="p", namespace="n", spec=spec, status=first.pool_status),
                         servers=servers, observation=observation, metrics_error=None, memory=first.memory,
                         now=T0 + timedelta(seconds=30))
    assert not needs_write(first.pool_status, second.pool_status)
    assert all(not needs_write(statuses[s.name], s.status) for s in second.servers)
    assert second.events == ()
    assert len(servers) + len(second.plan.new_servers) <= max(max_servers, len(servers))
