"""The ``linepool`` command: help, version, JSON logs, and peering between two replicas."""

import json
import subprocess
import sys
import urllib.request

import pytest

from linepool import __version__
from tests.integration.conftest import Sandbox, wait_for


def linepool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "linepool", *args], capture_output=True, text=True, timeout=30,
                          check=False)


def test_help_and_version() -> None:
    top = linepool("--help")
    assert top.returncode == 0 and "run" in top.stdout and "version" in top.stdout
    run = linepool("run", "--help")
    for flag in ("--namespace", "--all-namespaces", "--standalone", "--liveness", "--metrics-port", "--log-format"):
        assert flag in run.stdout, flag
    assert linepool("version").stdout.strip() == f"linepool-operator {__version__}"


def test_bad_arguments_are_refused_with_a_message() -> None:
    result = linepool("run", "--log-format", "xml")
    assert result.returncode == 2 and "--log-format" in result.stderr


@pytest.mark.integration
def test_json_logs(sandbox: Sandbox) -> None:
    sandbox.pool("logs", scaling={"mode": "Off"})
    operator = sandbox.start_operator(extra_args=["--log-format", "json"])
    wait_for(lambda: sandbox.status("linepools", "logs").get("conditions"), what="the pool reconciled")
    operator.stop()
    lines = [line for line in operator.log().splitlines() if line.strip()]
    assert lines
    records = [json.loads(line) for line in lines]
    assert all("message" in record for record in records)


@pytest.mark.integration
def test_peering_keeps_a_single_active_replica(sandbox: Sandbox) -> None:
    sandbox.api.apply({"apiVersion": "kopf.dev/v1", "kind": "KopfPeering",
                       "metadata": {"name": "linepool-operator", "namespace": sandbox.namespace}})
    sandbox.pool("peer", scaling={"mode": "Off"})
    first = sandbox.start_operator(standalone=False, extra_args=["--priority", "10"])
    wait_for(lambda: sandbox.status("linepools", "peer").get("conditions"), what="the first replica acting")
    second = sandbox.start_operator(standalone=False, extra_args=["--priority", "20"])
    wait_for(lambda: "Pausing operations in favour of" in first.log(), timeout=30,
             what="the lower-priority replica to pause")
    assert "Pausing operations" not in second.log()
    # The paused replica stopped its pool loop; the other one carries on with a spec change.
    wait_for(lambda: "Daemon 'run_pool' succeeded" in first.log(), what="the paused replica's loop to stop")
    sandbox.api.patch("linepools", sandbox.namespace, "peer", {"spec": {"scaling": {"mode": "DryRun"}}})
    wait_for(lambda: sandbox.status("linepools", "peer").get("observedGeneration") == 2,
             what="the active replica to reconcile the change")


@pytest.mark.integration
def test_liveness_endpoint(sandbox: Sandbox) -> None:
    from linepool.sandbox.prometheus import free_port

    port = free_port()
    sandbox.start_operator(extra_args=["--liveness", f"http://127.0.0.1:{port}/healthz"])

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    wait_for(healthy, what="the liveness endpoint")
