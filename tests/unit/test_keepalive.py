"""Keep-alive planning with a fake clock: windows and zones, pairing, spacing, caps, delivery outcomes."""

from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise

import pytest

from linepool.api.spec import KeepAlive, KeepAliveWindow
from linepool.api.types import ConditionType, KeepAlivePhase, LineState, Reason
from linepool.logic.keepalive import (
    BUILT_IN_MESSAGES,
    Delivery,
    Exchange,
    LineFacts,
    RetryPolicy,
    ServerFacts,
    exchange_from_status,
    free_slot,
    headroom,
    in_window,
    keep_alive_condition,
    plan_keep_alive,
    settle,
    window_on,
)
from tests.unit.keepalive_sim import Simulation, sends_by

# Monday 2026-11-23, 08:00 UTC (03:00 in New York: nothing may go out now).
MONDAY = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
NY = "America/New_York"


def line(i: int, *, server: str = "s0", idle_days: float = 30, state: LineState = LineState.IDLE,
         now: datetime = MONDAY) -> LineFacts:
    return LineFacts(server=server, line=f"+1415555{i:04d}", state=state, last_activity=now - timedelta(days=idle_days))


def plan(lines: list[LineFacts], *, spec: KeepAlive | None = None, now: datetime = MONDAY, zone: str = NY,
         servers: dict[str, ServerFacts] | None = None):  # type: ignore[no-untyped-def]
    return plan_keep_alive(spec=spec or KeepAlive(), timezone=zone, lines=lines, servers=servers or {}, now=now)


@pytest.mark.parametrize(("day", "zone", "expected"), [
    # Fri 2026-03-06 is still EST (UTC-5); Mon 2026-03-09 is EDT (UTC-4), the day after the change.
    (date(2026, 3, 6), NY, (datetime(2026, 3, 6, 15, 0, tzinfo=UTC), datetime(2026, 3, 7, 0, 0, tzinfo=UTC))),
    (date(2026, 3, 9), NY, (datetime(2026, 3, 9, 14, 0, tzinfo=UTC), datetime(2026, 3, 9, 23, 0, tzinfo=UTC))),
    (date(2026, 3, 7), NY, None),  # Saturday
    (date(2026, 11, 23), "Asia/Kolkata", (datetime(2026, 11, 23, 4, 30, tzinfo=UTC),
                                          datetime(2026, 11, 23, 13, 30, tzinfo=UTC))),
])
def test_the_window_is_local_time_on_window_days(day: date, zone: str,
                                                 expected: tuple[datetime, datetime] | None) -> None:
    assert window_on(day, window=KeepAliveWindow(), timezone=zone) == expected


def test_a_window_on_the_day_clocks_change_keeps_its_local_hours() -> None:
    # Sunday 2026-03-08: clocks jump from 02:00 to 03:00 in New York. A 01:00-05:00 window is 3 hours long.
    window = KeepAliveWindow(start=time(1, 0), end=time(5, 0), days=frozenset({6}))
    start, end = window_on(date(2026, 3, 8), window=window, timezone=NY) or (None, None)
    assert (start, end) == (datetime(2026, 3, 8, 6, 0, tzinfo=UTC), datetime(2026, 3, 8, 9, 0, tzinfo=UTC))
    assert in_window(datetime(2026, 3, 8, 8, 59, tzinfo=UTC), window=window, timezone=NY)
    assert not in_window(datetime(2026, 3, 8, 9, 0, tzinfo=UTC), window=window, timezone=NY)


def test_an_idle_line_gets_one_exchange_inside_the_window_and_an_active_line_none() -> None:
    idle, partner, active = line(1), line(2, idle_days=1), line(3, idle_days=0.5)
    result = plan([idle, partner, active])
    exchange = result.lines[("s0", idle.line)].exchange
    assert exchange is not None and exchange.phase is KeepAlivePhase.PLANNED
    assert exchange.key == f"{idle.line}/2026-11-23"
    assert in_window(exchange.planned, window=KeepAliveWindow(), timezone=NY)
    assert exchange.reply_planned is not None and exchange.reply_planned > exchange.planned
    assert exchange.text in BUILT_IN_MESSAGES
    assert result.lines[("s0", active.line)].exchange is None
    assert result.upcoming[partner.line] == exchange.reply_planned
    assert result.sends == ()  # a new plan is written to status before anything is sent
    assert result.summary() == {"due": 0, "scheduled": 1, "sentToday": 0, "atRisk": 0, "day": "2026-11-23"}


def test_two_idle_lines_pair_with_each_other_in_one_exchange() -> None:
    a, b, busy = line(1, idle_days=40), line(2, idle_days=30), line(3, idle_days=0)
    result = plan([a, b, busy])
    exchange = result.lines[("s0", a.line)].exchange
    assert exchange is not None and exchange.to == b.line
    assert result.lines[("s0", b.line)].exchange is None  # b answers a; that refreshes b too
    assert not result.lines[("s0", b.line)].due


def test_handles_in_partners_take_the_exchange_and_answer_themselves() -> None:
    spec = KeepAlive(partners=("friend@example.com",))
    result = plan([line(1), line(2)], spec=spec)
    exchanges = [o.exchange for o in result.lines.values()]
    assert all(e is not None and e.to == "friend@example.com" and e.reply_planned is None for e in exchanges)


def test_friday_evening_plans_for_monday_and_weekends_stay_quiet() -> None:
    friday_evening = datetime(2026, 11, 28, 1, 0, tzinfo=UTC)  # Fri 20:00 in New York
    result = plan([line(1, now=friday_evening), line(2, idle_days=0, now=friday_evening)], now=friday_evening)
    exchange = result.lines[("s0", "+14155550001")].exchange
    assert exchange is not None and exchange.key.endswith("2026-11-30")
    assert exchange.planned.astimezone().date() >= date(2026, 11, 30)


@pytest.mark.parametrize("state", [LineState.FLAGGED, LineState.DEACTIVATED])
def test_flagged_and_deactivated_lines_neither_send_nor_answer(state: LineState) -> None:
    dead, idle = line(1, state=state), line(2)
    result = plan([dead, idle])
    assert result.lines[("s0", dead.line)].exchange is None
    assert result.lines[("s0", idle.line)].exchange is None  # its only possible partner is dead
    assert result.no_partner


def test_sends_from_one_server_keep_min_spacing_and_the_pool_keeps_max_per_day() -> None:
    spec = KeepAlive(min_spacing=timedelta(minutes=45), max_per_day=3)
    lines = [line(i, idle_days=30 + i) for i in range(10)] + [line(99, idle_days=0)]
    result = plan(lines, spec=spec)
    exchanges = [o.exchange for o in result.lines.values() if o.exchange is not None]
    today = [e for e in exchanges if e.key.endswith("2026-11-23")]
    assert len(today) == 3 and len(exchanges) > 3  # the rest wait for the next days
    moments = sorted(t for e in today for t in (e.planned, e.reply_planned) if t is not None)
    assert all(b - a >= spec.min_spacing for a, b in pairwise(moments))


def test_the_quota_guard_keeps_a_busy_server_quiet_today() -> None:
    assert headroom(sent=3740, quota=5000, stop_at=0.75) == 10
    assert headroom(sent=3750, quota=5000, stop_at=0.75) == 0
    servers = {"busy": ServerFacts(name="busy", headroom=0), "calm": ServerFacts(name="calm")}
    result = plan([line(1, server="busy"), line(2, server="calm", idle_days=0)], servers=servers)
    exchange = result.lines[("busy", "+14155550001")].exchange
    assert exchange is None or not exchange.key.endswith("2026-11-23")


def test_a_server_without_credentials_plans_and_sends_nothing() -> None:
    servers = {"locked": ServerFacts(name="locked", can_send=False)}
    result = plan([line(1, server="locked"), line(2, server="open")], servers=servers)
    assert result.lines[("locked", "+14155550001")].exchange is None
    other = result.lines[("open", "+14155550002")].exchange
    assert other is None  # its only partner cannot answer


def test_lines_past_the_deadline_are_at_risk_and_reported_even_when_disabled() -> None:
    spec = KeepAlive(enabled=False)
    result = plan([line(1, idle_days=50), line(2, idle_days=25), line(3, idle_days=1)], spec=spec)
    assert [o.state for o in result.lines.values()] == [LineState.AT_RISK, LineState.IDLE, LineState.IDLE]
    assert all(o.exchange is None for o in result.lines.values())
    cond = keep_alive_condition(plan=result, spec=spec, failed_today=0, at_risk_lines=["+14155550001"])
    assert cond.type is ConditionType.KEEP_ALIVE_HEALTHY and not cond.is_true
    assert cond.reason is Reason.LINES_AT_RISK and "disabled" in cond.message
    assert result.summary()["atRisk"] == 1


def test_a_recorded_plan_is_sent_when_due_and_the_answer_follows() -> None:
    sim = Simulation(spec=KeepAlive(), timezone=NY, lines=[line(1), line(2, idle_days=0)])
    sim.run(start=MONDAY, end=MONDAY + timedelta(hours=16), every=timedelta(minutes=1))  # to 19:00 local
    assert [(d.send.leg.value, d.send.sender) for d in sim.delivered] == [
        ("Initial", "+14155550001"), ("Reply", "+14155550002")]
    first, answer = sim.delivered
    assert answer.send.recipient == first.send.sender
    assert answer.send.idempotency_key == first.send.idempotency_key + "/reply"
    assert answer.at - first.at >= timedelta(minutes=2)
    final = sim.lines[0].exchange
    assert final is not None and final.phase is KeepAlivePhase.REPLIED


def test_replanning_from_recorded_status_changes_nothing_and_sends_nothing_twice() -> None:
    lines = [line(1), line(2, idle_days=0)]
    first = plan(lines)
    recorded = [
        LineFacts(server=f.server, line=f.line, state=f.state, last_activity=f.last_activity,
                  exchange=exchange_from_status(o.exchange.to_status()) if o.exchange else None)
        for f, o in zip(lines, first.lines.values(), strict=True)
    ]
    again = plan(recorded, now=MONDAY + timedelta(minutes=5))
    assert [o.exchange for o in again.lines.values()] == [o.exchange for o in first.lines.values()]


def test_a_restart_between_planning_and_sending_neither_loses_nor_doubles_the_send() -> None:
    sim = Simulation(spec=KeepAlive(), timezone=NY, lines=[line(1), line(2, idle_days=0)])
    sim.run(start=MONDAY, end=MONDAY + timedelta(hours=2), every=timedelta(minutes=5))  # planned, not yet due
    assert sim.delivered == []
    restarted = Simulation(spec=sim.spec, timezone=NY, lines=sim.lines)  # nothing but status survives
    restarted.run(start=MONDAY + timedelta(hours=2), end=MONDAY + timedelta(days=1), every=timedelta(minutes=5))
    assert sorted(sends_by(restarted.delivered, lambda d: d.send.leg.value)) == ["Initial", "Reply"]


def exchange_at(moment: datetime, **kw: object) -> Exchange:
    return Exchange(key="+14155550001/2026-11-23", to="+14155550002", text="hi", planned=moment, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(("delivery", "phase", "outcome", "reason"), [
    (Delivery.SENT, KeepAlivePhase.SENT, "sent", Reason.KEEP_ALIVE_SENT),
    (Delivery.DEFERRED, KeepAlivePhase.PLANNED, "deferred", Reason.KEEP_ALIVE_DEFERRED),
    (Delivery.RETRYABLE, KeepAlivePhase.PLANNED, "retrying", Reason.KEEP_ALIVE_RETRYING),
    (Delivery.REJECTED, KeepAlivePhase.FAILED, "failed", Reason.KEEP_ALIVE_FAILED),
])
def test_delivery_outcomes(delivery: Delivery, phase: KeepAlivePhase, outcome: str, reason: Reason) -> None:
    now = datetime(2026, 11, 23, 16, 0, tzinfo=UTC)  # 11:00 in New York
    lines = [LineFacts(server="s0", line="+14155550001", state=LineState.IDLE, last_activity=now - timedelta(days=30),
                       exchange=exchange_at(now - timedelta(minutes=1))),
             LineFacts(server="s0", line="+14155550002", state=LineState.ACTIVE, last_activity=now)]
    result = plan(lines, now=now)
    (send,) = result.sends
    exchange = result.lines[send.owner].exchange
    assert exchange is not None
    settled = settle(plan=result, send=send, exchange=exchange, delivery=delivery, detail="HTTP x",
                     retry_after=timedelta(minutes=20) if delivery is Delivery.DEFERRED else None,
                     spec=KeepAlive(), timezone=NY, policy=RetryPolicy(base=timedelta(minutes=1)), now=now)
    assert (settled.exchange.phase, settled.outcome) == (phase, outcome)
    assert [e.reason for e in settled.events] == [reason]
    if delivery is Delivery.DEFERRED:
        assert settled.exchange.planned >= now + timedelta(minutes=20)  # Retry-After is honoured
    if delivery is Delivery.RETRYABLE:
        assert settled.exchange.planned >= now + timedelta(minutes=1) and settled.exchange.attempts == 1


def test_retries_back_off_and_give_up_for_the_day() -> None:
    policy = RetryPolicy(base=timedelta(minutes=1), cap=timedelta(minutes=4), max_attempts=4)
    assert [policy.delay(n) for n in (1, 2, 3, 4, 5)] == [timedelta(minutes=m) for m in (1, 2, 4, 4, 4)]
    sim = Simulation(spec=KeepAlive(min_spacing=timedelta(minutes=1)), timezone=NY, policy=policy,
                     lines=[line(1), line(2, idle_days=0)], deliver=lambda send: Delivery.RETRYABLE)
    sim.run(start=MONDAY, end=MONDAY + timedelta(hours=16), every=timedelta(minutes=1))  # to 19:00 local
    initial = [a for a in sim.attempts if a.send.leg.value == "Initial"]
    assert len(initial) == 4  # then it gives up for the day
    gaps = [b.at - a.at for a, b in pairwise(initial)]
    assert gaps == sorted(gaps) and gaps[0] >= timedelta(minutes=1)
    assert sim.lines[0].exchange is not None and sim.lines[0].exchange.phase is KeepAlivePhase.FAILED


def test_free_slot_keeps_spacing_around_taken_moments() -> None:
    t = datetime(2026, 1, 1, 12, tzinfo=UTC)
    taken = [t, t + timedelta(minutes=30)]
    spacing = timedelta(minutes=10)
    assert free_slot(taken, lo=t - timedelta(hours=1), hi=t + timedelta(hours=1), target=t + timedelta(minutes=5),
                     spacing=spacing) == t + timedelta(minutes=10)
    assert free_slot(taken, lo=t, hi=t + timedelta(minutes=35), target=t, spacing=spacing) == t + timedelta(minutes=10)
    assert free_slot([t], lo=t - timedelta(minutes=5), hi=t + timedelta(minutes=5), target=t, spacing=spacing) is None
