"""The placement service (`linepool serve`, `placement.enabled`) as the chart renders it.

Its Deployment, store (SQLite on a volume, or PostgreSQL from a Secret), Service, RBAC,
PodDisruptionBudget and NetworkPolicy; the values-schema rule that only PostgreSQL may run more
than one replica; its objects kept apart from the operator's; and its RBAC on the genuine API
server's authorizer, used the way the service uses it (its own token, TokenReview and
SubjectAccessReview for an app's ServiceAccount).
"""

from __future__ import annotations

import pathlib
import time
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from linepool.cli import build_parser
from linepool.sandbox.kubeapi import KUBERNETES_VERSION, OLDEST_KUBERNETES_VERSION, KubeApiError, KubeApiServer
from tests.conftest import new_namespace

from .conftest import CHART, NAMESPACE, RELEASE, Helm, Rendered
from .test_rbac import rule, rules_of

FULLNAME = f"{RELEASE}-linepool-operator-placement"
SQLITE_URL = "sqlite:////var/lib/linepool/placements.db"
ON = ["placement.enabled=true"]
POOLS_READ = rule({"linepool.dev"}, {"linepools", "messagingservers"}, {"get", "list", "watch"})
REVIEWS = {rule({"authentication.k8s.io"}, {"tokenreviews"}, {"create"}),
           rule({"authorization.k8s.io"}, {"subjectaccessreviews"}, {"create"})}
CLIENT = rule({"linepool.dev"}, {"linepools/placements"}, {"create", "get", "delete"})
README = CHART / "README.md"


@pytest.fixture(scope="module")
def sqlite_render(helm: Helm) -> Rendered:
    """`placement.enabled=true` and nothing else: SQLite, one replica, cluster-wide."""
    return helm.template(sets=ON)


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def matches(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return selector.items() <= labels.items()


# --------------------------------------------------------------------------------------------------
# Off by default
# --------------------------------------------------------------------------------------------------


def test_disabled_by_default_renders_nothing_of_it(default_render: Rendered) -> None:
    assert not default_render.placement
    assert not [doc for doc in default_render if "placement" in doc["metadata"]["name"]]
    assert len(default_render.of_kind("Deployment") + default_render.of_kind("StatefulSet")) == 1


def test_enabling_it_adds_its_objects_and_leaves_the_operators_alone(default_render: Rendered,
                                                                     sqlite_render: Rendered) -> None:
    assert sqlite_render.operator == default_render.operator
    assert sorted(doc["kind"] for doc in sqlite_render.placement) == sorted([
        "ClusterRole", "ClusterRole", "ClusterRole", "ClusterRoleBinding", "ClusterRoleBinding", "Deployment",
        "PersistentVolumeClaim", "Service", "ServiceAccount"])
    for doc in sqlite_render.placement:
        assert doc["metadata"]["name"].startswith(FULLNAME), doc["metadata"]["name"]


# --------------------------------------------------------------------------------------------------
# SQLite (the default store)
# --------------------------------------------------------------------------------------------------


def test_sqlite_runs_one_replica_that_never_overlaps(sqlite_render: Rendered) -> None:
    workload = sqlite_render.placement_workload()
    assert workload["metadata"]["name"] == FULLNAME
    assert workload["spec"]["replicas"] == 1
    assert workload["spec"]["strategy"] == {"type": "Recreate"}


def test_sqlite_args_and_volume(sqlite_render: Rendered) -> None:
    container = sqlite_render.placement_container()
    assert container["args"] == [
        "serve",
        "--listen=0.0.0.0:8080",
        f"--database={SQLITE_URL}",
        f"--public-url=http://{FULLNAME}.{NAMESPACE}.svc:8080",
        "--all-namespaces",
        "--log-format=json",
    ]
    assert "command" not in container, "the image's entrypoint (linepool) must stay"
    assert "env" not in container
    assert {"name": "data", "mountPath": "/var/lib/linepool"} in container["volumeMounts"]
    pod = sqlite_render.placement_workload()["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"] == {"claimName": FULLNAME}
    claim = sqlite_render.placement.one("PersistentVolumeClaim")
    assert claim["metadata"]["name"] == FULLNAME
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "1Gi"
    assert "storageClassName" not in claim["spec"], "empty: the cluster's default class"
    # Placements are durable data: `helm uninstall` keeps the claim.
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"


@pytest.mark.parametrize(("sets", "volume", "claim"), [
    (["placement.persistence.storageClass=fast-ssd", "placement.persistence.size=5Gi"],
     {"persistentVolumeClaim": {"claimName": FULLNAME}}, {"storageClassName": "fast-ssd", "storage": "5Gi"}),
    (["placement.persistence.existingClaim=placements-data"],
     {"persistentVolumeClaim": {"claimName": "placements-data"}}, None),
    (["placement.persistence.enabled=false"], {"emptyDir": {}}, None),
], ids=["storage-class", "existing-claim", "no-persistence"])
def test_sqlite_persistence_options(helm: Helm, sets: list[str], volume: dict[str, Any],
                                    claim: dict[str, str] | None) -> None:
    rendered = helm.template(sets=ON + sets)
    pod = rendered.placement_workload()["spec"]["template"]["spec"]
    data = next(v for v in pod["volumes"] if v["name"] == "data")
    assert {k: v for k, v in data.items() if k != "name"} == volume
    claims = rendered.of_kind("PersistentVolumeClaim")
    if claim is None:
        assert claims == []
    else:
        (found,) = claims
        assert found["spec"]["storageClassName"] == claim["storageClassName"]
        assert found["spec"]["resources"]["requests"]["storage"] == claim["storage"]


def test_public_url_is_passed_without_a_trailing_slash(helm: Helm) -> None:
    args = helm.template(sets=[*ON, "placement.publicURL=https://links.example.com/"]).placement_container()["args"]
    assert "--public-url=https://links.example.com" in args


def test_watch_namespaces_reach_the_service_like_the_operator(helm: Helm) -> None:
    rendered = helm.template(sets=[*ON, "watchNamespaces={one,two}"])
    args = rendered.placement_container()["args"]
    assert [a for a in args if a.startswith("--namespace=")] == ["--namespace=one", "--namespace=two"]
    assert "--all-namespaces" not in args


# --------------------------------------------------------------------------------------------------
# PostgreSQL (values-full.yaml): the URL from a Secret, replicas, token file
# --------------------------------------------------------------------------------------------------


def test_postgresql_from_a_secret_with_replicas_and_a_token_file(full_render: Rendered) -> None:
    workload = full_render.placement_workload()
    assert workload["metadata"]["name"] == "linepool-placement"
    assert workload["spec"]["replicas"] == 2
    assert workload["spec"]["strategy"] == {"type": "RollingUpdate",
                                            "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    container = full_render.placement_container()
    assert container["args"] == [
        "serve",
        "--listen=0.0.0.0:8080",
        "--public-url=https://links.example.com",
        "--token-file=/etc/linepool/tokens/tokens.txt",
        "--namespace=team-a",
        "--namespace=team-b",
        "--log-format=full",
        "--log-format=json",  # placement.extraArgs come last
    ]
    assert not [a for a in container["args"] if a.startswith("--database")], "the URL comes from the Secret"
    env = env_of(container)
    assert env["LINEPOOL_DATABASE_URL"] == {"name": "LINEPOOL_DATABASE_URL", "valueFrom": {
        "secretKeyRef": {"name": "placement-db", "key": "database-url"}}}
    assert env["TZ"] == {"name": "TZ", "value": "UTC"}
    # No SQLite: no claim, no data volume.
    assert not full_render.of_kind("PersistentVolumeClaim")
    pod = workload["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "data" not in volumes
    assert volumes["tokens"]["secret"] == {"secretName": "placement-tokens", "defaultMode": 0o440}
    assert {"name": "tokens", "mountPath": "/etc/linepool/tokens", "readOnly": True} in container["volumeMounts"]


def test_a_postgresql_url_in_values_is_passed_as_database(helm: Helm) -> None:
    url = "postgresql://linepool@db.example.com:5432/placements?sslmode=require"
    rendered = helm.template(sets=[*ON, f"placement.database.url={url}", "placement.replicas=3"])
    container = rendered.placement_container()
    assert f"--database={url}" in container["args"]
    assert "env" not in container
    assert rendered.placement_workload()["spec"]["replicas"] == 3
    assert not rendered.of_kind("PersistentVolumeClaim")


def test_full_values_reach_the_placement_pod(full_render: Rendered, full_values: dict[str, Any]) -> None:
    values = full_values["placement"]
    template = full_render.placement_workload()["spec"]["template"]
    pod = template["spec"]
    for key in ("nodeSelector", "tolerations", "affinity", "priorityClassName"):
        assert pod[key] == values[key], key
    assert template["metadata"]["annotations"] == values["podAnnotations"]
    assert template["metadata"]["labels"]["team"] == "messaging"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    container = full_render.placement_container()
    assert container["image"] == full_render.container()["image"], "the operator's image"
    assert container["imagePullPolicy"] == "Always"
    assert container["resources"] == values["resources"]
    for probe in ("livenessProbe", "readinessProbe"):
        timing = {k: v for k, v in container[probe].items() if k != "httpGet"}
        assert timing == values[probe], probe
    service = full_render.placement.one("Service")
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]
    assert service["metadata"]["annotations"] == values["service"]["annotations"]
    account = full_render.placement.one("ServiceAccount")
    assert account["metadata"]["name"] == "linepool-placement-sa" == pod["serviceAccountName"]
    assert account["metadata"]["annotations"] == values["serviceAccount"]["annotations"]


def test_args_are_accepted_by_the_services_cli(sqlite_render: Rendered, full_render: Rendered) -> None:
    """The flags the chart passes exist in `linepool serve`."""
    parser = build_parser()
    commands = next(a for a in parser._actions if a.dest == "command")  # argparse's subparsers action
    if "serve" not in commands.choices:  # type: ignore[operator]
        pytest.skip("`linepool serve` is not in this tree yet")
    for rendered in (sqlite_render, full_render):
        parsed = parser.parse_args(rendered.placement_container()["args"])
        assert parsed.command == "serve"


# --------------------------------------------------------------------------------------------------
# The one-writer rule of SQLite, in values.schema.json
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sets", [
    ["placement.replicas=2"],
    ["placement.replicas=3", "placement.database.url=sqlite:////data/p.db"],
    ["placement.replicas=2", "placement.database.existingSecret="],
], ids=["default-sqlite", "other-sqlite-file", "empty-secret"])
def test_schema_refuses_replicas_with_sqlite_and_names_the_url(helm: Helm, sets: list[str]) -> None:
    message = helm.template_error(sets=[*ON, *sets])
    assert "values don't meet the specifications of the schema" in message, message
    assert "placement.database.url" in message and "^postgresql://" in message, message


@pytest.mark.parametrize("sets", [
    ["placement.replicas=2", "placement.database.existingSecret=placement-db"],
    ["placement.replicas=2", "placement.database.url=postgresql://u@db:5432/p"],
    ["placement.replicas=1"],
], ids=["existing-secret", "postgresql-url", "one-sqlite-replica"])
def test_schema_accepts_replicas_with_postgresql(helm: Helm, sets: list[str]) -> None:
    rendered = helm.template(sets=[*ON, *sets])
    replicas = int(sets[0].split("=")[1])
    assert rendered.placement_workload()["spec"]["replicas"] == replicas


def test_the_rule_holds_without_the_schema_too(helm: Helm) -> None:
    """`--skip-schema-validation` skips values.schema.json; the template refuses SQLite replicas itself."""
    result = helm.run(*helm.template_args(sets=[*ON, "placement.replicas=2"]), "--skip-schema-validation")
    assert result.returncode != 0
    assert "placement.replicas (2) needs PostgreSQL" in result.stderr, result.stderr


@pytest.mark.parametrize(("assignment", "named"), [
    ("placement.database.url=mysql://db/p", "url"),
    ("placement.replicas=0", "replicas"),
    ("placement.publicURL=links.example.com", "publicURL"),
    ("placement.persistence.size=lots", "size"),
    ("placement.tokenSecret.name=Bad_Name", "name"),
    ("placement.enable=true", "enable"),
])
def test_schema_rejects_bad_placement_values_and_names_the_key(helm: Helm, assignment: str, named: str) -> None:
    message = helm.template_error(sets=[*ON, assignment])
    assert "values don't meet the specifications of the schema" in message, message
    assert named in message, message


# --------------------------------------------------------------------------------------------------
# The pod, its probes and Service; kept apart from the operator's objects
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["sqlite", "full"])
def test_placement_pod_is_locked_down_like_the_operators(which: str, sqlite_render: Rendered,
                                                         full_render: Rendered) -> None:
    rendered = sqlite_render if which == "sqlite" else full_render
    pod = rendered.placement_workload()["spec"]["template"]["spec"]
    container = rendered.placement_container()
    operator_pod = rendered.workload()["spec"]["template"]["spec"]
    assert pod["securityContext"] == operator_pod["securityContext"]
    assert container["securityContext"] == rendered.container()["securityContext"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["runAsNonRoot"] is True
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert any(v["name"] == "tmp" and "emptyDir" in v for v in pod["volumes"])
    # It talks to the API server (watches, reviews): its pod mounts the token, its ServiceAccount does not.
    assert pod["automountServiceAccountToken"] is True
    account = rendered.placement.one("ServiceAccount")
    assert account["automountServiceAccountToken"] is False
    assert pod["serviceAccountName"] == account["metadata"]["name"] != rendered.operator.one("ServiceAccount")[
        "metadata"]["name"]
    assert container["resources"]["requests"] and container["resources"]["limits"]


@pytest.mark.parametrize("which", ["sqlite", "full"])
def test_probes_and_service_use_the_one_http_port(which: str, sqlite_render: Rendered, full_render: Rendered) -> None:
    rendered = sqlite_render if which == "sqlite" else full_render
    container = rendered.placement_container()
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert "--listen=0.0.0.0:8080" in container["args"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    service = rendered.placement.one("Service")
    assert service["spec"]["type"] == "ClusterIP"
    (port,) = service["spec"]["ports"]
    assert port["name"] == "http" and port["targetPort"] == "http"
    pod_labels = rendered.placement_workload()["spec"]["template"]["metadata"]["labels"]
    assert matches(service["spec"]["selector"], pod_labels)
    assert matches(rendered.placement_workload()["spec"]["selector"]["matchLabels"], pod_labels)


def test_operator_selectors_never_match_placement_pods_and_back(full_render: Rendered) -> None:
    """Both Deployments' pods carry the release's labels: the selectors must still keep them apart."""
    operator_pod = full_render.workload()["spec"]["template"]["metadata"]["labels"]
    placement_pod = full_render.placement_workload()["spec"]["template"]["metadata"]["labels"]
    operator_selectors = [full_render.workload()["spec"]["selector"]["matchLabels"],
                          full_render.operator.one("Service")["spec"]["selector"],
                          full_render.operator.one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
                          full_render.operator.one("NetworkPolicy")["spec"]["podSelector"]["matchLabels"]]
    placement_selectors = [full_render.placement_workload()["spec"]["selector"]["matchLabels"],
                           full_render.placement.one("Service")["spec"]["selector"],
                           full_render.placement.one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
                           full_render.placement.one("NetworkPolicy")["spec"]["podSelector"]["matchLabels"]]
    for selector in operator_selectors:
        assert matches(selector, operator_pod) and not matches(selector, placement_pod), selector
    for selector in placement_selectors:
        assert matches(selector, placement_pod) and not matches(selector, operator_pod), selector
    assert placement_pod["app.kubernetes.io/component"] == "placement"
    assert placement_pod["app.kubernetes.io/part-of"] == "linepool-operator"


@pytest.mark.parametrize(("sets", "expected"), [
    ([], None),
    (["placement.replicas=2", "placement.database.existingSecret=db"], 1),
    (["placement.replicas=3", "placement.database.existingSecret=db",
      "placement.podDisruptionBudget.minAvailable=2"], 2),
    (["placement.replicas=2", "placement.database.existingSecret=db", "placement.podDisruptionBudget.enabled=false"],
     None),
])
def test_placement_pod_disruption_budget_only_with_two_replicas_or_more(helm: Helm, sets: list[str],
                                                                        expected: int | None) -> None:
    rendered = helm.template(sets=ON + sets)
    budgets = rendered.placement.of_kind("PodDisruptionBudget")
    if expected is None:
        assert budgets == []
        return
    (budget,) = budgets
    assert budget["spec"]["minAvailable"] == expected
    assert budget["spec"]["selector"]["matchLabels"] == rendered.placement_workload()["spec"]["selector"]["matchLabels"]


def test_placement_pod_disruption_budget_that_would_block_every_drain_is_refused(helm: Helm) -> None:
    message = helm.template_error(sets=[*ON, "placement.replicas=2", "placement.database.existingSecret=db",
                                        "placement.podDisruptionBudget.minAvailable=2"])
    assert "placement.podDisruptionBudget.minAvailable (2) must be below placement.replicas (2)" in message


# --------------------------------------------------------------------------------------------------
# NetworkPolicy
# --------------------------------------------------------------------------------------------------


def test_network_policy_allows_callers_the_api_server_and_postgresql(full_render: Rendered) -> None:
    policy = full_render.placement.one("NetworkPolicy")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"]
    (ingress,) = policy["ingress"]
    assert ingress["ports"] == [{"port": "http", "protocol": "TCP"}]
    assert [peer["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] for peer in ingress["from"]] == [
        "apps", "ingress-nginx"]
    ports = [sorted((p["port"], p["protocol"]) for p in rule["ports"]) for rule in policy["egress"]]
    assert ports == [[(53, "TCP"), (53, "UDP")], [(443, "TCP"), (6443, "TCP")], [(5432, "TCP")]]
    assert policy["egress"][1]["to"] == [{"ipBlock": {"cidr": "10.0.0.1/32"}}, {"ipBlock": {"cidr": "172.20.0.0/16"}}]
    assert policy["egress"][2]["to"] == [{"ipBlock": {"cidr": "10.20.0.0/24"}}]


def test_network_policy_with_sqlite_has_no_database_egress(helm: Helm) -> None:
    rendered = helm.template(sets=[*ON, "networkPolicy.enabled=true"])
    policy = rendered.placement.one("NetworkPolicy")["spec"]
    assert "from" not in policy["ingress"][0], "empty placement.from: any source"
    assert [sorted(p["port"] for p in rule["ports"]) for rule in policy["egress"]] == [[53, 53], [443, 6443]]
    assert not helm.template(sets=ON).of_kind("NetworkPolicy")


# --------------------------------------------------------------------------------------------------
# RBAC, as rendered
# --------------------------------------------------------------------------------------------------


def test_cluster_wide_rbac_reads_pools_and_creates_reviews_only(sqlite_render: Rendered) -> None:
    roles = {r["metadata"]["name"]: rules_of(r) for r in sqlite_render.placement.of_kind("ClusterRole")}
    assert roles == {FULLNAME: {POOLS_READ}, f"{FULLNAME}-auth": REVIEWS, f"{FULLNAME}-client": {CLIENT}}
    bindings = {b["metadata"]["name"]: b["roleRef"]["name"] for b in sqlite_render.placement.of_kind(
        "ClusterRoleBinding")}
    assert bindings == {FULLNAME: FULLNAME, f"{FULLNAME}-auth": f"{FULLNAME}-auth"}
    assert not sqlite_render.placement.of_kind("Role")


def test_watched_namespaces_get_a_placement_role_each(full_render: Rendered) -> None:
    roles = full_render.placement.of_kind("Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    for role in roles:
        assert rules_of(role) == {POOLS_READ}
    assert {r["metadata"]["name"]: rules_of(r) for r in full_render.placement.of_kind("ClusterRole")} == {
        "linepool-placement-auth": REVIEWS, "linepool-placement-client": {CLIENT}}
    bindings = full_render.placement.of_kind("RoleBinding")
    assert sorted((b["metadata"]["namespace"], b["roleRef"]["kind"]) for b in bindings) == [
        ("team-a", "Role"), ("team-b", "Role")]


def test_placement_rbac_and_account_can_be_left_to_the_cluster_admin(helm: Helm) -> None:
    rendered = helm.template(sets=[*ON, "rbac.create=false", "placement.serviceAccount.create=false",
                                   "placement.serviceAccount.name=placement-managed"])
    assert not rendered.placement.kinds & {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
                                           "ServiceAccount"}
    assert rendered.placement_workload()["spec"]["template"]["spec"]["serviceAccountName"] == "placement-managed"


# --------------------------------------------------------------------------------------------------
# The genuine API server: the service's account does exactly its job, and apps are let in by RBAC
# --------------------------------------------------------------------------------------------------


def _eventually(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """RBAC changes reach the authorizer's cache within moments; poll for them."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def _allowed(kube: KubeApiServer, user: str, namespace: str | None, verb: str, group: str, resource: str,
             subresource: str = "", *, as_token: str | None = None) -> bool:
    """A SubjectAccessReview, made by the admin or (``as_token``) by the placement service itself."""
    attributes = {"verb": verb, "group": group, "resource": resource, "subresource": subresource}
    if namespace:
        attributes["namespace"] = namespace
    account_groups = ["system:serviceaccounts", f"system:serviceaccounts:{user.split(':')[2]}"] \
        if user.startswith("system:serviceaccount:") else []
    review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
              "spec": {"user": user, "groups": [*account_groups, "system:authenticated"],
                       "resourceAttributes": attributes}}
    session = kube.client(token=as_token) if as_token else None
    answer = kube.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", body=review, session=session)
    return bool(answer["status"].get("allowed"))


def test_the_services_account_does_exactly_its_job_on_the_genuine_server(
        kube: KubeApiServer, helm: Helm, tmp_path: pathlib.Path) -> None:
    pools = new_namespace(kube, "placement")
    elsewhere = new_namespace(kube, "placement-other")
    kube.create_namespace(NAMESPACE)
    release = f"rbac-{pools}"
    rendered = helm.template(sets=[*ON, f"watchNamespaces={{{pools}}}", f"fullnameOverride={release}"],
                             monitoring=False)
    for doc in rendered.placement:
        if doc["kind"] in {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}:
            kube.apply(doc)
    account = rendered.placement.one("ServiceAccount")["metadata"]["name"]
    service_user = f"system:serviceaccount:{NAMESPACE}:{account}"
    token = kube.service_account_token(NAMESPACE, account)
    session = kube.client(token=token)
    _eventually(lambda: _allowed(kube, service_user, pools, "watch", "linepool.dev", "linepools"),
                "the placement Role to be in force")

    # Its view of the pools: list and watch (as it really asks), in the watched namespace only.
    for plural in ("linepools", "messagingservers"):
        assert kube.request("GET", kube.path(plural, pools), session=session)["items"] == []
        for verb in ("get", "list", "watch"):
            assert _allowed(kube, service_user, pools, verb, "linepool.dev", plural), (verb, plural)
        for verb in ("create", "patch", "update", "delete"):
            assert not _allowed(kube, service_user, pools, verb, "linepool.dev", plural), (verb, plural)
        assert not _allowed(kube, service_user, elsewhere, "list", "linepool.dev", plural), plural
    for subresource in ("status", "placements"):
        assert not _allowed(kube, service_user, pools, "patch", "linepool.dev", "linepools", subresource)
    for verb in ("get", "list"):
        assert not _allowed(kube, service_user, pools, verb, "", "secrets"), verb
    with pytest.raises(KubeApiError) as refused:
        kube.request("GET", kube.path("linepools", elsewhere), session=session)
    assert refused.value.status == 403

    # An app in another namespace: its ServiceAccount, bound to the client role in the pools' namespace.
    apps = new_namespace(kube, "placement-apps")
    for name in ("shop", "stranger"):
        kube.apply({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "namespace": apps}})
    client_role = rendered.placement.one("ClusterRole", f"{release}-placement-client")["metadata"]["name"]
    kube.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": "shop-placements", "namespace": pools},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": client_role},
                "subjects": [{"kind": "ServiceAccount", "name": "shop", "namespace": apps}]})
    shop, stranger = f"system:serviceaccount:{apps}:shop", f"system:serviceaccount:{apps}:stranger"
    _eventually(lambda: _allowed(kube, shop, pools, "create", "linepool.dev", "linepools", "placements"),
                "the app's RoleBinding to be in force")

    # What the service does for each request: a TokenReview of the caller's token...
    app_token = kube.service_account_token(apps, "shop")
    review = kube.request("POST", "/apis/authentication.k8s.io/v1/tokenreviews", session=session, body={
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": app_token}})
    assert review["status"]["authenticated"] is True
    assert review["status"]["user"]["username"] == shop
    # ...then a SubjectAccessReview on linepools/placements in the pool's namespace, made with its own token.
    for verb in ("create", "get", "delete"):
        assert _allowed(kube, shop, pools, verb, "linepool.dev", "linepools", "placements", as_token=token), verb
        assert not _allowed(kube, stranger, pools, verb, "linepool.dev", "linepools", "placements", as_token=token)
        assert not _allowed(kube, shop, elsewhere, verb, "linepool.dev", "linepools", "placements", as_token=token)
    # The client role grants placements only, not the pools themselves.
    assert not _allowed(kube, shop, pools, "get", "linepool.dev", "linepools", as_token=token)
    assert not _allowed(kube, shop, pools, "update", "linepool.dev", "linepools", "placements", as_token=token)


@pytest.fixture(params=[KUBERNETES_VERSION, OLDEST_KUBERNETES_VERSION], ids=lambda v: f"k8s-{v}")
def server(request: pytest.FixtureRequest) -> KubeApiServer:
    found: KubeApiServer = request.getfixturevalue("kube" if request.param == KUBERNETES_VERSION else "kube_oldest")
    return found


def test_sqlite_objects_are_accepted_by_genuine_servers(server: KubeApiServer, helm: Helm) -> None:
    """values-full.yaml runs PostgreSQL (test_server_dry_run.py); this is the SQLite side: the claim."""
    docs = helm.template(sets=[*ON, "networkPolicy.enabled=true"], monitoring=False).placement
    server.create_namespace(NAMESPACE)
    accepted = set()
    for doc in docs:
        stored = server.apply(doc, field_manager="helm", dry_run=True)
        assert stored["metadata"]["name"] == doc["metadata"]["name"]
        accepted.add(doc["kind"])
    assert {"Deployment", "PersistentVolumeClaim", "Service", "NetworkPolicy", "ClusterRole"} <= accepted


def test_readme_shows_the_client_role_binding(helm: Helm) -> None:
    """The chart README's kubectl example binds the role that its install command's release renders."""
    section = README.read_text(encoding="utf-8").split("## Placement service", 1)[1].split("\n## ", 1)[0]
    assert "--clusterrole=linepool-operator-placement-client" in section
    # The README installs the release as `linepool-operator`.
    result = helm.run("template", "linepool-operator", CHART, "--namespace", "linepool-system", "--set",
                      "placement.enabled=true", "--show-only", "templates/placement-rbac.yaml")
    assert result.returncode == 0, result.stderr
    names = {doc["metadata"]["name"] for doc in yaml.safe_load_all(result.stdout) if doc}
    assert "linepool-operator-placement-client" in names
