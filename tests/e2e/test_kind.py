"""On a kind cluster, the way a user runs it: the image from this checkout, installed with the Helm chart.

One scenario, in the order a user lives it (each step is a function below, named after what it
checks; on a failure the test prints pods, pools, servers, events and logs):

1. a kind cluster (node image from KIND_NODE_IMAGE) gets the operator image built from the Dockerfile;
2. a minimal Prometheus and the demo's simulated fleet run in the ``monitoring`` namespace;
3. ``helm install`` of charts/linepool-operator with that image, watching the ``demo`` namespace;
4. every top-level example passes a server-side dry run; examples/demo/ is applied, its pool
   pointed at the in-cluster Prometheus;
5. traffic saturates a server (label ``linepool.dev/assignable=false``) and the pool scales up
   (a server created by the operator, ``status.lastScaleTime`` or a ``ScaledUp`` event);
6. ``helm uninstall`` removes the operator, and the CRDs and the user's pool and servers remain.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from linepool.api import ASSIGNABLE_LABEL, CREATED_BY_ANNOTATION, OPERATOR_NAME

from .cluster import Cluster, wait_for
from .manifests import (
    CHART_DIR,
    DEMO_NAMESPACE,
    DEMO_POOL,
    MONITORING_NAMESPACE,
    chart_values,
    demo_documents,
    demo_servers,
    example_namespaces,
    monitoring_manifests,
    namespace,
    top_level_examples,
)

# The session fixtures (kind cluster, image build) count towards the first test's timeout.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]

RELEASE = "linepool"
OPERATOR_NAMESPACE = "linepool-system"
CRDS = ("linepools.linepool.dev", "messagingservers.linepool.dev")
SCALED_UP_REASON = "ScaledUp"

# Prometheus needs ~10s to find the fleet, the fleet ~75s to saturate a server (see manifests.py).
SATURATION_TIMEOUT = 300.0
SCALE_UP_TIMEOUT = 300.0


def test_chart_installs_the_image_which_saturates_and_scales_up_then_uninstalls_cleanly(
    cluster: Cluster, operator_image: str
) -> None:
    try:
        start_prometheus_and_the_fleet(cluster, operator_image)
        install_the_chart(cluster, operator_image)
        every_example_passes_a_server_side_dry_run(cluster)
        apply_the_demo(cluster)
        a_server_saturates(cluster)
        the_pool_scales_up(cluster)
        uninstall_the_chart(cluster)
        crds_and_user_objects_remain(cluster)
    except BaseException:
        print(cluster.diagnostics([OPERATOR_NAMESPACE, DEMO_NAMESPACE, MONITORING_NAMESPACE]))
        raise


# --------------------------------------------------------------------------------------------------
# Steps


def start_prometheus_and_the_fleet(cluster: Cluster, image: str) -> None:
    servers = demo_servers(demo_documents())
    cluster.apply(monitoring_manifests(image, servers))
    for deployment in ("fleet", "prometheus"):
        cluster.kubectl("rollout", "status", f"deployment/{deployment}", "-n", MONITORING_NAMESPACE,
                        "--timeout=180s", timeout=200)


def install_the_chart(cluster: Cluster, image: str) -> None:
    # With watchNamespaces the chart creates Roles in those namespaces: they must exist first.
    cluster.apply([namespace(DEMO_NAMESPACE)])
    values = cluster.kubeconfig.parent / "values.yaml"
    values.write_text(yaml.safe_dump(chart_values(image, DEMO_NAMESPACE), sort_keys=False), encoding="utf-8")
    cluster.helm("install", RELEASE, str(CHART_DIR), "--namespace", OPERATOR_NAMESPACE, "--create-namespace",
                 "--values", str(values), "--wait", "--timeout", "5m")
    for crd in CRDS:
        cluster.kubectl("wait", "--for=condition=Established", f"crd/{crd}", "--timeout=60s")
    pods = cluster.items("pods", OPERATOR_NAMESPACE, "-l", f"app.kubernetes.io/instance={RELEASE}")
    assert pods, "the chart started no operator pod"
    for pod in pods:
        images = {c["image"] for c in pod["spec"]["containers"]}
        assert image in images or f"docker.io/library/{image}" in images, images
        ready = {c["name"]: c.get("ready") for c in pod["status"].get("containerStatuses", [])}
        assert all(ready.values()), f"{pod['metadata']['name']} is not ready: {ready}"


def every_example_passes_a_server_side_dry_run(cluster: Cluster) -> None:
    """examples/*.yaml (not gitops/: those need Argo CD's or Flux's CRDs, not installed here)."""
    cluster.apply([namespace(name) for name in example_namespaces()])
    for example in top_level_examples():
        cluster.kubectl("apply", "--dry-run=server", "-f", str(example))


def apply_the_demo(cluster: Cluster) -> None:
    cluster.apply(demo_documents())
    wait_for(lambda: _pool(cluster).get("status", {}).get("conditions"),
             what=f"the operator to write the status of LinePool {DEMO_POOL}", timeout=120)


def a_server_saturates(cluster: Cluster) -> None:
    def saturated() -> list[str]:
        servers = cluster.items("messagingservers", DEMO_NAMESPACE, "-l", f"{ASSIGNABLE_LABEL}=false")
        return [s["metadata"]["name"] for s in servers]

    names = wait_for(saturated, what=f"a MessagingServer labelled {ASSIGNABLE_LABEL}=false",
                     timeout=SATURATION_TIMEOUT)
    print(f"saturated: {names}")


def the_pool_scales_up(cluster: Cluster) -> None:
    def created() -> list[str]:
        return [s["metadata"]["name"] for s in _servers(cluster)
                if s["metadata"].get("annotations", {}).get(CREATED_BY_ANNOTATION) == OPERATOR_NAME]

    names = wait_for(created, what="a MessagingServer created by the operator", timeout=SCALE_UP_TIMEOUT)

    def recorded() -> bool:
        events = cluster.items("events", DEMO_NAMESPACE, "--field-selector", f"reason={SCALED_UP_REASON}")
        return bool(events) or bool(_pool(cluster).get("status", {}).get("lastScaleTime"))

    wait_for(recorded, what=f"status.lastScaleTime or a {SCALED_UP_REASON} event", timeout=60)
    print(f"scaled up: {names}")


def uninstall_the_chart(cluster: Cluster) -> None:
    cluster.helm("uninstall", RELEASE, "--namespace", OPERATOR_NAMESPACE, "--wait", "--timeout", "3m")
    wait_for(lambda: not cluster.items("pods", OPERATOR_NAMESPACE, "-l", f"app.kubernetes.io/instance={RELEASE}"),
             what="the operator's pods to go away", timeout=120)


def crds_and_user_objects_remain(cluster: Cluster) -> None:
    """Helm never deletes what it installed from the chart's crds/, so the user's objects stay."""
    for crd in CRDS:
        cluster.kubectl("get", f"crd/{crd}")
    pool = _pool(cluster)
    assert "deletionTimestamp" not in pool["metadata"], pool["metadata"]
    names = {s["metadata"]["name"] for s in _servers(cluster)}
    expected = set(demo_servers(demo_documents()))
    assert expected <= names, f"servers missing after uninstall: {sorted(expected - names)}"
    assert len(names) > len(expected), "the server the operator created is gone"
    for server in _servers(cluster):
        assert "deletionTimestamp" not in server["metadata"], server["metadata"]


# --------------------------------------------------------------------------------------------------
# Reads


def _pool(cluster: Cluster) -> dict[str, Any]:
    return cluster.get(f"linepools/{DEMO_POOL}", "-n", DEMO_NAMESPACE)


def _servers(cluster: Cluster) -> list[dict[str, Any]]:
    return cluster.items("messagingservers", DEMO_NAMESPACE)
