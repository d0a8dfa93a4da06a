"""Fixtures for the end-to-end tests on a real cluster made with kind.

Tests marked ``e2e`` need a Docker daemon and the kind binary. Without them they are skipped with
the reason (so `make test` stays green on a machine without Docker), unless LINEPOOL_E2E_REQUIRED is
set, as in CI, where a missing prerequisite is an error. The other tests in this folder check the
e2e's own manifests offline and always run.

Session fixtures, built only when an e2e test asks for them:
- ``tools``: helm and kubectl (tests/binaries.py's pinned ones, else PATH);
- ``cluster``: a fresh kind cluster (node image from KIND_NODE_IMAGE), deleted afterwards unless
  LINEPOOL_E2E_KEEP_CLUSTER is set;
- ``operator_image``: the image built from this checkout's Dockerfile and loaded into the cluster.
"""

from __future__ import annotations

import os
import pathlib
import uuid
from collections.abc import Iterator
from typing import NoReturn

import pytest

from .cluster import (
    KEEP_CLUSTER_ENV,
    NODE_IMAGE_ENV,
    REQUIRED_ENV,
    Cluster,
    Tools,
    find_tools,
    missing_prerequisite,
    run,
)
from .manifests import ROOT

E2E_IMAGE = "linepool-operator:e2e"


def _unavailable(reason: str) -> NoReturn:
    message = f"e2e needs Docker and kind: {reason}"
    if os.environ.get(REQUIRED_ENV):
        pytest.fail(f"{message} ({REQUIRED_ENV} is set)", pytrace=False)
    pytest.skip(message)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Skip the e2e-marked tests at once when the machine cannot run them, before any fixture."""
    e2e_items = [item for item in items if item.get_closest_marker("e2e") is not None]
    if not e2e_items or os.environ.get(REQUIRED_ENV):
        return
    reason = missing_prerequisite()
    if reason is not None:
        for item in e2e_items:
            item.add_marker(pytest.mark.skip(reason=f"e2e needs Docker and kind: {reason}"))


@pytest.fixture(scope="session")
def tools() -> Tools:
    reason = missing_prerequisite()
    if reason is not None:
        _unavailable(reason)
    found = find_tools()
    if isinstance(found, str):
        _unavailable(found)
    return found


@pytest.fixture(scope="session")
def cluster(tools: Tools, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    name = f"linepool-e2e-{uuid.uuid4().hex[:6]}"
    workdir = tmp_path_factory.mktemp("kind")
    kubeconfig = workdir / "kubeconfig"
    command: list[str | os.PathLike[str]] = ["kind", "create", "cluster", "--name", name,
                                             "--kubeconfig", kubeconfig, "--wait", "180s"]
    node_image = os.environ.get(NODE_IMAGE_ENV)
    if node_image:
        command += ["--image", node_image]
    run(command, timeout=600)
    try:
        yield Cluster(name=name, kubeconfig=kubeconfig, tools=tools, helm_home=workdir / "helm")
    finally:
        if os.environ.get(KEEP_CLUSTER_ENV):
            print(f"\nkept the kind cluster {name} (KUBECONFIG={kubeconfig}); `kind delete cluster --name {name}`")
        else:
            run(["kind", "delete", "cluster", "--name", name], timeout=300, check=False)


@pytest.fixture(scope="session")
def operator_image(cluster: Cluster) -> str:
    """The operator's image, built from this checkout and loaded into the kind nodes (never pulled)."""
    run(["docker", "build", "-t", E2E_IMAGE, pathlib.Path(ROOT)], timeout=900)
    run(["kind", "load", "docker-image", E2E_IMAGE, "--name", cluster.name], timeout=600)
    return E2E_IMAGE
