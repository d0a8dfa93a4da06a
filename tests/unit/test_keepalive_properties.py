"""Properties of keep-alive traffic over days of simulated passes, whatever the pool looks like.

- no send outside the window (local time, any zone, daylight saving included);
- no two sends from one server closer than minSpacing;
- at most one send per line per local day, and at most maxPerDay exchanges per pool per day;
- never from a Flagged or Deactivated line, never past a server's quota headroom.
"""

from datetime import UTC, datetime, time, timedelta
from itertools import pairwise

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from linepool.api.spec import KeepAlive, KeepAliveWindow
from linepool.api.types import LineState
from linepool.logic.keepalive import Delivery, LineFacts, ServerFacts, in_window, local_day
from tests.unit.keepalive_sim import Simulation, sends_by

ZONES = ["UTC", "America/New_York", "Europe/Berlin", "Australia/Sydney", "Asia/Kolkata", "America/Los_Angeles"]


@st.composite
def pools(draw: st.DrawFn) -> tuple[Simulation, datetime]:
    start_hour = draw(st.integers(0, 22))
    end_hour = draw(st.integers(start_hour + 1, 23))
    days = draw(st.frozensets(st.integers(0, 6), min_size=1))
    spec = KeepAlive(
        idle_after=timedelta(days=draw(st.integers(1, 30))),
        deadline=timedelta(days=45),
        window=KeepAliveWindow(start=time(start_hour, draw(st.sampled_from([0, 30]))), end=time(end_hour, 0),
                               days=days),
        min_spacing=timedelta(minutes=draw(st.sampled_from([1, 5, 10, 45, 120]))),
        max_per_day=draw(st.integers(1, 6)),
        partners=draw(st.sampled_from([(), ("+14155550999",), ("friend@example.com", "+14155550998")])),
    )
    now = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=draw(st.integers(0, 365 * 24 * 60)))
    server_count = draw(st.integers(1, 4))
    states = st.sampled_from([LineState.IDLE, LineState.IDLE, LineState.ACTIVE, LineState.FLAGGED,
                              LineState.DEACTIVATED])
    lines = [
        LineFacts(server=f"s{i % server_count}", line=f"+1415555{i:04d}", state=draw(states),
                  last_activity=now - timedelta(days=draw(st.integers(0, 60))))
        for i in range(draw(st.integers(1, 14)))
    ]
    servers = {f"s{i}": ServerFacts(name=f"s{i}", headroom=draw(st.integers(0, 8))) for i in range(server_count)}
    deliveries = draw(st.lists(st.sampled_from(list(Delivery)), min_size=1, max_size=5))
    counter = iter(range(10**6))
    sim = Simulation(spec=spec, timezone=draw(st.sampled_from(ZONES)), lines=lines, servers=servers,
                     deliver=lambda send: deliveries[next(counter) % len(deliveries)])
    return sim, now


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pools(), st.sampled_from([timedelta(minutes=2), timedelta(minutes=7), timedelta(minutes=50)]))
def test_sends_respect_window_spacing_and_daily_limits(case: tuple[Simulation, datetime], every: timedelta) -> None:
    sim, start = case
    dead = {f.line for f in sim.lines if f.state in (LineState.FLAGGED, LineState.DEACTIVATED)}
    sim.run(start=start, end=start + timedelta(days=3), every=every)
    spec, zone = sim.spec, sim.timezone

    for item in sim.attempts:
        assert in_window(item.at, window=spec.window, timezone=zone), f"{item.send} at {item.at} is outside the window"
        assert item.send.sender not in dead

    for server, moments in sends_by(sim.delivered, lambda d: d.send.server).items():
        moments.sort()
        for earlier, later in pairwise(moments):
            assert later - earlier >= spec.min_spacing, f"{server} sent at {earlier} and {later}"

    per_line_day = sends_by(sim.delivered, lambda d: f"{d.send.sender}@{local_day(d.at, zone)}")
    assert all(len(v) == 1 for v in per_line_day.values()), per_line_day

    started = sends_by([d for d in sim.delivered if d.send.leg.value == "Initial"],
                       lambda d: d.send.idempotency_key.rsplit("/", 1)[1])
    assert all(len(v) <= spec.max_per_day for v in started.values())

    # The quota guard: a server that a send would push over stopAt sends nothing.
    for item in sim.attempts:
        assert sim.servers[item.send.server].headroom > 0, f"{item.send.server} has no headroom but sent {item.send}"


@settings(max_examples=25, deadline=None)
@given(pools())
def test_every_idempotency_key_is_delivered_at_most_once(case: tuple[Simulation, datetime]) -> None:
    sim, start = case
    sim.run(start=start, end=start + timedelta(days=2), every=timedelta(minutes=3))
    keys = [d.send.idempotency_key for d in sim.delivered]
    assert len(keys) == len(set(keys))
