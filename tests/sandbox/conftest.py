"""
Fixtures for the sandbox's own tests: a fresh API server per test, and clients for it.

Each test gets its own server (it starts in a few milliseconds), so tests never see
each other's objects or counters. The ``kubernetes`` client is configured into a private
``Configuration``: the global default would leak between tests in one process.
"""
import pathlib
from collections.abc import Iterator

import kubernetes
import pytest

from linepool.sandbox.apiserver import ApiServerThread


@pytest.fixture
def apiserver() -> Iterator[ApiServerThread]:
    with ApiServerThread() as server:
        yield server


@pytest.fixture
def kubeconfig(apiserver: ApiServerThread, tmp_path: pathlib.Path) -> pathlib.Path:
    return apiserver.write_kubeconfig(tmp_path / 'kubeconfig')


@pytest.fixture
def api_client(kubeconfig: pathlib.Path) -> Iterator[kubernetes.client.ApiClient]:
    configuration = kubernetes.client.Configuration()
    kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig), client_configuration=configuration)
    with kubernetes.client.ApiClient(configuration) as client:
        yield client


@pytest.fixture
def custom_api(api_client: kubernetes.client.ApiClient) -> kubernetes.client.CustomObjectsApi:
    return kubernetes.client.CustomObjectsApi(api_client)


@pytest.fixture
def core_api(api_client: kubernetes.client.ApiClient) -> kubernetes.client.CoreV1Api:
    return kubernetes.client.CoreV1Api(api_client)
