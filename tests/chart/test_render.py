"""What `helm template` produces, checked the way a cluster and a user would see it."""

from __future__ import annotations

import pathlib
import textwrap
from typing import Any

import kubernetes_validate
import pytest
import yaml

from linepool.cli import build_parser
from linepool.sandbox.kubeapi import KubeApiServer
from tests.schema.admission import refusal

from .conftest import CHART, NAMESPACE, RELEASE, VALUES_FULL, Helm, Rendered

# Kinds kubernetes-validate has no schema for (it only knows built-in kinds). The peering objects
# are checked against the chart's own CRDs below instead; the Prometheus Operator's kinds are not
# checked here.
CUSTOM_KINDS = {"ClusterKopfPeering", "KopfPeering", "ServiceMonitor", "PrometheusRule"}
PEERING_KINDS = {"ClusterKopfPeering", "KopfPeering"}
VALIDATION_VERSION = "1.30.0"


# --------------------------------------------------------------------------------------------------
# Every manifest is valid for Kubernetes 1.30
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["default", "full"])
def test_rendered_builtin_kinds_pass_strict_kubernetes_validation(
        which: str, default_render: Rendered, full_render: Rendered, capsys: pytest.CaptureFixture[str]) -> None:
    rendered = default_render if which == "default" else full_render
    errors, skipped = [], set()
    for doc in rendered:
        if doc["kind"] in CUSTOM_KINDS:
            skipped.add(doc["kind"])
            continue
        try:
            kubernetes_validate.validate(doc, VALIDATION_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            errors.append(f"{doc['kind']}/{doc['metadata']['name']}: {where}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError:
            errors.append(f"{doc['kind']}/{doc['metadata']['name']}: no schema; a custom kind not in CUSTOM_KINDS?")
    with capsys.disabled():
        print(f"\n[{which}] kubernetes-validate {VALIDATION_VERSION} --strict skipped custom kinds: {sorted(skipped)}")
    assert errors == []
    assert rendered.kinds - CUSTOM_KINDS, "nothing was validated"


@pytest.mark.parametrize("which", ["default", "full"])
def test_peering_objects_pass_the_charts_peering_crd(which: str, default_render: Rendered,
                                                     full_render: Rendered, kube: KubeApiServer) -> None:
    rendered = default_render if which == "default" else full_render
    peerings = [doc for doc in rendered if doc["kind"] in PEERING_KINDS]
    assert peerings
    for doc in peerings:
        assert refusal(kube, doc) is None, doc  # a dry-run create on the genuine API server


def test_every_object_carries_the_standard_labels(full_render: Rendered) -> None:
    for doc in full_render:
        labels = doc["metadata"].get("labels", {})
        for key in ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version",
                    "app.kubernetes.io/managed-by", "helm.sh/chart"):
            assert key in labels, f"{doc['kind']}/{doc['metadata']['name']} lacks label {key}"


def test_namespaced_objects_go_to_the_release_or_a_watched_namespace(full_render: Rendered) -> None:
    cluster_scoped = {"ClusterRole", "ClusterRoleBinding", "ClusterKopfPeering"}
    per_watched_namespace = {"Role", "RoleBinding", "KopfPeering"}
    for doc in full_render:
        namespace = doc["metadata"].get("namespace")
        if doc["kind"] in cluster_scoped:
            assert namespace is None, doc["kind"]
        elif doc["kind"] in per_watched_namespace:
            assert namespace in {"team-a", "team-b"}, (doc["kind"], namespace)
        elif doc["kind"] == "ConfigMap" and doc["metadata"]["name"].endswith("dashboard"):
            assert namespace == "monitoring"
        else:
            assert namespace == NAMESPACE, (doc["kind"], doc["metadata"]["name"], namespace)


# --------------------------------------------------------------------------------------------------
# The operator's pod
# --------------------------------------------------------------------------------------------------


def test_default_runs_one_replica_as_a_deployment_that_never_overlaps(default_render: Rendered) -> None:
    workload = default_render.workload()
    assert workload["kind"] == "Deployment"
    assert workload["spec"]["replicas"] == 1
    assert workload["spec"]["strategy"] == {"type": "Recreate"}
    assert workload["metadata"]["name"] == f"{RELEASE}-linepool-operator"


def test_default_args_watch_the_cluster_with_peering(default_render: Rendered) -> None:
    container = default_render.container()
    assert container["args"] == [
        "run",
        "--metrics-port=8080",
        "--liveness=http://0.0.0.0:8081/healthz",
        "--log-format=json",
        "--peering=linepool-operator",
        "--priority=0",
        "--all-namespaces",
    ]
    assert "command" not in container, "the image's entrypoint (linepool) must stay"
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert "POD_INDEX" not in env


def test_args_are_accepted_by_the_operators_cli(default_render: Rendered, full_render: Rendered) -> None:
    """The flags the chart passes exist in `linepool run` (pod-level $(VAR) expanded by hand)."""
    for rendered in (default_render, full_render):
        args = [a.replace("$(POD_INDEX)", "1") for a in rendered.container()["args"]]
        parsed = build_parser().parse_args(args)
        assert parsed.command == "run"
        assert parsed.standalone is False


def test_full_values_reach_the_command_line(full_render: Rendered) -> None:
    args = full_render.container()["args"]
    assert args[:5] == ["run", "--metrics-port=9464", "--liveness=http://0.0.0.0:9465/healthz",
                        "--log-format=full", "--peering=linepool-teams"]
    assert [a for a in args if a.startswith("--namespace")] == ["--namespace=team-a", "--namespace=team-b"]
    assert "--all-namespaces" not in args
    assert "--verbose" in args
    assert args[-1] == "--metrics-address=0.0.0.0", "extraArgs come last"


@pytest.mark.parametrize("namespaces", [["one"], ["one", "two", "three"]])
def test_namespace_args_follow_watch_namespaces(helm: Helm, namespaces: list[str]) -> None:
    rendered = helm.template(sets=[f"watchNamespaces={{{','.join(namespaces)}}}"])
    args = rendered.container()["args"]
    assert [a.removeprefix("--namespace=") for a in args if a.startswith("--namespace=")] == namespaces
    assert "--all-namespaces" not in args


def test_replicas_run_as_a_statefulset_with_one_priority_each(full_render: Rendered) -> None:
    """kopf pauses every replica when two share the top priority: pod N gets -N, so pod 0 acts."""
    workload = full_render.workload()
    assert workload["kind"] == "StatefulSet"
    assert workload["spec"]["replicas"] == 2
    assert workload["spec"]["podManagementPolicy"] == "Parallel"
    assert workload["spec"]["serviceName"] == full_render.operator.one("Service")["metadata"]["name"]
    container = full_render.container()
    assert "--priority=-$(POD_INDEX)" in container["args"]
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.labels['apps.kubernetes.io/pod-index']"
    assert list(env)[:2] == ["POD_ID", "POD_INDEX"], "$(POD_INDEX) expands only if defined before use"
    assert env["TZ"] == {"name": "TZ", "value": "UTC"}


def test_kube_version_below_1_30_is_refused(helm: Helm) -> None:
    # 1.30 is the oldest release the CRDs are tested on, on a genuine API server.
    message = helm.template_error(kube_version="1.29.8")
    assert ">=1.30.0-0" in message, message
    assert helm.template(kube_version="1.30.0", sets=["replicaCount=2"]).workload()["kind"] == "StatefulSet"


@pytest.mark.parametrize("which", ["default", "full"])
def test_pod_is_locked_down(which: str, default_render: Rendered, full_render: Rendered) -> None:
    rendered = default_render if which == "default" else full_render
    pod = rendered.workload()["spec"]["template"]["spec"]
    container = rendered.container()
    security = container["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] == 65532
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    # A read-only root needs a writable /tmp.
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert any(v["name"] == "tmp" and "emptyDir" in v for v in pod["volumes"])
    # The operator talks to the API server: its pod mounts the token, the ServiceAccount does not.
    assert pod["automountServiceAccountToken"] is True
    service_account = rendered.operator.one("ServiceAccount")
    assert service_account["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == service_account["metadata"]["name"]
    assert container["resources"]["requests"] and container["resources"]["limits"]


@pytest.mark.parametrize("which", ["default", "full"])
def test_liveness_and_readiness_probe_kopfs_health_endpoint(which: str, default_render: Rendered,
                                                            full_render: Rendered) -> None:
    rendered = default_render if which == "default" else full_render
    container = rendered.container()
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    liveness_url = next(a for a in container["args"] if a.startswith("--liveness="))
    assert liveness_url == f"--liveness=http://0.0.0.0:{ports['health']}/healthz"
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}, probe
        assert container[probe]["periodSeconds"] > 0
    assert f"--metrics-port={ports['metrics']}" in container["args"]


def test_image_defaults_to_app_version_and_can_be_pinned_by_digest(default_render: Rendered,
                                                                   full_render: Rendered) -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    assert default_render.container()["image"] == f"ghcr.io/linepool/linepool-operator:{chart['appVersion']}"
    assert full_render.container()["image"] == (
        "registry.example.com/mirror/linepool-operator@sha256:"
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
    assert full_render.container()["imagePullPolicy"] == "Always"
    pod = full_render.workload()["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]


def test_pod_scheduling_values_reach_the_pod(full_render: Rendered, full_values: dict[str, Any]) -> None:
    template = full_render.workload()["spec"]["template"]
    pod = template["spec"]
    for key in ("nodeSelector", "tolerations", "affinity", "priorityClassName"):
        assert pod[key] == full_values[key], key
    assert template["metadata"]["annotations"] == full_values["podAnnotations"]
    assert template["metadata"]["labels"]["team"] == "messaging"
    # A spread constraint without a selector gets the operator's own pods as its selector.
    (constraint,) = pod["topologySpreadConstraints"]
    assert constraint["labelSelector"]["matchLabels"] == full_render.workload()["spec"]["selector"]["matchLabels"]
    assert {"name": "prometheus-ca", "configMap": {"name": "prometheus-ca"}} in pod["volumes"]


# --------------------------------------------------------------------------------------------------
# Peering object, Service, PodDisruptionBudget, NetworkPolicy
# --------------------------------------------------------------------------------------------------


def test_cluster_wide_gets_one_cluster_kopf_peering(default_render: Rendered) -> None:
    peering = default_render.one("ClusterKopfPeering")
    assert peering["metadata"]["name"] == "linepool-operator"
    assert "namespace" not in peering["metadata"]
    assert not default_render.of_kind("KopfPeering")


def test_watched_namespaces_get_a_kopf_peering_each(full_render: Rendered) -> None:
    peerings = full_render.of_kind("KopfPeering")
    assert {(p["metadata"]["namespace"], p["metadata"]["name"]) for p in peerings} == {
        ("team-a", "linepool-teams"), ("team-b", "linepool-teams")}
    assert not full_render.of_kind("ClusterKopfPeering")


def test_peering_object_can_be_left_to_someone_else(helm: Helm) -> None:
    rendered = helm.template(sets=["peering.create=false"])
    assert not rendered.kinds & PEERING_KINDS
    assert "--peering=linepool-operator" in rendered.container()["args"]


@pytest.mark.parametrize("which", ["default", "full"])
def test_metrics_service_selects_the_pods_on_the_named_port(which: str, default_render: Rendered,
                                                            full_render: Rendered) -> None:
    rendered = default_render if which == "default" else full_render
    service = rendered.operator.one("Service")
    (port,) = service["spec"]["ports"]
    assert port["name"] == "metrics" and port["targetPort"] == "metrics"
    pod_labels = rendered.workload()["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert rendered.workload()["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()


@pytest.mark.parametrize(("sets", "expected"), [
    ([], None),
    (["replicaCount=2"], 1),
    (["replicaCount=3", "podDisruptionBudget.minAvailable=2"], 2),
    (["replicaCount=3", "podDisruptionBudget.minAvailable=50%"], "50%"),
    (["replicaCount=2", "podDisruptionBudget.enabled=false"], None),
])
def test_pod_disruption_budget_only_with_two_replicas_or_more(helm: Helm, sets: list[str], expected: Any) -> None:
    rendered = helm.template(sets=sets)
    budgets = rendered.of_kind("PodDisruptionBudget")
    if expected is None:
        assert budgets == []
        return
    (budget,) = budgets
    assert budget["spec"]["minAvailable"] == expected
    assert budget["spec"]["selector"]["matchLabels"] == rendered.workload()["spec"]["selector"]["matchLabels"]


def test_pod_disruption_budget_that_would_block_every_drain_is_refused(helm: Helm) -> None:
    message = helm.template_error(sets=["replicaCount=2", "podDisruptionBudget.minAvailable=2"])
    assert "podDisruptionBudget.minAvailable (2) must be below replicaCount (2)" in message, message


def test_network_policy_is_off_by_default(default_render: Rendered) -> None:
    assert not default_render.of_kind("NetworkPolicy")


def test_network_policy_allows_only_the_operators_traffic(full_render: Rendered) -> None:
    policy = full_render.operator.one("NetworkPolicy")["spec"]
    assert policy["podSelector"]["matchLabels"] == full_render.workload()["spec"]["selector"]["matchLabels"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    container_ports = {p["name"] for p in full_render.container()["ports"]}
    ingress = policy["ingress"]
    assert ingress[0]["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    assert ingress[0]["from"][0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "monitoring"}
    for rule in ingress:
        for port in rule["ports"]:
            assert port["port"] in container_ports, port
    egress = policy["egress"]
    ports = [sorted((p["port"], p["protocol"]) for p in rule["ports"]) for rule in egress]
    assert ports[0] == [(53, "TCP"), (53, "UDP")]                           # DNS
    assert ports[1] == [(443, "TCP"), (6443, "TCP")]                        # API server
    assert egress[1]["to"] == [{"ipBlock": {"cidr": "10.0.0.1/32"}}, {"ipBlock": {"cidr": "172.20.0.0/16"}}]
    assert ports[2] == [(9090, "TCP")]                                      # Prometheus
    assert ports[3] == [(443, "TCP"), (8443, "TCP")]                        # relays
    assert egress[3]["to"] == [{"ipBlock": {"cidr": "203.0.113.0/24"}}]
    assert egress[4]["ports"] == [{"port": 4317, "protocol": "TCP"}]      # extraEgress


def test_network_policy_without_peers_allows_any_address_on_the_ports(helm: Helm) -> None:
    policy = helm.template(sets=["networkPolicy.enabled=true"]).one("NetworkPolicy")["spec"]
    assert "from" not in policy["ingress"][0]
    api_server = policy["egress"][1]
    assert "to" not in api_server and [p["port"] for p in api_server["ports"]] == [443, 6443]


# --------------------------------------------------------------------------------------------------
# NOTES.txt, as `helm install` prints it
# --------------------------------------------------------------------------------------------------


def render_notes(helm: Helm, chart_copy: pathlib.Path, values: list[pathlib.Path], sets: list[str]) -> str:
    """NOTES.txt rendered by helm (wrapped in a template of our own: `helm template` skips NOTES)."""
    notes = (chart_copy / "templates" / "NOTES.txt").read_text(encoding="utf-8")
    (chart_copy / "templates" / "zz-notes.yaml").write_text(
        '{{- define "test.notes" -}}\n' + notes + '{{- end }}\nnotes: {{ include "test.notes" . | toJson }}\n',
        encoding="utf-8")
    result = helm.run(*helm.template_args(values, sets, chart=chart_copy), "--show-only", "templates/zz-notes.yaml")
    assert result.returncode == 0, result.stderr
    text: str = yaml.safe_load(result.stdout)["notes"]
    return text


def _heredoc(notes: str) -> list[dict[str, Any]]:
    body = notes.split("<<EOF\n", 1)[1].split("\n     EOF", 1)[0]
    return [doc for doc in yaml.safe_load_all(textwrap.dedent(body)) if doc]


def test_notes_tell_a_cluster_wide_user_what_to_apply_next(helm: Helm, chart_copy: pathlib.Path) -> None:
    notes = render_notes(helm, chart_copy, [], [])
    assert "It watches every namespace" in notes
    assert f"kubectl -n {NAMESPACE} get pods -l app.kubernetes.io/instance={RELEASE}" in notes
    assert "create secret generic support-0-credentials" in notes
    assert "get lp,msrv" in notes
    assert "Helm installs the CRDs in crds/ on the first install only" in notes
    assert "kubectl apply --server-side -f linepool-operator/crds/" in notes
    assert "It runs one replica (Deployment, Recreate). Set replicaCount >= 2 for hot standbys." in notes


def test_notes_for_watched_namespaces_and_replicas(helm: Helm, chart_copy: pathlib.Path) -> None:
    notes = render_notes(helm, chart_copy, [VALUES_FULL], [])
    assert "It watches team-a, team-b" in notes
    assert "linepool-0 acts, the others are hot" in notes
    assert "kubectl -n team-a get lp,msrv" in notes
    assert "rbac.secretNames (support-0-credentials, support-1-credentials)" in notes
    assert "create secret generic support-0-credentials" in notes


@pytest.mark.parametrize("values", [[], [VALUES_FULL]], ids=["default", "full"])
def test_notes_example_is_accepted_by_the_crds(helm: Helm, chart_copy: pathlib.Path,
                                               values: list[pathlib.Path], kube: KubeApiServer) -> None:
    """The manifests the notes tell the user to apply pass the CRD schemas and their CEL rules."""
    notes = render_notes(helm, chart_copy, values, [])
    docs = _heredoc(notes)
    assert [d["kind"] for d in docs] == ["LinePool", "MessagingServer"]
    for doc in docs:
        assert refusal(kube, doc) is None, doc  # a dry-run create on the genuine API server
    server = docs[1]
    assert server["spec"]["credentialsSecretRef"]["name"] in notes.split("create secret generic ", 1)[1]
