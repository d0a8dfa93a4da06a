"""The genuine API server the suite runs on: the pinned version, real authentication and RBAC,
service-account tokens, and the audit log that write counts come from."""

import pytest
import requests

from linepool.sandbox.kubeapi import KUBERNETES_VERSION, KubeApiError, KubeApiServer, binary_path
from tests.conftest import NOBODY_USER, OPERATOR_USER

GV = "linepool.dev/v1alpha1"


def _pool(namespace: str, name: str = "p") -> dict[str, object]:
    return {"apiVersion": GV, "kind": "LinePool", "metadata": {"name": name, "namespace": namespace},
            "spec": {"metrics": {"prometheusURL": "http://prometheus:9090"}}}


def test_it_is_the_pinned_kube_apiserver_from_the_cache(kube: KubeApiServer) -> None:
    version = kube.request("GET", "/version")
    assert version["gitVersion"] == f"v{KUBERNETES_VERSION}"
    assert binary_path().exists(), "the binary is cached for the next run"


def test_a_bad_token_is_unauthenticated(kube: KubeApiServer) -> None:
    with pytest.raises(KubeApiError) as refused:
        kube.request("GET", "/api/v1/namespaces", session=kube.client(token="not-a-token"))
    assert refused.value.status == 401


def test_rbac_is_enforced_for_users_without_grants(kube: KubeApiServer, namespace: str) -> None:
    nobody = kube.client(NOBODY_USER)
    with pytest.raises(KubeApiError) as refused:
        kube.request("GET", kube.path("linepools", namespace), session=nobody)
    assert refused.value.status == 403
    assert f'User "{NOBODY_USER}" cannot list resource "linepools"' in refused.value.message


def test_service_account_tokens_authenticate_as_the_account(kube: KubeApiServer, namespace: str) -> None:
    kube.apply({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "app", "namespace": namespace}})
    token = kube.service_account_token(namespace, "app")
    review = kube.request("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                          body={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
                          session=kube.client(token=token))
    assert review["status"]["userInfo"]["username"] == f"system:serviceaccount:{namespace}:app"


def test_writes_are_counted_per_user_from_the_audit_log(kube: KubeApiServer, namespace: str) -> None:
    kube.reset_counters()
    kube.create(_pool(namespace))
    kube.patch("linepools", namespace, "p", {"metadata": {"labels": {"a": "b"}}})
    kube.create(_pool(namespace, "q"), dry_run=True)
    assert kube.write_count("linepools", namespace=namespace) == 3
    assert kube.write_count("linepools", user=OPERATOR_USER) == 0
    with pytest.raises(KubeApiError):
        kube.create(_pool(namespace, "r"), session=kube.client(NOBODY_USER))
    assert kube.write_count(user=NOBODY_USER) == 1
    assert kube.write_count(user=NOBODY_USER, successful_only=True) == 0
    kube.reset_counters()
    assert kube.write_count() == 0


def test_the_client_checks_the_servers_certificate(kube: KubeApiServer) -> None:
    session = requests.Session()
    session.trust_env = False
    with pytest.raises(requests.exceptions.SSLError):
        session.get(f"{kube.url}/readyz", timeout=5)
