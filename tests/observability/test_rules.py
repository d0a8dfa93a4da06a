"""The alert rules: promtool lints them and runs their unit tests, and no alert goes untested.

Uses Debian's promtool (package ``prometheus``, the same one the integration tests run); without
it the promtool tests are skipped with the reason, and the pure checks still run.
"""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
import yaml

from linepool.sandbox.prometheus import PrometheusNotInstalled, find_binary
from tests.observability.promql import (
    ALERT_TESTS_FILE,
    PLACEMENT_GROUP,
    REPO,
    RULES_FILE,
    alerting_rules,
    metric_names,
    rule_expressions,
    rules,
)

SEVERITIES = {"warning", "critical"}


@pytest.fixture(scope="module")
def promtool() -> str:
    try:
        return find_binary("promtool")
    except PrometheusNotInstalled as exc:
        pytest.skip(str(exc))


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), cwd=REPO, capture_output=True, text=True, timeout=60, check=False)


def test_promtool_check_rules(promtool: str) -> None:
    result = run(promtool, "check", "rules", str(RULES_FILE))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerting_rules())} rules found" in result.stdout + result.stderr


def test_promtool_unit_tests(promtool: str) -> None:
    result = run(promtool, "test", "rules", str(ALERT_TESTS_FILE))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def alert_tests() -> list[dict[str, Any]]:
    data = yaml.safe_load(ALERT_TESTS_FILE.read_text(encoding="utf-8"))
    return [case for test in data["tests"] for case in test.get("alert_rule_test", [])]


def test_the_unit_tests_load_the_chart_rule_file() -> None:
    data = yaml.safe_load(ALERT_TESTS_FILE.read_text(encoding="utf-8"))
    assert [(ALERT_TESTS_FILE.parent / path).resolve() for path in data["rule_files"]] == [RULES_FILE.resolve()]


@pytest.mark.parametrize("alert", [rule["alert"] for rule in alerting_rules()])
def test_every_alert_is_tested_firing_and_silent(alert: str) -> None:
    """A new alert without a unit test that makes it fire, and one that keeps it quiet, fails here."""
    cases = [case for case in alert_tests() if case["alertname"] == alert]
    assert any(case.get("exp_alerts") for case in cases), f"no test in {ALERT_TESTS_FILE.name} makes {alert} fire"
    assert any(not case.get("exp_alerts") for case in cases), \
        f"no test in {ALERT_TESTS_FILE.name} checks that {alert} stays silent"
    for case in cases:
        for expected in case.get("exp_alerts") or []:
            assert expected.get("exp_annotations"), f"{alert} at {case['eval_time']}: annotations are not checked"


def test_the_unit_tests_name_only_existing_alerts() -> None:
    names = {rule["alert"] for rule in alerting_rules()}
    assert {case["alertname"] for case in alert_tests()} <= names


@pytest.mark.parametrize("rule", alerting_rules(), ids=lambda rule: rule["alert"])
def test_every_alert_says_what_happened_and_what_to_do(rule: dict[str, Any]) -> None:
    assert rule["alert"].startswith("LinePool")
    assert rule["labels"]["severity"] in SEVERITIES
    annotations = rule["annotations"]
    assert annotations["summary"].strip() and "\n" not in annotations["summary"]
    assert "What to do:" in annotations["description"]
    # Alerts about one pool say which one.
    if "pool" in rule["expr"] and "by (namespace, pool" in rule["expr"]:
        assert "{{ $labels.pool }}" in annotations["summary"]


def test_alert_names_are_unique() -> None:
    names = [rule["alert"] for rule in alerting_rules()]
    assert len(names) == len(set(names))


def test_the_rule_file_is_a_plain_prometheus_rule_file() -> None:
    """No Helm templating and no PrometheusRule wrapper: promtool and Prometheus read it as it is."""
    data = rules()
    assert list(data) == ["groups"]
    text = RULES_FILE.read_text(encoding="utf-8")
    assert "{{ ." not in text and "{{- " not in text and ".Values" not in text


PLACEMENT_METRICS = {"linepool_placements_total", "linepool_placement_request_duration_seconds_bucket",
                     "linepool_placement_request_duration_seconds_count",
                     "linepool_placement_request_duration_seconds_sum", "linepool_placement_budget_remaining",
                     "linepool_placement_store_errors_total"}


def test_placement_alerts_are_apart_from_the_operators() -> None:
    """The placement group queries only the placement service's metrics, and the operator's groups none
    of them: each side is checked against its own process's scrape (test_live_metrics.py)."""
    placement = rule_expressions(placement=True)
    assert set(placement) == {"LinePoolPlacementsRefused", "LinePoolPlacementStoreErrors"}
    assert [g["name"] for g in rules()["groups"]].count(PLACEMENT_GROUP) == 1
    for alert, expr in placement.items():
        assert metric_names(expr) <= PLACEMENT_METRICS, (alert, metric_names(expr))
    for alert, expr in rule_expressions(placement=False).items():
        assert not metric_names(expr) & PLACEMENT_METRICS, alert
        assert not any(name.startswith(("linepool_placement_", "linepool_placements_")) for name in metric_names(expr))


def test_placement_refusals_count_only_full_pools() -> None:
    """503 MetricsUnavailable and 4xx rejections are not "pool full": the alert selects that outcome only."""
    expr = rule_expressions(placement=True)["LinePoolPlacementsRefused"]
    assert 'outcome="pool_full"' in expr and "by (namespace, pool)" in expr
