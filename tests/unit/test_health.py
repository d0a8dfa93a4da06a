"""Line health with a fake clock: thresholds, the quiet period, unmeasured patterns, cooldown, forensics."""

from dataclasses import replace
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest

from linepool.api.spec import BurstRule, ColdOutreachRule, FollowUpRule, Health, NoExchangeRule, OffHoursRule
from linepool.api.types import HealthPattern
from linepool.logic.health import (
    FlagFigures,
    HealthSample,
    LineHealth,
    evaluate_line,
    explain_flag,
    findings,
    quiet_period,
)

T0 = datetime(2026, 5, 4, 14, 0, tzinfo=UTC)
SPEC = Health()  # the issue's defaults: burst 60/10m, noExchange 20 sent & 20%, followUps 2, cold 10, quiet 5
# Every figure measured and at zero: a quiet, healthy line.
ZERO = HealthSample(burst_sent=0, exchange_sent=0, exchange_received=0, over_cap_follow_ups=0, line_initiated=0,
                    quiet_sent=0, quiet_received=0)
BURST = ZERO._replace(burst_sent=142)


def seen(sample: HealthSample, *, spec: Health = SPEC, quiet: bool = True) -> dict[HealthPattern, Any]:
    found, _ = findings(sample=sample, spec=spec, in_quiet_period=quiet)
    return {f.pattern: f for f in found}


# --- thresholds: at, just below and just above ---------------------------------------------------


@pytest.mark.parametrize(("sent", "risk"), [(59, False), (59.9, False), (60, True), (61, True), (0, False)])
def test_burst_counts_the_limit_itself(sent: float, risk: bool) -> None:
    # "100 or more in a tight window": reaching the limit is already a burst.
    assert (HealthPattern.BURST in seen(ZERO._replace(burst_sent=sent))) is risk


@pytest.mark.parametrize(("sent", "received", "risk"), [
    (19, 0, False),     # too few sends to judge
    (20, 0, True),      # at minSent, no reply
    (20, 3, True),      # 15% < 20%
    (20, 4, False),     # exactly 20%: enough replies
    (20, 5, False),
    (21, 4, True),      # 19%
    (100, 19.9, True),
    (100, 20, False),
    (0, 0, False),
])
def test_no_exchange_needs_min_sent_and_a_reply_ratio_below_the_floor(sent: float, received: float,
                                                                       risk: bool) -> None:
    sample = ZERO._replace(exchange_sent=sent, exchange_received=received)
    assert (HealthPattern.NO_EXCHANGE in seen(sample)) is risk


@pytest.mark.parametrize(("over_cap", "risk"), [(0, False), (0.4, True), (1, True), (7, True)])
def test_follow_ups_any_send_over_the_cap_is_a_risk(over_cap: float, risk: bool) -> None:
    assert (HealthPattern.FOLLOW_UPS in seen(ZERO._replace(over_cap_follow_ups=over_cap))) is risk


@pytest.mark.parametrize(("initiated", "limit", "risk"), [(9, 10, False), (10, 10, False), (11, 10, True),
                                                          (0, 0, False), (1, 0, True)])
def test_cold_outreach_counts_only_beyond_the_limit(initiated: float, limit: int, risk: bool) -> None:
    spec = replace(SPEC, cold_outreach=ColdOutreachRule(max_line_initiated=limit))
    assert (HealthPattern.COLD_OUTREACH in seen(ZERO._replace(line_initiated=initiated), spec=spec)) is risk


@pytest.mark.parametrize(("sent", "received", "risk"), [(4, 0, False), (5, 0, False), (6, 0, True),
                                                        (16, 10, True), (15, 10, False), (3, 9, False)])
def test_off_hours_counts_net_outbound_beyond_the_limit(sent: float, received: float, risk: bool) -> None:
    sample = ZERO._replace(quiet_sent=sent, quiet_received=received)
    assert (HealthPattern.OFF_HOURS in seen(sample)) is risk


def test_off_hours_is_not_judged_outside_the_quiet_period() -> None:
    found, unmeasured = findings(sample=ZERO._replace(quiet_sent=500, quiet_received=0), spec=SPEC,
                                 in_quiet_period=False)
    assert found == []
    assert unmeasured == set()


def test_thresholds_come_from_the_spec() -> None:
    spec = Health(burst=BurstRule(messages=200), no_exchange=NoExchangeRule(min_sent=50, min_reply_ratio=0.5),
                  follow_ups=FollowUpRule(max=3), cold_outreach=ColdOutreachRule(max_line_initiated=30),
                  off_hours=OffHoursRule(max_net_outbound=50))
    busy = HealthSample(burst_sent=150, exchange_sent=40, exchange_received=0, over_cap_follow_ups=0,
                        line_initiated=25, quiet_sent=40, quiet_received=0)
    assert seen(busy, spec=spec) == {}
    assert set(seen(busy)) == {HealthPattern.BURST, HealthPattern.NO_EXCHANGE, HealthPattern.COLD_OUTREACH,
                               HealthPattern.OFF_HOURS}


def test_each_finding_shows_its_figure_against_its_threshold() -> None:
    sample = HealthSample(burst_sent=142, exchange_sent=25, exchange_received=2, over_cap_follow_ups=3,
                          line_initiated=14, quiet_sent=12, quiet_received=3)
    found = seen(sample)
    assert [(f.pattern, f.figure, f.threshold, f.message) for f in found.values()] == [
        (HealthPattern.BURST, 142, 60, "142 messages in 10m, limit 60"),
        (HealthPattern.NO_EXCHANGE, 0.08, 0.2, "25 sent, 2 replies (8%) in 24h, need 20%"),
        (HealthPattern.FOLLOW_UPS, 3, 0, "3 sends after 3 unanswered in a row in 1h, limit 2 follow-ups"),
        (HealthPattern.COLD_OUTREACH, 14, 10, "14 conversations started by the line in 24h, limit 10"),
        (HealthPattern.OFF_HOURS, 9, 5, "9 more sent than received since 22:00, limit 5"),
    ]


def test_follow_up_message_follows_the_cap() -> None:
    spec = replace(SPEC, follow_ups=FollowUpRule(max=1))
    assert seen(ZERO._replace(over_cap_follow_ups=1), spec=spec)[HealthPattern.FOLLOW_UPS].message == (
        "1 send after 2 unanswered in a row in 1h, limit 1 follow-up")


# --- unmeasured is not healthy --------------------------------------------------------------------


@pytest.mark.parametrize(("absent", "pattern"), [
    ({"burst_sent"}, HealthPattern.BURST),
    ({"exchange_sent"}, HealthPattern.NO_EXCHANGE),
    ({"exchange_received"}, HealthPattern.NO_EXCHANGE),
    ({"over_cap_follow_ups"}, HealthPattern.FOLLOW_UPS),
    ({"line_initiated"}, HealthPattern.COLD_OUTREACH),
    ({"quiet_sent"}, HealthPattern.OFF_HOURS),
    ({"quiet_received"}, HealthPattern.OFF_HOURS),
])
def test_an_absent_figure_leaves_its_pattern_unmeasured(absent: set[str], pattern: HealthPattern) -> None:
    # Everything else is far over its threshold, so only the absent figure hides its pattern.
    loud = HealthSample(burst_sent=500, exchange_sent=500, exchange_received=0, over_cap_follow_ups=9,
                        line_initiated=99, quiet_sent=99, quiet_received=0)
    sample = loud._replace(**dict.fromkeys(absent))
    found, unmeasured = findings(sample=sample, spec=SPEC, in_quiet_period=True)
    assert unmeasured == {pattern}
    assert {f.pattern for f in found} == set(HealthPattern) - {pattern}


def test_zero_is_measured_and_healthy() -> None:
    assert findings(sample=ZERO, spec=SPEC, in_quiet_period=True) == ([], set())


def test_a_relay_without_the_new_metrics_is_reported_unmeasured() -> None:
    old_relay = HealthSample(burst_sent=3, exchange_sent=3, exchange_received=2)
    result = evaluate_line(sample=old_relay, spec=SPEC, previous=[], now=T0, in_quiet_period=False)
    assert result.unmeasured == {HealthPattern.FOLLOW_UPS, HealthPattern.COLD_OUTREACH}
    assert result.risks == []


def test_an_unmeasured_pattern_keeps_its_risk_past_the_cooldown() -> None:
    first = poll(ZERO._replace(over_cap_follow_ups=2), at=T0)
    later = poll(ZERO._replace(over_cap_follow_ups=None), at=T0 + timedelta(hours=5), previous=first.risks)
    assert later.risks == first.risks
    assert later.cleared == []
    assert later.unmeasured == {HealthPattern.FOLLOW_UPS}
    # Measured again and gone: the episode ends.
    back = poll(ZERO, at=T0 + timedelta(hours=5, minutes=1), previous=later.risks)
    assert back.risks == []
    assert back.cleared == [HealthPattern.FOLLOW_UPS]


# --- the quiet period -----------------------------------------------------------------------------


def utc(year: int, month: int, day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


NIGHT = OffHoursRule()  # 22:00 to 08:00


@pytest.mark.parametrize(("now", "period"), [
    # Berlin in winter is UTC+1: 22:00 local is 21:00 UTC.
    (utc(2026, 1, 14, 20, 59, 59), None),
    (utc(2026, 1, 14, 21, 0), (utc(2026, 1, 14, 21, 0), utc(2026, 1, 15, 7, 0))),
    (utc(2026, 1, 14, 23, 30), (utc(2026, 1, 14, 21, 0), utc(2026, 1, 15, 7, 0))),   # 00:30 local, next day
    (utc(2026, 1, 15, 6, 59, 59), (utc(2026, 1, 14, 21, 0), utc(2026, 1, 15, 7, 0))),
    (utc(2026, 1, 15, 7, 0), None),
    (utc(2026, 1, 15, 12, 0), None),
])
def test_quiet_period_crosses_midnight(now: datetime, period: tuple[datetime, datetime] | None) -> None:
    assert quiet_period(now=now, rule=NIGHT, timezone="Europe/Berlin") == period


@pytest.mark.parametrize(("zone", "now", "period", "hours"), [
    # New York springs forward on 2026-03-08 at 02:00: 22:00 EST to 08:00 EDT is 9 hours.
    ("America/New_York", utc(2026, 3, 8, 4, 0), (utc(2026, 3, 8, 3, 0), utc(2026, 3, 8, 12, 0)), 9),
    ("America/New_York", utc(2026, 3, 8, 11, 59), (utc(2026, 3, 8, 3, 0), utc(2026, 3, 8, 12, 0)), 9),
    ("America/New_York", utc(2026, 3, 8, 12, 0), None, 0),
    # ... and falls back on 2026-11-01: 22:00 EDT to 08:00 EST is 11 hours.
    ("America/New_York", utc(2026, 11, 1, 6, 0), (utc(2026, 11, 1, 2, 0), utc(2026, 11, 1, 13, 0)), 11),
    ("America/New_York", utc(2026, 11, 1, 12, 30), (utc(2026, 11, 1, 2, 0), utc(2026, 11, 1, 13, 0)), 11),
    ("America/New_York", utc(2026, 11, 1, 1, 59), None, 0),
    # Berlin springs forward on 2026-03-29 and falls back on 2026-10-25.
    ("Europe/Berlin", utc(2026, 3, 29, 1, 0), (utc(2026, 3, 28, 21, 0), utc(2026, 3, 29, 6, 0)), 9),
    ("Europe/Berlin", utc(2026, 3, 29, 6, 0), None, 0),
    ("Europe/Berlin", utc(2026, 10, 25, 1, 0), (utc(2026, 10, 24, 20, 0), utc(2026, 10, 25, 7, 0)), 11),
    ("Europe/Berlin", utc(2026, 10, 25, 6, 59), (utc(2026, 10, 24, 20, 0), utc(2026, 10, 25, 7, 0)), 11),
])
def test_quiet_period_on_daylight_saving_nights_keeps_its_local_hours(
        zone: str, now: datetime, period: tuple[datetime, datetime] | None, hours: int) -> None:
    got = quiet_period(now=now, rule=NIGHT, timezone=zone)
    assert got == period
    if got is not None:
        assert got[1] - got[0] == timedelta(hours=hours)


def test_a_quiet_bound_the_clock_skips_falls_at_the_jump() -> None:
    # 02:30 never shows in New York on 2026-03-08: the period starts when the clock jumps to 03:00 EDT.
    rule = OffHoursRule(quiet_start=time(2, 30), quiet_end=time(5, 0))
    assert quiet_period(now=utc(2026, 3, 8, 7, 0), rule=rule, timezone="America/New_York") == (
        utc(2026, 3, 8, 7, 0), utc(2026, 3, 8, 9, 0))
    assert quiet_period(now=utc(2026, 3, 8, 6, 59, 59), rule=rule, timezone="America/New_York") is None


def test_a_quiet_bound_the_clock_shows_twice_is_its_first_showing() -> None:
    # 01:30 shows twice in New York on 2026-11-01 (EDT, then EST): the period ends at the first.
    rule = OffHoursRule(quiet_start=time(0, 0), quiet_end=time(1, 30))
    assert quiet_period(now=utc(2026, 11, 1, 5, 0), rule=rule, timezone="America/New_York") == (
        utc(2026, 11, 1, 4, 0), utc(2026, 11, 1, 5, 30))
    assert quiet_period(now=utc(2026, 11, 1, 5, 45), rule=rule, timezone="America/New_York") is None


def test_a_quiet_period_within_one_day() -> None:
    rule = OffHoursRule(quiet_start=time(1, 0), quiet_end=time(5, 0))
    assert quiet_period(now=utc(2026, 1, 14, 3, 0), rule=rule, timezone="UTC") == (
        utc(2026, 1, 14, 1, 0), utc(2026, 1, 14, 5, 0))
    assert quiet_period(now=utc(2026, 1, 14, 23, 0), rule=rule, timezone="UTC") is None


def test_equal_bounds_make_no_quiet_period() -> None:
    rule = OffHoursRule(quiet_start=time(22, 0), quiet_end=time(22, 0))
    assert quiet_period(now=utc(2026, 1, 14, 22, 0), rule=rule, timezone="UTC") is None


# --- risks over polls: episodes and cooldown ------------------------------------------------------


def poll(sample: HealthSample | None, *, at: datetime, previous: list[dict[str, Any]] | None = None,
         spec: Health = SPEC, quiet: bool = False) -> LineHealth:
    return evaluate_line(sample=sample, spec=spec, previous=previous or [], now=at, in_quiet_period=quiet)


def test_a_pattern_starts_one_episode_with_its_figure_and_since() -> None:
    first = poll(BURST, at=T0)
    assert [f.pattern for f in first.started] == [HealthPattern.BURST]
    assert first.risks == [{"pattern": "Burst", "figure": 142, "threshold": 60,
                            "message": "142 messages in 10m, limit 60",
                            "since": "2026-05-04T14:00:00Z", "lastSeen": "2026-05-04T14:00:00Z"}]
    assert first.cleared == []


def test_since_is_kept_while_the_pattern_lasts_and_the_figure_follows() -> None:
    risks: list[dict[str, Any]] = []
    started = 0
    for minute, sent in enumerate([70, 90, 130, 61]):
        result = poll(ZERO._replace(burst_sent=sent), at=T0 + timedelta(minutes=minute), previous=risks)
        started += len(result.started)
        risks = result.risks
    assert started == 1
    assert risks[0]["since"] == "2026-05-04T14:00:00Z"
    assert risks[0]["lastSeen"] == "2026-05-04T14:03:00Z"
    assert risks[0]["figure"] == 61


def test_the_risk_stays_exactly_until_last_seen_plus_cooldown_then_clears_once() -> None:
    risks = poll(BURST, at=T0).risks
    kept = poll(ZERO, at=T0 + timedelta(minutes=59, seconds=59), previous=risks)
    assert kept.risks == risks            # unchanged: no status write while cooling down
    assert kept.started == [] and kept.cleared == []
    gone = poll(ZERO, at=T0 + timedelta(hours=1), previous=kept.risks)
    assert gone.risks == []
    assert gone.cleared == [HealthPattern.BURST]
    after = poll(ZERO, at=T0 + timedelta(hours=1, minutes=1), previous=gone.risks)
    assert after.cleared == []


def test_a_reoccurrence_within_the_cooldown_is_the_same_episode() -> None:
    risks = poll(BURST, at=T0).risks
    risks = poll(ZERO, at=T0 + timedelta(minutes=30), previous=risks).risks
    again = poll(BURST, at=T0 + timedelta(minutes=50), previous=risks)
    assert again.started == []
    assert again.risks[0]["since"] == "2026-05-04T14:00:00Z"
    assert again.risks[0]["lastSeen"] == "2026-05-04T14:50:00Z"
    # The cooldown counts from the last sighting.
    assert poll(ZERO, at=T0 + timedelta(hours=1, minutes=49), previous=again.risks).risks == again.risks
    assert poll(ZERO, at=T0 + timedelta(hours=1, minutes=50), previous=again.risks).cleared == [HealthPattern.BURST]


def test_a_reoccurrence_after_the_cooldown_is_a_new_episode() -> None:
    risks = poll(BURST, at=T0).risks
    # No poll in between (the operator was down): the old episode ended, a new one starts.
    later = poll(BURST, at=T0 + timedelta(hours=3), previous=risks)
    assert later.cleared == [HealthPattern.BURST]
    assert [f.pattern for f in later.started] == [HealthPattern.BURST]
    assert later.risks[0]["since"] == "2026-05-04T17:00:00Z"


def test_the_cooldown_comes_from_the_spec() -> None:
    spec = replace(SPEC, cooldown=timedelta(minutes=5))
    risks = poll(BURST, at=T0, spec=spec).risks
    assert poll(ZERO, at=T0 + timedelta(minutes=4), previous=risks, spec=spec).risks == risks
    assert poll(ZERO, at=T0 + timedelta(minutes=5), previous=risks, spec=spec).risks == []


def test_patterns_have_their_own_episodes_in_the_issues_order() -> None:
    both = BURST._replace(quiet_sent=20, line_initiated=30)
    first = poll(both, at=T0, quiet=True)
    assert [r["pattern"] for r in first.risks] == ["Burst", "ColdOutreach", "OffHours"]
    # The burst goes on, the others stop; 1h later only the burst remains.
    second = poll(BURST, at=T0 + timedelta(minutes=40), previous=first.risks)
    third = poll(BURST, at=T0 + timedelta(hours=1), previous=second.risks)
    assert [r["pattern"] for r in third.risks] == ["Burst"]
    assert third.cleared == [HealthPattern.COLD_OUTREACH, HealthPattern.OFF_HOURS]
    assert third.started == []


def test_off_hours_cools_down_after_the_quiet_period_ends() -> None:
    quiet_night = ZERO._replace(quiet_sent=30)
    risks = poll(quiet_night, at=T0, quiet=True).risks
    morning = ZERO._replace(quiet_sent=None, quiet_received=None)
    assert poll(morning, at=T0 + timedelta(minutes=30), previous=risks).risks == risks
    assert poll(morning, at=T0 + timedelta(hours=1), previous=risks).cleared == [HealthPattern.OFF_HOURS]


def test_fail_static_keeps_risks_unchanged_without_fresh_metrics() -> None:
    risks = poll(BURST, at=T0).risks
    stale = poll(None, at=T0 + timedelta(hours=6), previous=risks)
    assert stale.risks == risks
    assert stale.started == [] and stale.cleared == []


def test_disabled_health_clears_every_risk_and_sees_nothing() -> None:
    off = replace(SPEC, enabled=False)
    risks = poll(BURST._replace(line_initiated=40), at=T0).risks
    result = poll(BURST, at=T0 + timedelta(minutes=1), previous=risks, spec=off)
    assert result.risks == []
    assert result.cleared == [HealthPattern.BURST, HealthPattern.COLD_OUTREACH]
    assert result.started == []
    assert poll(BURST, at=T0, spec=off) == LineHealth(risks=[], started=[], cleared=[], unmeasured=set())
    assert poll(None, at=T0, previous=risks, spec=off).risks == []


def test_unreadable_entries_count_as_no_record() -> None:
    junk: list[Any] = ["Burst", {"pattern": "Spam", "lastSeen": "2026-05-04T14:00:00Z"},
                       {"pattern": "Burst", "lastSeen": "yesterday"}]
    result = poll(ZERO, at=T0, previous=junk)
    assert result.risks == [] and result.cleared == []


# --- flag forensics -------------------------------------------------------------------------------


QUIET_HOUR = FlagFigures(burst_peak=3, sent=12, received=9, over_cap_follow_ups=0, line_initiated=1,
                         quiet_net_outbound=None, peak_per_minute=3)


def test_no_pattern_seen_says_what_the_line_did() -> None:
    report = explain_flag(figures=QUIET_HOUR, spec=SPEC)
    assert report.cause is None
    assert report.evidence == []
    assert report.message == "no pattern seen in the hour before the flag: 12 sent, 9 replies, peak 3/min"


def test_no_pattern_seen_names_what_could_not_be_measured() -> None:
    report = explain_flag(figures=replace(QUIET_HOUR, over_cap_follow_ups=None, line_initiated=None), spec=SPEC)
    assert report.cause is None
    assert report.message == ("no pattern seen in the hour before the flag: 12 sent, 9 replies, peak 3/min; "
                              "not measured: follow-ups, cold outreach")


@pytest.mark.parametrize(("figures", "cause", "message"), [
    (replace(QUIET_HOUR, burst_peak=180, sent=190, received=80),
     HealthPattern.BURST, "burst: 180 messages in 10m before the flag (limit 60); pace sends"),
    (replace(QUIET_HOUR, sent=40, received=1),
     HealthPattern.NO_EXCHANGE, "no exchange: 40 sent, 1 reply (2%) in the hour before the flag, need 20%; "
                                "send where users reply, design for inbound-first"),
    (replace(QUIET_HOUR, over_cap_follow_ups=4),
     HealthPattern.FOLLOW_UPS, "follow-ups: 4 sends after 3 unanswered in a row in the hour before the flag, "
                               "limit 2 follow-ups; stop after 3 unanswered messages"),
    (replace(QUIET_HOUR, line_initiated=25),
     HealthPattern.COLD_OUTREACH, "cold outreach: 25 conversations started by the line in the hour before the "
                                  "flag, limit 10; message only people who wrote first"),
    (replace(QUIET_HOUR, quiet_net_outbound=12),
     HealthPattern.OFF_HOURS, "off-hours: 12 more sent than received during quiet hours in the hour before the "
                              "flag, limit 5; send nothing during quiet hours"),
])
def test_each_cause_says_what_to_change(figures: FlagFigures, cause: HealthPattern, message: str) -> None:
    report = explain_flag(figures=figures, spec=SPEC)
    assert report.cause is cause
    assert report.message == message
    assert [f.pattern for f in report.evidence] == [cause]


def test_the_cause_is_the_pattern_furthest_over_its_threshold() -> None:
    # Burst 180/60 = 3 beats cold outreach 25/10 = 2.5 ...
    figures = replace(QUIET_HOUR, burst_peak=180, sent=190, received=80, line_initiated=25)
    report = explain_flag(figures=figures, spec=SPEC)
    assert report.cause is HealthPattern.BURST
    assert [f.pattern for f in report.evidence] == [HealthPattern.BURST, HealthPattern.COLD_OUTREACH]
    assert report.message.endswith("; pace sends (also seen: cold outreach)")
    # ... and loses to cold outreach 40/10 = 4.
    assert explain_flag(figures=replace(figures, line_initiated=40), spec=SPEC).cause is HealthPattern.COLD_OUTREACH


def test_a_silent_hour_weighs_like_a_limit_doubled() -> None:
    # No reply at all is 2; a burst of 150 against 60 is 2.5, of 100 only 1.7.
    silent = replace(QUIET_HOUR, sent=150, received=0)
    assert explain_flag(figures=replace(silent, burst_peak=150), spec=SPEC).cause is HealthPattern.BURST
    assert explain_flag(figures=replace(silent, burst_peak=100), spec=SPEC).cause is HealthPattern.NO_EXCHANGE


def test_ties_go_to_the_pattern_the_issue_names_first() -> None:
    # Burst 120/60 = 2, no reply at all = 2, cold outreach 20/10 = 2, follow-ups 2 over a zero cap = 2.
    figures = replace(QUIET_HOUR, burst_peak=120, sent=120, received=0, line_initiated=20, over_cap_follow_ups=2)
    report = explain_flag(figures=figures, spec=SPEC)
    assert [f.pattern for f in report.evidence] == [HealthPattern.BURST, HealthPattern.NO_EXCHANGE,
                                                    HealthPattern.FOLLOW_UPS, HealthPattern.COLD_OUTREACH]
    no_burst = explain_flag(figures=replace(figures, burst_peak=0), spec=SPEC)
    assert no_burst.cause is HealthPattern.NO_EXCHANGE


def test_a_burst_at_the_limit_is_a_cause() -> None:
    assert explain_flag(figures=replace(QUIET_HOUR, burst_peak=60), spec=SPEC).cause is HealthPattern.BURST
    assert explain_flag(figures=replace(QUIET_HOUR, burst_peak=59), spec=SPEC).cause is None


def test_forensics_uses_the_pools_thresholds() -> None:
    lenient = replace(SPEC, burst=BurstRule(messages=500, within=timedelta(minutes=5)))
    figures = replace(QUIET_HOUR, burst_peak=180)
    assert explain_flag(figures=figures, spec=lenient).cause is None
    strict = replace(SPEC, burst=BurstRule(messages=30, within=timedelta(minutes=5)))
    assert explain_flag(figures=figures, spec=strict).message == (
        "burst: 180 messages in 5m before the flag (limit 30); pace sends")
