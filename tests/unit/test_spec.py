"""Spec parsing: defaults match the CRD's, and bad input names its field."""

from datetime import time, timedelta
from typing import Any

import pytest

from linepool.api.durations import format_duration, parse_duration
from linepool.api.errors import SpecError
from linepool.api.spec import (
    BurstRule,
    ColdOutreachRule,
    FollowUpRule,
    Health,
    KeepAlive,
    KeepAliveWindow,
    NoExchangeRule,
    OffHoursRule,
    QueryTemplates,
    parse_pool_spec,
    parse_server_spec,
)
from linepool.api.types import (
    ConditionType,
    HealthPattern,
    KeepAlivePhase,
    LineRole,
    LineState,
    QuotaWindow,
    Reason,
    ScalingMode,
)
from tests.schema.crd_files import crd_named

METRICS = {"prometheusURL": "http://prometheus:9090"}


def pool(**sections: object) -> dict[str, object]:
    return {"metrics": dict(METRICS), **sections}


def test_defaults_are_the_documented_ones() -> None:
    spec = parse_pool_spec(pool())
    assert spec.quotas.messages_per_server_per_day == 5000
    assert spec.quotas.new_conversations_per_line_per_day == 50
    assert spec.quotas.window is QuotaWindow.ROLLING_24H
    assert spec.quotas.timezone == "UTC"
    assert spec.assignment.stop_at == 0.75
    assert spec.assignment.resume_at == pytest.approx(0.65)
    assert spec.scaling.mode is ScalingMode.AUTO
    assert spec.scaling.cooldown == timedelta(minutes=15)
    assert (spec.scaling.min_servers, spec.scaling.max_servers, spec.scaling.lines_per_server) == (1, 10, 4)
    assert spec.metrics.poll_interval == timedelta(seconds=30)
    assert spec.metrics.stale_after == timedelta(minutes=5)


def test_resume_at_defaults_to_ten_points_below_stop_at() -> None:
    spec = parse_pool_spec(pool(assignment={"stopAt": 0.9}))
    assert spec.assignment.resume_at == pytest.approx(0.8)


@pytest.mark.parametrize(("text", "seconds"), [
    ("90s", 90), ("15m", 900), ("1h30m", 5400), ("21d", 21 * 86400), ("500ms", 0.5), ("1.5h", 5400),
])
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == seconds


@pytest.mark.parametrize("text", ["", "15", "15 minutes", "-5m", "1w", "m", "1h 30m"])
def test_bad_durations_are_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration(text)


def test_format_duration() -> None:
    assert format_duration(timedelta(minutes=90)) == "1h30m"
    assert format_duration(timedelta(0)) == "0s"


BAD_POOLS = [
    (pool(assignment={"stopAt": 0.3}), "spec.assignment.stopAt"),
    (pool(assignment={"stopAt": 0.7, "resumeAt": 0.7}), "spec.assignment.resumeAt"),
    (pool(assignment={"stopAt": "high"}), "spec.assignment.stopAt"),
    (pool(scaling={"minServers": 5, "maxServers": 2}), "spec.scaling.minServers"),
    (pool(scaling={"mode": "Sometimes"}), "spec.scaling.mode"),
    (pool(scaling={"cooldown": "soon"}), "spec.scaling.cooldown"),
    (pool(scaling={"linesPerServer": 0}), "spec.scaling.linesPerServer"),
    (pool(scaling={"serverTemplate": {"spec": {"endpoint": "relay:8080"}}}),
     "spec.scaling.serverTemplate.spec.endpoint"),
    (pool(scaling={"serverTemplate": {"spec": {"lines": []}}}), "spec.scaling.serverTemplate.spec"),
    (pool(quotas={"timezone": "Mars/Olympus"}), "spec.quotas.timezone"),
    (pool(quotas={"window": "Weekly"}), "spec.quotas.window"),
    (pool(quotas={"messagesPerServerPerDay": 0}), "spec.quotas.messagesPerServerPerDay"),
    (pool(inventory=["+14155550100", "+14155550100"]), "spec.inventory[1]"),
    (pool(inventory=["4155550100"]), "spec.inventory[0]"),
    ({"metrics": {}}, "spec.metrics.prometheusURL"),
    ({"metrics": {"prometheusURL": "prometheus:9090"}}, "spec.metrics.prometheusURL"),
    ({"metrics": {**METRICS, "pollInterval": "0s"}}, "spec.metrics.pollInterval"),
    ({"metrics": {**METRICS, "queries": {"sentInWindow": " "}}}, "spec.metrics.queries.sentInWindow"),
]


@pytest.mark.parametrize(("spec", "field"), BAD_POOLS)
def test_bad_pool_specs_name_the_field(spec: dict[str, object], field: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_pool_spec(spec)
    assert caught.value.field == field
    assert field in str(caught.value)


def server(**overrides: object) -> dict[str, object]:
    return {"pool": "support", "endpoint": "http://relay-0:8080",
            "lines": [{"id": "+14155550100"}, {"id": "ops@example.com", "role": "Fallback"}], **overrides}


def test_server_spec_defaults() -> None:
    spec = parse_server_spec(server())
    assert [line.role for line in spec.lines] == [LineRole.PRIMARY, LineRole.FALLBACK]
    assert spec.cordoned is False and spec.daily_message_quota is None


@pytest.mark.parametrize(("spec", "field"), [
    (server(pool="Support_Pool"), "spec.pool"),
    (server(endpoint="ftp://relay"), "spec.endpoint"),
    (server(lines=[{"id": "+14155550100"}, {"id": "+14155550100"}]), "spec.lines[1]"),
    (server(lines=[{"id": "bob@"}]), "spec.lines[0].id"),
    (server(lines=[{"id": "+14155550100", "role": "Backup"}]), "spec.lines[0].role"),
    (server(dailyMessageQuota=0), "spec.dailyMessageQuota"),
    (server(cordoned="yes"), "spec.cordoned"),
    (server(credentialsSecretRef={"name": "relay"}), "spec.credentialsSecretRef"),
    (server(lines=[{"id": f"+1415555{i:04d}"} for i in range(101)]), "spec.lines"),
])
def test_bad_server_specs_name_the_field(spec: dict[str, object], field: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_server_spec(spec)
    assert caught.value.field == field


# --- keep-alive ---------------------------------------------------------------------------------


def keep_alive(**fields: object) -> dict[str, object]:
    return pool(keepAlive=fields)


def test_keep_alive_defaults_are_the_documented_ones() -> None:
    spec = parse_pool_spec(pool()).keep_alive
    assert spec == KeepAlive()
    assert spec.enabled is True
    assert (spec.idle_after, spec.deadline) == (timedelta(days=21), timedelta(days=45))
    assert spec.window == KeepAliveWindow(start=time(10, 0), end=time(19, 0), days=frozenset({0, 1, 2, 3, 4}))
    assert spec.min_spacing == timedelta(minutes=10)
    assert spec.max_per_day == 20
    assert (spec.partners, spec.messages) == ((), ())


@pytest.mark.parametrize("raw", [
    pool(), keep_alive(), pool(keepAlive=None), keep_alive(window={}), keep_alive(window={"days": None}),
])
def test_absent_or_empty_keep_alive_gets_defaults(raw: dict[str, object]) -> None:
    assert parse_pool_spec(raw).keep_alive == KeepAlive()


VALID_KEEP_ALIVE: list[tuple[dict[str, object], str, object]] = [
    (keep_alive(enabled=False), "enabled", False),
    (keep_alive(idleAfter="1d", deadline="2d"), "idle_after", timedelta(days=1)),
    (keep_alive(idleAfter="50d", deadline="60d"), "deadline", timedelta(days=60)),
    (keep_alive(idleAfter="36h"), "idle_after", timedelta(hours=36)),  # the schema wants days; fine here
    (keep_alive(minSpacing="1m"), "min_spacing", timedelta(minutes=1)),
    (keep_alive(minSpacing="24h"), "min_spacing", timedelta(hours=24)),
    (keep_alive(minSpacing="1h30m"), "min_spacing", timedelta(minutes=90)),
    (keep_alive(maxPerDay=1), "max_per_day", 1),
    (keep_alive(maxPerDay=1000), "max_per_day", 1000),
    (keep_alive(partners=["+14155550100", "keepalive@example.com"]), "partners",
     ("+14155550100", "keepalive@example.com")),
    (keep_alive(partners=[]), "partners", ()),
    (keep_alive(messages=["Morning!", "Lunch at 12:30?"]), "messages", ("Morning!", "Lunch at 12:30?")),
    (keep_alive(messages=["x" * 320]), "messages", ("x" * 320,)),
    (keep_alive(window={"start": "00:00", "end": "23:59"}), "window",
     KeepAliveWindow(start=time(0, 0), end=time(23, 59))),
    (keep_alive(window={"start": "09:30", "end": "17:45", "days": ["Sun", "Sat"]}), "window",
     KeepAliveWindow(start=time(9, 30), end=time(17, 45), days=frozenset({5, 6}))),
    (keep_alive(window={"days": ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]}), "window",
     KeepAliveWindow(days=frozenset(range(7)))),
]


@pytest.mark.parametrize(("spec", "attr", "expected"), VALID_KEEP_ALIVE)
def test_valid_keep_alive(spec: dict[str, object], attr: str, expected: object) -> None:
    assert getattr(parse_pool_spec(spec).keep_alive, attr) == expected


BAD_KEEP_ALIVE: list[tuple[dict[str, object], str, str]] = [
    (pool(keepAlive="yes"), "spec.keepAlive", "must be an object"),
    (keep_alive(enabled="yes"), "spec.keepAlive.enabled", "true or false"),
    (keep_alive(idleAfter="0d"), "spec.keepAlive.idleAfter", "between 1d and 50d, not '0d'"),
    (keep_alive(idleAfter="51d", deadline="60d"), "spec.keepAlive.idleAfter", "between 1d and 50d"),
    (keep_alive(idleAfter="3 weeks"), "spec.keepAlive.idleAfter", "not a duration"),
    (keep_alive(deadline="61d"), "spec.keepAlive.deadline", "between 1d and 60d"),
    (keep_alive(deadline="20d"), "spec.keepAlive.deadline", "must be longer than idleAfter (21d), not '20d'"),
    (keep_alive(deadline="21d"), "spec.keepAlive.deadline", "must be longer than idleAfter (21d)"),
    (keep_alive(idleAfter="50d"), "spec.keepAlive.deadline", "must be longer than idleAfter (50d), not '45d'"),
    (keep_alive(minSpacing="30s"), "spec.keepAlive.minSpacing", "between 1m and 24h, not '30s'"),
    (keep_alive(minSpacing="25h"), "spec.keepAlive.minSpacing", "between 1m and 24h, not '25h'"),
    (keep_alive(maxPerDay=0), "spec.keepAlive.maxPerDay", "between 1 and 1000"),
    (keep_alive(maxPerDay=1001), "spec.keepAlive.maxPerDay", "between 1 and 1000"),
    (keep_alive(maxPerDay="20"), "spec.keepAlive.maxPerDay", "whole number"),
    (keep_alive(window="10-19"), "spec.keepAlive.window", "must be an object"),
    (keep_alive(window={"start": "20:00"}), "spec.keepAlive.window.start",
     "must be before end (19:00), not '20:00'"),
    (keep_alive(window={"start": "12:00", "end": "12:00"}), "spec.keepAlive.window.start", "before end (12:00)"),
    (keep_alive(window={"start": "9:00"}), "spec.keepAlive.window.start", "HH:MM"),
    (keep_alive(window={"end": "24:00"}), "spec.keepAlive.window.end", "HH:MM"),
    (keep_alive(window={"end": 1900}), "spec.keepAlive.window.end", "HH:MM"),
    (keep_alive(window={"days": ["Mon", "Tue", "Funday"]}), "spec.keepAlive.window.days[2]",
     "'Funday' is not one of Mon, Tue, Wed, Thu, Fri, Sat, Sun"),
    (keep_alive(window={"days": ["Mon", "Mon"]}), "spec.keepAlive.window.days[1]", "listed twice"),
    (keep_alive(window={"days": []}), "spec.keepAlive.window.days", "at least one"),
    (keep_alive(window={"days": "Mon"}), "spec.keepAlive.window.days", "list"),
    (keep_alive(partners=["bob"]), "spec.keepAlive.partners[0]", "'bob' is neither an E.164 number nor an email"),
    (keep_alive(partners=["+14155550100", "4155550100"]), "spec.keepAlive.partners[1]", "neither"),
    (keep_alive(partners=["a@b.co", "a@b.co"]), "spec.keepAlive.partners[1]", "listed twice"),
    (keep_alive(partners=[f"+1415555{i:04d}" for i in range(51)]), "spec.keepAlive.partners", "at most 50"),
    (keep_alive(partners="a@b.co"), "spec.keepAlive.partners", "must be a list"),
    (keep_alive(messages=["see https://example.com"]), "spec.keepAlive.messages[0]", "must not contain a link"),
    (keep_alive(messages=["ok", "WWW.example.com"]), "spec.keepAlive.messages[1]", "must not contain a link"),
    (keep_alive(messages=[""]), "spec.keepAlive.messages[0]", "non-empty"),
    (keep_alive(messages=["  "]), "spec.keepAlive.messages[0]", "non-empty"),
    (keep_alive(messages=[42]), "spec.keepAlive.messages[0]", "non-empty text"),
    (keep_alive(messages=["x" * 321]), "spec.keepAlive.messages[0]", "at most 320 characters"),
    (keep_alive(messages=["x"] * 101), "spec.keepAlive.messages", "at most 100"),
]


@pytest.mark.parametrize(("spec", "field", "reason"), BAD_KEEP_ALIVE)
def test_bad_keep_alive_names_the_field(spec: dict[str, object], field: str, reason: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_pool_spec(spec)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")
    assert reason in caught.value.reason


def test_last_activity_timestamp_query() -> None:
    default = parse_pool_spec(pool()).metrics.queries.last_activity_timestamp
    assert default == QueryTemplates().last_activity_timestamp
    assert default == 'max by (server, line) (imessage_line_last_activity_timestamp_seconds{server=~"{{servers}}"})'
    query = 'max by (server, line) (relay_last_seen_seconds{server=~"{{servers}}"})'
    parsed = parse_pool_spec({"metrics": {**METRICS, "queries": {"lastActivityTimestamp": query}}})
    assert parsed.metrics.queries.last_activity_timestamp == query
    assert parsed.metrics.queries.activity == QueryTemplates().activity
    with pytest.raises(SpecError) as caught:
        parse_pool_spec({"metrics": {**METRICS, "queries": {"lastActivityTimestamp": ""}}})
    assert caught.value.field == "spec.metrics.queries.lastActivityTimestamp"


# --- line health ---------------------------------------------------------------------------------


def health(**fields: object) -> dict[str, object]:
    return pool(health=fields)


def test_health_defaults_are_the_documented_ones() -> None:
    spec = parse_pool_spec(pool()).health
    assert spec == Health()
    assert (spec.enabled, spec.cooldown) == (True, timedelta(hours=1))
    assert spec.burst == BurstRule(messages=60, within=timedelta(minutes=10))
    assert spec.no_exchange == NoExchangeRule(window=timedelta(hours=24), min_sent=20, min_reply_ratio=0.2)
    assert spec.follow_ups == FollowUpRule(max=2)
    assert spec.cold_outreach == ColdOutreachRule(window=timedelta(hours=24), max_line_initiated=10)
    assert spec.off_hours == OffHoursRule(quiet_start=time(22, 0), quiet_end=time(8, 0), max_net_outbound=5)


@pytest.mark.parametrize("raw", [
    pool(), health(), pool(health=None),
    health(burst={}, noExchange={}, followUps={}, coldOutreach={}, offHours={}),
    health(burst=None, offHours={"quiet": {}}), health(offHours={"quiet": None}),
])
def test_absent_or_empty_health_gets_defaults(raw: dict[str, object]) -> None:
    assert parse_pool_spec(raw).health == Health()


def _crd_defaults(node: dict[str, Any]) -> dict[str, Any]:
    """The object the API server stores for ``{}`` under ``node`` (nested ``default: {}`` objects filled)."""
    stored = {}
    for key, child in node["properties"].items():
        if child.get("type") == "object" and "default" in child:
            stored[key] = _crd_defaults(child)
        elif "default" in child:
            stored[key] = child["default"]
    return stored


def test_health_defaults_match_the_crd() -> None:
    """The CRD's defaults, written out in full, parse to the parser's own defaults for absent fields."""
    schema = crd_named("linepools.linepool.dev").schema("v1alpha1")
    defaults = _crd_defaults(schema["properties"]["spec"]["properties"]["health"])
    assert defaults["offHours"] == {"quiet": {"start": "22:00", "end": "08:00"}, "maxNetOutbound": 5}
    assert parse_pool_spec(health(**defaults)).health == Health()


VALID_HEALTH: list[tuple[dict[str, object], object]] = [
    (health(enabled=False), Health(enabled=False)),
    (health(cooldown="5m"), Health(cooldown=timedelta(minutes=5))),
    (health(cooldown="24h"), Health(cooldown=timedelta(hours=24))),
    (health(cooldown="1h30m"), Health(cooldown=timedelta(minutes=90))),
    (health(cooldown="1d"), Health(cooldown=timedelta(days=1))),  # the schema wants 24h; fine here
    (health(burst={"messages": 1, "within": "1m"}), Health(burst=BurstRule(messages=1, within=timedelta(minutes=1)))),
    (health(burst={"messages": 10000, "within": "1h"}),
     Health(burst=BurstRule(messages=10000, within=timedelta(hours=1)))),
    (health(noExchange={"window": "1h", "minSent": 1, "minReplyRatio": 0}),
     Health(no_exchange=NoExchangeRule(window=timedelta(hours=1), min_sent=1, min_reply_ratio=0.0))),
    (health(noExchange={"window": "72h", "minSent": 10000, "minReplyRatio": 1}),
     Health(no_exchange=NoExchangeRule(window=timedelta(hours=72), min_sent=10000, min_reply_ratio=1.0))),
    (health(followUps={"max": 1}), Health(follow_ups=FollowUpRule(max=1))),
    (health(followUps={"max": 3}), Health(follow_ups=FollowUpRule(max=3))),
    (health(coldOutreach={"window": "1h", "maxLineInitiated": 0}),
     Health(cold_outreach=ColdOutreachRule(window=timedelta(hours=1), max_line_initiated=0))),
    (health(coldOutreach={"window": "72h", "maxLineInitiated": 1000}),
     Health(cold_outreach=ColdOutreachRule(window=timedelta(hours=72), max_line_initiated=1000))),
    (health(offHours={"quiet": {"start": "01:00", "end": "05:30"}, "maxNetOutbound": 0}),
     Health(off_hours=OffHoursRule(quiet_start=time(1, 0), quiet_end=time(5, 30), max_net_outbound=0))),
    (health(offHours={"quiet": {"start": "23:59", "end": "00:00"}, "maxNetOutbound": 1000}),
     Health(off_hours=OffHoursRule(quiet_start=time(23, 59), quiet_end=time(0, 0), max_net_outbound=1000))),
    (health(offHours={"quiet": {"end": "06:00"}}), Health(off_hours=OffHoursRule(quiet_end=time(6, 0)))),
]


@pytest.mark.parametrize(("spec", "expected"), VALID_HEALTH)
def test_valid_health(spec: dict[str, object], expected: Health) -> None:
    assert parse_pool_spec(spec).health == expected


BAD_HEALTH: list[tuple[dict[str, object], str, str]] = [
    (pool(health="on"), "spec.health", "must be an object"),
    (health(enabled="no"), "spec.health.enabled", "true or false, not 'no'"),
    (health(cooldown="4m"), "spec.health.cooldown", "between 5m and 24h, not '4m'"),
    (health(cooldown="25h"), "spec.health.cooldown", "between 5m and 24h, not '25h'"),
    (health(cooldown="soon"), "spec.health.cooldown", "not a duration"),
    (health(cooldown=3600), "spec.health.cooldown", "not a duration"),
    (health(burst=[]), "spec.health.burst", "must be an object"),
    (health(burst={"messages": 0}), "spec.health.burst.messages", "between 1 and 10000, not 0"),
    (health(burst={"messages": 10001}), "spec.health.burst.messages", "between 1 and 10000"),
    (health(burst={"messages": "60"}), "spec.health.burst.messages", "whole number"),
    (health(burst={"messages": True}), "spec.health.burst.messages", "whole number"),
    (health(burst={"within": "30s"}), "spec.health.burst.within", "between 1m and 1h, not '30s'"),
    (health(burst={"within": "2h"}), "spec.health.burst.within", "between 1m and 1h"),
    (health(noExchange={"window": "30m"}), "spec.health.noExchange.window", "between 1h and 72h, not '30m'"),
    (health(noExchange={"window": "73h"}), "spec.health.noExchange.window", "between 1h and 72h"),
    (health(noExchange={"minSent": 0}), "spec.health.noExchange.minSent", "between 1 and 10000"),
    (health(noExchange={"minSent": 10001}), "spec.health.noExchange.minSent", "between 1 and 10000"),
    (health(noExchange={"minReplyRatio": 20}), "spec.health.noExchange.minReplyRatio", "between 0.0 and 1.0, not 20"),
    (health(noExchange={"minReplyRatio": -0.1}), "spec.health.noExchange.minReplyRatio", "between 0.0 and 1.0"),
    (health(noExchange={"minReplyRatio": "20%"}), "spec.health.noExchange.minReplyRatio", "must be a number"),
    (health(followUps={"max": 0}), "spec.health.followUps.max", "between 1 and 3, not 0"),
    (health(followUps={"max": 4}), "spec.health.followUps.max", "between 1 and 3, not 4"),
    (health(coldOutreach={"window": "59m"}), "spec.health.coldOutreach.window", "between 1h and 72h"),
    (health(coldOutreach={"window": "4d"}), "spec.health.coldOutreach.window", "between 1h and 72h"),
    (health(coldOutreach={"maxLineInitiated": -1}), "spec.health.coldOutreach.maxLineInitiated",
     "between 0 and 1000"),
    (health(coldOutreach={"maxLineInitiated": 1001}), "spec.health.coldOutreach.maxLineInitiated",
     "between 0 and 1000"),
    (health(offHours={"quiet": "22:00-08:00"}), "spec.health.offHours.quiet", "must be an object"),
    (health(offHours={"quiet": {"start": "08:00"}}), "spec.health.offHours.quiet.start",
     "must differ from end (08:00), not '08:00'"),
    (health(offHours={"quiet": {"start": "07:00", "end": "07:00"}}), "spec.health.offHours.quiet.start",
     "must differ from end (07:00)"),
    (health(offHours={"quiet": {"end": "22:00"}}), "spec.health.offHours.quiet.start",
     "must differ from end (22:00)"),
    (health(offHours={"quiet": {"start": "9:00"}}), "spec.health.offHours.quiet.start", "HH:MM"),
    (health(offHours={"quiet": {"end": "24:00"}}), "spec.health.offHours.quiet.end", "HH:MM"),
    (health(offHours={"quiet": {"end": 800}}), "spec.health.offHours.quiet.end", "HH:MM"),
    (health(offHours={"maxNetOutbound": -1}), "spec.health.offHours.maxNetOutbound", "between 0 and 1000"),
    (health(offHours={"maxNetOutbound": 1001}), "spec.health.offHours.maxNetOutbound", "between 0 and 1000"),
]


@pytest.mark.parametrize(("spec", "field", "reason"), BAD_HEALTH)
def test_bad_health_names_the_field(spec: dict[str, object], field: str, reason: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_pool_spec(spec)
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")
    assert reason in caught.value.reason


HEALTH_QUERIES = [
    ("receivedInWindow", "received_in_window"),
    ("lineInitiatedInWindow", "line_initiated_in_window"),
    ("unansweredSendsInWindow", "unanswered_sends_in_window"),
]


def test_health_query_defaults() -> None:
    queries = parse_pool_spec(pool()).metrics.queries
    assert queries == QueryTemplates()
    assert queries.received_in_window == (
        'sum by (server, line) (increase(imessage_messages_received_total{server=~"{{servers}}"}[{{window}}]))')
    assert queries.line_initiated_in_window == (
        "sum by (server, line) "
        '(increase(imessage_new_conversations_total{server=~"{{servers}}",initiator="line"}[{{window}}]))')
    assert queries.unanswered_sends_in_window == (
        "sum by (server, line, streak) "
        '(increase(imessage_unanswered_sends_total{server=~"{{servers}}"}[{{window}}]))')


@pytest.mark.parametrize(("key", "attr"), HEALTH_QUERIES)
def test_health_query_overrides(key: str, attr: str) -> None:
    query = 'sum by (server, line) (increase(relay_counter{server=~"{{servers}}"}[{{window}}]))'
    parsed = parse_pool_spec({"metrics": {**METRICS, "queries": {key: query}}}).metrics.queries
    assert getattr(parsed, attr) == query
    assert parsed.sent_in_window == QueryTemplates().sent_in_window
    with pytest.raises(SpecError) as caught:
        parse_pool_spec({"metrics": {**METRICS, "queries": {key: " "}}})
    assert caught.value.field == f"spec.metrics.queries.{key}"


def test_every_query_of_the_crd_is_parsed() -> None:
    """A query the CRD declares but the parser ignores would be a silent no-op for the user."""
    schema = crd_named("linepools.linepool.dev").schema("v1alpha1")
    declared = schema["properties"]["spec"]["properties"]["metrics"]["properties"]["queries"]["properties"]
    for key in declared:
        with pytest.raises(SpecError) as caught:
            parse_pool_spec({"metrics": {**METRICS, "queries": {key: ""}}})
        assert caught.value.field == f"spec.metrics.queries.{key}"


def test_health_patterns_match_the_crd() -> None:
    patterns = [p.value for p in HealthPattern]
    assert patterns == ["Burst", "NoExchange", "FollowUps", "ColdOutreach", "OffHours"]
    assert _server_status_line()["flagRisks"]["items"]["properties"]["pattern"]["enum"] == patterns
    assert _server_status_line()["lastFlag"]["properties"]["cause"]["enum"] == [*patterns, "None"]


# --- enums against the CRDs -------------------------------------------------------------------------


def _server_status_line() -> dict[str, Any]:
    schema = crd_named("messagingservers.linepool.dev").schema("v1alpha1")
    items: dict[str, Any] = schema["properties"]["status"]["properties"]["lines"]["items"]["properties"]
    return items


def test_line_states_match_the_crd() -> None:
    assert _server_status_line()["state"]["enum"] == [state.value for state in LineState]
    assert LineState.AT_RISK == "AtRisk"


def test_keep_alive_phases_match_the_crd() -> None:
    phase = _server_status_line()["keepAlive"]["properties"]["phase"]
    assert phase["enum"] == [p.value for p in KeepAlivePhase] == ["Planned", "Sent", "Replied", "Failed"]


def test_keep_alive_condition_types_and_reasons() -> None:
    assert ConditionType.KEEP_ALIVE_HEALTHY == "KeepAliveHealthy"
    assert ConditionType.CREDENTIALS_AVAILABLE == "CredentialsAvailable"
    assert {r.value for r in Reason} >= {
        "KeepAliveSent", "KeepAliveReplied", "KeepAliveDeferred", "KeepAliveRetrying", "KeepAliveFailed",
        "KeepAliveDisabled", "LinesFresh", "LineAtRisk", "LinesAtRisk", "CredentialsFound", "SecretNotFound",
        "SecretKeyMissing",
    }
