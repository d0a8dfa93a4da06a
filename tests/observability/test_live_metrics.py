"""Every metric that the alerts and the dashboard query is one the operator really exports.

Starts the real operator (``python -m linepool run``) as a child process against the genuine API
server, with one LinePool whose Prometheus URL points at a closed port (the operator still runs
its pool loop, fails static and exports the pool's metrics), and scrapes its ``/metrics``.
prometheus_client prints ``# HELP``/``# TYPE`` for every declared metric, even labelled ones with
no sample yet, so the scrape lists the whole contract; a metric renamed in telemetry.py, or a
typo in a query, fails here.
"""

from __future__ import annotations

import os
import pathlib
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator

import pytest

from linepool.cli import build_parser
from linepool.sandbox.kubeapi import KubeApiServer
from linepool.sandbox.operator_process import OperatorProcess
from linepool.sandbox.prometheus import PrometheusNotInstalled, find_binary, free_port
from tests.conftest import new_namespace
from tests.observability.promql import dashboard_expressions, metric_names, rule_expressions

pytestmark = pytest.mark.integration

POOL = "quiet"
GROUP_VERSION = "linepool.dev/v1alpha1"
# Sample names a metric family of each type exposes, besides the family name itself.
SUFFIXES = {"histogram": ("_bucket", "_count", "_sum"), "summary": ("_count", "_sum"), "gaugehistogram": (
    "_bucket", "_gcount", "_gsum")}


@pytest.fixture(scope="module")
def scrape(kube: KubeApiServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir: pathlib.Path = tmp_path_factory.mktemp("live-metrics")
    namespace = new_namespace(kube, "observability")
    kubeconfig = kube.write_kubeconfig(workdir / "kubeconfig", namespace=namespace)
    kube.apply({
        "apiVersion": GROUP_VERSION, "kind": "LinePool",
        "metadata": {"name": POOL, "namespace": namespace},
        "spec": {"scaling": {"mode": "Off"},
                 "metrics": {"prometheusURL": f"http://127.0.0.1:{free_port()}", "pollInterval": "1s"}},
    })
    kube.apply({
        "apiVersion": GROUP_VERSION, "kind": "MessagingServer",
        "metadata": {"name": f"{POOL}-0", "namespace": namespace, "labels": {"linepool.dev/pool": POOL}},
        "spec": {"pool": POOL, "endpoint": "http://127.0.0.1:9/relay",
                 "credentialsSecretRef": {"name": "relay-token", "key": "token"},
                 "lines": [{"id": "+14155550100"}, {"id": "+14155550101"}]},
    })
    operator = OperatorProcess(kubeconfig=kubeconfig, namespaces=[namespace], log_path=workdir / "operator.log")
    operator.start()
    try:
        page = operator.wait_metrics()
        wanted = f'linepool_pool_utilization{{namespace="{namespace}",pool="{POOL}"}}'
        deadline = time.monotonic() + 20
        while wanted not in page:
            if time.monotonic() > deadline or not operator.running:
                pytest.fail(f"the operator did not export {wanted}; log:\n{operator.log()[-4000:]}")
            time.sleep(0.2)
            page = operator.metrics()
        yield page
    finally:
        operator.stop()


def exported_names(page: str) -> set[str]:
    """Metric names a query may use: families from # TYPE lines (with their sample suffixes) and samples."""
    names: set[str] = set()
    for line in page.splitlines():
        typed = re.match(r"# TYPE (\S+) (\S+)", line)
        if typed:
            name, kind = typed.groups()
            names.add(name)
            names.update(name + suffix for suffix in SUFFIXES.get(kind, ()))
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names


def test_the_scrape_has_the_pool(scrape: str) -> None:
    names = exported_names(scrape)
    assert "linepool_build_info" in names
    condition = rf'linepool_pool_condition{{namespace="observability-\d+",pool="{POOL}",type="MetricsAvailable"}} 0.0'
    assert re.search(condition, scrape)
    assert "linepool_reconcile_duration_seconds_count" in names


def test_the_dashboard_queries_only_exported_metrics(scrape: str) -> None:
    exported = exported_names(scrape)
    missing = {where: sorted(metric_names(expr) - exported)
               for where, expr in dashboard_expressions().items() if metric_names(expr) - exported}
    assert not missing, f"the dashboard queries metrics the operator does not export: {missing}"


def test_the_alerts_query_only_exported_metrics(scrape: str) -> None:
    """The operator's alerts; the placement service's are checked against its own scrape below."""
    exported = exported_names(scrape)
    for alert, expr in rule_expressions(placement=False).items():
        names = metric_names(expr)
        assert names and all(name.startswith("linepool_") for name in names), (alert, sorted(names))
        assert names <= exported, f"{alert} queries {sorted(names - exported)}, which the operator does not export"


def test_promtool_finds_nothing_to_lint_in_the_scrape(scrape: str) -> None:
    try:
        promtool = find_binary("promtool")
    except PrometheusNotInstalled as exc:
        pytest.skip(str(exc))
    import subprocess

    result = subprocess.run([promtool, "check", "metrics"], input=scrape, capture_output=True, text=True,
                            timeout=30, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


# --- the placement service (`linepool serve`) ---------------------------------------------------

PLACEMENT_METRICS = ("linepool_placements_total", "linepool_placement_request_duration_seconds_bucket",
                     "linepool_placement_budget_remaining", "linepool_placement_store_errors_total")


def _has_serve() -> bool:
    commands = next(a for a in build_parser()._actions if a.dest == "command")
    return "serve" in commands.choices  # type: ignore[operator]


@pytest.fixture(scope="module")
def serve_scrape(kube: KubeApiServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``linepool serve`` with the flags the chart passes, on SQLite, and its /metrics page."""
    if not _has_serve():
        pytest.skip("`linepool serve` is not in this tree yet")
    workdir: pathlib.Path = tmp_path_factory.mktemp("live-placement-metrics")
    namespace = new_namespace(kube, "observability-placement")
    kubeconfig = kube.write_kubeconfig(workdir / "kubeconfig", namespace=namespace)
    port = free_port()
    command = [sys.executable, "-m", "linepool", "serve", f"--listen=127.0.0.1:{port}",
               f"--database=sqlite:///{workdir / 'placements.db'}", "--public-url=http://links.example.com",
               f"--namespace={namespace}", "--log-format=json"]
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "NO_PROXY": "127.0.0.1,localhost",
           "no_proxy": "127.0.0.1,localhost"}
    log_path = workdir / "serve.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                    page = str(response.read().decode())
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    pytest.fail(f"`linepool serve` served no /metrics; log:\n{log_path.read_text()[-4000:]}")
                time.sleep(0.2)
        yield page
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


def test_the_placement_alerts_query_only_metrics_the_service_exports(serve_scrape: str) -> None:
    exported = exported_names(serve_scrape)
    assert set(PLACEMENT_METRICS) <= exported, sorted(set(PLACEMENT_METRICS) - exported)
    for alert, expr in rule_expressions(placement=True).items():
        names = metric_names(expr)
        assert names and names <= exported, f"{alert} queries {sorted(names - exported)}, which `linepool serve` lacks"


def test_the_service_does_not_pose_as_the_operator(serve_scrape: str) -> None:
    """LinePoolOperatorAbsent and LinePoolOperatorNotReconciling count linepool_build_info: a placement
    service exporting it would keep them quiet while every operator replica is down."""
    assert "linepool_build_info" not in exported_names(serve_scrape)
