"""Spec parsing: defaults match the CRD's, and bad input names its field."""

from datetime import timedelta

import pytest

from linepool.api.durations import format_duration, parse_duration
from linepool.api.errors import SpecError
from linepool.api.spec import parse_pool_spec, parse_server_spec
from linepool.api.types import LineRole, QuotaWindow, ScalingMode

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
