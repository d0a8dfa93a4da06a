"""Fixtures every test folder shares: one genuine kube-apiserver (with etcd) for the whole session.

The server is the judge of the API: the CRDs in ``crds/`` are applied to it once, every schema,
example, chart and integration test that needs an API server talks to it, and each test gets a
namespace of its own. It is started only when a test asks for it. The first run builds it
from the ``k8s.io/kubernetes`` Go module (a few minutes); later runs reuse the cached binary
(see :mod:`linepool.sandbox.kubeapi`). Without Go or etcd, the tests that need it fail with a
message that says how to get them: they are not skipped.

A real PostgreSQL (:mod:`linepool.sandbox.postgres`) is shared the same way, started on first use;
each test that asks for ``postgres_url`` gets an empty database of its own, dropped afterwards.
Without PostgreSQL installed, those tests are skipped with the command that installs it.
"""

import itertools
import pathlib
from collections.abc import Iterator

import pytest

from linepool.sandbox.kubeapi import OLDEST_KUBERNETES_VERSION, KubeApiServer, KubeApiServerUnavailable
from linepool.sandbox.postgres import PostgresNotInstalled, PostgresServer

REPO = pathlib.Path(__file__).resolve().parent.parent
CRD_FILES = sorted((REPO / "crds").glob("*.yaml"))
# Static-token users besides the admin: the operator under the chart's RBAC, and one with no grants.
OPERATOR_USER = "linepool-operator"
NOBODY_USER = "nobody"
_namespaces = itertools.count()
_databases = itertools.count()


def _serve(server: KubeApiServer) -> Iterator[KubeApiServer]:
    try:
        server.start()
    except KubeApiServerUnavailable as e:
        pytest.fail(f"the genuine kube-apiserver is needed here: {e}", pytrace=False)
    try:
        server.apply_manifests(CRD_FILES)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def kube() -> Iterator[KubeApiServer]:
    """The current release the suite runs on (``KUBERNETES_VERSION``)."""
    yield from _serve(KubeApiServer(users={OPERATOR_USER: [], NOBODY_USER: []}))


@pytest.fixture(scope="session")
def kube_oldest() -> Iterator[KubeApiServer]:
    """The oldest supported release: CEL features and schema rules must work there too."""
    yield from _serve(KubeApiServer(version=OLDEST_KUBERNETES_VERSION, users={OPERATOR_USER: [], NOBODY_USER: []}))


def new_namespace(kube: KubeApiServer, prefix: str = "t") -> str:
    """A namespace no other test uses (there is no namespace controller: they are never deleted)."""
    name = f"{prefix}-{next(_namespaces)}"
    kube.create_namespace(name)
    return name


@pytest.fixture
def namespace(kube: KubeApiServer) -> str:
    return new_namespace(kube)


def started_postgres() -> Iterator[PostgresServer]:
    """A started PostgreSQL server, stopped afterwards; the test is skipped when it is not installed."""
    server = PostgresServer()
    try:
        server.start()
    except PostgresNotInstalled as e:
        pytest.skip(str(e))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the session (it starts in about a second)."""
    yield from started_postgres()


@pytest.fixture
def postgres_url(postgres: PostgresServer) -> Iterator[str]:
    """The URL of an empty database that no other test uses."""
    name = f"test_{next(_databases)}"
    yield postgres.create_database(name)
    # A test that restarted or halted the server must not break the next one: bring it back first.
    if not postgres.running:
        postgres.start()
    postgres.drop_database(name)
