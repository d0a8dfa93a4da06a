"""Line-health PromQL against a real Prometheus: the poll's health query and the flag forensics.

Two Prometheus servers:

- the session's, scraping the simulated fleet every second. Each test exports its own servers at
  zero, makes traffic, and waits until Prometheus holds the final values. It then queries *at the
  timestamp of that last scrape*: the first sample of every series is zero and the last one sits
  at the query time, so ``increase()`` has nothing to extrapolate and the figures are exact;
- one of this module's own, started on backfilled history (``promtool``), for the hour before a
  flag that happened half an hour ago, as when the operator was down at the time of the flag.
  Its windows hold 15 s samples, so ``increase()`` extrapolates by up to one interval: the
  figures are checked to a few percent.
"""

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from linepool.adapters.prometheus import FLAG_RESOLUTION, PrometheusClient, render_queries
from linepool.api.spec import (
    BurstRule,
    ColdOutreachRule,
    FollowUpRule,
    Health,
    NoExchangeRule,
    OffHoursRule,
    QueryTemplates,
)
from linepool.api.types import HealthPattern
from linepool.logic.health import HealthSample, findings
from linepool.logic.observations import Observation
from linepool.sandbox.fleet import STREAKS, Fleet
from linepool.sandbox.prometheus import PrometheusProcess, backfill
from tests.integration.conftest import wait_for

pytestmark = pytest.mark.integration

WINDOW = "86400s"
# The poll's health query names only the lines past a threshold (the others read 0, or None on a
# relay without the metric). With every threshold at its lowest, a line with any traffic is named,
# so its figures can be read back exactly.
EVERY = Health(burst=BurstRule(messages=1), no_exchange=NoExchangeRule(min_sent=1, min_reply_ratio=1.0),
               cold_outreach=ColdOutreachRule(max_line_initiated=0), off_hours=OffHoursRule(max_net_outbound=0))
TEMPLATES = QueryTemplates()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def export(fleet: Fleet, prometheus: PrometheusProcess, server: str, lines: list[str], **exports: bool) -> None:
    """Export a server's lines and wait until Prometheus holds two samples of each, all at zero."""
    fleet.add_server(server, lines, **exports)
    wait_for(lambda: len(prometheus.query(
        f'count_over_time(imessage_messages_sent_total{{server="{server}"}}[1m]) >= 2')) == len(lines),
        timeout=20, what=f"two scrapes of {server}")


def settled(fleet: Fleet, prometheus: PrometheusProcess, *servers: str) -> datetime:
    """Wait until Prometheus holds the fleet's totals for these servers; the time of that scrape."""
    def caught_up() -> bool:
        for server in servers:
            for line in fleet.servers()[server]:
                totals = fleet.totals(server, line)
                selector = f'{{server="{server}",line="{line}"}}'
                seen = {
                    "sent": f"sum(imessage_messages_sent_total{selector})",
                    "received": f"sum(imessage_messages_received_total{selector})",
                    "new_conversations": f"sum(imessage_new_conversations_total{selector})",
                }
                for key, promql in seen.items():
                    result = prometheus.query(promql)
                    if not result or float(result[0]["value"][1]) != totals[key]:
                        return False
        return True

    wait_for(caught_up, timeout=20, what=f"Prometheus to catch up with {servers}")
    # Every series of the fleet comes from one scrape, so they share its timestamp.
    (stamp,) = prometheus.query(f'max(timestamp(imessage_messages_sent_total{{server="{servers[0]}"}}))')
    return datetime.fromtimestamp(float(stamp["value"][1]), tz=UTC)


async def poll(session: aiohttp.ClientSession, prometheus: PrometheusProcess, servers: list[str], at: datetime, *,
               health: Health | None = EVERY, quiet_since: timedelta | None = None,
               templates: QueryTemplates = TEMPLATES) -> Observation:
    queries = render_queries(templates=templates, servers=servers, window=WINDOW, health=health,
                             quiet_since=quiet_since)
    return await PrometheusClient(session=session).observe(base_url=prometheus.url, queries=queries, at=at)


# --- the poll's health query, on the live fleet --------------------------------------------------


async def test_each_figure_reads_what_the_fleet_did(
        fleet: Fleet, prometheus: PrometheusProcess, session: aiohttp.ClientSession) -> None:
    export(fleet, prometheus, "hq-figures", ["+15550001001", "+15550001002"])
    busy = "+15550001001"  # the other line, the control, does nothing
    fleet.send("hq-figures", busy, 30)
    fleet.receive("hq-figures", busy, 6)
    fleet.new_conversations("hq-figures", busy, 3, initiator="line")
    fleet.new_conversations("hq-figures", busy, 2)
    for streak, sends in {1: 20, 2: 5, 3: 2, 4: 2, 9: 1}.items():
        fleet.unanswered("hq-figures", busy, streak=streak, n=sends)
    at = settled(fleet, prometheus, "hq-figures")

    observation = await poll(session, prometheus, ["hq-figures"], at, quiet_since=timedelta(hours=1))

    lines = observation.health["hq-figures"]
    assert lines[busy] == HealthSample(burst_sent=30, exchange_sent=30, exchange_received=6, over_cap_follow_ups=3,
                                       line_initiated=3, quiet_sent=30, quiet_received=6)
    # A line that did nothing reads zero everywhere: measured, and healthy.
    assert lines["+15550001002"] == HealthSample(burst_sent=0, exchange_sent=0, exchange_received=0,
                                                 over_cap_follow_ups=0, line_initiated=0, quiet_sent=0,
                                                 quiet_received=0)
    # The cap moves the streaks that count: max 1 counts streaks 3 and up, max 3 only "5+".
    for cap, over in {1: 5, 2: 3, 3: 1}.items():
        capped = await poll(session, prometheus, ["hq-figures"], at,
                            health=replace(EVERY, follow_ups=FollowUpRule(max=cap)))
        assert capped.health["hq-figures"][busy].over_cap_follow_ups == over, cap


async def test_windows_count_only_their_own_traffic(
        fleet: Fleet, prometheus: PrometheusProcess, session: aiohttp.ClientSession) -> None:
    export(fleet, prometheus, "hq-windows", ["+15550002001"])
    fleet.send("hq-windows", "+15550002001", 40)
    fleet.unanswered("hq-windows", "+15550002001", streak=6, n=4)
    at = settled(fleet, prometheus, "hq-windows")
    # Seconds later, seen from a poll whose burst window and cooldown are shorter than that.
    await asyncio.sleep(6)
    later = settled(fleet, prometheus, "hq-windows")
    assert later - at >= timedelta(seconds=5)
    short = replace(EVERY, burst=replace(EVERY.burst, within=timedelta(seconds=4)), cooldown=timedelta(seconds=4))

    sample = (await poll(session, prometheus, ["hq-windows"], later, health=short)).health["hq-windows"]["+15550002001"]

    assert sample.burst_sent == 0 and sample.over_cap_follow_ups == 0
    assert sample.exchange_sent == 40


async def test_an_older_relay_reads_absent_not_zero(
        fleet: Fleet, prometheus: PrometheusProcess, session: aiohttp.ClientSession) -> None:
    export(fleet, prometheus, "hq-legacy", ["+15550003001"], initiator_label=False, unanswered_metric=False)
    export(fleet, prometheus, "hq-current", ["+15550003002"])
    for server, line in (("hq-legacy", "+15550003001"), ("hq-current", "+15550003002")):
        fleet.send(server, line, 8)
        fleet.new_conversations(server, line, 4, initiator="line")
    at = settled(fleet, prometheus, "hq-legacy", "hq-current")

    health = (await poll(session, prometheus, ["hq-legacy", "hq-current"], at)).health

    legacy = health["hq-legacy"]["+15550003001"]
    assert legacy == HealthSample(burst_sent=8, exchange_sent=8, exchange_received=0)
    assert health["hq-current"]["+15550003002"] == HealthSample(
        burst_sent=8, exchange_sent=8, exchange_received=0, over_cap_follow_ups=0, line_initiated=4)
    # What the pattern logic makes of it: unmeasured, not healthy.
    _, unmeasured = findings(sample=legacy, spec=Health(), in_quiet_period=False)
    assert unmeasured == {HealthPattern.FOLLOW_UPS, HealthPattern.COLD_OUTREACH}


async def test_quiet_parts_only_inside_a_quiet_period(
        fleet: Fleet, prometheus: PrometheusProcess, session: aiohttp.ClientSession) -> None:
    export(fleet, prometheus, "hq-quiet", ["+15550004001"])
    fleet.send("hq-quiet", "+15550004001", 9)
    fleet.receive("hq-quiet", "+15550004001", 2)
    at = settled(fleet, prometheus, "hq-quiet")

    outside = render_queries(templates=QueryTemplates(), servers=["hq-quiet"], window=WINDOW, health=Health())
    assert outside.health is not None and "quiet_" not in outside.health
    sample = (await poll(session, prometheus, ["hq-quiet"], at)).health["hq-quiet"]["+15550004001"]
    assert sample.quiet_sent is None and sample.quiet_received is None
    assert sample.burst_sent == 9

    inside = (await poll(session, prometheus, ["hq-quiet"], at, quiet_since=timedelta(minutes=30)))
    assert inside.health["hq-quiet"]["+15550004001"].quiet_sent == 9
    assert inside.health["hq-quiet"]["+15550004001"].quiet_received == 2
    # A quiet period that began a moment ago holds under two samples: it reads 0, still measured.
    # Half-way between two scrapes, a window of one second holds one sample, and increase() nothing.
    await asyncio.sleep(2)
    between = settled(fleet, prometheus, "hq-quiet") + timedelta(milliseconds=500)
    client = PrometheusClient(session=session)
    assert not await client.query(base_url=prometheus.url, at=between,
                                  promql='increase(imessage_messages_sent_total{server="hq-quiet"}[1s])')
    young = (await poll(session, prometheus, ["hq-quiet"], between, quiet_since=timedelta(milliseconds=300)))
    assert young.health["hq-quiet"]["+15550004001"].quiet_sent == 0
    assert young.health["hq-quiet"]["+15550004001"].quiet_received == 0


async def test_overridden_templates_are_used(
        fleet: Fleet, prometheus: PrometheusProcess, session: aiohttp.ClientSession) -> None:
    export(fleet, prometheus, "hq-override", ["+15550005001"])
    fleet.send("hq-override", "+15550005001", 20)
    fleet.receive("hq-override", "+15550005001", 5)
    fleet.new_conversations("hq-override", "+15550005001", 2, initiator="line")
    fleet.new_conversations("hq-override", "+15550005001", 3)
    fleet.unanswered("hq-override", "+15550005001", streak=5, n=2)
    at = settled(fleet, prometheus, "hq-override")
    templates = QueryTemplates(
        received_in_window=f"2 * ({QueryTemplates().received_in_window})",
        # Every new conversation, whoever started it.
        line_initiated_in_window=('sum by (server, line) '
                                  '(increase(imessage_new_conversations_total{server=~"{{servers}}"}[{{window}}]))'),
        unanswered_sends_in_window=f"10 * ({QueryTemplates().unanswered_sends_in_window})",
    )

    sample = (await poll(session, prometheus, ["hq-override"], at, templates=templates)).health["hq-override"]

    assert sample["+15550005001"] == HealthSample(burst_sent=20, exchange_sent=20, exchange_received=10,
                                                  over_cap_follow_ups=20, line_initiated=5)


async def test_healthy_lines_cost_no_rows(
        fleet: Fleet, prometheus: PrometheusProcess, session: aiohttp.ClientSession) -> None:
    lines = [f"+1555006{index:04d}" for index in range(30)]
    export(fleet, prometheus, "hq-rows", lines)
    for line in lines:
        fleet.send("hq-rows", line, 5)
        fleet.receive("hq-rows", line, 4)
    fleet.send("hq-rows", lines[0], 70)  # one burst, past the default 60 in 10m, answered enough
    fleet.receive("hq-rows", lines[0], 20)
    at = settled(fleet, prometheus, "hq-rows")
    queries = render_queries(templates=TEMPLATES, servers=["hq-rows"], window=WINDOW, health=Health())
    assert queries.health is not None
    rows = await PrometheusClient(session=session).query(base_url=prometheus.url, promql=queries.health, at=at)
    named = sorted((labels["linepool_figure"], labels.get("line", "")) for labels, _ in rows)
    # Which metrics the relay exports, once per server; and the one line past a threshold.
    assert named == [("burst", lines[0]), ("has_initiator", ""), ("has_received", ""), ("has_sent", ""),
                     ("has_unanswered", "")]
    health = (await poll(session, prometheus, ["hq-rows"], at, health=Health())).health["hq-rows"]
    assert health[lines[0]].burst_sent == 75 and health[lines[1]].burst_sent == 0
    assert health[lines[1]] == HealthSample(burst_sent=0, exchange_sent=0, exchange_received=0,
                                            over_cap_follow_ups=0, line_initiated=0)


@pytest.mark.parametrize("servers, lines", [(1, 1), (3, 20)])
async def test_five_queries_per_poll_whatever_the_number_of_lines(
        fleet: Fleet, prometheus: PrometheusProcess, servers: int, lines: int) -> None:
    names = [f"hq-count-{lines}-{index}" for index in range(servers)]
    for name in names:
        export(fleet, prometheus, name, [f"+1555{lines:03d}{index:04d}" for index in range(lines)])
    at = settled(fleet, prometheus, *names)
    requests: list[str] = []

    async def count(session: aiohttp.ClientSession, context: object, params: aiohttp.TraceRequestStartParams) -> None:
        requests.append(str(params.url))

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(count)
    async with aiohttp.ClientSession(trace_configs=[trace]) as session:
        observation = await poll(session, prometheus, names, at, quiet_since=timedelta(minutes=5))
        assert len(requests) == 5
        assert sum(len(by_line) for by_line in observation.health.values()) == servers * lines
        requests.clear()
        await poll(session, prometheus, names, at, health=None)
        assert len(requests) == 4  # health not evaluated: today's batch
        requests.clear()
        await poll(session, prometheus, names, at, health=Health(enabled=False))
        assert len(requests) == 4
    assert all(url.endswith("/api/v1/query") for url in requests)


# --- flag forensics, on backfilled history ------------------------------------------------------

STEP = 15  # seconds between backfilled samples
# The flag time: half an hour ago, on a whole minute, so that every figure below has history.
FLAG = (int(time.time()) - 1800) // 60 * 60
START, END = FLAG - 3 * 3600, FLAG + 600
MINUTE = 60

# (server, line) -> series -> [(seconds relative to FLAG, increment)] for counters.
Events = dict[str, list[tuple[int, int]]]
BURST_LINE = ("bf-1", "+15550009001")
HISTORY: dict[tuple[str, str], Events] = {
    BURST_LINE: {
        # An old burst two hours before (outside the hour), then 180 in 3 minutes 50 minutes before.
        "sent": [(-7200, 300)] + [(-50 * MINUTE + STEP * k, 15) for k in range(1, 13)] + [(-10 * MINUTE, 30)],
        "received": [(-40 * MINUTE, 9), (-10 * MINUTE, 3)],
        "new:line": [(-40 * MINUTE, 12)],
        "new:recipient": [(-40 * MINUTE, 4)],
        "streak:1": [(-40 * MINUTE, 100)],
        "streak:3": [(-40 * MINUTE, 5)],
        "streak:4": [(-40 * MINUTE, 4)],
        "streak:5+": [(-40 * MINUTE, 6)],
    },
    ("bf-1", "+15550009002"): {},   # flagged twice: [-2h, -1h), then from -30 min
    ("bf-1", "+15550009003"): {},   # flagged from the start of its history
    ("bf-1", "+15550009004"): {"sent": [(-20 * MINUTE, 5)]},   # never flagged
    ("bf-legacy", "+15550009005"): {"sent": [(-30 * MINUTE, 50)], "new": [(-30 * MINUTE, 5)]},  # an older relay
}


def flagged(server: str, line: str, at: int) -> bool:
    relative = at - FLAG
    if line == "+15550009002":
        return -7200 <= relative < -3600 or relative >= -1800
    if line == "+15550009003":
        return True
    if line == "+15550009004":
        return False
    return relative >= 0


def openmetrics() -> str:
    families: dict[str, tuple[str, list[str]]] = {
        "imessage_messages_sent": ("counter", []), "imessage_messages_received": ("counter", []),
        "imessage_new_conversations": ("counter", []), "imessage_unanswered_sends": ("counter", []),
        "imessage_line_state": ("gauge", []),
    }
    series: dict[str, tuple[str, dict[str, str]]] = {
        "sent": ("imessage_messages_sent", {}), "received": ("imessage_messages_received", {}),
        "new:line": ("imessage_new_conversations", {"initiator": "line"}),
        "new:recipient": ("imessage_new_conversations", {"initiator": "recipient"}),
        "new": ("imessage_new_conversations", {}),
        **{f"streak:{s}": ("imessage_unanswered_sends", {"streak": s}) for s in STREAKS},
    }
    for (server, line), events in HISTORY.items():
        base = {"job": "fleet", "instance": "backfill", "server": server, "line": line}
        legacy = server == "bf-legacy"
        keys = ["sent", "received", *(["new"] if legacy else
                                      ["new:line", "new:recipient", *(f"streak:{s}" for s in STREAKS)])]
        for key in keys:
            family, extra = series[key]
            labels = ",".join(f'{k}="{v}"' for k, v in {**base, **extra}.items())
            for at in range(START, END + 1, STEP):
                value = sum(n for when, n in events.get(key, []) if FLAG + when <= at)
                families[family][1].append(f"{family}_total{{{labels}}} {value} {at}")
        for state in ("active", "flagged"):
            labels = ",".join(f'{k}="{v}"' for k, v in {**base, "state": state}.items())
            for at in range(START, END + 1, STEP):
                value = 1 if flagged(server, line, at) == (state == "flagged") else 0
                families["imessage_line_state"][1].append(f"imessage_line_state{{{labels}}} {value} {at}")
    return "".join(f"# TYPE {name} {kind}\n" + "\n".join(rows) + "\n" for name, (kind, rows) in families.items())


@pytest.fixture(scope="module")
def history() -> Iterator[PrometheusProcess]:
    server = PrometheusProcess([])
    try:
        backfill(openmetrics(), server.data_dir)
        server.start()
        yield server
    finally:
        server.close()


def moment(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=UTC)


async def test_flag_time_finds_when_the_current_flag_began(
        history: PrometheusProcess, session: aiohttp.ClientSession) -> None:
    client = PrometheusClient(session=session)

    async def flag_time(line: str, at: int) -> datetime | None:
        server = "bf-legacy" if line == "+15550009005" else "bf-1"
        return await client.flag_time(base_url=history.url, server=server, line=line, at=moment(at))

    assert await flag_time(BURST_LINE[1], END) == moment(FLAG)
    # The same answer from a later poll: a restarted operator finds the same flag, not a new one.
    assert await flag_time(BURST_LINE[1], END - 7 * 60 + 3) == moment(FLAG)
    assert await flag_time("+15550009005", END) == moment(FLAG)
    # Flagged twice: the spell that is current, not the earlier one...
    assert await flag_time("+15550009002", END) == moment(FLAG - 1800)
    # ...and while the earlier one lasted, that one; between the two, no flag at all.
    assert await flag_time("+15550009002", FLAG - 4000) == moment(FLAG - 7200)
    assert await flag_time("+15550009002", FLAG - 2400) is None
    # Flagged from its first sample on: the first sample; never flagged: None.
    assert await flag_time("+15550009003", END) == moment(START)
    assert await flag_time("+15550009004", END) is None
    # Steps are aligned, so a flag between two of them reads at the next one.
    assert FLAG % FLAG_RESOLUTION.total_seconds() == 0


async def test_flag_figures_describe_the_hour_before_the_flag(
        history: PrometheusProcess, session: aiohttp.ClientSession) -> None:
    client = PrometheusClient(session=session)
    when = await client.flag_time(base_url=history.url, server=BURST_LINE[0], line=BURST_LINE[1], at=moment(END))
    assert when == moment(FLAG)
    # Quiet hours began 20 minutes before the flag (in UTC, the pool's time zone here).
    quiet = OffHoursRule(quiet_start=(when - timedelta(minutes=20)).time(),
                         quiet_end=(when + timedelta(hours=3)).time())
    spec = Health(off_hours=quiet)

    figures = await client.flag_figures(base_url=history.url, server=BURST_LINE[0], line=BURST_LINE[1],
                                        spec=spec, flag_time=when, timezone="UTC")

    # 180 sends in 3 minutes: the most in any 10 minutes, and 60 a minute at the peak. The
    # increase over a window of 15 s samples extrapolates by up to one interval.
    assert figures.burst_peak is not None and 180 <= figures.burst_peak <= 180 * 600 / 585 + 0.01
    assert figures.peak_per_minute == pytest.approx(60, rel=0.02)
    # The hour: the burst and the quiet-hour sends, not the burst two hours before.
    assert figures.sent == pytest.approx(210, rel=0.01)
    assert figures.received == pytest.approx(12, rel=0.01)
    assert figures.over_cap_follow_ups == pytest.approx(10, rel=0.01)   # streaks 4 and 5+ with max 2
    assert figures.line_initiated == pytest.approx(12, rel=0.01)
    assert figures.quiet_net_outbound == pytest.approx(30 - 3, rel=0.02)

    # Without the pool's time zone the quiet hours are not placed: not measured.
    unplaced = await client.flag_figures(base_url=history.url, server=BURST_LINE[0], line=BURST_LINE[1],
                                         spec=spec, flag_time=when)
    assert unplaced.quiet_net_outbound is None
    assert replace(unplaced, quiet_net_outbound=figures.quiet_net_outbound) == figures

    # A quiet period that ended half an hour before the flag: the counters' gain in between.
    ended = OffHoursRule(quiet_start=(when - timedelta(hours=3)).time(),
                         quiet_end=(when - timedelta(minutes=30)).time())
    earlier = await client.flag_figures(base_url=history.url, server=BURST_LINE[0], line=BURST_LINE[1],
                                        spec=Health(off_hours=ended), flag_time=when, timezone="UTC")
    assert earlier.quiet_net_outbound == pytest.approx(180 - 9, rel=0.02)


async def test_flag_figures_of_an_older_relay_leave_its_patterns_unmeasured(
        history: PrometheusProcess, session: aiohttp.ClientSession) -> None:
    figures = await PrometheusClient(session=session).flag_figures(
        base_url=history.url, server="bf-legacy", line="+15550009005", spec=Health(), flag_time=moment(FLAG))
    assert figures.sent == pytest.approx(50, rel=0.01)
    assert figures.received == 0
    assert figures.over_cap_follow_ups is None
    assert figures.line_initiated is None
    assert figures.burst_peak is not None and figures.peak_per_minute is not None


def test_the_backfill_covers_the_flag_hour() -> None:
    # A guard on the module's own arithmetic: history before the hour, and nothing in the future.
    assert START < FLAG - 3600 - 600
    assert time.time() > END
