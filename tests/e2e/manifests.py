"""What the kind end-to-end test puts in the cluster besides the chart, as plain dicts.

Kept apart from the test so that it can be checked without a cluster (tests/e2e/test_manifests.py):
the built-in objects against Kubernetes' schemas, the Prometheus config with promtool, and the fleet
script by running it here.

- ``monitoring`` namespace: a minimal Prometheus (one Deployment, its config in a ConfigMap,
  scraping every 2s) and the simulated fleet from the demo, run from the operator's own image.
- ``demo`` namespace: examples/demo/ as it is, except the pool's Prometheus URL, which points at
  the in-cluster Prometheus instead of the demo's 127.0.0.1:19090.
"""

from __future__ import annotations

import copy
import json
import pathlib
from typing import Any, Final

import yaml

from linepool.api import API_VERSION

ROOT: Final = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES_DIR: Final = ROOT / "examples"
DEMO_DIR: Final = EXAMPLES_DIR / "demo"
CHART_DIR: Final = ROOT / "charts" / "linepool-operator"

MONITORING_NAMESPACE: Final = "monitoring"
DEMO_NAMESPACE: Final = "demo"
DEMO_POOL: Final = "support"

PROMETHEUS_IMAGE: Final = "prom/prometheus:v2.53.2"
PROMETHEUS_PORT: Final = 9090
PROMETHEUS_URL: Final = f"http://prometheus.{MONITORING_NAMESPACE}.svc:{PROMETHEUS_PORT}"

FLEET_PORT: Final = 9100
# Messages per second per server. The demo pool's quota is 1000 a day and stopAt 0.75, so a
# server saturates about 75s after Prometheus first scrapes it, and the pool (scaleUpAt 0.7)
# adds a server a few seconds before that.
FLEET_RATE: Final = 10.0

# The fleet simulator, run in the operator's image. linepool.sandbox.fleet has no command-line
# entry point, so this drives the Fleet class directly. It uses nothing but the standard
# library and the operator's runtime dependencies (prometheus-client), which the image has.
FLEET_SCRIPT: Final = """\
import json, os, signal, threading
from linepool.sandbox.fleet import Fleet

stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
signal.signal(signal.SIGINT, lambda *_: stop.set())
fleet = Fleet(port=int(os.environ["FLEET_PORT"]), host=os.environ.get("FLEET_HOST", "0.0.0.0")).start()
for server, lines in json.loads(os.environ["FLEET_SERVERS"]).items():
    fleet.add_server(server, lines)
rate = float(os.environ["FLEET_RATE"])
fleet.run_traffic(lambda elapsed: rate, stop_event=stop, seed=1)
print("fleet: serving", fleet.url, "for", sorted(fleet.servers()), "at", rate, "msg/s/server", flush=True)
while not stop.wait(1):
    pass
fleet.stop()
print("fleet: stopped", flush=True)
"""

# Pods we start run like the operator's: unprivileged, read-only, nothing extra.
_RESTRICTED_CONTAINER: Final[dict[str, Any]] = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
}


def load_documents(path: pathlib.Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc]


def top_level_examples() -> list[pathlib.Path]:
    """examples/*.yaml: what a user applies by hand (not demo/, and not gitops/, which needs
    Argo CD's or Flux's CRDs in the cluster)."""
    return sorted(EXAMPLES_DIR.glob("*.yaml"))


def example_namespaces() -> list[str]:
    """The namespaces the top-level examples live in (they must exist for a server-side dry run)."""
    found = {
        doc["metadata"]["namespace"]
        for path in top_level_examples()
        for doc in load_documents(path)
        if doc.get("metadata", {}).get("namespace")
    }
    return sorted(found)


def namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


def demo_documents(prometheus_url: str = PROMETHEUS_URL) -> list[dict[str, Any]]:
    """examples/demo/, in file order, with the pool reading ``prometheus_url``."""
    docs = [copy.deepcopy(doc) for path in sorted(DEMO_DIR.glob("*.yaml")) for doc in load_documents(path)]
    pools = [doc for doc in docs if doc["apiVersion"] == API_VERSION and doc["kind"] == "LinePool"]
    assert [pool["metadata"]["name"] for pool in pools] == [DEMO_POOL], "the demo is expected to have one pool"
    for pool in pools:
        pool["spec"]["metrics"]["prometheusURL"] = prometheus_url
    return docs


def demo_servers(docs: list[dict[str, Any]]) -> dict[str, list[str]]:
    """The demo's MessagingServers and their line ids: what the fleet must export."""
    return {
        doc["metadata"]["name"]: [line["id"] for line in doc["spec"].get("lines", [])]
        for doc in docs
        if doc["apiVersion"] == API_VERSION and doc["kind"] == "MessagingServer"
    }


def _labels(app: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": app, "app.kubernetes.io/part-of": "linepool-e2e"}


def _deployment(name: str, pod_spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": MONITORING_NAMESPACE, "labels": _labels(name)},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": _labels(name)},
            "template": {"metadata": {"labels": _labels(name)}, "spec": pod_spec},
        },
    }


def _service(name: str, port: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": MONITORING_NAMESPACE, "labels": _labels(name)},
        "spec": {
            "selector": _labels(name),
            "ports": [{"name": "http", "port": port, "targetPort": port, "protocol": "TCP"}],
        },
    }


def prometheus_config() -> dict[str, Any]:
    return {
        "global": {"scrape_interval": "2s", "evaluation_interval": "2s"},
        "scrape_configs": [
            {
                "job_name": "imessage-fleet",
                "static_configs": [{"targets": [f"fleet.{MONITORING_NAMESPACE}.svc:{FLEET_PORT}"]}],
            }
        ],
    }


def prometheus_manifests() -> list[dict[str, Any]]:
    """A single Prometheus scraping the fleet, with its data in an emptyDir."""
    config_map = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "prometheus", "namespace": MONITORING_NAMESPACE, "labels": _labels("prometheus")},
        "data": {"prometheus.yml": yaml.safe_dump(prometheus_config(), sort_keys=False)},
    }
    pod_spec = {
        "securityContext": {"runAsNonRoot": True, "runAsUser": 65534, "fsGroup": 65534},
        "containers": [
            {
                "name": "prometheus",
                "image": PROMETHEUS_IMAGE,
                "args": [
                    "--config.file=/etc/prometheus/prometheus.yml",
                    "--storage.tsdb.path=/prometheus",
                    f"--web.listen-address=0.0.0.0:{PROMETHEUS_PORT}",
                ],
                "ports": [{"name": "http", "containerPort": PROMETHEUS_PORT}],
                "readinessProbe": {"httpGet": {"path": "/-/ready", "port": PROMETHEUS_PORT}, "periodSeconds": 2},
                "securityContext": _RESTRICTED_CONTAINER,
                "volumeMounts": [
                    {"name": "config", "mountPath": "/etc/prometheus"},
                    {"name": "data", "mountPath": "/prometheus"},
                ],
            }
        ],
        "volumes": [
            {"name": "config", "configMap": {"name": "prometheus"}},
            {"name": "data", "emptyDir": {}},
        ],
    }
    return [config_map, _deployment("prometheus", pod_spec), _service("prometheus", PROMETHEUS_PORT)]


def fleet_environment(servers: dict[str, list[str]], host: str = "0.0.0.0", port: int = FLEET_PORT,
                      rate: float = FLEET_RATE) -> dict[str, str]:
    """The environment FLEET_SCRIPT reads."""
    return {
        "FLEET_SERVERS": json.dumps(servers, sort_keys=True),
        "FLEET_HOST": host,
        "FLEET_PORT": str(port),
        "FLEET_RATE": str(rate),
    }


def fleet_manifests(image: str, servers: dict[str, list[str]]) -> list[dict[str, Any]]:
    """The simulated fleet, exporting the metrics contract for ``servers`` on :FLEET_PORT/metrics."""
    env = fleet_environment(servers)
    pod_spec = {
        "securityContext": {"runAsNonRoot": True},
        "containers": [
            {
                "name": "fleet",
                "image": image,
                "imagePullPolicy": "IfNotPresent",  # loaded into kind, never pulled
                "command": ["python", "-c", FLEET_SCRIPT],
                "env": [{"name": name, "value": value} for name, value in env.items()],
                "ports": [{"name": "http", "containerPort": FLEET_PORT}],
                "readinessProbe": {"httpGet": {"path": "/metrics", "port": FLEET_PORT}, "periodSeconds": 2},
                "securityContext": _RESTRICTED_CONTAINER,
            }
        ],
    }
    return [_deployment("fleet", pod_spec), _service("fleet", FLEET_PORT)]


def monitoring_manifests(image: str, servers: dict[str, list[str]]) -> list[dict[str, Any]]:
    """Everything in the monitoring namespace, the namespace first."""
    return [namespace(MONITORING_NAMESPACE), *fleet_manifests(image, servers), *prometheus_manifests()]


def chart_values(image: str, watch_namespace: str = DEMO_NAMESPACE) -> dict[str, Any]:
    """The Helm values the e2e installs the chart with: this build's image, watching the demo."""
    repository, _, tag = image.rpartition(":")
    return {
        "image": {"repository": repository, "tag": tag, "pullPolicy": "IfNotPresent"},
        "replicaCount": 1,
        "watchNamespaces": [watch_namespace],
    }


def to_yaml(docs: list[dict[str, Any]]) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False)
