"""Fixtures that start real processes on loopback: the genuine kube-apiserver (tests/conftest.py),
a real Prometheus scraping a real exporter (the simulated fleet), and the operator itself as a
child process.

The API server, the fleet and Prometheus are shared by the whole session (each takes seconds to
start); each test uses its own namespace, pools and server names, so objects and series never
mix. The operator is per test, and runs as a token user bound to the ClusterRole that the chart
renders with its default values: permissions are the ones a real install grants, no more.
"""

import contextlib
import pathlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest

from linepool.sandbox.fleet import Fleet
from linepool.sandbox.kubeapi import KubeApiServer
from linepool.sandbox.operator_process import OperatorProcess
from linepool.sandbox.prometheus import PrometheusProcess
from tests.chart.helm import pinned_helm
from tests.conftest import OPERATOR_USER, new_namespace
from tests.integration.history import start_history

T = TypeVar("T")
GROUP_VERSION = "linepool.dev/v1alpha1"


def wait_for(check: Callable[[], T], *, timeout: float = 20.0, interval: float = 0.2, what: str = "") -> T:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: T = check()
    while not last:
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or check}; last value: {last!r}")
        time.sleep(interval)
        last = check()
    return last


def holds(check: Callable[[], bool], *, seconds: float, interval: float = 0.25) -> bool:
    """True when ``check`` stays true for the whole of ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not check():
            return False
        time.sleep(interval)
    return True


@pytest.fixture(scope="session")
def fleet() -> Iterator[Fleet]:
    with Fleet() as running:
        yield running


@pytest.fixture(scope="session")
def prometheus(fleet: Fleet) -> Iterator[PrometheusProcess]:
    with PrometheusProcess([fleet.target]) as running:
        # Wait for the first scrape so that tests do not each pay for target discovery.
        fleet.add_server("warmup-0", ["+19995550000"])
        wait_for(lambda: running.query('imessage_messages_sent_total{server="warmup-0"}'),
                 timeout=30, what="Prometheus to scrape the fleet")
        yield running


@pytest.fixture(scope="session")
def history() -> Iterator[PrometheusProcess]:
    """A Prometheus with twelve days of known growth (tests/integration/history.py), and no scrapes."""
    server = start_history()
    try:
        yield server
    finally:
        server.close()


@dataclass(frozen=True)
class OperatorRbac:
    """The chart's RBAC for watched namespaces (``watchNamespaces``), bound to the operator's token user.

    Tests run the operator with ``--namespace``, as the chart does in that mode, so they get the
    chart's namespaced Role in their own namespace and its small ClusterRole (CRD discovery,
    namespace observation), never more.
    """

    kube: KubeApiServer
    role: dict[str, Any]

    def grant(self, namespace: str, *, without: tuple[str, str] | None = None) -> None:
        """The chart's Role and a binding for the operator's user; ``without`` drops one (group, resource)."""
        rules = [{**rule, "resources": [r for r in rule["resources"] if (rule["apiGroups"][0], r) != without]}
                 for rule in self.role["rules"]]
        role = {**self.role, "metadata": {**self.role["metadata"], "namespace": namespace},
                "rules": [rule for rule in rules if rule["resources"]]}
        self.kube.apply(role)
        self.kube.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                         "metadata": {"name": "linepool-operator-test-user", "namespace": namespace},
                         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                     "name": role["metadata"]["name"]},
                         "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                                       "name": OPERATOR_USER}]})


@pytest.fixture(scope="session")
def operator_rbac(kube: KubeApiServer, tmp_path_factory: pytest.TempPathFactory) -> OperatorRbac:
    helm = pinned_helm(tmp_path_factory.mktemp("helm-home"))
    rendered = helm.template(sets=["watchNamespaces={placeholder}"])
    cluster_role = rendered.one("ClusterRole")
    kube.apply(cluster_role)
    name = cluster_role["metadata"]["name"]
    kube.apply({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
                "metadata": {"name": f"{name}-test-user"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": OPERATOR_USER}]})
    return OperatorRbac(kube=kube, role=rendered.one("Role", namespace="placeholder"))


@dataclass
class Sandbox:
    """One test's cluster: API server, namespace, Prometheus URL, fleet, and operator."""

    api: KubeApiServer
    rbac: OperatorRbac
    fleet: Fleet
    prometheus: PrometheusProcess
    namespace: str
    kubeconfig: pathlib.Path
    workdir: pathlib.Path
    operators: list[OperatorProcess] = field(default_factory=list)

    # --- objects ---------------------------------------------------------------------------

    def pool(self, name: str, **spec: Any) -> dict[str, Any]:
        """A LinePool reading this sandbox's Prometheus every second.

        Line health is off unless a test sets ``health``: the fleet's traffic arrives in one
        scrape, which is a burst without replies, so health would rightly take those lines out.
        """
        spec.setdefault("health", {"enabled": False})
        body: dict[str, Any] = {
            "apiVersion": GROUP_VERSION, "kind": "LinePool",
            "metadata": {"name": name, "namespace": self.namespace},
            "spec": {"metrics": {"prometheusURL": self.prometheus.url, "pollInterval": "1s", "staleAfter": "30s"},
                     **spec},
        }
        return self.api.apply(body)

    def server(self, name: str, pool: str, lines: list[str], *, exported: bool = True, **spec: Any) -> dict[str, Any]:
        body = {
            "apiVersion": GROUP_VERSION, "kind": "MessagingServer",
            "metadata": {"name": name, "namespace": self.namespace, "labels": {"linepool.dev/pool": pool}},
            "spec": {"pool": pool, "endpoint": f"http://{name}.relay:8080",
                     "credentialsSecretRef": {"name": "relay-token", "key": "token"},
                     "lines": [{"id": line} for line in lines], **spec},
        }
        if exported:
            self.export(name, lines)
        return self.api.apply(body)

    def export(self, name: str, lines: list[str]) -> None:
        """Start exporting a server's series at zero and wait until Prometheus has them.

        Counters must be scraped at zero before traffic: ``increase()`` ignores what a series
        already held at its first sample.
        """
        if name not in self.fleet.servers():
            self.fleet.add_server(name, lines)
        wait_for(lambda: len(self.prometheus.query(f'imessage_messages_sent_total{{server="{name}"}}')) == len(lines),
                 timeout=20, what=f"series of {name} in Prometheus")

    def send(self, server: str, messages: int) -> None:
        """Spread ``messages`` sent messages evenly over the server's lines."""
        lines = self.fleet.servers()[server]
        for index, line in enumerate(lines):
            share = messages // len(lines) + (1 if index < messages % len(lines) else 0)
            self.fleet.send(server, line, share)

    def get(self, plural: str, name: str) -> dict[str, Any]:
        obj = self.api.get(plural, self.namespace, name)
        assert obj is not None, f"{plural}/{name} does not exist"
        return obj

    def servers_of(self, pool: str) -> list[dict[str, Any]]:
        return [s for s in self.api.list("messagingservers", self.namespace) if s["spec"].get("pool") == pool]

    def status(self, plural: str, name: str) -> dict[str, Any]:
        return dict(self.get(plural, name).get("status") or {})

    def condition(self, plural: str, name: str, type_: str) -> dict[str, Any]:
        for item in self.status(plural, name).get("conditions") or []:
            if item["type"] == type_:
                return dict(item)
        return {}

    def label(self, name: str) -> str | None:
        labels = self.get("messagingservers", name)["metadata"].get("labels") or {}
        return labels.get("linepool.dev/assignable")

    def events(self, reason: str | None = None, involving: str | None = None) -> list[dict[str, Any]]:
        events = self.api.list("events", self.namespace)
        return [e for e in events
                if (reason is None or e.get("reason") == reason)
                and (involving is None or (e.get("involvedObject") or {}).get("name") == involving)]

    # --- the operator ----------------------------------------------------------------------

    def start_operator(self, **kwargs: Any) -> OperatorProcess:
        operator = OperatorProcess(kubeconfig=self.kubeconfig, namespaces=[self.namespace],
                                   log_path=self.workdir / f"operator-{len(self.operators)}.log", **kwargs)
        self.operators.append(operator.start())
        operator.wait_metrics()
        return operator

    def grant_operator(self) -> None:
        """Give the operator's user the chart's Role in this namespace (again, after :meth:`revoke`)."""
        self.rbac.grant(self.namespace)

    def revoke(self, group: str, resource: str) -> None:
        """Take one resource out of the operator's Role, and wait until the authorizer refuses it."""
        self.rbac.grant(self.namespace, without=(group, resource))
        review = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                  "spec": {"user": OPERATOR_USER, "resourceAttributes": {
                      "namespace": self.namespace, "verb": "patch", "group": group,
                      "resource": resource.partition("/")[0], "subresource": resource.partition("/")[2]}}}
        wait_for(lambda: not self.api.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews",
                                              body=review)["status"].get("allowed"),
                 timeout=10, what=f"{resource} to be refused")

    def operator_writes(self) -> int:
        """API writes the operator made (from the server's audit log) since ``api.reset_counters()``."""
        return self.api.write_count(user=OPERATOR_USER)

    def operator_logs(self) -> str:
        return "\n".join(op.log() for op in self.operators)


@contextlib.contextmanager
def open_sandbox(*, kube: KubeApiServer, rbac: OperatorRbac, fleet: Fleet, prometheus: PrometheusProcess,
                 workdir: pathlib.Path) -> Iterator[Sandbox]:
    """A fresh namespace that the operator's user may work in; operators started there are stopped on the way out."""
    namespace = new_namespace(kube, "it")
    rbac.grant(namespace)
    kubeconfig = kube.write_kubeconfig(workdir / "kubeconfig", user=OPERATOR_USER, namespace=namespace)
    box = Sandbox(api=kube, rbac=rbac, fleet=fleet, prometheus=prometheus, namespace=namespace,
                  kubeconfig=kubeconfig, workdir=workdir)
    try:
        yield box
    finally:
        for operator in box.operators:
            operator.stop()


@pytest.fixture
def sandbox(kube: KubeApiServer, operator_rbac: OperatorRbac, fleet: Fleet, prometheus: PrometheusProcess,
            tmp_path: pathlib.Path, request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    with open_sandbox(kube=kube, rbac=operator_rbac, fleet=fleet, prometheus=prometheus, workdir=tmp_path) as box:
        try:
            yield box
        finally:
            failed = getattr(request.node, "rep_call", None)
            if failed is not None and failed.failed:
                print(box.operator_logs()[-8000:])


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    # Keep the call-phase report on the item so the fixture can print operator logs on failure.
    report = yield
    if call.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    return report
