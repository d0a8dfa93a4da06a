"""Metric names in PromQL expressions, and the operator's rule file and dashboard as data.

A small tokenizer rather than a full parser (PyPI's ``promql-parser`` would add a compiled
dependency for this one use): it drops string literals, label matchers, range and offset
durations and Grafana variables, then keeps the identifiers that are neither functions,
aggregations, keywords nor label lists of ``by``/``without``/``on``/``ignoring``/``group_*``.
tests/observability/test_promql_names.py pins its behaviour on tricky expressions.
"""

from __future__ import annotations

import json
import pathlib
import re
from collections.abc import Iterator
from typing import Any

import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "linepool-operator"
RULES_FILE = CHART / "files" / "prometheus-rules.yaml"
DASHBOARD_FILE = CHART / "files" / "dashboard.json"
ALERT_TESTS_FILE = REPO / "tests" / "observability" / "alerts_test.yaml"

_KEYWORDS = frozenset({
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
    "inf", "nan", "atan2",
})
_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_OFFSET = re.compile(r"\boffset\s+-?[0-9a-zA-Z_$]+")
_AT = re.compile(r"@\s*(?:start\(\)|end\(\)|[0-9.]+)")
_GRAFANA_VARIABLE = re.compile(r"\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*")
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_NUMBER = re.compile(r"(?<![A-Za-z0-9_:])(?:0x[0-9a-fA-F]+|[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?|\.[0-9]+)")
_IDENTIFIER = re.compile(r"(?<![A-Za-z0-9_:.])([A-Za-z_:][A-Za-z0-9_:]*)\s*(\()?")
_LABEL_VALUES = re.compile(r"^\s*(?:label_values|query_result)\s*\((.*)\)\s*$", re.S)


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (``{__name__=~...}`` selectors are not resolved)."""
    label_values = _LABEL_VALUES.match(expr)
    if label_values:  # Grafana's label_values(metric{...}, label); label_values(label) names none
        inner = label_values.group(1)
        if "," not in _MATCHERS.sub("{}", inner):
            return set()
        expr = inner.rsplit(",", 1)[0]
    text = _STRING.sub('""', expr)
    text = _GRAFANA_VARIABLE.sub("1", text)
    text = _MATCHERS.sub(" ", text)
    text = _RANGE.sub(" ", text)
    text = _OFFSET.sub(" ", text)
    text = _AT.sub(" ", text)
    text = _LABEL_LIST.sub(" ", text)
    text = _NUMBER.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in _KEYWORDS:
            continue
        names.add(name)
    return names


# --- the rule file -----------------------------------------------------------------------------

def rules() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(RULES_FILE.read_text(encoding="utf-8"))
    return data


def alerting_rules() -> list[dict[str, Any]]:
    return [rule for group in rules()["groups"] for rule in group["rules"] if "alert" in rule]


# The rule group of the placement service (`linepool serve`); every other group is the operator's.
PLACEMENT_GROUP = "linepool-placement"


def rule_expressions(*, placement: bool | None = None) -> dict[str, str]:
    """``alert or record name -> expr`` for every rule; ``placement`` True or False keeps only the
    placement service's group or only the operator's groups."""
    return {rule.get("alert") or rule["record"]: rule["expr"]
            for group in rules()["groups"] for rule in group["rules"]
            if placement is None or (group["name"] == PLACEMENT_GROUP) == placement}


# --- the dashboard -----------------------------------------------------------------------------

def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD_FILE.read_text(encoding="utf-8"))
    return data


def panels(board: dict[str, Any] | None = None) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    for panel in (board or dashboard())["panels"]:
        yield panel
        yield from panel.get("panels", [])


def dashboard_expressions(board: dict[str, Any] | None = None) -> dict[str, str]:
    """``where -> PromQL`` for every panel target and every query variable."""
    board = board or dashboard()
    found: dict[str, str] = {}
    for panel in panels(board):
        for target in panel.get("targets", []):
            found[f"panel {panel.get('title')!r} target {target.get('refId')}"] = target["expr"]
    for variable in board.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable["query"]
            found[f"variable {variable['name']}"] = query["query"] if isinstance(query, dict) else query
    return found
