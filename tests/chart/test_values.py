"""values.yaml and values.schema.json: documented, and strict enough that mistakes fail the install."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import pytest
import yaml

from .conftest import CHART, Helm
from .values_doc import TABLE_END, TABLE_START, documented_keys, render_table, undocumented

VALUES = CHART / "values.yaml"
SCHEMA = CHART / "values.schema.json"
README = CHART / "README.md"


def test_every_value_has_a_helm_docs_comment() -> None:
    """Each value a user can set has a `# --` comment on it (or on the object it belongs to)."""
    assert undocumented(VALUES) == []


def test_documented_keys_are_real_keys() -> None:
    """A `# --` comment must sit on a key that exists (no stale docs after a rename)."""
    values = yaml.safe_load(VALUES.read_text(encoding="utf-8"))
    for path in documented_keys(VALUES):
        node: Any = values
        for part in path.split("."):
            assert isinstance(node, dict) and part in node, f"documented {path} is not in values.yaml"
            node = node[part]


@pytest.mark.parametrize("readme", [README, README.parents[2] / "README.md"], ids=["chart", "project"])
def test_readme_values_tables_are_up_to_date(readme: pathlib.Path) -> None:
    text = readme.read_text(encoding="utf-8")
    assert TABLE_START in text and TABLE_END in text
    table = text.split(TABLE_START)[1].split(TABLE_END)[0].strip()
    assert table == render_table(VALUES), \
        f"{readme.name}'s values table is out of date; run: .venv/bin/python -m tests.chart.values_doc"


def _objects_without_closed_keys(schema: dict[str, Any], path: str = "") -> list[str]:
    found = []
    if schema.get("type") == "object" and "properties" in schema and schema.get("additionalProperties") is not False:
        found.append(path or "(root)")
    for key, sub in schema.get("properties", {}).items():
        found += _objects_without_closed_keys(sub, f"{path}.{key}" if path else key)
    items = schema.get("items")
    if isinstance(items, dict):
        found += _objects_without_closed_keys(items, f"{path}[]")
    return found


def test_schema_closes_every_object_with_known_keys() -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert _objects_without_closed_keys(schema) == []


def test_schema_covers_every_key_of_values_yaml() -> None:
    """Closed objects must still accept every default: each values.yaml key is in the schema."""
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    values = yaml.safe_load(VALUES.read_text(encoding="utf-8"))

    def walk(value: Any, node: dict[str, Any], path: str) -> None:
        if not isinstance(value, dict) or "properties" not in node:
            return
        for key, sub in value.items():
            assert key in node["properties"], f"{path}{key} is in values.yaml but not in values.schema.json"
            walk(sub, node["properties"][key], f"{path}{key}.")

    walk(values, schema, "")


@pytest.mark.parametrize(("assignment", "named"), [
    ("replicaCont=2", "replicaCont"),
    ("serviceMonitor.enable=true", "enable"),
    ("image.repo=example.com/x", "repo"),
    ("networkPolicy.apiserver.cidrs={10.0.0.1/32}", "apiserver"),
])
def test_schema_rejects_a_misspelt_key_and_names_it(helm: Helm, assignment: str, named: str) -> None:
    message = helm.template_error(sets=[assignment])
    assert "values don't meet the specifications of the schema" in message, message
    assert named in message, message


@pytest.mark.parametrize(("assignment", "named"), [
    ("replicaCount=two", "replicaCount"),
    ("replicaCount=0", "replicaCount"),
    ("logFormat=xml", "logFormat"),
    ("image.pullPolicy=Sometimes", "pullPolicy"),
    ("watchNamespaces={Team_A}", "watchNamespaces"),
    ("metrics.port=70000", "port"),
    ("rbac.secretNames=relay-token", "secretNames"),
    ("image.digest=latest", "digest"),
])
def test_schema_rejects_a_wrong_type_or_value_and_names_the_key(helm: Helm, assignment: str, named: str) -> None:
    message = helm.template_error(sets=[assignment])
    assert "values don't meet the specifications of the schema" in message, message
    assert named in message, message


def test_lint_reports_a_misspelt_key(helm: Helm) -> None:
    """helm lint (CI's chart check) applies the same schema as install and template."""
    result = helm.run("lint", CHART, "--strict", "--set", "replicaCont=2")
    assert result.returncode != 0
    assert "replicaCont" in result.stdout + result.stderr, result.stdout + result.stderr
