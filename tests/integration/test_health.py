"""Line health against real processes: the genuine kube-apiserver, a real Prometheus scraping the
simulated fleet, and the operator as a child process under the chart's RBAC.

What a person running a pool notices:

- a line that drifts into one of the five flag patterns gets a risk in its status (the pattern,
  the figure against the limit, since when), leaves ``status.assignableLines``, is counted on its
  server and its pool, and gets one ``LineAtFlagRisk`` warning, not one per poll; the healthy
  line next to it, on the same server, is left alone;
- a risk outlasts its pattern: once the pattern is no longer seen, ``lastSeen`` stops and the line
  stays out for the cooldown (the clearing itself, 5m at the least, is in tests/unit/test_pool_health.py);
- a relay that predates the new metrics leaves cold outreach and follow-ups unmeasured, which the
  pool says, rather than calling its lines healthy;
- a flag is explained once (cause, evidence, what to change), and no second time after a restart,
  also when the flag came while the operator was down; a line back to active gets a recovery event.

The pattern scenarios share one sandbox and one operator (``patterns``): one pool per pattern,
each with one server holding the line that misbehaves and a control line, plus a pool on an older
relay. The traffic comes once every line has been seen in rotation. Thresholds are chosen so that
each line shows its own pattern and no other, and every pool but the off-hours one has its quiet
hours away from now. Every relay of the module exports from its start, and traffic waits for 20 s
of history (``seasoned``): ``increase()`` extrapolates to the query time, by up to a scrape interval
over the series' age, so the figures may still read a few percent above what was sent.
"""

import datetime as dt
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from linepool.sandbox.fleet import Fleet
from linepool.sandbox.kubeapi import KubeApiServer
from linepool.sandbox.operator_process import OperatorProcess
from linepool.sandbox.prometheus import PrometheusProcess
from tests.integration.conftest import OperatorRbac, Sandbox, holds, open_sandbox, wait_for

pytestmark = pytest.mark.integration

COOLDOWN = "5m"  # the CRD's minimum
# The pool keys of status.health, per pattern.
SUMMARY_KEYS = {"Burst": "burst", "NoExchange": "noExchange", "FollowUps": "followUps",
                "ColdOutreach": "coldOutreach", "OffHours": "offHours"}
# A zone without daylight saving, half an hour off UTC: quiet hours are read in the pool's local time.
OFF_HOURS_ZONE = "Asia/Kolkata"
# How far above the true count an increase() over a young series may read.
EXTRAPOLATION = 1.15


def clock(hours_from_now: float, zone: str = "UTC") -> str:
    """The wall time in ``zone`` that many hours from now, as quiet hours are written."""
    return (dt.datetime.now(tz=ZoneInfo(zone)) + dt.timedelta(hours=hours_from_now)).strftime("%H:%M")


def quiet_elsewhere() -> dict[str, Any]:
    """Quiet hours (UTC) that do not hold now, so that off-hours does not join another pattern."""
    return {"quiet": {"start": clock(3), "end": clock(4)}}


def moment(text: str) -> float:
    parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed.timestamp()


def line_status(box: Sandbox, server: str, line: str) -> dict[str, Any]:
    lines = box.status("messagingservers", server).get("lines") or []
    return dict(next((item for item in lines if item.get("id") == line), {}))


def last_flag(box: Sandbox, server: str, line: str) -> dict[str, Any]:
    return dict(line_status(box, server, line).get("lastFlag") or {})


def risks(box: Sandbox, server: str, line: str) -> list[dict[str, Any]]:
    return list(line_status(box, server, line).get("flagRisks") or [])


def line_events(box: Sandbox, reason: str, server: str, line: str) -> list[dict[str, Any]]:
    return [e for e in box.events(reason, involving=server) if f"line {line} " in str(e.get("message"))]


def polls(operator: OperatorProcess, pool: str) -> float:
    """Decision passes the operator made for ``pool`` (from its own metrics)."""
    for row in operator.metrics().splitlines():
        if row.startswith("linepool_reconcile_duration_seconds_count") and f'pool="{pool}"' in row:
            return float(row.rsplit(" ", 1)[1])
    return 0.0


def wait_polls(operator: OperatorProcess, pool: str, n: int) -> None:
    start = polls(operator, pool)
    wait_for(lambda: polls(operator, pool) >= start + n, timeout=3 * n + 10, what=f"{n} polls of {pool}")


def in_rotation(box: Sandbox, pool: str) -> list[str]:
    return sorted(box.status("linepools", pool).get("assignableLines") or [])


def seasoned(prometheus: PrometheusProcess, servers: list[str], *, seconds: int = 20) -> None:
    """Wait until every line of these servers has ``seconds`` of samples in Prometheus.

    ``increase()`` over a series only seconds old extrapolates by up to a scrape interval over its
    age: 40 sends read 53 on a series 3 s old. After 20 s the figures are within 5% of the truth.
    """
    selector = "|".join(servers)
    lines = sum(len(lines) for name, lines in FLEET.items() if name in servers)
    wait_for(lambda: len(prometheus.query(
        f'count_over_time(imessage_messages_sent_total{{server=~"{selector}"}}[5m]) >= {seconds}')) == lines,
        timeout=seconds + 20, what=f"{seconds} s of history for {servers}")


def rotation_is(box: Sandbox, pool: str, lines: list[str]) -> Callable[[], bool]:
    """A check: the pool's ``status.assignableLines`` are exactly ``lines``."""
    expected = sorted(lines)
    return lambda: in_rotation(box, pool) == expected


def health_pool(box: Sandbox, name: str, *, timezone: str = "UTC", **health: Any) -> None:
    health.setdefault("offHours", quiet_elsewhere())
    box.pool(name, scaling={"mode": "Off"}, quotas={"timezone": timezone}, health={"cooldown": COOLDOWN, **health})


# --- the five patterns ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """One pattern on one line of its own pool's server, next to a control line."""

    pattern: str
    pool: str
    risky: str
    control: str
    # The spec.health of the pool (cooldown and quiet hours are added); a callable when it depends on now.
    health: Callable[[], dict[str, Any]]
    # What the fleet does: (fleet, server, risky, control).
    drive: Callable[[Fleet, str, str, str], None]
    # The risk's message, with the figure as group "n".
    message: Callable[[dict[str, Any]], str]
    figure: float       # what was sent; the risk's figure reads this, or a little more
    threshold: float
    timezone: str = "UTC"

    @property
    def server(self) -> str:
        return f"{self.pool}-0"


def _burst(fleet: Fleet, server: str, risky: str, control: str) -> None:
    # 40 in one go against a limit of 30 a minute; answered, so it is only a burst.
    fleet.send(server, risky, 40)
    fleet.receive(server, risky, 40)
    fleet.send(server, control, 10)
    fleet.receive(server, control, 10)


def _no_exchange(fleet: Fleet, server: str, risky: str, control: str) -> None:
    fleet.send(server, risky, 20)
    fleet.receive(server, risky, 2)         # 10%, the floor is 50%
    fleet.send(server, control, 20)
    fleet.receive(server, control, 15)      # 75%


def _follow_ups(fleet: Fleet, server: str, risky: str, control: str) -> None:
    # Seven messages in a row to someone who never answers: the 4th to the 7th are over a cap of 2.
    fleet.send(server, risky, 7)
    for streak in range(1, 8):
        fleet.unanswered(server, risky, streak=streak)
    # The control stops after two follow-ups: at the cap, not over it.
    fleet.send(server, control, 3)
    for streak in range(1, 4):
        fleet.unanswered(server, control, streak=streak)


def _cold_outreach(fleet: Fleet, server: str, risky: str, control: str) -> None:
    fleet.send(server, risky, 6)
    fleet.new_conversations(server, risky, 6, initiator="line")
    # More new conversations, but the recipients wrote first (inbound-first).
    fleet.new_conversations(server, control, 8, initiator="recipient")
    fleet.send(server, control, 8)
    fleet.receive(server, control, 8)


def _off_hours(fleet: Fleet, server: str, risky: str, control: str) -> None:
    fleet.send(server, risky, 12)
    fleet.receive(server, risky, 2)         # 10 more out than in, the limit is 5
    fleet.send(server, control, 12)
    fleet.receive(server, control, 12)      # an exchange at night is fine


NUMBER = r"(?P<n>[0-9]+(?:\.[0-9])?)"
SCENARIOS = [
    Scenario(pattern="Burst", pool="lh-burst", risky="+16285550101", control="+16285550102",
             health=lambda: {"burst": {"messages": 30, "within": "1m"}}, drive=_burst,
             message=lambda spec: rf"{NUMBER} messages in 1m, limit 30", figure=40, threshold=30),
    Scenario(pattern="NoExchange", pool="lh-noex", risky="+16285550111", control="+16285550112",
             health=lambda: {"noExchange": {"window": "1h", "minSent": 10, "minReplyRatio": 0.5}},
             drive=_no_exchange,
             message=lambda spec: r"[0-9.]+ sent, [0-9.]+ replies \(10%\) in 1h, need 50%",
             figure=0.1, threshold=0.5),
    Scenario(pattern="FollowUps", pool="lh-follow", risky="+16285550121", control="+16285550122",
             health=lambda: {"followUps": {"max": 2}}, drive=_follow_ups,
             message=lambda spec: rf"{NUMBER} sends after 3 unanswered in a row in 5m, limit 2 follow-ups",
             figure=4, threshold=0),
    Scenario(pattern="ColdOutreach", pool="lh-cold", risky="+16285550131", control="+16285550132",
             health=lambda: {"coldOutreach": {"window": "1h", "maxLineInitiated": 3}}, drive=_cold_outreach,
             message=lambda spec: rf"{NUMBER} conversations started by the line in 1h, limit 3",
             figure=6, threshold=3),
    # Now is inside the quiet hours of the pool's zone: they began an hour ago and end in an hour.
    Scenario(pattern="OffHours", pool="lh-night", risky="+16285550141", control="+16285550142",
             health=lambda: {"offHours": {"quiet": {"start": clock(-1, OFF_HOURS_ZONE),
                                                    "end": clock(1, OFF_HOURS_ZONE)},
                                          "maxNetOutbound": 5}},
             drive=_off_hours,
             message=lambda spec: rf"{NUMBER} more sent than received since "
                                  rf"{re.escape(spec['offHours']['quiet']['start'])}, limit 5",
             figure=10, threshold=5, timezone=OFF_HOURS_ZONE),
]
BURST = SCENARIOS[0]
# A relay without the `initiator` label and without imessage_unanswered_sends_total.
LEGACY_POOL, LEGACY_SERVER = "lh-legacy", "lh-legacy-0"
LEGACY_RISKY, LEGACY_CONTROL = "+16285550151", "+16285550152"
# The forensics tests: (pool, server, the line that is flagged, its control).
FORENSICS = ("lh-fx", "lh-fx-0", "+16285550201", "+16285550202")
FORENSICS_DOWN = ("lh-fx-down", "lh-fx-down-0", "+16285550301", "+16285550302")
# Every relay of the module, with its lines.
FLEET: dict[str, list[str]] = {
    **{scenario.server: [scenario.risky, scenario.control] for scenario in SCENARIOS},
    LEGACY_SERVER: [LEGACY_RISKY, LEGACY_CONTROL],
    **{server: [line, control] for _, server, line, control in (FORENSICS, FORENSICS_DOWN)},
}


@pytest.fixture(scope="module", autouse=True)
def relays(fleet: Fleet, prometheus: PrometheusProcess) -> None:
    """Every relay of the module exports from the start, so that its series have history by the time
    a test makes traffic (see ``seasoned``)."""
    for name, lines in FLEET.items():
        older = name == LEGACY_SERVER
        fleet.add_server(name, lines, initiator_label=not older, unanswered_metric=not older)


@dataclass
class Patterns:
    box: Sandbox
    operator: OperatorProcess
    specs: dict[str, dict[str, Any]]   # spec.health by pool, as applied
    traffic_at: float = 0.0            # time.time() when the fleet made its traffic


@pytest.fixture(scope="module")
def patterns(kube: KubeApiServer, operator_rbac: OperatorRbac, fleet: Fleet, prometheus: PrometheusProcess,
             tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Patterns]:
    workdir = tmp_path_factory.mktemp("health-patterns")
    with open_sandbox(kube=kube, rbac=operator_rbac, fleet=fleet, prometheus=prometheus, workdir=workdir) as box:
        specs: dict[str, dict[str, Any]] = {}
        for scenario in SCENARIOS:
            specs[scenario.pool] = scenario.health()
            health_pool(box, scenario.pool, timezone=scenario.timezone, **specs[scenario.pool])
            box.server(scenario.server, scenario.pool, [scenario.risky, scenario.control])
        # Thresholds at their lowest: only "not measured" keeps these lines out of risk.
        health_pool(box, LEGACY_POOL, coldOutreach={"window": "1h", "maxLineInitiated": 0}, followUps={"max": 1})
        box.server(LEGACY_SERVER, LEGACY_POOL, [LEGACY_RISKY, LEGACY_CONTROL])
        operator = box.start_operator()
        run = Patterns(box=box, operator=operator, specs=specs)
        for scenario in SCENARIOS:
            wait_for(rotation_is(box, scenario.pool, [scenario.risky, scenario.control]),
                     timeout=30, what=f"both lines of {scenario.pool} in rotation")
        wait_for(rotation_is(box, LEGACY_POOL, [LEGACY_RISKY, LEGACY_CONTROL]), what="both legacy lines in rotation")

        seasoned(prometheus, [scenario.server for scenario in SCENARIOS] + [LEGACY_SERVER])
        run.traffic_at = time.time()
        for scenario in SCENARIOS:
            scenario.drive(fleet, scenario.server, scenario.risky, scenario.control)
        fleet.send(LEGACY_SERVER, LEGACY_RISKY, 4)
        fleet.new_conversations(LEGACY_SERVER, LEGACY_RISKY, 5, initiator="line")
        fleet.unanswered(LEGACY_SERVER, LEGACY_RISKY, streak=6, n=4)
        try:
            yield run
        finally:
            if request.session.testsfailed:
                print(box.operator_logs()[-12000:])


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.pattern)
def test_each_pattern_takes_its_line_out_of_rotation_and_spares_the_control(
        patterns: Patterns, scenario: Scenario) -> None:
    box, server, risky, control = patterns.box, scenario.server, scenario.risky, scenario.control

    (risk,) = wait_for(lambda: risks(box, server, risky), timeout=30, what=f"a flag risk on {risky}")

    # The risk says which pattern, the figure against the limit, and since when.
    assert risk["pattern"] == scenario.pattern
    assert risk["threshold"] == scenario.threshold
    if scenario.pattern == "NoExchange":
        assert risk["figure"] == pytest.approx(scenario.figure, abs=0.005)   # a reply ratio
    else:
        assert scenario.figure <= risk["figure"] <= scenario.figure * EXTRAPOLATION
    shown = re.fullmatch(scenario.message(patterns.specs[scenario.pool]), risk["message"])
    assert shown, risk["message"]
    if "n" in shown.groupdict():
        assert float(shown["n"]) == pytest.approx(risk["figure"], abs=0.1)   # shown to one decimal
    assert patterns.traffic_at - 1 <= moment(risk["since"]) <= moment(risk["lastSeen"])

    # The line takes no new users; the control line next to it is untouched.
    assert line_status(box, server, risky)["assignable"] is False
    assert "flagRisks" not in line_status(box, server, control)
    assert line_status(box, server, control)["assignable"] is True
    wait_for(rotation_is(box, scenario.pool, [control]), what=f"{risky} out of rotation")
    assert box.status("messagingservers", server)["lineSummary"]["flagRisk"] == 1
    expected = {"atRisk": 1, **{key: int(key == SUMMARY_KEYS[scenario.pattern]) for key in SUMMARY_KEYS.values()},
                "unmeasured": []}
    wait_for(lambda: box.status("linepools", scenario.pool).get("health") == expected,
             what=f"status.health of {scenario.pool} to count the line; expected {expected}")

    # One warning for the episode, naming the pattern and what it did; none for the control.
    (event,) = wait_for(lambda: line_events(box, "LineAtFlagRisk", server, risky), what="a LineAtFlagRisk event")
    assert event["type"] == "Warning"
    assert event["message"].startswith(f"line {risky} is at risk of an Apple flag ({scenario.pattern}): ")
    assert "takes no new users" in event["message"]
    assert re.search(scenario.message(patterns.specs[scenario.pool]), event["message"]), event["message"]
    wait_polls(patterns.operator, scenario.pool, 3)
    assert len(line_events(box, "LineAtFlagRisk", server, risky)) == 1
    assert not line_events(box, "LineAtFlagRisk", server, control)
    (again,) = risks(box, server, risky)
    assert again["since"] == risk["since"]
    assert in_rotation(box, scenario.pool) == [control]


def test_an_older_relay_leaves_cold_outreach_and_follow_ups_unmeasured(patterns: Patterns) -> None:
    box = patterns.box
    wait_for(lambda: box.status("linepools", LEGACY_POOL).get("health", {}).get("unmeasured")
             == ["ColdOutreach", "FollowUps"], what="the unmeasured patterns of the legacy pool")
    # The operator has read the traffic: five conversations started by the line, four sends
    # far past the cap, with both limits at their lowest...
    wait_for(lambda: line_status(box, LEGACY_SERVER, LEGACY_RISKY).get("newConversationsInWindow", 0) >= 5
             and line_status(box, LEGACY_SERVER, LEGACY_RISKY).get("messagesInWindow", 0) >= 4,
             what="the legacy line's traffic in status")
    wait_polls(patterns.operator, LEGACY_POOL, 3)
    # ...and does not call it a risk it cannot measure.
    for line in (LEGACY_RISKY, LEGACY_CONTROL):
        assert "flagRisks" not in line_status(box, LEGACY_SERVER, line)
    assert box.status("messagingservers", LEGACY_SERVER)["lineSummary"]["flagRisk"] == 0
    health = box.status("linepools", LEGACY_POOL)["health"]
    assert health == {"atRisk": 0, **dict.fromkeys(SUMMARY_KEYS.values(), 0),
                      "unmeasured": ["ColdOutreach", "FollowUps"]}
    assert in_rotation(box, LEGACY_POOL) == sorted([LEGACY_RISKY, LEGACY_CONTROL])
    assert not box.events("LineAtFlagRisk", involving=LEGACY_SERVER)


def test_a_risk_outlasts_its_pattern(patterns: Patterns) -> None:
    """The burst leaves its 1m window about a minute after it was sent: from then on ``lastSeen``
    stays where it is, and the risk with it, for the cooldown (5m; its end is unit-tested)."""
    box, server, risky, control = patterns.box, BURST.server, BURST.risky, BURST.control
    (first,) = wait_for(lambda: risks(box, server, risky), timeout=30, what="the burst risk")

    def last_seen() -> str | None:
        found = risks(box, server, risky)
        return str(found[0]["lastSeen"]) if found else None

    def stopped() -> bool:
        before = last_seen()
        time.sleep(3)  # three polls
        return before is not None and before == last_seen()

    wait_for(stopped, timeout=max(30.0, patterns.traffic_at + 110 - time.time()), interval=0,
             what="lastSeen to stop once the burst is out of its window")
    (risk,) = risks(box, server, risky)
    # Seen while the burst was inside the minute, and not after.
    assert patterns.traffic_at + 45 <= moment(risk["lastSeen"]) <= patterns.traffic_at + 75, risk
    assert risk["since"] == first["since"]

    start = polls(patterns.operator, BURST.pool)
    assert holds(lambda: risks(box, server, risky) == [risk] and in_rotation(box, BURST.pool) == [control],
                 seconds=5), "the risk did not hold through the cooldown"
    assert polls(patterns.operator, BURST.pool) >= start + 3
    assert time.time() < moment(risk["lastSeen"]) + 300   # still inside the cooldown
    assert box.status("linepools", BURST.pool)["health"]["burst"] == 1
    assert not box.events("FlagRiskCleared", involving=server)
    assert len(line_events(box, "LineAtFlagRisk", server, risky)) == 1


# --- flag forensics ------------------------------------------------------------------------------


def check_report(last: dict[str, Any], *, flagged_at: float) -> None:
    """The lastFlag of a line that sent 180 messages at once, 45 of them answered, then was flagged."""
    # Dated at the flag: Prometheus's history is read at a 15 s resolution.
    assert flagged_at - 1 <= moment(last["time"]) <= flagged_at + 16, (last["time"], flagged_at)
    assert last["cause"] == "Burst"
    said = re.fullmatch(rf"burst: {NUMBER} messages in 10m before the flag \(limit 60\); pace sends", last["message"])
    assert said, last["message"]
    assert 180 <= float(said["n"]) <= 180 * EXTRAPOLATION
    assert 180 <= last["peakPerMinute"] <= 180 * EXTRAPOLATION
    assert 180 <= last["sent"] <= 180 * EXTRAPOLATION
    assert 45 <= last["replies"] <= 45 * EXTRAPOLATION
    assert [item["pattern"] for item in last["evidence"]] == ["Burst"]
    assert last["evidence"][0]["threshold"] == 60


def burst_then_flag(box: Sandbox, server: str, line: str) -> float:
    """180 messages at once (a quarter answered), seen by Prometheus; then the flag. The flag's time."""
    seasoned(box.prometheus, [server])
    box.fleet.send(server, line, 180)
    box.fleet.receive(server, line, 45)
    wait_for(lambda: box.prometheus.query(f'imessage_messages_sent_total{{server="{server}",line="{line}"}} == 180'),
             what="the burst in Prometheus")
    flagged_at = time.time()
    box.fleet.set_line_state(server, line, "flagged")
    return flagged_at


def test_a_flag_is_explained_once_and_not_again_after_a_restart(sandbox: Sandbox) -> None:
    pool, server, line, control = FORENSICS
    health_pool(sandbox, pool)
    sandbox.server(server, pool, [line, control])
    operator = sandbox.start_operator()
    wait_for(rotation_is(sandbox, pool, [line, control]), timeout=30, what="both lines in rotation")

    flagged_at = burst_then_flag(sandbox, server, line)
    last = wait_for(lambda: last_flag(sandbox, server, line), timeout=30, what="lastFlag")

    check_report(last, flagged_at=flagged_at)
    assert line_status(sandbox, server, line)["state"] == "Flagged"
    assert "lastFlag" not in line_status(sandbox, server, control)
    (event,) = wait_for(lambda: line_events(sandbox, "LineFlagged", server, line), what="a LineFlagged event")
    assert event["type"] == "Warning"
    assert event["message"] == f"line {line} was flagged at {last['time']}: {last['message']}"
    wait_polls(operator, pool, 3)
    assert len(line_events(sandbox, "LineFlagged", server, line)) == 1
    assert line_status(sandbox, server, line)["lastFlag"] == last

    # A restarted operator finds the flag already reported.
    operator.stop()
    operator = sandbox.start_operator()
    wait_polls(operator, pool, 5)
    assert len(line_events(sandbox, "LineFlagged", server, line)) == 1
    assert line_status(sandbox, server, line)["lastFlag"] == last

    # Back to active: one recovery event; the last flag stays on record.
    sandbox.fleet.set_line_state(server, line, "active")
    wait_for(lambda: line_events(sandbox, "LineRecovered", server, line), what="a LineRecovered event")
    assert line_status(sandbox, server, line)["state"] == "Active"
    wait_polls(operator, pool, 3)
    (recovered,) = line_events(sandbox, "LineRecovered", server, line)
    assert recovered["type"] == "Normal"
    assert line_status(sandbox, server, line)["lastFlag"] == last
    assert len(line_events(sandbox, "LineFlagged", server, line)) == 1


def test_a_flag_while_the_operator_was_down_is_dated_at_the_flag(sandbox: Sandbox) -> None:
    pool, server, line, control = FORENSICS_DOWN
    health_pool(sandbox, pool)
    sandbox.server(server, pool, [line, control])
    operator = sandbox.start_operator()
    wait_for(rotation_is(sandbox, pool, [line, control]), timeout=30, what="both lines in rotation")
    operator.stop()

    flagged_at = burst_then_flag(sandbox, server, line)
    wait_for(lambda: sandbox.prometheus.query(
        f'imessage_line_state{{server="{server}",line="{line}",state="flagged"}} == 1'), what="the flag in Prometheus")
    # Down well past the resolution at which the flag is dated.
    time.sleep(max(0.0, flagged_at + 25 - time.time()))
    restarted_at = time.time()
    sandbox.start_operator()
    last = wait_for(lambda: last_flag(sandbox, server, line), timeout=30, what="lastFlag")

    check_report(last, flagged_at=flagged_at)
    assert moment(last["time"]) < restarted_at - 5
    assert moment(last["reportedTime"]) >= restarted_at - 1
    (event,) = wait_for(lambda: line_events(sandbox, "LineFlagged", server, line), what="a LineFlagged event")
    assert f"was flagged at {last['time']}: " in event["message"]
