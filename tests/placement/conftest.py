"""Fixtures of the placement service's tests: pools with an operator-written status, and the service.

The pools live on the genuine kube-apiserver. Their status is written the way the operator
writes it (through the status subresource), so these tests control each line's state and figures
exactly; tests/integration/test_placement.py runs the real operator and Prometheus instead.
"""

import itertools
import pathlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from linepool.sandbox.kubeapi import KubeApiServer
from linepool.sandbox.placement import PlacementProcess
from tests.conftest import new_namespace

GROUP_VERSION = "linepool.dev/v1alpha1"
TOKEN = "placement-test-token-1"
_users = itertools.count(1)


def fresh_user(prefix: str = "user") -> str:
    return f"{prefix}-{next(_users)}"


class Pools:
    """Write pools and servers, and their status as the operator would."""

    def __init__(self, kube: KubeApiServer, namespace: str) -> None:
        self.kube = kube
        self.namespace = namespace

    def pool(self, name: str, *, metrics: bool = True, quota: int = 50, **spec: Any) -> dict[str, Any]:
        body = {"apiVersion": GROUP_VERSION, "kind": "LinePool",
                "metadata": {"name": name, "namespace": self.namespace},
                "spec": {"metrics": {"prometheusURL": "http://127.0.0.1:9/", "pollInterval": "30s"},
                         "quotas": {"newConversationsPerLinePerDay": quota}, **spec}}
        self.kube.apply(body)
        self.metrics(name, ok=metrics)
        return body

    def metrics(self, pool: str, *, ok: bool) -> None:
        condition = {"type": "MetricsAvailable", "status": "True" if ok else "False",
                     "reason": "MetricsOK" if ok else "MetricsUnavailable",
                     "message": "fresh" if ok else "Prometheus at http://127.0.0.1:9/ is unreachable",
                     "lastTransitionTime": "2026-12-01T00:00:00Z"}
        self.kube.patch_status("linepools", self.namespace, pool, {"conditions": [condition]})

    def server(self, name: str, *, pool: str, lines: list[str], fallback: tuple[str, ...] = (),
               state: dict[str, str] | None = None, assignable: dict[str, bool] | None = None,
               observed: dict[str, int] | None = None) -> None:
        """A server whose status says each line is Active and assignable unless told otherwise."""
        body = {"apiVersion": GROUP_VERSION, "kind": "MessagingServer",
                "metadata": {"name": name, "namespace": self.namespace},
                "spec": {"pool": pool, "endpoint": f"http://{name}.relay:8080",
                         "credentialsSecretRef": {"name": "relay-token", "key": "token"},
                         "lines": [{"id": line, **({"role": "Fallback"} if line in fallback else {})}
                                   for line in lines]}}
        self.kube.apply(body)
        self.status(name, lines=lines, state=state, assignable=assignable, observed=observed)

    def status(self, name: str, *, lines: list[str], state: dict[str, str] | None = None,
               assignable: dict[str, bool] | None = None, observed: dict[str, int] | None = None) -> None:
        state, assignable, observed = state or {}, assignable or {}, observed or {}
        entries = []
        for line in lines:
            line_state = state.get(line, "Active")
            entries.append({"id": line, "state": line_state,
                            "assignable": assignable.get(line, line_state in {"Active", "Idle"}),
                            "newConversationsInWindow": observed.get(line, 0)})
        self.kube.patch_status("messagingservers", self.namespace, name, {"lines": entries})

    def delete_server(self, name: str) -> None:
        self.kube.delete("messagingservers", self.namespace, name)


@pytest.fixture
def pools(kube: KubeApiServer) -> Pools:
    return Pools(kube, new_namespace(kube, "pl"))


@pytest.fixture
def token_file(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "tokens"
    path.write_text(f"# tokens of the test apps\n{TOKEN}\n\nanother-token\n")
    return path


ServiceFactory = Callable[..., PlacementProcess]


@pytest.fixture
def start_service(kube: KubeApiServer, tmp_path: pathlib.Path, token_file: pathlib.Path) -> Iterator[ServiceFactory]:
    """Start ``linepool serve`` processes; each is stopped at the end of the test."""
    started: list[PlacementProcess] = []
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")

    def start(*, namespaces: list[str], database: str | None = None, tokens: pathlib.Path | None = token_file,
              ready: bool = True, **kwargs: Any) -> PlacementProcess:
        process = PlacementProcess(kubeconfig=kwargs.pop("kubeconfig", kubeconfig),
                                   database=database or f"sqlite:///{tmp_path}/placements.db",
                                   log_path=tmp_path / f"serve-{len(started)}.log", token_file=tokens,
                                   namespaces=namespaces, **kwargs)
        started.append(process.start())
        if ready:
            process.wait_ready()
        return process

    yield start
    for process in started:
        process.stop()
