"""The rendered chart, as ``helm install`` would send it, accepted by genuine API servers.

Default values and values-full.yaml are rendered and every object is sent with server-side apply
and ``dryRun=All`` (as ``kubectl apply --server-side --dry-run=server``) to the current release and
to the oldest supported one: schema, defaulting and admission run, nothing is stored. The
Prometheus Operator's kinds are rendered only when its API exists; these servers do not have it
(tests/observability checks those objects offline).
"""

from __future__ import annotations

from typing import Any

import pytest

from linepool.sandbox.kubeapi import KUBERNETES_VERSION, OLDEST_KUBERNETES_VERSION, KubeApiError, KubeApiServer

from .conftest import NAMESPACE, VALUES_FULL, Helm


@pytest.fixture(params=[KUBERNETES_VERSION, OLDEST_KUBERNETES_VERSION], ids=lambda v: f"k8s-{v}")
def server(request: pytest.FixtureRequest) -> KubeApiServer:
    name = "kube" if request.param == KUBERNETES_VERSION else "kube_oldest"
    found: KubeApiServer = request.getfixturevalue(name)
    return found


def _dry_run_all(server: KubeApiServer, docs: list[dict[str, Any]]) -> list[str]:
    """Apply every document with dryRun=All; the namespaces they use are created first, for real."""
    for namespace in {NAMESPACE} | {d["metadata"]["namespace"] for d in docs if d["metadata"].get("namespace")}:
        server.create_namespace(namespace)
    accepted = []
    for doc in docs:
        stored = server.apply(doc, field_manager="helm", dry_run=True)
        assert stored["metadata"]["name"] == doc["metadata"]["name"]
        accepted.append(f"{doc['kind']}/{doc['metadata']['name']}")
    return accepted


def test_default_values_are_accepted(server: KubeApiServer, helm: Helm) -> None:
    docs = helm.template(monitoring=False)
    accepted = _dry_run_all(server, docs)
    assert {"Deployment", "ClusterRole", "ClusterRoleBinding", "ServiceAccount", "ClusterKopfPeering"} <= \
        {item.split("/")[0] for item in accepted}


def test_full_values_are_accepted(server: KubeApiServer, helm: Helm) -> None:
    docs = helm.template([VALUES_FULL], monitoring=False)
    accepted = _dry_run_all(server, docs)
    assert {"StatefulSet", "Role", "RoleBinding", "KopfPeering", "NetworkPolicy", "PodDisruptionBudget",
            "ConfigMap"} <= {item.split("/")[0] for item in accepted}
    # The placement service, on PostgreSQL with two replicas (its SQLite side: test_placement.py).
    assert {"Deployment/linepool-placement", "Service/linepool-placement", "PodDisruptionBudget/linepool-placement",
            "NetworkPolicy/linepool-placement", "ClusterRole/linepool-placement-client"} <= set(accepted)


def test_a_broken_object_is_refused_so_the_dry_run_can_fail(server: KubeApiServer, helm: Helm) -> None:
    workload = helm.template(monitoring=False).workload()
    workload["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsUser"] = -5
    with pytest.raises(KubeApiError) as refused:
        _dry_run_all(server, [workload])
    assert refused.value.status in (400, 422) and "runAsUser" in refused.value.message
