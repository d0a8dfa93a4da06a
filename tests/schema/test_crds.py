"""The CRDs in crds/: metadata, documentation, printer columns, defaults and CEL rules.

Beyond what the brief asks, these tests also check the structural-schema rules the API server
enforces when a CRD is created (every node typed, list-type keys required and scalar, defaults
valid), and that every string, list and map is bounded so CEL rules stay within the cost budget.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from .crd_schema import (
    CRD_DIR,
    CustomResourceDefinition,
    Schema,
    admit_manifest,
    compile_rule,
    crd_named,
    iter_schema_nodes,
    iter_validation_rules,
    load_crds,
    load_yaml_documents,
    openapi_errors,
    validate_manifest,
)

LINEPOOL = "linepools.linepool.dev"
SERVER = "messagingservers.linepool.dev"
OUR_CRDS = [LINEPOOL, SERVER]
API_VERSION = "linepool.dev/v1alpha1"


def _schema(name: str) -> Schema:
    return crd_named(name).schema("v1alpha1")


def _node(schema: Schema, dotted: str) -> Schema:
    node = schema
    for part in dotted.split("."):
        node = node["properties"][part]
    return node


def _nodes(name: str) -> list[tuple[str, Schema]]:
    return list(iter_schema_nodes(_schema(name)))


def _all_nodes() -> list[tuple[str, str, Schema]]:
    return [(name, path, node) for name in OUR_CRDS for path, node in _nodes(name)]


def _all_rules() -> list[tuple[str, str, Schema, dict[str, Any]]]:
    return [(name, *entry) for name in OUR_CRDS for entry in iter_validation_rules(_schema(name))]


# --------------------------------------------------------------------------------------------------
# Files and metadata
# --------------------------------------------------------------------------------------------------


def test_crd_files_hold_only_v1_crds() -> None:
    files = sorted(p.name for p in CRD_DIR.glob("*.yaml"))
    assert files == ["kopf-peering.yaml", "linepool.dev_linepools.yaml", "linepool.dev_messagingservers.yaml"]
    for path in CRD_DIR.glob("*.yaml"):
        for doc in load_yaml_documents(path):
            assert doc["apiVersion"] == "apiextensions.k8s.io/v1", path
            assert doc["kind"] == "CustomResourceDefinition", path


@pytest.mark.parametrize(
    ("name", "kind", "singular", "short_names"),
    [
        (LINEPOOL, "LinePool", "linepool", ["lp"]),
        (SERVER, "MessagingServer", "messagingserver", ["msrv"]),
    ],
)
def test_linepool_crd_names(name: str, kind: str, singular: str, short_names: list[str]) -> None:
    crd = crd_named(name)
    names = crd.raw["spec"]["names"]
    assert crd.group == "linepool.dev"
    assert crd.scope == "Namespaced"
    assert crd.kind == kind
    assert names["singular"] == singular
    assert names["shortNames"] == short_names
    assert names["categories"] == ["linepool"]
    assert crd.name == f"{crd.plural}.{crd.group}"
    assert [v["name"] for v in crd.versions] == ["v1alpha1"]
    version = crd.version("v1alpha1")
    assert version["served"] is True
    assert version["storage"] is True
    assert version["subresources"] == {"status": {}}


@pytest.mark.parametrize(
    ("name", "kind", "scope"),
    [
        ("kopfpeerings.kopf.dev", "KopfPeering", "Namespaced"),
        ("clusterkopfpeerings.kopf.dev", "ClusterKopfPeering", "Cluster"),
    ],
)
def test_kopf_peering_crds(name: str, kind: str, scope: str) -> None:
    crd = crd_named(name)
    assert crd.group == "kopf.dev"
    assert crd.kind == kind
    assert crd.scope == scope
    assert crd.name == f"{crd.plural}.{crd.group}"
    version = crd.version("v1")
    assert version["served"] is True
    assert version["storage"] is True
    schema = crd.schema("v1")
    for part in ("spec", "status"):
        assert schema["properties"][part]["x-kubernetes-preserve-unknown-fields"] is True
    peering = {
        "apiVersion": "kopf.dev/v1",
        "kind": kind,
        "metadata": {"name": "default"},
        "status": {"linepool-operator": {"priority": 100, "lifetime": 60}},
    }
    assert validate_manifest(peering) == []


def test_every_crd_name_is_unique() -> None:
    names = [crd.name for crd in load_crds()]
    assert len(names) == len(set(names))


# --------------------------------------------------------------------------------------------------
# Documentation and structure
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("crd_name", [crd.name for crd in load_crds()])
def test_every_field_has_a_description(crd_name: str) -> None:
    schema = crd_named(crd_name).schema(crd_named(crd_name).versions[0]["name"])
    missing = [
        path for path, node in iter_schema_nodes(schema) if not str(node.get("description", "")).strip()
    ]
    assert missing == [], f"fields without a description (kubectl explain shows nothing): {missing}"


@pytest.mark.parametrize(
    ("crd_name", "path", "node"), _all_nodes(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_descriptions_are_sentences(crd_name: str, path: str, node: Schema) -> None:
    description = node["description"]
    assert len(description) >= 15, f"{crd_name} {path}: description too short to teach anything"
    assert description[0].isupper() or description[0] in "{(", f"{crd_name} {path}: {description!r}"


def test_every_node_is_structural() -> None:
    untyped = [(name, path) for name, path, node in _all_nodes() if "type" not in node]
    assert untyped == [], "a structural schema needs a type on every node"
    for name, path, node in _all_nodes():
        if node["type"] == "object" and path not in ("<root>", "metadata"):
            assert "properties" in node or "additionalProperties" in node, f"{name} {path}: opaque object"
        assert not node.get("x-kubernetes-preserve-unknown-fields"), f"{name} {path}: keeps unknown fields"


def test_every_string_list_and_map_is_bounded() -> None:
    """Unbounded strings, lists and maps make the API server estimate CEL costs as huge."""
    unbounded = []
    for name, path, node in _all_nodes():
        if path in ("<root>.apiVersion", "apiVersion", "kind", "metadata", "<root>"):
            continue
        kind = node["type"]
        if kind == "string" and "maxLength" not in node and "enum" not in node:
            unbounded.append((name, path, "maxLength"))
        if kind == "array" and "maxItems" not in node:
            unbounded.append((name, path, "maxItems"))
        if (
            kind == "object"
            and isinstance(node.get("additionalProperties"), dict)
            and "maxProperties" not in node
        ):
            unbounded.append((name, path, "maxProperties"))
    assert unbounded == []


def test_list_types_are_well_formed() -> None:
    for name, path, node in _all_nodes():
        list_type = node.get("x-kubernetes-list-type")
        if list_type is None:
            continue
        assert node["type"] == "array", (name, path)
        items = node["items"]
        if list_type == "set":
            assert items["type"] in ("string", "integer", "number", "boolean"), (name, path)
        if list_type == "map":
            keys = node["x-kubernetes-list-map-keys"]
            assert keys, (name, path)
            for key in keys:
                assert key in items.get("required", []), f"{name} {path}: map key {key} must be required"
                assert items["properties"][key]["type"] in ("string", "integer"), (name, path, key)


def test_required_fields_are_declared() -> None:
    for name, path, node in _all_nodes():
        for field in node.get("required", []):
            assert field in node.get("properties", {}), f"{name} {path}: required {field} not declared"


@pytest.mark.parametrize(
    ("crd_name", "path", "node"),
    [entry for entry in _all_nodes() if "default" in entry[2]],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_every_default_is_valid(crd_name: str, path: str, node: Schema) -> None:
    errors, _ = openapi_errors(node["default"], node)
    assert errors == [], f"{crd_name} {path}: default {node['default']!r} fails its own schema"


def test_patterns_compile() -> None:
    for name, path, node in _all_nodes():
        if "pattern" in node:
            re.compile(node["pattern"])
            assert node["pattern"].startswith("^") and node["pattern"].endswith("$"), (name, path)


# --------------------------------------------------------------------------------------------------
# Printer columns
# --------------------------------------------------------------------------------------------------

LINEPOOL_COLUMNS = [
    ("Servers", "integer", ".status.servers.total", 0),
    ("Assignable", "integer", ".status.lines.assignable", 0),
    ("Utilization", "number", ".status.utilization", 0),
    ("Ready", "string", '.status.conditions[?(@.type=="Ready")].status', 0),
    ("Age", "date", ".metadata.creationTimestamp", 0),
    ("Mode", "string", ".spec.scaling.mode", 1),
    ("Max", "integer", ".spec.scaling.maxServers", 1),
    ("Inventory", "integer", ".status.lines.inventory", 1),
    ("Metrics", "string", '.status.conditions[?(@.type=="MetricsAvailable")].status', 1),
    ("LastScale", "date", ".status.lastScaleTime", 1),
    ("AtRisk", "integer", ".status.keepAlive.atRisk", 1),
    ("KeepAlive", "string", '.status.conditions[?(@.type=="KeepAliveHealthy")].status', 1),
]
SERVER_COLUMNS = [
    ("Pool", "string", ".spec.pool", 0),
    ("Phase", "string", ".status.phase", 0),
    ("Utilization", "number", ".status.utilization", 0),
    ("Lines", "integer", ".status.lineSummary.total", 0),
    ("Age", "date", ".metadata.creationTimestamp", 0),
    ("Assignable", "boolean", ".status.assignable", 1),
    ("Sent", "integer", ".status.messagesInWindow", 1),
    ("Quota", "integer", ".status.quota", 1),
    ("Endpoint", "string", ".spec.endpoint", 1),
    ("AtRisk", "integer", ".status.lineSummary.atRisk", 1),
    ("Credentials", "string", '.status.conditions[?(@.type=="CredentialsAvailable")].status', 1),
]


def _columns(crd: CustomResourceDefinition) -> list[tuple[str, str, str, int]]:
    return [
        (c["name"], c["type"], c["jsonPath"], c.get("priority", 0))
        for c in crd.version("v1alpha1")["additionalPrinterColumns"]
    ]


@pytest.mark.parametrize(("name", "expected"), [(LINEPOOL, LINEPOOL_COLUMNS), (SERVER, SERVER_COLUMNS)])
def test_printer_columns(name: str, expected: list[tuple[str, str, str, int]]) -> None:
    assert _columns(crd_named(name)) == expected


_SCHEMA_TYPE_OF_COLUMN = {
    "integer": "integer",
    "number": "number",
    "string": "string",
    "boolean": "boolean",
    "date": "string",
}


@pytest.mark.parametrize("name", OUR_CRDS)
def test_printer_columns_point_at_declared_fields(name: str) -> None:
    schema = _schema(name)
    for column, kind, json_path, _ in _columns(crd_named(name)):
        if json_path == ".metadata.creationTimestamp":
            continue
        node = schema
        for part in re.sub(r"\[\?\(@\.type==\"\w+\"\)\]", ".[*]", json_path).strip(".").split("."):
            node = node["items"] if part == "[*]" else node["properties"][part]
        assert node["type"] == _SCHEMA_TYPE_OF_COLUMN[kind], f"{column}: {json_path} is {node['type']}"
        if kind == "date":
            assert node.get("format") == "date-time", column


# --------------------------------------------------------------------------------------------------
# Defaults
# --------------------------------------------------------------------------------------------------


def test_linepool_defaults_are_applied() -> None:
    manifest = {
        "apiVersion": API_VERSION,
        "kind": "LinePool",
        "metadata": {"name": "p"},
        "spec": {"metrics": {"prometheusURL": "http://prometheus:9090"}},
    }
    stored, errors = admit_manifest(manifest)
    assert errors == []
    spec = stored["spec"]
    assert spec["quotas"] == {
        "messagesPerServerPerDay": 5000,
        "newConversationsPerLinePerDay": 50,
        "window": "Rolling24h",
        "timezone": "UTC",
    }
    assert spec["assignment"] == {"stopAt": 0.75}, "resumeAt has no default: the operator derives it"
    assert spec["scaling"] == {
        "mode": "Auto",
        "scaleUpAt": 0.75,
        "minServers": 1,
        "maxServers": 10,
        "cooldown": "15m",
        "linesPerServer": 4,
    }
    assert spec["metrics"] == {
        "prometheusURL": "http://prometheus:9090",
        "pollInterval": "30s",
        "staleAfter": "5m",
    }
    assert "inventory" not in spec
    assert "status" not in stored


def test_linepool_defaults_fill_partial_objects_and_keep_given_values() -> None:
    manifest = {
        "apiVersion": API_VERSION,
        "kind": "LinePool",
        "metadata": {"name": "p"},
        "spec": {
            "quotas": {"window": "CalendarDay"},
            "scaling": {"maxServers": 3},
            "metrics": {"prometheusURL": "http://p:9090", "pollInterval": "1m"},
        },
    }
    stored, errors = admit_manifest(manifest)
    assert errors == []
    assert stored["spec"]["quotas"]["window"] == "CalendarDay"
    assert stored["spec"]["quotas"]["timezone"] == "UTC"
    assert stored["spec"]["scaling"]["maxServers"] == 3
    assert stored["spec"]["scaling"]["minServers"] == 1
    assert stored["spec"]["metrics"]["pollInterval"] == "1m"
    assert stored["spec"]["metrics"]["staleAfter"] == "5m"


def test_server_template_gets_no_defaults() -> None:
    """Defaults belong to the servers created from the template, not to the template itself."""
    manifest = {
        "apiVersion": API_VERSION,
        "kind": "LinePool",
        "metadata": {"name": "p"},
        "spec": {
            "scaling": {"serverTemplate": {"spec": {"endpoint": "https://s-{ordinal}.example"}}},
            "metrics": {"prometheusURL": "http://p:9090"},
        },
    }
    stored, errors = admit_manifest(manifest)
    assert errors == []
    assert stored["spec"]["scaling"]["serverTemplate"] == {
        "spec": {"endpoint": "https://s-{ordinal}.example"}
    }


def test_messagingserver_defaults_are_applied() -> None:
    manifest = {
        "apiVersion": API_VERSION,
        "kind": "MessagingServer",
        "metadata": {"name": "s"},
        "spec": {
            "pool": "p",
            "endpoint": "https://s.example",
            "credentialsSecretRef": {"name": "c", "key": "k"},
            "lines": [{"id": "+14155550100"}, {"id": "a@b.co", "role": "Fallback"}],
        },
    }
    stored, errors = admit_manifest(manifest)
    assert errors == []
    assert stored["spec"]["cordoned"] is False
    assert stored["spec"]["lines"] == [
        {"id": "+14155550100", "role": "Primary"},
        {"id": "a@b.co", "role": "Fallback"},
    ]
    assert "dailyMessageQuota" not in stored["spec"]


# --------------------------------------------------------------------------------------------------
# CEL rules
# --------------------------------------------------------------------------------------------------


def test_there_are_cel_rules() -> None:
    rules = {rule["rule"] for *_, rule in _all_rules()}
    assert "!has(self.resumeAt) || self.resumeAt < self.stopAt" in rules
    assert "self.minServers <= self.maxServers" in rules
    assert "self == oldSelf" in rules


@pytest.mark.parametrize(
    ("crd_name", "path", "node", "rule"), _all_rules(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_cel_rule_compiles_and_has_a_message(
    crd_name: str, path: str, node: Schema, rule: dict[str, Any]
) -> None:
    compile_rule(rule["rule"])
    assert set(rule) <= {"rule", "message", "fieldPath", "reason", "messageExpression", "optionalOldSelf"}
    message = rule.get("message", "")
    assert message.strip(), f"{crd_name} {path}: CEL rule {rule['rule']!r} needs a human message"
    assert "messageExpression" not in rule, "cel-python cannot check messageExpression; use message"
    field = path.rsplit(".", maxsplit=1)[-1] if path != "<root>" else "metadata.name"
    field = field.removesuffix("[*]")  # a rule on list items names the list
    assert field in message, f"{crd_name} {path}: message {message!r} should name the field {field!r}"
    if "fieldPath" in rule:
        target = node
        for part in rule["fieldPath"].strip(".").split("."):
            assert part in target.get("properties", {}), f"{crd_name} {path}: fieldPath {rule['fieldPath']}"
            target = target["properties"][part]


def test_transition_rule_allows_unchanged_pool() -> None:
    spec: dict[str, Any] = {
        "pool": "p",
        "endpoint": "https://s.example",
        "credentialsSecretRef": {"name": "c", "key": "k"},
    }
    server = {"apiVersion": API_VERSION, "kind": "MessagingServer", "metadata": {"name": "s"}, "spec": spec}
    changed = {**server, "spec": {**spec, "pool": "q"}}
    assert validate_manifest(server, old=server) == []
    assert validate_manifest(changed) == [], "transition rules do not run on create"
    errors = validate_manifest(changed, old=server)
    assert errors == [
        'spec.pool: Invalid value: "string": pool is immutable; create a new MessagingServer instead'
    ]


@pytest.mark.parametrize(
    ("stop_at", "resume_at", "ok"),
    [
        (0.75, None, True),
        (0.75, 0.65, True),
        (0.75, 0, True),
        (0.75, 0.75, False),
        (0.5, 0.9, False),
        (0.8, 0.7999, True),
    ],
)
def test_resume_at_rule(stop_at: float, resume_at: float | None, ok: bool) -> None:
    assignment: dict[str, float] = {"stopAt": stop_at}
    if resume_at is not None:
        assignment["resumeAt"] = resume_at
    manifest = {
        "apiVersion": API_VERSION,
        "kind": "LinePool",
        "metadata": {"name": "p"},
        "spec": {"assignment": assignment, "metrics": {"prometheusURL": "http://p:9090"}},
    }
    errors = validate_manifest(manifest)
    assert (errors == []) is ok, errors


@pytest.mark.parametrize(
    ("endpoint", "ok"),
    [
        ("https://imsg-{ordinal}.example.net", True),
        ("https://{name}.example.net/api/{ordinal}", True),
        ("https://imsg.example.net", True),
        ("https://imsg-{index}.example.net", False),
        ("https://imsg-{ordinal.example.net", False),
        ("https://imsg-{{ordinal}}.example.net", False),
    ],
)
def test_server_template_placeholders(endpoint: str, ok: bool) -> None:
    manifest = {
        "apiVersion": API_VERSION,
        "kind": "LinePool",
        "metadata": {"name": "p"},
        "spec": {
            "scaling": {"serverTemplate": {"spec": {"endpoint": endpoint}}},
            "metrics": {"prometheusURL": "http://p:9090"},
        },
    }
    errors = validate_manifest(manifest)
    assert (errors == []) is ok, errors


@pytest.mark.parametrize(
    ("name", "ok"), [("sales", True), ("a" * 63, True), ("a" * 64, False), ("sales.eu", False)]
)
def test_linepool_name_must_be_referable_from_spec_pool(name: str, ok: bool) -> None:
    manifest = {
        "apiVersion": API_VERSION,
        "kind": "LinePool",
        "metadata": {"name": name},
        "spec": {"metrics": {"prometheusURL": "http://p:9090"}},
    }
    errors = validate_manifest(manifest)
    assert (errors == []) is ok, errors


# --------------------------------------------------------------------------------------------------
# Keep-alive (spec.keepAlive, its status, and the line status it writes)
# --------------------------------------------------------------------------------------------------

KEEP_ALIVE_DEFAULTS = {
    "enabled": True,
    "idleAfter": "21d",
    "deadline": "45d",
    "window": {"start": "10:00", "end": "19:00", "days": ["Mon", "Tue", "Wed", "Thu", "Fri"]},
    "minSpacing": "10m",
    "maxPerDay": 20,
}


def _pool_with_keep_alive(keep_alive: dict[str, Any] | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"metrics": {"prometheusURL": "http://p:9090"}}
    if keep_alive is not None:
        spec["keepAlive"] = keep_alive
    return {"apiVersion": API_VERSION, "kind": "LinePool", "metadata": {"name": "p"}, "spec": spec}


@pytest.mark.parametrize("keep_alive", [None, {}, {"window": {}}], ids=["absent", "empty", "empty-window"])
def test_keep_alive_defaults_are_applied(keep_alive: dict[str, Any] | None) -> None:
    stored, errors = admit_manifest(_pool_with_keep_alive(keep_alive))
    assert errors == []
    assert stored["spec"]["keepAlive"] == KEEP_ALIVE_DEFAULTS, "partners and messages stay absent: empty"


def test_keep_alive_keeps_given_values() -> None:
    keep_alive = {
        "enabled": False,
        "idleAfter": "14d",
        "deadline": "30d",
        "window": {"start": "09:30", "end": "17:45", "days": ["Sat", "Sun"]},
        "minSpacing": "1h30m",
        "maxPerDay": 5,
        "partners": ["+14155550100", "keepalive@example.com"],
        "messages": ["Morning!", "How is it going?"],
    }
    stored, errors = admit_manifest(_pool_with_keep_alive(keep_alive))
    assert errors == []
    assert stored["spec"]["keepAlive"] == keep_alive


def _keep_alive_errors(**fields: Any) -> list[str]:
    return validate_manifest(_pool_with_keep_alive(fields))


@pytest.mark.parametrize(
    ("fields", "ok"),
    [
        ({"window": {"start": "09:00", "end": "09:01"}}, True),
        ({"window": {"start": "00:00", "end": "23:59"}}, True),
        ({"window": {"start": "19:00", "end": "19:00"}}, False),
        ({"window": {"start": "20:00"}}, False),
        ({"window": {"start": "9:00"}}, False),
        ({"window": {"end": "24:00"}}, False),
        ({"window": {"days": ["Sun"]}}, True),
        ({"window": {"days": []}}, False),
        ({"window": {"days": ["Mon", "Mon"]}}, False),
        ({"window": {"days": ["monday"]}}, False),
        ({"idleAfter": "1d", "deadline": "2d"}, True),
        ({"idleAfter": "50d", "deadline": "60d"}, True),
        ({"idleAfter": "9d", "deadline": "10d"}, True),
        ({"idleAfter": "10d", "deadline": "9d"}, False),
        ({"idleAfter": "21d", "deadline": "21d"}, False),
        ({"idleAfter": "0d"}, False),
        ({"idleAfter": "51d", "deadline": "60d"}, False),
        ({"idleAfter": "021d"}, False),
        ({"idleAfter": "36h"}, False),
        ({"deadline": "61d"}, False),
        ({"minSpacing": "1m"}, True),
        ({"minSpacing": "24h"}, True),
        ({"minSpacing": "2h30m"}, True),
        ({"minSpacing": "59s"}, False),
        ({"minSpacing": "24h1s"}, False),
        ({"minSpacing": "1d"}, False),
        ({"maxPerDay": 1000}, True),
        ({"maxPerDay": 0}, False),
        ({"maxPerDay": 1001}, False),
        ({"partners": ["+14155550100", "a@b.co"]}, True),
        ({"partners": ["bob"]}, False),
        ({"partners": ["4155550100"]}, False),
        ({"partners": ["+14155550100", "+14155550100"]}, False),
        ({"partners": [f"+1415555{i:04d}" for i in range(51)]}, False),
        ({"messages": ["Hi! Lunch at 12:30?"]}, True),
        ({"messages": ["see https://example.com"]}, False),
        ({"messages": ["WWW.example.com"]}, False),
        ({"messages": [""]}, False),
        ({"messages": ["  "]}, False),
        ({"messages": ["x" * 321]}, False),
        ({"messages": ["x"] * 101}, False),
    ],
)
def test_keep_alive_rules(fields: dict[str, Any], ok: bool) -> None:
    errors = _keep_alive_errors(**fields)
    assert (errors == []) is ok, errors
    assert all(error.startswith("spec.keepAlive") for error in errors), errors


@pytest.mark.parametrize(
    ("fields", "where", "message"),
    [
        ({"window": {"start": "20:00"}}, "spec.keepAlive.window.start",
         "keepAlive.window.start must be before keepAlive.window.end"),
        ({"deadline": "20d"}, "spec.keepAlive.deadline", "keepAlive.deadline must be longer than keepAlive.idleAfter"),
        ({"idleAfter": "51d"}, "spec.keepAlive.idleAfter", "between 1d and 50d"),
        ({"minSpacing": "30s"}, "spec.keepAlive.minSpacing", "keepAlive.minSpacing must be between 1m and 24h"),
        ({"minSpacing": "25h"}, "spec.keepAlive.minSpacing", "keepAlive.minSpacing must be between 1m and 24h"),
        ({"partners": ["+14155550100", "bob"]}, "spec.keepAlive.partners[1]", "E.164"),
        ({"messages": ["ok", "go to www.example.com"]}, "spec.keepAlive.messages[1]", "must not contain a link"),
        ({"window": {"days": ["Mon", "Funday"]}}, "spec.keepAlive.window.days[1]", "Unsupported value"),
    ],
)
def test_keep_alive_errors_name_the_field(fields: dict[str, Any], where: str, message: str) -> None:
    errors = _keep_alive_errors(**fields)
    assert any(error.startswith(f"{where}:") and message in error for error in errors), errors


def test_duration_rules_use_only_units_kubernetes_cel_knows() -> None:
    """Kubernetes CEL's duration() is Go's: no unit d. cel-python accepts d, so check the text."""
    for name, path, _, rule in _all_rules():
        if "duration(" in rule["rule"]:
            literals = re.findall(r"duration\('([^']*)'\)", rule["rule"])
            assert all(not literal.endswith("d") for literal in literals), (name, path)
            assert "!self.matches(" in rule["rule"], f"{name} {path}: guard duration(self) with the Go pattern"


def test_last_activity_timestamp_query_is_optional() -> None:
    manifest = _pool_with_keep_alive(None)
    query = 'max by (server, line) (my_last_seen{server=~"{{servers}}"})'
    manifest["spec"]["metrics"]["queries"] = {"lastActivityTimestamp": query}
    stored, errors = admit_manifest(manifest)
    assert errors == []
    assert stored["spec"]["metrics"]["queries"] == {"lastActivityTimestamp": query}
    manifest["spec"]["metrics"]["queries"] = {"lastActivityTimestamp": ""}
    assert validate_manifest(manifest) != []


POOL_KEEP_ALIVE_STATUS = {
    "keepAlive": {"due": 3, "scheduled": 2, "sentToday": 7, "atRisk": 1, "day": "2026-03-02"},
    "conditions": [
        {
            "type": "KeepAliveHealthy",
            "status": "False",
            "reason": "LineAtRisk",
            "message": "+14155550100 has had no traffic for 46d",
            "lastTransitionTime": "2026-03-02T10:00:00Z",
        }
    ],
}

SERVER_KEEP_ALIVE_STATUS = {
    "lineSummary": {"total": 2, "assignable": 1, "atRisk": 1},
    "lines": [
        {
            "id": "+14155550100",
            "role": "Primary",
            "state": "AtRisk",
            "assignable": False,
            "lastActivityTime": "2026-01-15T10:00:00Z",
            "lastKeepAliveTime": "2026-01-15T10:00:00Z",
            "nextKeepAliveTime": "2026-03-02T11:20:00Z",
            "keepAlive": {
                "key": "+14155550100/2026-03-02",
                "to": "a@b.co",
                "text": "Morning!",
                "plannedTime": "2026-03-02T11:20:00Z",
                "phase": "Planned",
                "attempts": 0,
            },
        },
        {
            "id": "a@b.co",
            "state": "Idle",
            "keepAlive": {
                "key": "a@b.co/2026-03-01",
                "to": "+14155550100",
                "text": "Hello!",
                "plannedTime": "2026-03-01T10:05:00Z",
                "phase": "Failed",
                "attempts": 3,
                "lastAttemptTime": "2026-03-01T10:35:00Z",
                "replyPlannedTime": "2026-03-01T10:09:00Z",
                "message": "relay answered HTTP 503",
            },
        },
    ],
    "conditions": [
        {"type": "CredentialsAvailable", "status": "False", "reason": "SecretKeyMissing",
         "message": "Secret c has no key k"},
    ],
}


def _with_status(kind: str, status: dict[str, Any]) -> dict[str, Any]:
    if kind == "LinePool":
        manifest = _pool_with_keep_alive(None)
    else:
        manifest = {
            "apiVersion": API_VERSION,
            "kind": "MessagingServer",
            "metadata": {"name": "s"},
            "spec": {"pool": "p", "endpoint": "https://s.example", "credentialsSecretRef": {"name": "c", "key": "k"}},
        }
    return {**manifest, "status": status}


@pytest.mark.parametrize(
    ("kind", "status"), [("LinePool", POOL_KEEP_ALIVE_STATUS), ("MessagingServer", SERVER_KEEP_ALIVE_STATUS)]
)
def test_keep_alive_status_survives_pruning(kind: str, status: dict[str, Any]) -> None:
    """The API server drops status fields its schema lacks: every field the operator writes is declared."""
    stored, errors = admit_manifest(_with_status(kind, status))
    assert errors == []
    assert stored["status"] == status


@pytest.mark.parametrize(
    ("kind", "status", "where"),
    [
        ("LinePool", {"keepAlive": {"atRisk": -1}}, "status.keepAlive.atRisk"),
        ("LinePool", {"keepAlive": {"day": "March 2nd"}}, "status.keepAlive.day"),
        ("MessagingServer", {"lines": [{"id": "a@b.co", "state": "Dormant"}]}, "status.lines[0].state"),
        ("MessagingServer", {"lines": [{"id": "a@b.co", "keepAlive": {"phase": "Queued"}}]},
         "status.lines[0].keepAlive.phase"),
        ("MessagingServer", {"lines": [{"id": "a@b.co", "keepAlive": {"attempts": -1}}]},
         "status.lines[0].keepAlive.attempts"),
        ("MessagingServer", {"lines": [{"id": "a@b.co", "nextKeepAliveTime": "tomorrow"}]},
         "status.lines[0].nextKeepAliveTime"),
    ],
)
def test_keep_alive_status_is_typed(kind: str, status: dict[str, Any], where: str) -> None:
    errors = validate_manifest(_with_status(kind, status))
    assert any(error.startswith(f"{where}:") for error in errors), errors


@pytest.mark.parametrize(
    ("crd_name", "condition_types"),
    [(LINEPOOL, ["KeepAliveHealthy"]), (SERVER, ["CredentialsAvailable"])],
)
def test_new_condition_types_are_documented(crd_name: str, condition_types: list[str]) -> None:
    conditions = _node(_schema(crd_name), "status.conditions")
    for condition_type in condition_types:
        assert condition_type in conditions["description"]
        assert condition_type in conditions["items"]["properties"]["type"]["description"]
