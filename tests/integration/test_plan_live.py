"""``linepool plan --from-cluster`` against real processes: the pool on the genuine kube-apiserver, its
history in a real Prometheus, backfilled (``promtool``) with twelve days of known growth.

The fitted growth and messages per user must come within 10% of the truth; too little history,
an unknown pool and an unreachable Prometheus each end with a clear message and exit code 2.
"""

import json
import math
import os
import pathlib
import subprocess
import sys

import pytest

from linepool.sandbox.kubeapi import KubeApiServer
from linepool.sandbox.prometheus import PrometheusProcess, free_port
from tests.conftest import new_namespace
from tests.integration.history import DAYS, GROWTH, LINES, PER_USER

pytestmark = pytest.mark.integration

def apply_pool(kube: KubeApiServer, namespace: str, name: str, url: str, servers: dict[str, list[str]]) -> None:
    kube.apply({"apiVersion": "linepool.dev/v1alpha1", "kind": "LinePool",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"metrics": {"prometheusURL": url}, "scaling": {"maxServers": 20, "linesPerServer": 2},
                         "inventory": [f"+1415555{4000 + n}" for n in range(8)]}})
    for server, ids in servers.items():
        kube.apply({"apiVersion": "linepool.dev/v1alpha1", "kind": "MessagingServer",
                    "metadata": {"name": server, "namespace": namespace},
                    "spec": {"pool": name, "endpoint": f"http://{server}:8080",
                             "credentialsSecretRef": {"name": "relay", "key": "token"},
                             "lines": [{"id": line} for line in ids]}})


def run_plan(kube: KubeApiServer, tmp_path: pathlib.Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": str(kube.write_kubeconfig(tmp_path / "kubeconfig")),
           "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
    return subprocess.run([sys.executable, "-m", "linepool", "plan", *args], env=env, capture_output=True,
                          text=True, timeout=120, check=False)


def test_live_mode_fits_growth_and_messages_within_ten_percent(
        kube: KubeApiServer, history: PrometheusProcess, tmp_path: pathlib.Path) -> None:
    namespace = new_namespace(kube, "plan")
    apply_pool(kube, namespace, "web", history.url, LINES)
    result = run_plan(kube, tmp_path, "--from-cluster", f"{namespace}/web", "--days", "60", "--output", "json")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    fit = plan["history"]
    assert fit["days"] >= DAYS - 2
    assert math.isclose(fit["weeklyGrowth"], GROWTH, rel_tol=0.10), fit
    assert math.isclose(fit["messagesPerUserPerDay"], PER_USER, rel_tol=0.10), fit
    assert fit["growthR2"] > 0.95
    assert "History:" in result.stderr and "R²" in result.stderr
    assert {"firstScaleUpDay", "inventoryExhaustedDay", "serversNeededAtEnd", "linesNeededAtEnd",
            "linesToOrder", "orderBy"} <= set(plan)
    table = run_plan(kube, tmp_path, "--from-cluster", f"{namespace}/web", "--days", "14")
    assert table.returncode == 0, table.stderr
    assert table.stdout.startswith("History:")
    assert "first scale-up:" in table.stdout


def test_live_mode_refuses_too_little_history_an_unknown_pool_and_an_unreachable_prometheus(
        kube: KubeApiServer, history: PrometheusProcess, tmp_path: pathlib.Path) -> None:
    namespace = new_namespace(kube, "plan")
    apply_pool(kube, namespace, "fresh", history.url, {"fresh-0": ["+14155553100"]})
    apply_pool(kube, namespace, "cut-off", f"http://127.0.0.1:{free_port()}", {"cut-0": ["+14155553200"]})
    cases = [
        ("fresh", "found 0 day(s) of history; at least 3 are needed"),
        ("nope", f"no LinePool nope in namespace {namespace}"),
        ("cut-off", "did not answer"),
    ]
    for pool, words in cases:
        result = run_plan(kube, tmp_path, "--from-cluster", f"{namespace}/{pool}", "--days", "30")
        assert result.returncode == 2, (pool, result.stdout, result.stderr)
        assert words in result.stderr, (pool, result.stderr)
        assert "Traceback" not in result.stderr
