"""The Grafana dashboard (charts/linepool-operator/files/dashboard.json), checked as data.

That its metric names exist on a live operator is checked in test_live_metrics.py.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.observability.promql import DASHBOARD_FILE, dashboard, dashboard_expressions, metric_names, panels

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


@pytest.fixture(scope="module")
def board() -> dict[str, Any]:
    return dashboard()


def test_it_is_json_for_a_current_grafana(board: dict[str, Any]) -> None:
    json.loads(DASHBOARD_FILE.read_text(encoding="utf-8"))
    assert board["schemaVersion"] >= 36
    assert board["uid"] == "linepool-operator" and board["title"]
    assert board["id"] is None  # provisioned dashboards must not carry a database id


def test_variables(board: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert variables["namespace"]["definition"] == "label_values(linepool_pool_utilization, namespace)"
    assert variables["pool"]["definition"] == 'label_values(linepool_pool_utilization{namespace=~"$namespace"}, pool)'
    for name in ("namespace", "pool"):
        assert variables[name]["datasource"] == DATASOURCE
        assert variables[name]["multi"] and variables[name]["includeAll"] and variables[name]["allValue"] == ".*"


def test_every_panel_has_a_title_and_queries(board: dict[str, Any]) -> None:
    ids = []
    for panel in panels(board):
        ids.append(panel["id"])
        assert panel.get("title"), panel
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel.get("description"), panel["title"]
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel.get("targets"), f"panel {panel['title']!r} has no targets"
        refs = [target["refId"] for target in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]
            assert target.get("datasource", DATASOURCE) == DATASOURCE, panel["title"]
    assert len(ids) == len(set(ids)), "panel ids must be unique"


def test_panels_do_not_overlap(board: dict[str, Any]) -> None:
    cells: dict[tuple[int, int], str] = {}
    for panel in panels(board):
        grid = panel["gridPos"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']!r} overlaps {cells[(x, y)]!r}"
                cells[(x, y)] = panel["title"]


def test_pool_panels_follow_the_variables(board: dict[str, Any]) -> None:
    """Every query of a pool metric filters on the namespace and pool variables."""
    for where, expr in dashboard_expressions(board).items():
        if where.startswith("variable"):
            continue
        for selector in re.findall(r"(linepool_\w+)(\{[^}]*\})?", expr):
            name, matchers = selector
            if name == "linepool_build_info":
                continue
            assert 'namespace=~"$namespace"' in matchers and 'pool=~"$pool"' in matchers, (where, expr)


def test_every_query_names_operator_metrics(board: dict[str, Any]) -> None:
    for where, expr in dashboard_expressions(board).items():
        names = metric_names(expr)
        assert names, f"{where}: no metric in {expr!r}"
        assert all(name.startswith("linepool_") for name in names), f"{where}: {sorted(names)}"


def test_it_shows_what_the_operator_is_for(board: dict[str, Any]) -> None:
    used = set().union(*(metric_names(expr) for expr in dashboard_expressions(board).values()))
    for name in ("linepool_pool_utilization", "linepool_pool_stop_at", "linepool_pool_scale_up_at",
                 "linepool_server_utilization", "linepool_pool_assignable_lines", "linepool_pool_servers",
                 "linepool_scale_events_total", "linepool_keepalive_sends_total", "linepool_pool_lines",
                 "linepool_pool_oldest_line_activity_age_seconds", "linepool_reconcile_duration_seconds_bucket",
                 "linepool_reconcile_errors_total", "linepool_prometheus_queries_total"):
        assert name in used, name
