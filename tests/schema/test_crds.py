"""The CRDs in crds/: metadata, documentation, printer columns, defaults, CEL rules and status.

Two kinds of test live here. Static lints read the files and need no server: names, descriptions
(what `kubectl explain` shows), bounds on every string, list and map (so the API server's CEL cost
estimate stays low), list-type keys, patterns, printer columns. Everything about what the API
server *does* with an object (which defaults it stores, which objects its schema and CEL rules
refuse, which status fields survive its pruning) is asked of the genuine kube-apiserver (the
``kube`` fixture) by dry-run creates, real creates, updates and ``/status`` patches.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from linepool.api.spec import Health, KeepAlive, parse_pool_spec
from linepool.api.types import HealthPattern
from linepool.sandbox.kubeapi import KubeApiError, KubeApiServer

from .admission import causes, create, in_namespace, refusal
from .crd_files import (
    CRD_DIR,
    CustomResourceDefinition,
    Schema,
    crd_named,
    iter_schema_nodes,
    iter_validation_rules,
    load_crds,
    load_yaml_documents,
)

LINEPOOL = "linepools.linepool.dev"
SERVER = "messagingservers.linepool.dev"
OUR_CRDS = [LINEPOOL, SERVER]
API_VERSION = "linepool.dev/v1alpha1"
METRICS = {"prometheusURL": "http://p:9090"}


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


def _documented_nodes() -> list[tuple[str, str, Schema]]:
    """Every node but the root ``metadata``, on which the API server forbids a description."""
    return [entry for entry in _all_nodes() if entry[1] != "metadata"]


def _all_rules() -> list[tuple[str, str, Schema, dict[str, Any]]]:
    return [(name, *entry) for name in OUR_CRDS for entry in iter_validation_rules(_schema(name))]


def _pool(spec: dict[str, Any] | None = None, name: str = "p") -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "LinePool", "metadata": {"name": name},
            "spec": {"metrics": dict(METRICS), **(spec or {})}}


def _server(**spec: Any) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "MessagingServer", "metadata": {"name": "s"},
            "spec": {"pool": "p", "endpoint": "https://s.example", "credentialsSecretRef": {"name": "c", "key": "k"},
                     **spec}}


def _stored(kube: KubeApiServer, namespace: str, manifest: dict[str, Any]) -> dict[str, Any]:
    """What the server would store for ``manifest`` (a dry-run create): defaults applied."""
    return create(kube, in_namespace(manifest, namespace))


def _refusal(kube: KubeApiServer, namespace: str, manifest: dict[str, Any]) -> KubeApiError | None:
    error = refusal(kube, manifest, namespace=namespace)
    assert error is None or error.status == 422, error
    return error


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


@pytest.mark.parametrize("crd_name", [crd.name for crd in load_crds()])
def test_the_server_establishes_every_crd(kube: KubeApiServer, crd_name: str) -> None:
    """The genuine server accepted the CRD (structural schema, valid defaults, CEL rules that compile
    within the cost budget), accepted its names and serves it."""
    stored = kube.get("customresourcedefinitions", None, crd_name)
    assert stored is not None, f"{crd_name} was not installed"
    conditions = {c["type"]: c for c in stored["status"]["conditions"]}
    for condition in ("NamesAccepted", "Established"):
        assert conditions[condition]["status"] == "True", conditions[condition]
    assert [v["name"] for v in stored["spec"]["versions"]] == [v["name"] for v in crd_named(crd_name).versions]


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
def test_kopf_peering_crds(kube: KubeApiServer, dry_run_namespace: str, name: str, kind: str, scope: str) -> None:
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
    peering: dict[str, Any] = {
        "apiVersion": "kopf.dev/v1",
        "kind": kind,
        "metadata": {"name": "default"},
        "status": {"linepool-operator": {"priority": 100, "lifetime": 60}},
    }
    if scope == "Namespaced":
        peering = in_namespace(peering, dry_run_namespace)
    stored = create(kube, peering)
    assert stored["status"] == peering["status"], "kopf's peering entries must be kept as written"


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
        path for path, node in iter_schema_nodes(schema)
        if path != "metadata" and not str(node.get("description", "")).strip()
    ]
    assert missing == [], f"fields without a description (kubectl explain shows nothing): {missing}"


@pytest.mark.parametrize("crd_name", [crd.name for crd in load_crds()])
def test_root_metadata_is_only_typed(crd_name: str) -> None:
    """The API server refuses a CRD whose root metadata has anything but ``type: object``."""
    crd = crd_named(crd_name)
    for version in crd.versions:
        metadata = crd.schema(version["name"]).get("properties", {}).get("metadata")
        assert metadata in (None, {"type": "object"}), f"{crd_name} {version['name']}: {metadata}"


@pytest.mark.parametrize(
    ("crd_name", "path", "node"), _documented_nodes(), ids=lambda v: v if isinstance(v, str) else ""
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
    ("Runway", "integer", ".status.forecast.inventoryRunwayDays", 1),
    ("ScaleUpIn", "integer", ".status.forecast.nextScaleUpInDays", 1),
    ("LastScale", "date", ".status.lastScaleTime", 1),
    ("AtRisk", "integer", ".status.keepAlive.atRisk", 1),
    ("KeepAlive", "string", '.status.conditions[?(@.type=="KeepAliveHealthy")].status', 1),
    ("FlagRisk", "integer", ".status.health.atRisk", 1),
]
SERVER_COLUMNS = [
    ("Pool", "string", ".spec.pool", 0),
    ("Phase", "string", ".status.phase", 0),
    ("Utilization", "number", ".status.utilization", 0),
    ("Lines", "integer", ".status.lineSummary.total", 0),
    ("FlagRisk", "integer", ".status.lineSummary.flagRisk", 0),
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


def test_flag_risk_columns_say_they_are_not_the_deactivation_risk() -> None:
    """Two risks, two columns: a reader of ``kubectl get`` must see which one a line has."""
    for name in OUR_CRDS:
        columns = {c["name"]: c for c in crd_named(name).version("v1alpha1")["additionalPrinterColumns"]}
        assert "flag" in columns["FlagRisk"]["description"]
        assert "not the deactivation risk that AtRisk counts" in " ".join(columns["FlagRisk"]["description"].split())


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
# Defaults, as the server stores them
# --------------------------------------------------------------------------------------------------

# The smallest valid objects: every default of the CRD applies to them (a line for lines[*].role).
MINIMAL = {LINEPOOL: _pool(), SERVER: _server(lines=[{"id": "+14155550100"}])}


@pytest.fixture(scope="module")
def minimal_stored(kube: KubeApiServer, dry_run_namespace: str) -> dict[str, dict[str, Any]]:
    return {name: _stored(kube, dry_run_namespace, manifest) for name, manifest in MINIMAL.items()}


def _at(obj: Any, path: str) -> Any:
    """The value at a display path of :func:`iter_schema_nodes` (``[*]``: the first item)."""
    for part in re.findall(r"[^.\[\]]+|\[\*\]", path):
        obj = obj[0] if part == "[*]" else obj[part]
    return obj


def _contains(stored: Any, default: Any) -> bool:
    """``stored`` holds ``default`` (a defaulted object also holds the defaults nested in it)."""
    if isinstance(default, dict):
        return isinstance(stored, dict) and all(k in stored and _contains(stored[k], v) for k, v in default.items())
    return bool(stored == default)


@pytest.mark.parametrize(
    ("crd_name", "path", "node"),
    [entry for entry in _all_nodes() if "default" in entry[2]],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_every_default_is_what_the_server_stores(minimal_stored: dict[str, dict[str, Any]], crd_name: str,
                                                 path: str, node: Schema) -> None:
    """Each documented default really lands in the stored object when the field is left out."""
    assert not re.search(r"\.\*", path), f"{crd_name} {path}: a default in a map value needs its own test"
    stored = _at(minimal_stored[crd_name], path)
    assert _contains(stored, node["default"]), f"{crd_name} {path}: stored {stored!r}, default {node['default']!r}"


def test_linepool_defaults_are_applied(kube: KubeApiServer, dry_run_namespace: str) -> None:
    stored = _stored(kube, dry_run_namespace, _pool({"metrics": {"prometheusURL": "http://prometheus:9090"}}))
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


def test_linepool_defaults_fill_partial_objects_and_keep_given_values(kube: KubeApiServer,
                                                                      dry_run_namespace: str) -> None:
    stored = _stored(kube, dry_run_namespace, _pool({
        "quotas": {"window": "CalendarDay"},
        "scaling": {"maxServers": 3},
        "metrics": {"prometheusURL": "http://p:9090", "pollInterval": "1m"},
    }))
    assert stored["spec"]["quotas"]["window"] == "CalendarDay"
    assert stored["spec"]["quotas"]["timezone"] == "UTC"
    assert stored["spec"]["scaling"]["maxServers"] == 3
    assert stored["spec"]["scaling"]["minServers"] == 1
    assert stored["spec"]["metrics"]["pollInterval"] == "1m"
    assert stored["spec"]["metrics"]["staleAfter"] == "5m"


def test_server_template_gets_no_defaults(kube: KubeApiServer, dry_run_namespace: str) -> None:
    """Defaults belong to the servers created from the template, not to the template itself."""
    stored = _stored(kube, dry_run_namespace,
                     _pool({"scaling": {"serverTemplate": {"spec": {"endpoint": "https://s-{ordinal}.example"}}}}))
    assert stored["spec"]["scaling"]["serverTemplate"] == {
        "spec": {"endpoint": "https://s-{ordinal}.example"}
    }


def test_messagingserver_defaults_are_applied(kube: KubeApiServer, dry_run_namespace: str) -> None:
    lines = [{"id": "+14155550100"}, {"id": "a@b.co", "role": "Fallback"}]
    stored = _stored(kube, dry_run_namespace, _server(lines=lines))
    assert stored["spec"]["cordoned"] is False
    assert stored["spec"]["lines"] == [
        {"id": "+14155550100", "role": "Primary"},
        {"id": "a@b.co", "role": "Fallback"},
    ]
    assert "dailyMessageQuota" not in stored["spec"]


def test_the_operator_reads_the_server_defaults_as_its_own(minimal_stored: dict[str, dict[str, Any]]) -> None:
    """The spec the server stores for a bare pool parses to what the parser assumes for absent fields."""
    assert parse_pool_spec(minimal_stored[LINEPOOL]["spec"]) == parse_pool_spec(MINIMAL[LINEPOOL]["spec"])


def test_keep_alive_defaults_match_the_crd(kube: KubeApiServer, dry_run_namespace: str) -> None:
    """What the API server stores for keepAlive: {} parses to the parser's own defaults."""
    stored = _stored(kube, dry_run_namespace, _pool({"keepAlive": {}}))
    assert parse_pool_spec(stored["spec"]).keep_alive == KeepAlive()


# --------------------------------------------------------------------------------------------------
# CEL rules
# --------------------------------------------------------------------------------------------------


def test_there_are_cel_rules() -> None:
    rules = {rule["rule"] for *_, rule in _all_rules()}
    assert "!has(self.resumeAt) || self.resumeAt < self.stopAt" in rules
    assert "!has(self.minServers) || !has(self.maxServers) || self.minServers <= self.maxServers" in rules
    assert "self == oldSelf" in rules


@pytest.mark.parametrize(
    ("crd_name", "path", "node", "rule"), _all_rules(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_cel_rule_has_a_message_naming_its_field(
    crd_name: str, path: str, node: Schema, rule: dict[str, Any]
) -> None:
    """Whether a rule compiles is the server's call (test_the_server_establishes_every_crd)."""
    assert set(rule) <= {"rule", "message", "fieldPath", "reason", "messageExpression", "optionalOldSelf"}
    message = rule.get("message", "")
    assert message.strip(), f"{crd_name} {path}: CEL rule {rule['rule']!r} needs a human message"
    # test_bad_manifests.py finds each rule's case by its fixed message; an expression has none.
    assert "messageExpression" not in rule, "use message, so a bad-manifest case can expect it"
    field = path.rsplit(".", maxsplit=1)[-1] if path != "<root>" else "metadata.name"
    field = field.removesuffix("[*]")  # a rule on list items names the list
    assert field in message, f"{crd_name} {path}: message {message!r} should name the field {field!r}"
    if "fieldPath" in rule:
        target = node
        for part in rule["fieldPath"].strip(".").split("."):
            assert part in target.get("properties", {}), f"{crd_name} {path}: fieldPath {rule['fieldPath']}"
            target = target["properties"][part]


def test_transition_rule_allows_unchanged_pool(kube: KubeApiServer, namespace: str) -> None:
    server = in_namespace(_server(), namespace)
    stored = create(kube, server, dry_run=False)
    unchanged = kube.replace({**server, "metadata": {**server["metadata"],
                                                     "resourceVersion": stored["metadata"]["resourceVersion"]}})
    assert unchanged["spec"]["pool"] == "p", "an update that keeps spec.pool is accepted"
    changed = {**server, "spec": {**server["spec"], "pool": "q"}}
    assert refusal(kube, {**changed, "metadata": {"name": "t"}}, namespace=namespace) is None, \
        "transition rules do not run on create"
    changed["metadata"] = {**changed["metadata"], "resourceVersion": unchanged["metadata"]["resourceVersion"]}
    with pytest.raises(KubeApiError) as refused:
        kube.replace(changed)
    assert refused.value.status == 422
    assert causes(refused.value) == [
        ("spec.pool", 'Invalid value: "string": pool is immutable; create a new MessagingServer instead')
    ]
    with pytest.raises(KubeApiError, match="pool is immutable"):
        kube.patch("messagingservers", namespace, "s", {"spec": {"pool": "q"}})
    assert (kube.get("messagingservers", namespace, "s") or {})["spec"]["pool"] == "p"


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
def test_resume_at_rule(kube: KubeApiServer, dry_run_namespace: str, stop_at: float, resume_at: float | None,
                        ok: bool) -> None:
    assignment: dict[str, float] = {"stopAt": stop_at}
    if resume_at is not None:
        assignment["resumeAt"] = resume_at
    error = _refusal(kube, dry_run_namespace, _pool({"assignment": assignment}))
    assert (error is None) is ok, error
    if error is not None:
        assert ("spec.assignment.resumeAt", 'Invalid value: "object": assignment.resumeAt must be below '
                "assignment.stopAt") in causes(error)


@pytest.mark.parametrize(
    ("min_servers", "max_servers", "ok"),
    [(None, 1000, True), (3, 3, True), (0, 1, True), (11, None, False), (5, 4, False)],
)
def test_min_servers_rule(kube: KubeApiServer, dry_run_namespace: str, min_servers: int | None,
                          max_servers: int | None, ok: bool) -> None:
    scaling = {k: v for k, v in (("minServers", min_servers), ("maxServers", max_servers)) if v is not None}
    error = _refusal(kube, dry_run_namespace, _pool({"scaling": scaling}))
    assert (error is None) is ok, error
    if error is not None:
        assert "scaling.minServers must not exceed scaling.maxServers" in error.message


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
def test_server_template_placeholders(kube: KubeApiServer, dry_run_namespace: str, endpoint: str, ok: bool) -> None:
    error = _refusal(kube, dry_run_namespace, _pool({"scaling": {"serverTemplate": {"spec": {"endpoint": endpoint}}}}))
    assert (error is None) is ok, error
    if error is not None:
        assert "may only use the placeholders {ordinal} and {name}" in error.message


@pytest.mark.parametrize(
    ("name", "ok"), [("sales", True), ("a" * 63, True), ("a" * 64, False), ("sales.eu", False)]
)
def test_linepool_name_must_be_referable_from_spec_pool(kube: KubeApiServer, dry_run_namespace: str, name: str,
                                                        ok: bool) -> None:
    error = _refusal(kube, dry_run_namespace, _pool(name=name))
    assert (error is None) is ok, error
    if error is not None:
        assert "metadata.name of a LinePool must be at most 63 characters and contain no dots" in error.message


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
    return _pool(None if keep_alive is None else {"keepAlive": keep_alive})


@pytest.mark.parametrize("keep_alive", [None, {}, {"window": {}}], ids=["absent", "empty", "empty-window"])
def test_keep_alive_defaults_are_applied(kube: KubeApiServer, dry_run_namespace: str,
                                         keep_alive: dict[str, Any] | None) -> None:
    stored = _stored(kube, dry_run_namespace, _pool_with_keep_alive(keep_alive))
    assert stored["spec"]["keepAlive"] == KEEP_ALIVE_DEFAULTS, "partners and messages stay absent: empty"


def test_keep_alive_keeps_given_values(kube: KubeApiServer, dry_run_namespace: str) -> None:
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
    stored = _stored(kube, dry_run_namespace, _pool_with_keep_alive(keep_alive))
    assert stored["spec"]["keepAlive"] == keep_alive


def _refusals(kube: KubeApiServer, namespace: str, pool: dict[str, Any]) -> list[tuple[str, str]]:
    """The server's ``(field, message)`` refusals of this pool; [] if accepted."""
    error = _refusal(kube, namespace, pool)
    if error is None:
        return []
    found = causes(error)
    assert found, error
    return found


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
def test_keep_alive_rules(kube: KubeApiServer, dry_run_namespace: str, fields: dict[str, Any], ok: bool) -> None:
    errors = _refusals(kube, dry_run_namespace, _pool_with_keep_alive(fields))
    assert (errors == []) is ok, errors
    assert all(field.startswith("spec.keepAlive") for field, _ in errors), errors


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
def test_keep_alive_errors_name_the_field(kube: KubeApiServer, dry_run_namespace: str, fields: dict[str, Any],
                                         where: str, message: str) -> None:
    errors = _refusals(kube, dry_run_namespace, _pool_with_keep_alive(fields))
    assert any(field == where and message in text for field, text in errors), errors


def test_duration_rules_use_only_units_kubernetes_cel_knows() -> None:
    """Kubernetes CEL's duration() is Go's: it has no unit d, and fails at run time on one.

    A literal with d would break the rule for every object, and duration(self) on a value the
    field's own pattern allows but Go does not know would too: so each call is guarded by a Go-only
    pattern. (The keep-alive tables above show the server evaluating these rules.)
    """
    for name, path, _, rule in _all_rules():
        if "duration(" in rule["rule"]:
            literals = re.findall(r"duration\('([^']*)'\)", rule["rule"])
            assert all(not literal.endswith("d") for literal in literals), (name, path)
            assert "!self.matches(" in rule["rule"], f"{name} {path}: guard duration(self) with the Go pattern"


def test_last_activity_timestamp_query_is_optional(kube: KubeApiServer, dry_run_namespace: str) -> None:
    manifest = _pool_with_keep_alive(None)
    query = 'max by (server, line) (my_last_seen{server=~"{{servers}}"})'
    manifest["spec"]["metrics"]["queries"] = {"lastActivityTimestamp": query}
    stored = _stored(kube, dry_run_namespace, manifest)
    assert stored["spec"]["metrics"]["queries"] == {"lastActivityTimestamp": query}
    manifest["spec"]["metrics"]["queries"] = {"lastActivityTimestamp": ""}
    error = _refusal(kube, dry_run_namespace, manifest)
    assert error is not None, "an empty query is refused"
    assert [field for field, _ in causes(error)] == ["spec.metrics.queries.lastActivityTimestamp"]


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


PLURALS = {"LinePool": "linepools", "MessagingServer": "messagingservers"}


def _created(kube: KubeApiServer, namespace: str, kind: str) -> dict[str, Any]:
    """A real object of ``kind`` in ``namespace``, with no status yet."""
    manifest = _pool_with_keep_alive(None) if kind == "LinePool" else _server()
    return create(kube, in_namespace(manifest, namespace), dry_run=False)


def _status_after_patch(kube: KubeApiServer, namespace: str, kind: str, status: dict[str, Any]) -> Any:
    """Write ``status`` through the /status subresource, as the operator does; what a reader then sees."""
    name = _created(kube, namespace, kind)["metadata"]["name"]
    kube.patch_status(PLURALS[kind], namespace, name, status)
    return (kube.get(PLURALS[kind], namespace, name) or {}).get("status")


@pytest.mark.parametrize(
    ("kind", "status"), [("LinePool", POOL_KEEP_ALIVE_STATUS), ("MessagingServer", SERVER_KEEP_ALIVE_STATUS)]
)
def test_keep_alive_status_survives_pruning(kube: KubeApiServer, namespace: str, kind: str,
                                            status: dict[str, Any]) -> None:
    """The API server drops status fields its schema lacks: every field the operator writes is declared."""
    assert _status_after_patch(kube, namespace, kind, status) == status


@pytest.mark.parametrize("kind", ["LinePool", "MessagingServer"])
def test_undeclared_status_fields_are_dropped(kube: KubeApiServer, namespace: str, kind: str) -> None:
    """What the test above guards against: a field missing from the schema silently vanishes."""
    status = {"conditions": [{"type": "Ready", "status": "True", "since": "2026-03-02T10:00:00Z"}]}
    assert _status_after_patch(kube, namespace, kind, status) == {
        "conditions": [{"type": "Ready", "status": "True"}]}


def test_status_is_written_only_through_the_subresource(kube: KubeApiServer, namespace: str) -> None:
    """A status in a create or a spec update is ignored: only the operator's /status writes count."""
    manifest = in_namespace({**_pool_with_keep_alive(None), "status": {"utilization": 0.5}}, namespace)
    stored = create(kube, manifest, dry_run=False)
    assert "status" not in stored
    kube.patch("linepools", namespace, "p", {"status": {"utilization": 0.9}})
    assert "status" not in (kube.get("linepools", namespace, "p") or {})


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
def test_keep_alive_status_is_typed(kube: KubeApiServer, namespace: str, kind: str, status: dict[str, Any],
                                    where: str) -> None:
    _assert_status_refused(kube, namespace, kind, status, where)


def _assert_status_refused(kube: KubeApiServer, namespace: str, kind: str, status: dict[str, Any],
                           where: str) -> None:
    """A /status write of ``status`` on a new object is refused (422), naming the field ``where``."""
    name = _created(kube, namespace, kind)["metadata"]["name"]
    with pytest.raises(KubeApiError) as refused:
        kube.patch_status(PLURALS[kind], namespace, name, status)
    assert refused.value.status == 422
    # 1.30 names a status field relative to status (keepAlive.atRisk); later releases in full.
    named = {where, where.removeprefix("status.")}
    assert any(field in named for field, _ in causes(refused.value)), causes(refused.value)


@pytest.mark.parametrize(
    ("crd_name", "condition_types"),
    [(LINEPOOL, ["KeepAliveHealthy"]), (SERVER, ["CredentialsAvailable"])],
)
def test_new_condition_types_are_documented(crd_name: str, condition_types: list[str]) -> None:
    conditions = _node(_schema(crd_name), "status.conditions")
    for condition_type in condition_types:
        assert condition_type in conditions["description"]
        assert condition_type in conditions["items"]["properties"]["type"]["description"]


# --------------------------------------------------------------------------------------------------
# Line health (spec.health, the pool's status.health and the flag risks of each line)
# --------------------------------------------------------------------------------------------------

HEALTH_DEFAULTS = {
    "enabled": True,
    "cooldown": "1h",
    "burst": {"messages": 60, "within": "10m"},
    "noExchange": {"window": "24h", "minSent": 20, "minReplyRatio": 0.2},
    "followUps": {"max": 2},
    "coldOutreach": {"window": "24h", "maxLineInitiated": 10},
    "offHours": {"quiet": {"start": "22:00", "end": "08:00"}, "maxNetOutbound": 5},
}
PATTERNS = [pattern.value for pattern in HealthPattern]


def _pool_with_health(health: dict[str, Any] | None) -> dict[str, Any]:
    return _pool(None if health is None else {"health": health})


@pytest.mark.parametrize(
    "health",
    [None, {}, {"burst": {}, "noExchange": {}, "followUps": {}, "coldOutreach": {}, "offHours": {}},
     {"offHours": {"quiet": {}}}],
    ids=["absent", "empty", "empty-patterns", "empty-quiet"],
)
def test_health_defaults_are_applied(kube: KubeApiServer, dry_run_namespace: str,
                                     health: dict[str, Any] | None) -> None:
    stored = _stored(kube, dry_run_namespace, _pool_with_health(health))
    assert stored["spec"]["health"] == HEALTH_DEFAULTS
    assert parse_pool_spec(stored["spec"]).health == Health(), "the operator reads them as its own defaults"


def test_health_defaults_fill_partial_objects_and_keep_given_values(kube: KubeApiServer,
                                                                   dry_run_namespace: str) -> None:
    stored = _stored(kube, dry_run_namespace, _pool_with_health({
        "burst": {"messages": 100}, "offHours": {"quiet": {"start": "23:30"}}}))
    health = stored["spec"]["health"]
    assert health["burst"] == {"messages": 100, "within": "10m"}
    assert health["offHours"] == {"quiet": {"start": "23:30", "end": "08:00"}, "maxNetOutbound": 5}
    assert health["noExchange"] == HEALTH_DEFAULTS["noExchange"]


def test_health_keeps_given_values(kube: KubeApiServer, dry_run_namespace: str) -> None:
    health = {
        "enabled": False,
        "cooldown": "2h30m",
        "burst": {"messages": 100, "within": "1m"},
        "noExchange": {"window": "72h", "minSent": 1, "minReplyRatio": 1},
        "followUps": {"max": 3},
        "coldOutreach": {"window": "1h", "maxLineInitiated": 0},
        "offHours": {"quiet": {"start": "00:00", "end": "06:30"}, "maxNetOutbound": 0},
    }
    stored = _stored(kube, dry_run_namespace, _pool_with_health(health))
    assert stored["spec"]["health"] == health


@pytest.mark.parametrize(
    ("fields", "ok"),
    [
        ({"enabled": False}, True),
        ({"enabled": "no"}, False),
        ({"cooldown": "5m"}, True),
        ({"cooldown": "24h"}, True),
        ({"cooldown": "1.5h"}, True),
        ({"cooldown": "300000ms"}, True),
        ({"cooldown": "4m59s"}, False),
        ({"cooldown": "24h1s"}, False),
        ({"cooldown": "1d"}, False),
        ({"cooldown": "1h 30m"}, False),
        ({"burst": {"messages": 1}}, True),
        ({"burst": {"messages": 10000}}, True),
        ({"burst": {"messages": 0}}, False),
        ({"burst": {"messages": 10001}}, False),
        ({"burst": {"messages": 1.5}}, False),
        ({"burst": {"within": "1m"}}, True),
        ({"burst": {"within": "1h"}}, True),
        ({"burst": {"within": "59s"}}, False),
        ({"burst": {"within": "61m"}}, False),
        ({"noExchange": {"window": "1h"}}, True),
        ({"noExchange": {"window": "72h"}}, True),
        ({"noExchange": {"window": "59m"}}, False),
        ({"noExchange": {"window": "72h1m"}}, False),
        ({"noExchange": {"window": "3d"}}, False),
        ({"noExchange": {"minSent": 1}}, True),
        ({"noExchange": {"minSent": 10000}}, True),
        ({"noExchange": {"minSent": 0}}, False),
        ({"noExchange": {"minSent": 10001}}, False),
        ({"noExchange": {"minReplyRatio": 0}}, True),
        ({"noExchange": {"minReplyRatio": 1}}, True),
        ({"noExchange": {"minReplyRatio": 0.05}}, True),
        ({"noExchange": {"minReplyRatio": -0.01}}, False),
        ({"noExchange": {"minReplyRatio": 1.01}}, False),
        ({"noExchange": {"minReplyRatio": "20%"}}, False),
        ({"followUps": {"max": 1}}, True),
        ({"followUps": {"max": 3}}, True),
        ({"followUps": {"max": 0}}, False),
        ({"followUps": {"max": 4}}, False),
        ({"coldOutreach": {"window": "1h"}}, True),
        ({"coldOutreach": {"window": "72h"}}, True),
        ({"coldOutreach": {"window": "30m"}}, False),
        ({"coldOutreach": {"window": "73h"}}, False),
        ({"coldOutreach": {"maxLineInitiated": 0}}, True),
        ({"coldOutreach": {"maxLineInitiated": 1000}}, True),
        ({"coldOutreach": {"maxLineInitiated": -1}}, False),
        ({"coldOutreach": {"maxLineInitiated": 1001}}, False),
        ({"offHours": {"quiet": {"start": "22:00", "end": "08:00"}}}, True),
        ({"offHours": {"quiet": {"start": "01:00", "end": "05:00"}}}, True),
        ({"offHours": {"quiet": {"start": "23:59", "end": "00:00"}}}, True),
        ({"offHours": {"quiet": {"start": "08:00"}}}, False),
        ({"offHours": {"quiet": {"end": "22:00"}}}, False),
        ({"offHours": {"quiet": {"start": "06:00", "end": "06:00"}}}, False),
        ({"offHours": {"quiet": {"start": "9:00"}}}, False),
        ({"offHours": {"quiet": {"end": "24:00"}}}, False),
        ({"offHours": {"quiet": {"start": "22:00:00"}}}, False),
        ({"offHours": {"maxNetOutbound": 0}}, True),
        ({"offHours": {"maxNetOutbound": 1000}}, True),
        ({"offHours": {"maxNetOutbound": -1}}, False),
        ({"offHours": {"maxNetOutbound": 1001}}, False),
    ],
)
def test_health_rules(kube: KubeApiServer, dry_run_namespace: str, fields: dict[str, Any], ok: bool) -> None:
    errors = _refusals(kube, dry_run_namespace, _pool_with_health(fields))
    assert (errors == []) is ok, errors
    assert all(field.startswith("spec.health") for field, _ in errors), errors
    if ok:
        # What the server accepts, the operator accepts too (the parser is never the stricter one).
        parse_pool_spec(_pool_with_health(fields)["spec"])


@pytest.mark.parametrize(
    ("fields", "where", "message"),
    [
        ({"cooldown": "4m"}, "spec.health.cooldown", "health.cooldown must be between 5m and 24h"),
        ({"cooldown": "25h"}, "spec.health.cooldown", "health.cooldown must be between 5m and 24h"),
        ({"burst": {"within": "30s"}}, "spec.health.burst.within", "health.burst.within must be between 1m and 1h"),
        ({"noExchange": {"window": "73h"}}, "spec.health.noExchange.window",
         "health.noExchange.window must be between 1h and 72h"),
        ({"coldOutreach": {"window": "30m"}}, "spec.health.coldOutreach.window",
         "health.coldOutreach.window must be between 1h and 72h"),
        ({"offHours": {"quiet": {"start": "07:00", "end": "07:00"}}}, "spec.health.offHours.quiet.start",
         "health.offHours.quiet.start must differ from health.offHours.quiet.end"),
        ({"burst": {"messages": 0}}, "spec.health.burst.messages", "greater than or equal to 1"),
        ({"followUps": {"max": 4}}, "spec.health.followUps.max", "less than or equal to 3"),
        ({"noExchange": {"minReplyRatio": 2}}, "spec.health.noExchange.minReplyRatio", "less than or equal to 1"),
        ({"offHours": {"quiet": {"end": "8:00"}}}, "spec.health.offHours.quiet.end", "should match"),
    ],
)
def test_health_errors_name_the_field(kube: KubeApiServer, dry_run_namespace: str, fields: dict[str, Any],
                                      where: str, message: str) -> None:
    errors = _refusals(kube, dry_run_namespace, _pool_with_health(fields))
    assert any(field == where and message in text for field, text in errors), errors


@pytest.mark.parametrize("key", ["receivedInWindow", "lineInitiatedInWindow", "unansweredSendsInWindow"])
def test_health_query_overrides_are_optional(kube: KubeApiServer, dry_run_namespace: str, key: str) -> None:
    query = 'sum by (server, line) (increase(my_counter{server=~"{{servers}}"}[{{window}}]))'
    manifest = _pool({"metrics": {**METRICS, "queries": {key: query}}})
    assert _stored(kube, dry_run_namespace, manifest)["spec"]["metrics"]["queries"] == {key: query}
    manifest["spec"]["metrics"]["queries"] = {key: ""}
    error = _refusal(kube, dry_run_namespace, manifest)
    assert error is not None, "an empty query is refused"
    assert [field for field, _ in causes(error)] == [f"spec.metrics.queries.{key}"]


POOL_HEALTH_STATUS = {
    "health": {"atRisk": 3, "burst": 1, "noExchange": 1, "followUps": 0, "coldOutreach": 2, "offHours": 0,
               "unmeasured": ["FollowUps", "ColdOutreach"]},
}

SERVER_HEALTH_STATUS = {
    "lineSummary": {"total": 2, "assignable": 1, "atRisk": 0, "flagRisk": 1},
    "lines": [
        {
            "id": "+14155550100",
            "state": "Active",
            "assignable": False,
            "flagRisks": [
                {"pattern": "Burst", "figure": 142, "threshold": 60, "message": "142 messages in 10m, limit 60",
                 "since": "2026-03-02T10:00:00Z", "lastSeen": "2026-03-02T10:05:00Z"},
                {"pattern": "NoExchange", "figure": 0.08, "threshold": 0.2,
                 "message": "25 sent, 2 replies (8%) in 24h, need 20%",
                 "since": "2026-03-02T09:00:00Z", "lastSeen": "2026-03-02T10:05:00Z"},
            ],
        },
        {
            "id": "a@b.co",
            "state": "Flagged",
            "assignable": False,
            "lastFlag": {
                "time": "2026-03-01T03:12:00Z",
                "cause": "Burst",
                "message": "burst: 180 messages in 10m before the flag (limit 60); pace sends",
                "peakPerMinute": 41.5,
                "replies": 2,
                "sent": 230,
                "evidence": [
                    {"pattern": "Burst", "figure": 180, "threshold": 60, "message": "180 messages in 10m, limit 60"},
                    {"pattern": "OffHours", "figure": 9, "threshold": 5,
                     "message": "9 more sent than received since 22:00, limit 5"},
                ],
                "reportedTime": "2026-03-01T03:13:00Z",
            },
        },
        {"id": "c@d.co", "lastFlag": {"time": "2026-03-01T03:12:00Z", "cause": "None",
                                      "message": "no pattern seen in the hour before the flag", "evidence": []}},
    ],
}


@pytest.mark.parametrize(
    ("kind", "status"), [("LinePool", POOL_HEALTH_STATUS), ("MessagingServer", SERVER_HEALTH_STATUS)]
)
def test_health_status_survives_pruning(kube: KubeApiServer, namespace: str, kind: str,
                                        status: dict[str, Any]) -> None:
    """Every health field the operator writes is declared, so the API server keeps it."""
    assert _status_after_patch(kube, namespace, kind, status) == status


def _flag_risk(pattern: str) -> dict[str, Any]:
    return {"pattern": pattern, "figure": 1, "threshold": 0, "message": "m"}


@pytest.mark.parametrize(
    ("kind", "status", "where"),
    [
        ("LinePool", {"health": {"atRisk": -1}}, "status.health.atRisk"),
        ("LinePool", {"health": {"unmeasured": ["Spam"]}}, "status.health.unmeasured[0]"),
        ("LinePool", {"health": {"unmeasured": ["Burst", "Burst"]}}, "status.health.unmeasured[1]"),
        ("MessagingServer", {"lineSummary": {"flagRisk": -1}}, "status.lineSummary.flagRisk"),
        ("MessagingServer", {"lines": [{"id": "a@b.co", "flagRisks": [_flag_risk("Spam")]}]},
         "status.lines[0].flagRisks[0].pattern"),
        ("MessagingServer", {"lines": [{"id": "a@b.co", "flagRisks": [_flag_risk("Burst"), _flag_risk("Burst")]}]},
         "status.lines[0].flagRisks[1]"),
        ("MessagingServer", {"lines": [{"id": "a@b.co", "flagRisks": [{"figure": 1}]}]},
         "status.lines[0].flagRisks[0].pattern"),
        ("MessagingServer", {"lines": [{"id": "a@b.co", "flagRisks": [{**_flag_risk("Burst"), "since": "now"}]}]},
         "status.lines[0].flagRisks[0].since"),
        ("MessagingServer", {"lines": [{"id": "a@b.co", "flagRisks": [{**_flag_risk("Burst"), "message": "x" * 257}]}]},
         "status.lines[0].flagRisks[0].message"),
        ("MessagingServer", {"lines": [{"id": "a@b.co", "lastFlag": {"cause": "Spam"}}]},
         "status.lines[0].lastFlag.cause"),
        ("MessagingServer", {"lines": [{"id": "a@b.co", "lastFlag": {"message": "x" * 513}}]},
         "status.lines[0].lastFlag.message"),
        ("MessagingServer", {"lines": [{"id": "a@b.co", "lastFlag": {"replies": 1.5}}]},
         "status.lines[0].lastFlag.replies"),
        ("MessagingServer", {"lines": [{"id": "a@b.co", "lastFlag": {"evidence": [_flag_risk("Burst")] * 6}}]},
         "status.lines[0].lastFlag.evidence"),
    ],
)
def test_health_status_is_typed(kube: KubeApiServer, namespace: str, kind: str, status: dict[str, Any],
                                where: str) -> None:
    _assert_status_refused(kube, namespace, kind, status, where)


def test_health_enums_are_the_patterns() -> None:
    """Every place that names a pattern allows exactly the operator's HealthPattern values."""
    server = _schema(SERVER)
    line = _node(server, "status.lines")["items"]
    assert line["properties"]["flagRisks"]["items"]["properties"]["pattern"]["enum"] == PATTERNS
    last_flag = line["properties"]["lastFlag"]["properties"]
    assert last_flag["cause"]["enum"] == [*PATTERNS, "None"]
    assert last_flag["evidence"]["items"]["properties"]["pattern"]["enum"] == PATTERNS
    assert _node(_schema(LINEPOOL), "status.health.unmeasured")["items"]["enum"] == PATTERNS
    assert _node(_schema(LINEPOOL), "status.health.unmeasured")["maxItems"] == len(PATTERNS)
    counts = set(_node(_schema(LINEPOOL), "status.health")["properties"]) - {"atRisk", "unmeasured"}
    assert counts == set(_node(_schema(LINEPOOL), "spec.health")["properties"]) - {"enabled", "cooldown"}


def test_health_description_names_both_risks() -> None:
    """The flag risk and the deactivation risk are told apart where a reader meets them."""
    flag_risks = _node(_schema(SERVER), "status.lines")["items"]["properties"]["flagRisks"]["description"]
    assert "not the deactivation risk" in " ".join(flag_risks.split())
    state = _node(_schema(SERVER), "status.lines")["items"]["properties"]["state"]["description"]
    assert "flagRisks" in state
