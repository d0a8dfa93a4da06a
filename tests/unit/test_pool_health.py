"""Line health in the decision pass: a line at risk of a flag leaves rotation and keep-alive, comes
back after the cooldown, and a flag is explained once; with a fake clock and synthetic observations."""

from datetime import UTC, datetime, timedelta
from typing import Any

from linepool.api.spec import parse_pool_spec
from linepool.api.types import HealthPattern, LineState, Reason
from linepool.logic.health import FlagFigures, HealthSample, explain_flag
from linepool.logic.health_status import FlagEvidence
from linepool.logic.observations import LineSample, Observation
from linepool.logic.pool import PoolDecision, PoolMemory, PoolView, ServerView, decide_pool

# Mid-afternoon UTC: outside the default quiet period (22:00-08:00).
T0 = datetime(2026, 12, 2, 14, 0, tzinfo=UTC)
BURSTY, CALM = "+14155550100", "+14155550101"
OTHER = "+14155550200"
HEALTHY = HealthSample(burst_sent=3, exchange_sent=10, exchange_received=8, over_cap_follow_ups=0,
                       line_initiated=1, quiet_sent=None, quiet_received=None)


class Pool:
    """Carries status and memory from pass to pass, as the API server and the handler would."""

    def __init__(self, **spec: Any) -> None:
        self.spec = parse_pool_spec({"metrics": {"prometheusURL": "http://prom:9090"}, **spec})
        self.pool_status: dict[str, Any] = {}
        self.server_status: dict[str, dict[str, Any]] = {}
        self.memory = PoolMemory()
        self.paused = False
        self.servers = {"s-0": [BURSTY, CALM], "s-1": [OTHER]}

    def step(self, now: datetime, health: dict[str, HealthSample] | None, *,
             states: dict[str, LineState] | None = None,
             flags: dict[tuple[str, str], FlagEvidence] | None = None) -> PoolDecision:
        observation = None
        if health is not None:
            samples = {server: {line: LineSample(sent=100, activity=100, state=(states or {}).get(line))
                                for line in lines} for server, lines in self.servers.items()}
            by_server = {server: {line: health.get(line, HEALTHY) for line in lines}
                         for server, lines in self.servers.items()}
            observation = Observation(time=now, samples=samples, health=by_server)
        decision = decide_pool(
            pool=PoolView(name="p", namespace="ns", generation=1, spec=self.spec, status=self.pool_status,
                          paused=self.paused),
            servers=[ServerView(name=name, generation=1, status=self.server_status.get(name, {}),
                                spec={"pool": "p", "endpoint": "http://relay", "lines": [{"id": x} for x in lines]})
                     for name, lines in self.servers.items()],
            observation=observation, metrics_error=None if health is not None else "down",
            memory=self.memory, now=now, flags=flags,
        )
        self.memory = decision.memory
        self.pool_status = decision.pool_status
        self.server_status = {s.name: s.status for s in decision.servers}
        return decision


def line(decision: PoolDecision, line_id: str) -> dict[str, Any]:
    return next(entry for s in decision.servers for entry in s.status["lines"] if entry["id"] == line_id)


def events(decision: PoolDecision, reason: Reason) -> list[str]:
    return [e.message for e in decision.events if e.reason is reason]


BURST = HealthSample(burst_sent=142, exchange_sent=150, exchange_received=140, over_cap_follow_ups=0,
                     line_initiated=0)


def test_a_bursting_line_leaves_rotation_and_its_neighbour_stays() -> None:
    pool = Pool()
    first = pool.step(T0, {})
    assert BURSTY in first.pool_status["assignableLines"]
    decision = pool.step(T0 + timedelta(seconds=30), {BURSTY: BURST})
    risk = line(decision, BURSTY)["flagRisks"]
    assert [(r["pattern"], r["figure"], r["threshold"]) for r in risk] == [("Burst", 142, 60)]
    assert risk[0]["message"] == "142 messages in 10m, limit 60"
    assert line(decision, BURSTY)["assignable"] is False
    assert BURSTY not in decision.pool_status["assignableLines"]
    assert CALM in decision.pool_status["assignableLines"] and "flagRisks" not in line(decision, CALM)
    assert line(decision, BURSTY)["state"] == "Active", "a flag risk is not the deactivation risk AtRisk"
    (message,) = events(decision, Reason.LINE_AT_FLAG_RISK)
    assert f"line {BURSTY}" in message and "142 messages in 10m, limit 60" in message
    server = next(s for s in decision.servers if s.name == "s-0")
    assert server.status["lineSummary"]["flagRisk"] == 1
    assert decision.pool_status["health"] == {"atRisk": 1, "burst": 1, "noExchange": 0, "followUps": 0,
                                              "coldOutreach": 0, "offHours": 0, "unmeasured": []}
    # The next poll, same pattern: the same episode, no second event.
    again = pool.step(T0 + timedelta(seconds=60), {BURSTY: BURST})
    assert not events(again, Reason.LINE_AT_FLAG_RISK)
    assert line(again, BURSTY)["flagRisks"][0]["since"] == risk[0]["since"]


def test_the_line_returns_by_itself_after_the_cooldown() -> None:
    pool = Pool(health={"cooldown": "30m"})
    pool.step(T0, {BURSTY: BURST})
    quiet = pool.step(T0 + timedelta(minutes=29), {})
    assert line(quiet, BURSTY)["assignable"] is False and not events(quiet, Reason.FLAG_RISK_CLEARED)
    back = pool.step(T0 + timedelta(minutes=30), {})
    assert "flagRisks" not in line(back, BURSTY) and line(back, BURSTY)["assignable"] is True
    assert BURSTY in back.pool_status["assignableLines"]
    (message,) = events(back, Reason.FLAG_RISK_CLEARED)
    assert "Burst not seen for 30m" in message


def test_dry_run_reports_the_risk_but_keeps_the_line_in_rotation() -> None:
    pool = Pool(scaling={"mode": "DryRun"})
    decision = pool.step(T0, {BURSTY: BURST})
    assert line(decision, BURSTY)["flagRisks"] and line(decision, BURSTY)["assignable"] is True
    assert BURSTY in decision.pool_status["assignableLines"]


def test_a_paused_pool_freezes_risks_and_says_nothing() -> None:
    pool = Pool()
    pool.step(T0, {BURSTY: BURST})
    pool.paused = True
    held = pool.step(T0 + timedelta(hours=3), {})
    assert line(held, BURSTY)["flagRisks"] and not events(held, Reason.FLAG_RISK_CLEARED)
    fresh = pool.step(T0 + timedelta(hours=3, seconds=1), {OTHER: BURST})
    assert "flagRisks" not in line(fresh, OTHER) and not events(fresh, Reason.LINE_AT_FLAG_RISK)


def test_without_metrics_risks_are_held() -> None:
    pool = Pool(health={"cooldown": "5m"})
    pool.step(T0, {BURSTY: BURST})
    blind = pool.step(T0 + timedelta(hours=2), None)
    assert line(blind, BURSTY)["flagRisks"] and not events(blind, Reason.FLAG_RISK_CLEARED)


def test_a_pattern_without_its_metric_is_unmeasured_not_healthy() -> None:
    pool = Pool()
    relay_without_labels = HealthSample(burst_sent=1, exchange_sent=1, exchange_received=1)
    decision = pool.step(T0, {BURSTY: relay_without_labels})
    assert decision.pool_status["health"]["unmeasured"] == ["ColdOutreach", "FollowUps"]
    # Once the relay exports them, the list empties: written as [], since a merge patch keeps a key left out.
    measured = pool.step(T0 + timedelta(seconds=30), {})
    assert measured.pool_status["health"]["unmeasured"] == []


def test_disabled_health_takes_nobody_out() -> None:
    pool = Pool(health={"enabled": False})
    decision = pool.step(T0, {BURSTY: BURST})
    assert "flagRisks" not in line(decision, BURSTY) and BURSTY in decision.pool_status["assignableLines"]


def test_an_idle_line_at_risk_gets_no_keep_alive() -> None:
    pool = Pool(keepAlive={"window": {"start": "00:00", "end": "23:59",
                                      "days": ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]},
                           "partners": ["friend@example.com"]})
    # Both lines of s-0 idle for a month; one of them hammers non-responders.
    month_ago = T0 - timedelta(days=30)
    pool.server_status = {"s-0": {"lines": [
        {"id": x, "role": "Primary", "state": "Idle", "assignable": True, "messagesInWindow": 0,
         "newConversationsInWindow": 0, "lastActivityTime": month_ago.isoformat().replace("+00:00", "Z")}
        for x in (BURSTY, CALM)]}}
    hammering = HealthSample(burst_sent=0, exchange_sent=0, exchange_received=0, over_cap_follow_ups=3,
                             line_initiated=0)
    decision = pool.step(T0, {BURSTY: hammering})
    assert line(decision, BURSTY)["flagRisks"][0]["pattern"] == "FollowUps"
    planned = {key[1] for key in decision.keep_alive.lines if decision.keep_alive.lines[key].exchange}
    assert CALM in planned and BURSTY not in planned


def test_a_flag_is_explained_once_and_recovery_is_told() -> None:
    pool = Pool()
    flagged_at = T0 - timedelta(minutes=3)
    figures = FlagFigures(burst_peak=180, sent=190, received=4, over_cap_follow_ups=0, line_initiated=0,
                          quiet_net_outbound=None, peak_per_minute=95)
    evidence = FlagEvidence(time=flagged_at, figures=figures, report=explain_flag(figures=figures,
                                                                                spec=pool.spec.health))
    flagged = pool.step(T0, {}, states={BURSTY: LineState.FLAGGED}, flags={("s-0", BURSTY): evidence})
    last = line(flagged, BURSTY)["lastFlag"]
    assert last["time"] == "2026-12-02T13:57:00Z" and last["cause"] == HealthPattern.BURST.value
    assert (last["peakPerMinute"], last["replies"], last["sent"]) == (95, 4, 190)
    (message,) = events(flagged, Reason.LINE_FLAGGED)
    assert "burst" in message.lower() and "pace sends" in message
    still = pool.step(T0 + timedelta(minutes=1), {}, states={BURSTY: LineState.FLAGGED})
    assert line(still, BURSTY)["lastFlag"] == last and not events(still, Reason.LINE_FLAGGED)
    back = pool.step(T0 + timedelta(hours=5), {})
    assert events(back, Reason.LINE_RECOVERED) == [f"line {BURSTY} is no longer flagged"]
    assert line(back, BURSTY)["lastFlag"] == last
