"""The kind e2e's own inputs, checked here without a cluster (these tests always run).

The e2e itself can only run where Docker and kind are; these catch what would otherwise fail
there first: an invalid Deployment, a Prometheus config promtool rejects, a fleet script that does
not run, chart values the chart does not have, a demo pool the CRD no longer accepts.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from linepool.api import API_VERSION
from linepool.sandbox.kubeapi import KubeApiServer
from tests.ci_workflow import e2e_kubernetes_versions
from tests.schema.admission import refusal

from .manifests import (
    CHART_DIR,
    EXAMPLES_DIR,
    FLEET_SCRIPT,
    PROMETHEUS_URL,
    chart_values,
    demo_documents,
    demo_servers,
    example_namespaces,
    fleet_environment,
    monitoring_manifests,
    prometheus_config,
    top_level_examples,
)

IMAGE = "linepool-operator:e2e"
# The Kubernetes versions the CI e2e matrix runs (.github/workflows/ci.yaml).
KUBERNETES_VERSIONS = e2e_kubernetes_versions()


def _built_in_documents() -> list[dict[str, Any]]:
    docs = monitoring_manifests(IMAGE, demo_servers(demo_documents()))
    return [doc for doc in docs if not doc["apiVersion"].startswith("linepool.dev/")]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_monitoring_manifests_are_valid_kubernetes_objects(version: str) -> None:
    docs = _built_in_documents()
    assert {doc["kind"] for doc in docs} == {"Namespace", "ConfigMap", "Deployment", "Service"}
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']}/{doc['metadata']['name']} on Kubernetes {version}: {exc.message}")


def test_services_select_their_deployments() -> None:
    docs = _built_in_documents()
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    services = [d for d in docs if d["kind"] == "Service"]
    assert {s["metadata"]["name"] for s in services} == set(deployments)
    for service in services:
        template = deployments[service["metadata"]["name"]]["spec"]["template"]
        labels = template["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= labels.items()
        ports = {p["containerPort"] for c in template["spec"]["containers"] for p in c["ports"]}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports


def test_the_fleet_runs_from_the_operator_image() -> None:
    fleet = next(d for d in _built_in_documents() if d["kind"] == "Deployment" and d["metadata"]["name"] == "fleet")
    container = fleet["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == IMAGE
    assert container["command"][:2] == ["python", "-c"]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed (make setup installs it)")
def test_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump(prometheus_config()), encoding="utf-8")
    result = subprocess.run(["promtool", "check", "config", str(config)], capture_output=True, text=True,
                            check=False, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    config_map = next(d for d in _built_in_documents() if d["kind"] == "ConfigMap")
    assert yaml.safe_load(config_map["data"]["prometheus.yml"]) == prometheus_config()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _scrape(url: str) -> dict[tuple[str, str], float]:
    """imessage_messages_sent_total by (server, line); empty while the fleet is not up yet."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return {}
    sent = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "imessage_messages_sent_total":
                sent[(sample.labels["server"], sample.labels["line"])] = sample.value
    return sent


@pytest.mark.integration
def test_the_fleet_script_serves_traffic_for_every_demo_line_and_stops_on_sigterm() -> None:
    """FLEET_SCRIPT, run here as the pod runs it (on loopback instead of 0.0.0.0)."""
    servers = demo_servers(demo_documents())
    port = _free_port()
    env = {**os.environ, **fleet_environment(servers, host="127.0.0.1", port=port, rate=50.0)}
    process = subprocess.Popen([sys.executable, "-c", FLEET_SCRIPT], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        expected = {(server, line) for server, lines in servers.items() for line in lines}
        deadline = time.monotonic() + 20
        sent: dict[tuple[str, str], float] = {}
        while time.monotonic() < deadline and process.poll() is None:
            sent = _scrape(f"http://127.0.0.1:{port}/metrics")
            if set(sent) == expected and all(sent[server_line] > 0 for server_line in expected):
                break
            time.sleep(0.2)
        assert process.poll() is None, f"the fleet script exited: {process.communicate()[0]}"
        assert set(sent) == expected
        per_server = {server: sum(v for (s, _), v in sent.items() if s == server) for server in servers}
        assert all(total > 0 for total in per_server.values()), per_server
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=15)
    assert process.returncode == 0, output
    assert "fleet: serving" in output
    assert "fleet: stopped" in output


def test_the_demo_pool_reads_the_in_cluster_prometheus_and_stays_valid(kube: KubeApiServer) -> None:
    docs = demo_documents()
    pools = [d for d in docs if d["kind"] == "LinePool"]
    assert [p["spec"]["metrics"]["prometheusURL"] for p in pools] == [PROMETHEUS_URL]
    for doc in docs:
        if doc["apiVersion"] == API_VERSION:
            assert refusal(kube, doc) is None, doc["metadata"]["name"]  # dry-run create on the genuine server
    # The demo on this machine still reads the original file, untouched.
    original = yaml.safe_load((EXAMPLES_DIR / "demo" / "10-linepool.yaml").read_text(encoding="utf-8"))
    assert original["spec"]["metrics"]["prometheusURL"] != PROMETHEUS_URL


def test_the_demo_servers_have_lines_for_the_fleet() -> None:
    servers = demo_servers(demo_documents())
    assert len(servers) >= 2
    assert all(servers.values())


def test_the_dry_run_covers_the_top_level_examples_only() -> None:
    names = [path.name for path in top_level_examples()]
    assert "linepool-minimal.yaml" in names
    assert all(path.parent == EXAMPLES_DIR for path in top_level_examples())
    assert example_namespaces(), "the examples name no namespace to create"


@pytest.mark.skipif(not (CHART_DIR / "values.yaml").exists(), reason="charts/linepool-operator is not there yet")
def test_the_values_the_e2e_sets_exist_in_the_chart() -> None:
    defaults = yaml.safe_load((CHART_DIR / "values.yaml").read_text(encoding="utf-8"))
    values = chart_values(IMAGE)

    def missing(ours: dict[str, Any], theirs: dict[str, Any], where: str = "") -> list[str]:
        found = []
        for key, value in ours.items():
            if key not in theirs:
                found.append(f"{where}{key}")
            elif isinstance(value, dict) and isinstance(theirs[key], dict):
                found += missing(value, theirs[key], f"{where}{key}.")
        return found

    assert missing(values, defaults) == []
    schema_file = CHART_DIR / "values.schema.json"
    if schema_file.exists():
        merged = {**defaults, **values, "image": {**defaults["image"], **values["image"]}}
        jsonschema.validate(merged, json.loads(schema_file.read_text(encoding="utf-8")))
