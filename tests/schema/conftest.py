"""Fixtures of the schema tests: both supported ends of the Kubernetes range, and one namespace for
dry-run requests, which store nothing.

Here ``kube`` is parametrized: every schema test runs on the current release that the rest of the
suite uses, and again on the oldest supported one (both genuine servers from tests/conftest.py),
because what a CRD may use (CEL functions, ``fieldPath``, defaults under rules) depends on the
version. Per-test namespaces (``namespace``) come from tests/conftest.py. Dry-run creates leave no
object behind, so the many table tests share one namespace rather than creating one each; tests
that store objects take ``namespace``.
"""

from __future__ import annotations

import pytest

from linepool.sandbox.kubeapi import KUBERNETES_VERSION, OLDEST_KUBERNETES_VERSION, KubeApiServer
from tests.conftest import new_namespace


@pytest.fixture(scope="session", params=[KUBERNETES_VERSION, OLDEST_KUBERNETES_VERSION], ids=lambda v: f"k8s-{v}")
def kube(request: pytest.FixtureRequest, kube: KubeApiServer) -> KubeApiServer:
    if request.param == KUBERNETES_VERSION:
        return kube
    oldest: KubeApiServer = request.getfixturevalue("kube_oldest")
    return oldest


@pytest.fixture(scope="session")
def dry_run_namespace(kube: KubeApiServer) -> str:
    return new_namespace(kube, "schema-dry-run")
