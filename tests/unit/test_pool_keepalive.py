"""Keep-alive inside the decision pass: status fields, the fallback reserve, credentials, fail static."""

from datetime import datetime, timedelta
from typing import Any

from linepool.api.conditions import find_condition, format_time, parse_time
from linepool.api.types import ConditionType, LineState, Reason
from linepool.logic.keepalive import Delivery, RetryPolicy, settle
from linepool.logic.observations import LineSample
from linepool.logic.pool import PoolDecision, PoolView, record_keep_alives
from tests.unit.test_pool import LINES, T0, FakePool, outcome, reasons

IDLE = "+14155550101"  # on support-a


def line_status(decision: PoolDecision, server: str, line: str) -> dict[str, Any]:
    return next(item for item in outcome(decision, server).status["lines"] if item["id"] == line)


def quiet_for(pool: FakePool, days: float, *, line: str = IDLE, server: str = "a") -> None:
    """Status as a previous operator left it: the line's last traffic ``days`` ago."""
    pool.server_status[f"support-{server}"] = {"lines": [
        {"id": other, "lastActivityTime": format_time(T0 - timedelta(days=days if other == line else 0))}
        for other in LINES[server]]}


def test_fallback_lines_take_new_users_only_when_no_primary_line_can() -> None:
    pool = FakePool()
    for name in ("support-a", "support-b"):
        lines = pool.servers[name]["lines"]
        pool.servers[name]["lines"] = [lines[0], {**lines[1], "role": "Fallback"}]
    both = pool.step(T0, {"a": 100, "b": 100})
    assert both.pool_status["assignableLines"] == ["+14155550100", "+14155550200"]
    flagged = LineSample(sent=50, activity=50, state=LineState.FLAGGED)
    reserve = pool.step(T0 + timedelta(minutes=1), {"a": 100, "b": 100}, p14155550100=flagged, p14155550200=flagged)
    assert reserve.pool_status["assignableLines"] == ["+14155550101", "+14155550201"]


def test_an_idle_line_gets_a_plan_in_status_and_the_pool_reports_it() -> None:
    pool = FakePool()
    quiet_for(pool, 30)
    decision = pool.step(T0, {"a": 100, "b": 100})  # Thursday 12:00 UTC, inside the default window
    record = line_status(decision, "a", IDLE)
    assert record["keepAlive"]["phase"] == "Planned" and record["keepAlive"]["key"] == f"{IDLE}/2026-11-26"
    assert record["nextKeepAliveTime"] == record["keepAlive"]["plannedTime"]
    assert decision.keep_alive.sends == ()  # recorded first, sent on a later pass
    assert decision.pool_status["keepAlive"] == {"due": 0, "scheduled": 1, "sentToday": 0, "atRisk": 0,
                                                 "day": "2026-11-26"}
    healthy = find_condition(decision.pool_status["conditions"], ConditionType.KEEP_ALIVE_HEALTHY)
    assert healthy is not None and healthy["status"] == "True"


def test_a_due_send_is_recorded_with_its_outcome() -> None:
    pool = FakePool(keepAlive={"partners": ["friend@example.com"]})
    quiet_for(pool, 30)
    planned = pool.step(T0, {"a": 100, "b": 100})
    due_time = _planned(planned) + timedelta(seconds=30)
    due = pool.step(due_time, {"a": 100, "b": 100})
    (send,) = due.keep_alive.sends
    assert (send.sender, send.recipient, send.server) == (IDLE, "friend@example.com", "support-a")
    exchange = due.keep_alive.lines[send.owner].exchange
    assert exchange is not None
    settled = settle(plan=due.keep_alive, send=send, exchange=exchange, delivery=Delivery.SENT, detail="sent",
                     retry_after=None, spec=pool.spec.keep_alive, timezone="UTC", policy=RetryPolicy(),
                     now=due_time)
    after = record_keep_alives(decision=due, pool=_view(pool), results=[(send, settled)], now=due_time)
    record = line_status(after, "a", IDLE)
    assert record["keepAlive"]["phase"] == "Sent" and record["lastKeepAliveTime"] == format_time(due_time)
    assert "nextKeepAliveTime" not in record
    assert after.pool_status["keepAlive"]["sentToday"] == 1
    assert "KeepAliveSent" in reasons(after)
    # The next pass starts from what was written: the record and the time stay, nothing is resent.
    pool.server_status = {s.name: s.status for s in after.servers}
    pool.pool_status = after.pool_status
    later = pool.step(due_time + timedelta(minutes=1), {"a": 100, "b": 100})
    assert later.keep_alive.sends == ()
    assert line_status(later, "a", IDLE)["lastKeepAliveTime"] == format_time(due_time)
    assert line_status(later, "a", IDLE)["keepAlive"]["phase"] == "Sent"


def test_without_fresh_metrics_nothing_is_sent() -> None:
    pool = FakePool(keepAlive={"partners": ["friend@example.com"]})
    quiet_for(pool, 30)
    planned = pool.step(T0, {"a": 100, "b": 100})
    blind = pool.step(_planned(planned) + timedelta(seconds=30), None)  # Prometheus down: the quota guard is blind
    assert blind.keep_alive.sends == ()
    assert line_status(blind, "a", IDLE)["keepAlive"]["phase"] == "Planned"


def test_a_busy_server_sends_no_keep_alive_that_would_cross_stop_at() -> None:
    pool = FakePool(keepAlive={"partners": ["friend@example.com"]})
    quiet_for(pool, 30)
    planned = pool.step(T0, {"a": 100, "b": 100})
    busy = pool.step(_planned(planned) + timedelta(seconds=30), {"a": 3750, "b": 100})  # exactly stopAt (75% of 5000)
    assert busy.keep_alive.sends == ()


def test_missing_credentials_stop_one_server_and_are_reported_once() -> None:
    pool = FakePool(keepAlive={"partners": ["friend@example.com"]})
    quiet_for(pool, 30)
    pool.credentials = {"support-a": (Reason.SECRET_NOT_FOUND, "Secret messaging/relay-token does not exist")}
    first = pool.step(T0, {"a": 100, "b": 100})
    cond = find_condition(outcome(first, "a").status["conditions"], ConditionType.CREDENTIALS_AVAILABLE)
    assert cond is not None and (cond["status"], cond["reason"]) == ("False", "SecretNotFound")
    assert "keepAlive" not in line_status(first, "a", IDLE)
    assert reasons(first).count("SecretNotFound") == 1
    assert "SecretNotFound" not in reasons(pool.step(T0 + timedelta(minutes=1), {"a": 100, "b": 100}))
    pool.credentials = {"support-a": None}
    fixed = pool.step(T0 + timedelta(minutes=2), {"a": 100, "b": 100})
    cond = find_condition(outcome(fixed, "a").status["conditions"], ConditionType.CREDENTIALS_AVAILABLE)
    assert cond is not None and cond["status"] == "True"
    assert line_status(fixed, "a", IDLE)["keepAlive"]["phase"] == "Planned"


def test_a_line_past_the_deadline_is_at_risk_with_one_event() -> None:
    pool = FakePool(keepAlive={"enabled": False})
    quiet_for(pool, 50)
    first = pool.step(T0, {"a": 100, "b": 100})
    assert line_status(first, "a", IDLE)["state"] == "AtRisk"
    assert outcome(first, "a").status["lineSummary"]["atRisk"] == 1
    assert reasons(first).count("LineAtRisk") == 1
    healthy = find_condition(first.pool_status["conditions"], ConditionType.KEEP_ALIVE_HEALTHY)
    assert healthy is not None and healthy["reason"] == "LinesAtRisk"
    assert "LineAtRisk" not in reasons(pool.step(T0 + timedelta(minutes=1), {"a": 100, "b": 100}))


def _planned(decision: PoolDecision) -> datetime:
    moment = parse_time(line_status(decision, "a", IDLE)["keepAlive"]["plannedTime"])
    assert moment is not None
    return moment


def _view(pool: FakePool) -> PoolView:
    return PoolView(name="support", namespace="messaging", uid="u", generation=1, spec=pool.spec,
                    status=pool.pool_status)
