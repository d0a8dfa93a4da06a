"""The decision pass over a pool, driven with a fake clock and synthetic observations."""

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from linepool.api.conditions import find_condition, format_time
from linepool.api.spec import parse_pool_spec
from linepool.api.types import ConditionType, Reason, RecommendedAction
from linepool.logic.observations import LineSample, Observation
from linepool.logic.pool import (
    PoolDecision,
    PoolMemory,
    PoolView,
    ServerView,
    decide_pool,
    find_line_conflicts,
    needs_write,
)

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
LINES = {"a": ["+14155550100", "+14155550101"], "b": ["+14155550200", "+14155550201"]}


class FakePool:
    """Carries status and memory from pass to pass, as the API server and the handler would."""

    def __init__(self, **spec: Any) -> None:
        self.spec = parse_pool_spec({"metrics": {"prometheusURL": "http://prom:9090", "staleAfter": "5m"},
                                     "inventory": [f"+1415555{i:04d}" for i in range(900, 912)], **spec})
        self.pool_status: dict[str, Any] = {}
        self.server_status: dict[str, dict[str, Any]] = {}
        self.memory = PoolMemory()
        self.servers: dict[str, dict[str, Any]] = {
            f"support-{name}": {"pool": "support", "endpoint": "http://relay",
                                "lines": [{"id": line} for line in lines]}
            for name, lines in LINES.items()
        }
        self.paused = False
        self.credentials: dict[str, Any] = {}

    def step(self, now: datetime, sent: Mapping[str, float] | None, **line_overrides: LineSample) -> PoolDecision:
        observation = None
        if sent is not None:
            samples: dict[str, dict[str, LineSample]] = {}
            for server, total in sent.items():
                lines = LINES[server]
                samples[f"support-{server}"] = {
                    line: line_overrides.get(
                        line.replace("+", "p"), LineSample(sent=total / len(lines), activity=total))
                    for line in lines
                }
            observation = Observation(time=now, samples=samples)
        decision = decide_pool(
            pool=PoolView(name="support", namespace="messaging", uid="u", generation=1, spec=self.spec,
                          status=self.pool_status, paused=self.paused),
            servers=[ServerView(name=name, generation=1, created=T0, spec=spec,
                                status=self.server_status.get(name, {}))
                     for name, spec in self.servers.items()],
            observation=observation, metrics_error=None if sent is not None else "connection refused",
            memory=self.memory, now=now, credentials=self.credentials,
        )
        self.memory = decision.memory
        self.pool_status = decision.pool_status
        self.server_status = {s.name: s.status for s in decision.servers}
        return decision


def outcome(decision: PoolDecision, name: str) -> Any:
    return next(s for s in decision.servers if s.name == f"support-{name}")


def reasons(decision: PoolDecision) -> list[str]:
    return [e.reason.value for e in decision.events]


def test_saturation_and_hysteresis() -> None:
    pool = FakePool(scaling={"maxServers": 2})
    first = pool.step(T0, {"a": 1000, "b": 1000})
    assert outcome(first, "a").assignable and outcome(first, "a").status["phase"] == "Active"
    assert first.pool_status["utilization"] == 0.2

    saturated = pool.step(T0 + timedelta(minutes=1), {"a": 3800, "b": 1000})
    assert not outcome(saturated, "a").assignable
    assert outcome(saturated, "a").status["phase"] == "Saturated"
    assert "ServerSaturated" in reasons(saturated)
    assert saturated.pool_status["assignableLines"] == LINES["b"]

    # 70% is under stopAt but above resumeAt (65%): still saturated.
    band = pool.step(T0 + timedelta(minutes=2), {"a": 3500, "b": 1000})
    assert not outcome(band, "a").assignable and reasons(band) == []

    resumed = pool.step(T0 + timedelta(minutes=3), {"a": 3200, "b": 1000})
    assert outcome(resumed, "a").assignable and "AssignmentResumed" in reasons(resumed)
    assert resumed.pool_status["assignableLines"] == ["+14155550100", "+14155550200", "+14155550101",
                                                      "+14155550201"]


def test_a_steady_pass_writes_nothing_and_small_traffic_changes_do_not_either() -> None:
    pool = FakePool()
    pool.step(T0, {"a": 1000, "b": 1000})
    before_pool, before_servers = pool.pool_status, dict(pool.server_status)
    again = pool.step(T0 + timedelta(seconds=30), {"a": 1010, "b": 1020})  # still 20% each
    assert not needs_write(before_pool, again.pool_status)
    assert all(not needs_write(before_servers[s.name], s.status) for s in again.servers)
    assert again.events == ()
    moved = pool.step(T0 + timedelta(seconds=60), {"a": 1060, "b": 1020})  # a crosses 21%
    assert needs_write(before_servers["support-a"], outcome(moved, "a").status)


def test_metrics_outage_holds_decisions_and_never_scales() -> None:
    pool = FakePool()
    pool.step(T0, {"a": 3900, "b": 3900})   # both saturated; scale-up planned
    assert pool.pool_status["recommendation"]["action"] == "ScaleUp"

    down = pool.step(T0 + timedelta(minutes=1), None)
    assert not outcome(down, "a").assignable and outcome(down, "a").status["phase"] == "Saturated"
    assert down.plan.action is RecommendedAction.NONE and not down.plan.creates
    cond = find_condition(down.pool_status["conditions"], ConditionType.METRICS_AVAILABLE)
    assert cond is not None and cond["status"] == "False" and cond["reason"] == "MetricsUnavailable"
    assert "connection refused" in cond["message"]
    assert reasons(down) == ["MetricsUnavailable"]
    assert down.pool_status["lastMetricsTime"] == format_time(T0)

    still = pool.step(T0 + timedelta(minutes=2), None)
    assert reasons(still) == [] and not needs_write(down.pool_status, still.pool_status)

    stale = pool.step(T0 + timedelta(minutes=7), None)
    cond = find_condition(stale.pool_status["conditions"], ConditionType.METRICS_AVAILABLE)
    assert cond is not None and cond["reason"] == "MetricsStale"
    assert not outcome(stale, "a").assignable  # held after staleAfter too
    assert reasons(stale) == ["MetricsStale"]

    back = pool.step(T0 + timedelta(minutes=8), {"a": 100, "b": 100})
    assert outcome(back, "a").assignable
    assert "MetricsRestored" in reasons(back)
    cond = find_condition(back.pool_status["conditions"], ConditionType.METRICS_AVAILABLE)
    assert cond is not None and cond["status"] == "True"


def test_condition_transition_time_moves_only_on_flips() -> None:
    pool = FakePool()
    first = pool.step(T0, {"a": 100, "b": 100})
    ready = find_condition(first.pool_status["conditions"], ConditionType.READY)
    later = pool.step(T0 + timedelta(hours=1), {"a": 200, "b": 100})
    assert find_condition(later.pool_status["conditions"], ConditionType.READY) == ready


def test_exporters_gone_counts_as_missing_metrics_not_zero_traffic() -> None:
    pool = FakePool()
    pool.step(T0, {"a": 3900, "b": 3900})
    empty = pool.step(T0 + timedelta(minutes=1), {})
    assert not empty.metrics_ok
    assert not outcome(empty, "a").assignable
    assert empty.plan.action is RecommendedAction.NONE


def test_cordoned_server_is_never_assignable_and_not_in_pool_utilization() -> None:
    pool = FakePool()
    pool.servers["support-b"]["cordoned"] = True
    decision = pool.step(T0, {"a": 1000, "b": 4900})
    assert outcome(decision, "b").status["phase"] == "Cordoned" and not outcome(decision, "b").assignable
    assert decision.pool_status["utilization"] == 0.2
    assert decision.pool_status["servers"]["cordoned"] == 1


def test_flagged_line_and_exhausted_new_conversation_quota_close_lines() -> None:
    pool = FakePool()
    decision = pool.step(T0, {"a": 100, "b": 100},
                         p14155550100=LineSample(sent=50, state=None, new_conversations=50),
                         p14155550200=LineSample(sent=10, state=__import__("linepool").api.types.LineState.FLAGGED))
    lines = {line["id"]: line for s in decision.servers for line in s.status["lines"]}
    assert not lines["+14155550100"]["assignable"]
    assert lines["+14155550200"]["state"] == "Flagged" and not lines["+14155550200"]["assignable"]
    assert decision.pool_status["lines"]["assignable"] == 2


def test_scale_up_when_pool_crosses_scale_up_at_and_dry_run_announces_it() -> None:
    pool = FakePool(scaling={"mode": "DryRun", "maxServers": 5})
    decision = pool.step(T0, {"a": 3800, "b": 3800})
    assert decision.plan.action is RecommendedAction.SCALE_UP
    assert decision.pool_status["recommendation"]["serverName"] == "support-2"
    assert decision.pool_status["recommendation"]["lines"] == [f"+1415555{i:04d}" for i in range(900, 904)]
    assert "ScaleUpRecommended" in reasons(decision)
    again = pool.step(T0 + timedelta(seconds=30), {"a": 3800, "b": 3800})
    assert "ScaleUpRecommended" not in reasons(again)  # announced once, not every poll


def test_scaling_limited_at_max_servers() -> None:
    pool = FakePool(scaling={"maxServers": 2})
    decision = pool.step(T0, {"a": 3900, "b": 3900})
    limited = find_condition(decision.pool_status["conditions"], ConditionType.SCALING_LIMITED)
    assert limited is not None and limited["status"] == "True" and limited["reason"] == "AtMaxServers"
    assert decision.plan.action is RecommendedAction.BLOCKED
    assert "ScaleUpBlocked" in reasons(decision)


def test_paused_pool_holds_assignability() -> None:
    pool = FakePool()
    pool.step(T0, {"a": 1000, "b": 1000})
    pool.paused = True
    decision = pool.step(T0 + timedelta(minutes=1), {"a": 4000, "b": 1000})
    assert outcome(decision, "a").assignable
    ready = find_condition(decision.pool_status["conditions"], ConditionType.READY)
    assert ready is not None and ready["reason"] == Reason.PAUSED.value


def test_cooldown_comes_from_the_newest_operator_created_server() -> None:
    spec = parse_pool_spec({"metrics": {"prometheusURL": "http://p:9090"}, "scaling": {"maxServers": 5},
                            "inventory": [f"+1415555{i:04d}" for i in range(8)]})
    servers = [ServerView(name="support-0", created=T0 - timedelta(days=1), spec={
        "pool": "support", "endpoint": "http://r", "lines": [{"id": "+14155550900"}]}),
        ServerView(name="support-1", created=T0 - timedelta(minutes=2), created_by_operator=True, spec={
            "pool": "support", "endpoint": "http://r", "lines": [{"id": "+14155550901"}]})]
    observation = Observation(time=T0, samples={
        "support-0": {"+14155550900": LineSample(sent=4500)},
        "support-1": {"+14155550901": LineSample(sent=4500)},
    })
    decision = decide_pool(pool=PoolView(name="support", namespace="ns", spec=spec), servers=servers,
                           observation=observation, metrics_error=None, memory=PoolMemory(), now=T0)
    assert decision.plan.action is RecommendedAction.NONE and "cooldown" in decision.plan.reason


def test_line_on_two_servers_invalidates_the_newer_server() -> None:
    older = ServerView(name="x", created=T0 - timedelta(days=1),
                       spec={"pool": "p", "endpoint": "http://r", "lines": [{"id": "+14155550100"}]})
    newer = ServerView(name="a", created=T0,
                       spec={"pool": "p", "endpoint": "http://r", "lines": [{"id": "+14155550100"}]})
    conflicts = find_line_conflicts([newer, older])
    assert list(conflicts) == ["a"]
    assert "already on server x" in conflicts["a"]


def test_invalid_server_is_reported_and_skipped() -> None:
    pool = FakePool()
    pool.servers["support-b"]["lines"] = [{"id": "+14155550100"}]  # already on support-a
    decision = pool.step(T0, {"a": 100})
    bad = outcome(decision, "b")
    assert not bad.valid and not bad.assignable
    cond = find_condition(bad.status["conditions"], ConditionType.INVALID_SPEC)
    assert cond is not None and cond["status"] == "True" and cond["reason"] == "LineConflict"
    assert "spec.lines[0].id" in cond["message"]
    assert decision.pool_status["lines"]["total"] == 2
    assert [e.server for e in decision.events if e.reason is Reason.INVALID_SPEC] == ["support-b"]


def test_first_seen_line_starts_its_activity_clock_now_and_refreshes_hourly() -> None:
    pool = FakePool()
    first = pool.step(T0, {"a": 10, "b": 10})
    line = outcome(first, "a").status["lines"][0]
    assert line["lastActivityTime"] == format_time(T0)
    soon = pool.step(T0 + timedelta(minutes=10), {"a": 20, "b": 10})
    assert outcome(soon, "a").status["lines"][0]["lastActivityTime"] == format_time(T0)
    later = pool.step(T0 + timedelta(hours=2), {"a": 30, "b": 10})
    assert outcome(later, "a").status["lines"][0]["lastActivityTime"] == format_time(T0 + timedelta(hours=2))
    assert outcome(later, "b").status["lines"][0]["lastActivityTime"] == format_time(T0)
