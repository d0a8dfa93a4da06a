"""The operator under the chart's own RBAC, on the genuine API server's real authorizer.

The chart is rendered for one watched namespace, and its ServiceAccount, Roles, bindings and peering
object are applied as they are. The operator then runs with a token of that ServiceAccount (from
the TokenRequest API) and the container arguments the chart gives it. It must saturate a server and
scale the pool up, and it must still be refused a list of Secrets: least privilege shown, not assumed.
"""

import pathlib

import pytest

from linepool.sandbox.fleet import Fleet
from linepool.sandbox.kubeapi import KubeApiError, KubeApiServer
from linepool.sandbox.prometheus import PrometheusProcess
from tests.chart.helm import NAMESPACE, pinned_helm
from tests.conftest import new_namespace
from tests.integration.conftest import OperatorRbac, Sandbox, wait_for
from tests.integration.test_scaling import two_busy_servers

pytestmark = pytest.mark.integration

APPLIED_KINDS = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "KopfPeering"}


@pytest.fixture
def chart_sandbox(kube: KubeApiServer, operator_rbac: OperatorRbac, fleet: Fleet, prometheus: PrometheusProcess,
                  tmp_path: pathlib.Path) -> tuple[Sandbox, list[str], str]:
    """A namespace watched by the chart's RBAC; the box, the chart's operator arguments, its user name."""
    namespace = new_namespace(kube, "chart")
    kube.create_namespace(NAMESPACE)
    release = f"rbac-{namespace}"
    rendered = pinned_helm(tmp_path / "helm").template(
        sets=[f"watchNamespaces={{{namespace}}}", f"fullnameOverride={release}"], monitoring=False)
    for doc in rendered:
        if doc["kind"] in APPLIED_KINDS:
            kube.apply(doc)
    account = rendered.one("ServiceAccount")["metadata"]["name"]
    token = kube.service_account_token(NAMESPACE, account)
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig", user=account, token=token, namespace=namespace)
    args = [arg for arg in rendered.container()["args"]
            if arg != "run" and not arg.startswith(("--metrics-port=", "--liveness=", "--namespace="))]
    assert f"--namespace={namespace}" in rendered.container()["args"]
    box = Sandbox(api=kube, rbac=operator_rbac, fleet=fleet, prometheus=prometheus, namespace=namespace,
                  kubeconfig=kubeconfig, workdir=tmp_path)
    return box, args, f"system:serviceaccount:{NAMESPACE}:{account}"


def test_the_chart_rbac_is_enough_to_saturate_and_scale_and_no_more(
        kube: KubeApiServer, chart_sandbox: tuple[Sandbox, list[str], str]) -> None:
    box, args, user = chart_sandbox
    assert any(arg.startswith("--peering=") for arg in args), args
    two_busy_servers(box, "rbac")
    try:
        box.start_operator(standalone=False, extra_args=args)
        wait_for(lambda: box.label("rbac-0") == "false" and box.label("rbac-1") == "false",
                 timeout=30, what="both servers saturated")
        wait_for(lambda: len(box.servers_of("rbac")) == 3, timeout=30, what="a server added by scale-up")
        wait_for(lambda: box.events("ScaledUp", involving="rbac"), what="a ScaledUp event")
        wait_for(lambda: box.label("rbac-2") == "true", what="the new server taking users")
    finally:
        for operator in box.operators:
            operator.stop()
    assert "Forbidden" not in box.operator_logs(), box.operator_logs()[-3000:]

    session = kube.client(token=kube.service_account_token(NAMESPACE, user.rsplit(":", 1)[1]))
    for path in (f"/api/v1/namespaces/{box.namespace}/secrets", "/api/v1/secrets"):
        with pytest.raises(KubeApiError) as refused:
            kube.request("GET", path, session=session)
        assert refused.value.status == 403, path
    # A token is read by name: `get` on one Secret is allowed (here it does not exist).
    with pytest.raises(KubeApiError) as missing:
        kube.request("GET", f"/api/v1/namespaces/{box.namespace}/secrets/relay-token", session=session)
    assert missing.value.status == 404
    # Nor may it touch pools outside the watched namespace.
    with pytest.raises(KubeApiError) as elsewhere:
        kube.request("GET", kube.path("linepools", "default"), session=session)
    assert elsewhere.value.status == 403
    listed = [e for e in kube.audit_events(verbs={"list", "watch"})
              if e["user"]["username"] == user and e["objectRef"]["resource"] == "secrets"
              and e["responseStatus"]["code"] < 400]
    assert listed == []
