"""Fixtures every test folder shares: one genuine kube-apiserver (with etcd) for the whole session.

The server is the judge of the API: the CRDs in ``crds/`` are applied to it once, every schema,
example, chart and integration test that needs an API server talks to it, and each test gets a
namespace of its own. It is started only when a test asks for it. The first run builds it
from the ``k8s.io/kubernetes`` Go module (a few minutes); later runs reuse the cached binary
(see :mod:`linepool.sandbox.kubeapi`). Without Go or etcd, the tests that need it fail with a
message that says how to get them: they are not skipped.
"""

import itertools
import pathlib
from collections.abc import Iterator

import pytest

from linepool.sandbox.kubeapi import KubeApiServer, KubeApiServerUnavailable

REPO = pathlib.Path(__file__).resolve().parent.parent
CRD_FILES = sorted((REPO / "crds").glob("*.yaml"))
# Static-token users besides the admin: the operator under the chart's RBAC, and one with no grants.
OPERATOR_USER = "linepool-operator"
NOBODY_USER = "nobody"
_namespaces = itertools.count()


@pytest.fixture(scope="session")
def kube() -> Iterator[KubeApiServer]:
    server = KubeApiServer(users={OPERATOR_USER: [], NOBODY_USER: []})
    try:
        server.start()
    except KubeApiServerUnavailable as e:
        pytest.fail(f"the genuine kube-apiserver is needed here: {e}", pytrace=False)
    try:
        server.apply_manifests(CRD_FILES)
        yield server
    finally:
        server.stop()


def new_namespace(kube: KubeApiServer, prefix: str = "t") -> str:
    """A namespace no other test uses (there is no namespace controller: they are never deleted)."""
    name = f"{prefix}-{next(_namespaces)}"
    kube.create_namespace(name)
    return name


@pytest.fixture
def namespace(kube: KubeApiServer) -> str:
    return new_namespace(kube)
