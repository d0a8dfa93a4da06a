"""What ``kubectl`` shows from our CRDs on a genuine API server: they install (from ``crds/`` and from
the chart), become Established, publish every description as OpenAPI (``kubectl explain``), and
serve the printer columns through the Table API (``kubectl get``, ``-o wide``)."""

import pathlib
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from linepool.sandbox.kubeapi import KubeApiServer
from tests.conftest import CRD_FILES, REPO

CHART_CRD_FILES = sorted((REPO / "charts" / "linepool-operator" / "crds").glob("*.yaml"))
TABLE = "application/json;as=Table;v=v1;g=meta.k8s.io"


def _crds(paths: list[pathlib.Path]) -> list[dict[str, Any]]:
    return [doc for path in paths for doc in yaml.safe_load_all(path.read_text()) if doc]


OURS = [crd for crd in _crds(CRD_FILES) if crd["spec"]["group"] == "linepool.dev"]


def _descriptions(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, str]]:
    if "description" in schema:
        yield path, " ".join(schema["description"].split())
    for name, child in (schema.get("properties") or {}).items():
        yield from _descriptions(child, f"{path}.{name}")
    if "items" in schema:
        yield from _descriptions(schema["items"], f"{path}[]")


@pytest.mark.parametrize("source", [CRD_FILES, CHART_CRD_FILES], ids=["crds", "chart"])
def test_every_crd_installs_and_is_established(kube: KubeApiServer, source: list[pathlib.Path]) -> None:
    assert len(source) == 3
    for obj in kube.apply_manifests(source):
        stored = kube.wait_established(obj["metadata"]["name"])
        conditions = {c["type"]: c["status"] for c in stored["status"]["conditions"]}
        assert conditions["NamesAccepted"] == "True"
        assert conditions.get("NonStructuralSchema") is None


@pytest.mark.parametrize("crd", OURS, ids=[crd["spec"]["names"]["kind"] for crd in OURS])
def test_every_description_is_published_for_kubectl_explain(kube: KubeApiServer, crd: dict[str, Any]) -> None:
    group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
    document = kube.request("GET", f"/openapi/v3/apis/{group}/v1alpha1")
    reverse_group = ".".join(reversed(group.split(".")))
    published = document["components"]["schemas"][f"{reverse_group}.v1alpha1.{kind}"]
    declared = dict(_descriptions(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]))
    served = dict(_descriptions(published))
    # The server publishes its own standard text for these, whatever a CRD says.
    for standard in (".apiVersion", ".kind"):
        declared.pop(standard)
    missing = {path: text for path, text in declared.items() if served.get(path) != text}
    assert not missing, f"descriptions not served as written: {sorted(missing)[:10]}"
    assert len(declared) > 40


def _table(kube: KubeApiServer, plural: str, namespace: str) -> dict[str, Any]:
    table: dict[str, Any] = kube.request("GET", kube.path(plural, namespace), headers={"Accept": TABLE})
    return table


def test_linepool_printer_columns_come_back_in_kubectl_get(kube: KubeApiServer, namespace: str) -> None:
    kube.create({"apiVersion": "linepool.dev/v1alpha1", "kind": "LinePool",
                 "metadata": {"name": "support", "namespace": namespace},
                 "spec": {"metrics": {"prometheusURL": "http://prometheus:9090"}, "scaling": {"maxServers": 7}}})
    kube.patch_status("linepools", namespace, "support", {
        "servers": {"total": 3}, "lines": {"assignable": 5, "inventory": 2, "total": 9}, "utilization": 0.42,
        "keepAlive": {"atRisk": 1}, "health": {"atRisk": 2},
        "conditions": [{"type": "Ready", "status": "True", "reason": "Reconciled", "message": "ok",
                        "lastTransitionTime": "2026-12-02T10:00:00Z"}]})
    table = _table(kube, "linepools", namespace)
    columns = [(c["name"], c["priority"]) for c in table["columnDefinitions"]]
    declared = [(c["name"], c.get("priority", 0)) for c in OURS[0]["spec"]["versions"][0]["additionalPrinterColumns"]]
    assert columns == [("Name", 0), *declared]
    cells = dict(zip([name for name, _ in columns], table["rows"][0]["cells"], strict=True))
    assert (cells["Name"], cells["Servers"], cells["Assignable"], cells["Utilization"], cells["Ready"]) == \
        ("support", 3, 5, 0.42, "True")
    assert (cells["Mode"], cells["Max"], cells["Inventory"]) == ("Auto", 7, 2)
    assert (cells["AtRisk"], cells["FlagRisk"]) == (1, 2), "deactivation risk and flag risk, each in its column"


def test_messagingserver_printer_columns_come_back_in_kubectl_get(kube: KubeApiServer, namespace: str) -> None:
    kube.create({"apiVersion": "linepool.dev/v1alpha1", "kind": "MessagingServer",
                 "metadata": {"name": "support-0", "namespace": namespace},
                 "spec": {"pool": "support", "endpoint": "https://relay-0.example.net/api",
                          "credentialsSecretRef": {"name": "relay", "key": "token"},
                          "lines": [{"id": "+14155550100"}, {"id": "+14155550101"}]}})
    kube.patch_status("messagingservers", namespace, "support-0", {
        "phase": "Saturated", "utilization": 0.8, "assignable": False, "messagesInWindow": 4000, "quota": 5000,
        "lineSummary": {"total": 2, "atRisk": 1, "flagRisk": 2}})
    table = _table(kube, "messagingservers", namespace)
    names = [c["name"] for c in table["columnDefinitions"]]
    cells = dict(zip(names, table["rows"][0]["cells"], strict=True))
    assert (cells["Pool"], cells["Phase"], cells["Utilization"], cells["Lines"]) == ("support", "Saturated", 0.8, 2)
    assert (cells["Assignable"], cells["Sent"], cells["Quota"], cells["AtRisk"]) == (False, 4000, 5000, 1)
    assert cells["Endpoint"] == "https://relay-0.example.net/api"
    assert cells["FlagRisk"] == 2, "the flag risk shows in plain kubectl get, apart from AtRisk"
    assert [c["priority"] for c in table["columnDefinitions"] if c["name"] == "FlagRisk"] == [0]
