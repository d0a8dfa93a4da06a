"""Properties of line health over any sequence of polls, with a fake clock.

- each pattern has one ``started`` per episode, and every ``started`` is followed by exactly one
  ``cleared`` before the next ``started`` of that pattern; status shows a risk exactly while its
  episode is open, with ``since`` from the poll that started it;
- a line with every figure at zero never has a risk;
- with fresh metrics, no risk outlives ``lastSeen + cooldown``, and ``lastSeen`` is the last poll
  that saw the pattern;
- the quiet period contains the moment it is asked for, in local wall time, in any zone.
"""

from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from linepool.api.conditions import format_time, parse_time
from linepool.api.spec import BurstRule, ColdOutreachRule, FollowUpRule, Health, NoExchangeRule, OffHoursRule
from linepool.api.types import HealthPattern
from linepool.logic.health import HealthSample, evaluate_line, findings, quiet_period

START = datetime(2026, 3, 1, tzinfo=UTC)
COUNTS = [0, 1, 2, 5, 6, 10, 11, 19, 20, 21, 59, 60, 61, 150]


@st.composite
def specs(draw: st.DrawFn) -> Health:
    # Within the CRD's bounds.
    return Health(
        cooldown=timedelta(minutes=draw(st.sampled_from([5, 20, 60, 180]))),
        burst=BurstRule(messages=draw(st.sampled_from([1, 20, 60])),
                        within=timedelta(minutes=draw(st.sampled_from([1, 10, 60])))),
        no_exchange=NoExchangeRule(min_sent=draw(st.sampled_from([1, 20])),
                                   min_reply_ratio=draw(st.sampled_from([0.0, 0.2, 1.0]))),
        follow_ups=FollowUpRule(max=draw(st.integers(1, 3))),
        cold_outreach=ColdOutreachRule(max_line_initiated=draw(st.sampled_from([0, 10]))),
        off_hours=OffHoursRule(max_net_outbound=draw(st.sampled_from([0, 5]))),
    )


def figure(absent: bool) -> st.SearchStrategy[float | None]:
    counts = st.sampled_from(COUNTS)
    return st.one_of(st.none(), counts) if absent else counts


def samples(*, absent: bool = True) -> st.SearchStrategy[HealthSample]:
    return st.builds(HealthSample, burst_sent=figure(absent), exchange_sent=figure(absent),
                     exchange_received=figure(absent), over_cap_follow_ups=figure(absent),
                     line_initiated=figure(absent), quiet_sent=figure(absent), quiet_received=figure(absent))


# A step between polls, from a busy poll loop to the operator being down for hours.
# Steps that add up to the cooldowns exercise the moment a risk ends.
STEPS = st.sampled_from([timedelta(seconds=30), timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=7),
                         timedelta(minutes=20), timedelta(minutes=45), timedelta(hours=1), timedelta(hours=5)])
Poll = tuple[timedelta, HealthSample | None, bool, bool]   # step, sample (None: no fresh metrics), quiet, enabled


def polls(*, absent: bool = True, stale: bool = True, toggles: bool = True) -> st.SearchStrategy[list[Poll]]:
    sample = st.one_of(st.none(), samples(absent=absent)) if stale else samples(absent=absent)
    enabled = st.sampled_from([True, True, True, False]) if toggles else st.just(True)
    return st.lists(st.tuples(STEPS, sample, st.booleans(), enabled), min_size=1, max_size=40)


@settings(max_examples=300, deadline=None)
@given(specs(), polls())
def test_one_started_and_one_cleared_per_episode(spec: Health, sequence: list[Poll]) -> None:
    now, risks = START, list[dict[str, Any]]()
    opened: dict[HealthPattern, datetime] = {}    # open episodes and the poll that started each
    for step, sample, quiet, enabled in sequence:
        now += step
        pass_spec = spec if enabled else Health(enabled=False)
        result = evaluate_line(sample=sample, spec=pass_spec, previous=risks, now=now, in_quiet_period=quiet)
        assert len(set(result.cleared)) == len(result.cleared)
        assert len({f.pattern for f in result.started}) == len(result.started)
        # Cleared episodes are reported before the ones that start in the same poll.
        for pattern in result.cleared:
            assert pattern in opened, f"{pattern} cleared without an open episode"
            del opened[pattern]
        for finding in result.started:
            assert finding.pattern not in opened, f"second start of {finding.pattern} in one episode"
            opened[finding.pattern] = now
        risks = result.risks
        assert {HealthPattern(r["pattern"]) for r in risks} == set(opened)
        for risk in risks:
            assert parse_time(risk["since"]) == opened[HealthPattern(risk["pattern"])].replace(microsecond=0)
        assert [r["pattern"] for r in risks] == [p.value for p in HealthPattern if p in opened]


@settings(max_examples=200, deadline=None)
@given(specs(), polls(stale=False, toggles=False))
def test_a_line_with_every_figure_at_zero_never_has_a_risk(spec: Health, sequence: list[Poll]) -> None:
    zero = HealthSample(burst_sent=0, exchange_sent=0, exchange_received=0, over_cap_follow_ups=0,
                        line_initiated=0, quiet_sent=0, quiet_received=0)
    now, risks = START, list[dict[str, Any]]()
    for step, _, quiet, _ in sequence:
        now += step
        result = evaluate_line(sample=zero, spec=spec, previous=risks, now=now, in_quiet_period=quiet)
        assert result.risks == [] and result.started == [] and result.unmeasured == set()
        risks = result.risks


@settings(max_examples=300, deadline=None)
@given(specs(), polls(absent=False, stale=False, toggles=False))
def test_risks_never_outlive_last_seen_plus_cooldown(spec: Health, sequence: list[Poll]) -> None:
    now, risks = START, list[dict[str, Any]]()
    last_seen: dict[HealthPattern, datetime] = {}
    for step, sample, quiet, _ in sequence:
        assert sample is not None
        now += step
        found, _ = findings(sample=sample, spec=spec, in_quiet_period=quiet)
        for finding in found:
            last_seen[finding.pattern] = now
        result = evaluate_line(sample=sample, spec=spec, previous=risks, now=now, in_quiet_period=quiet)
        risks = result.risks
        at_risk = {HealthPattern(r["pattern"]): r for r in risks}
        for pattern, seen_at in last_seen.items():
            # At risk exactly from a sighting until cooldown after the last one.
            assert (pattern in at_risk) is (now < seen_at.replace(microsecond=0) + spec.cooldown)
        for pattern, risk in at_risk.items():
            assert risk["lastSeen"] == format_time(last_seen[pattern])


ZONES = ["UTC", "America/New_York", "Europe/Berlin", "Australia/Sydney", "Asia/Kolkata", "America/Los_Angeles"]
# Hours away from the clock changes of these zones (01:00-03:59 local), where wall time is unambiguous.
BOUNDS = st.builds(time, st.sampled_from([0, 4, 5, 7, 8, 12, 18, 21, 22, 23]), st.sampled_from([0, 15, 30]))


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(ZONES), BOUNDS, BOUNDS, st.integers(0, 2 * 365 * 24 * 60))
def test_the_quiet_period_is_the_local_wall_time_range(zone_name: str, start: time, end: time, minute: int) -> None:
    zone = ZoneInfo(zone_name)
    now = START + timedelta(minutes=minute)
    rule = OffHoursRule(quiet_start=start, quiet_end=end)
    got = quiet_period(now=now, rule=rule, timezone=zone_name)
    wall = now.astimezone(zone).time()
    inside = (start <= wall < end) if start < end else (start != end and (wall >= start or wall < end))
    assert (got is not None) is inside
    if got is not None:
        begin, finish = got
        assert begin <= now < finish
        assert begin.astimezone(zone).time() == start
        assert finish.astimezone(zone).time() == end
        assert timedelta(0) < finish - begin <= timedelta(hours=25)
