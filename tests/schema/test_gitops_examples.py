"""examples/gitops/: the Argo CD Application and the Flux HelmRelease that install the chart.

Their CRDs are Argo CD's and Flux's, not in this repository, and kubernetes-validate only warns on
custom kinds; so they are checked here by structure: pinned, current API versions; the fields
each controller requires; the chart they install is ours, at the version in
charts/linepool-operator/Chart.yaml; CRDs are kept up to date on upgrade; and the Helm values they
set exist in the chart (and pass its values.schema.json, when there is one).
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from .crd_files import REPO_ROOT
from .examples import GITOPS_DIR, ExampleDocument, example_documents

CHART_NAME = "linepool-operator"
CHART_DIR = REPO_ROOT / "charts" / CHART_NAME
ARGOCD_FILE = GITOPS_DIR / "argocd-application.yaml"
FLUX_FILE = GITOPS_DIR / "flux-helmrelease.yaml"

# The current, served API version of every kind the GitOps examples may use.
API_VERSIONS = {
    "Application": "argoproj.io/v1alpha1",
    "HelmRepository": "source.toolkit.fluxcd.io/v1",
    "GitRepository": "source.toolkit.fluxcd.io/v1",
    "OCIRepository": "source.toolkit.fluxcd.io/v1",
    "HelmRelease": "helm.toolkit.fluxcd.io/v2",
}
FLUX_SOURCE_KINDS = ("HelmRepository", "GitRepository", "OCIRepository")
GO_DURATION = re.compile(r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$")
ARGOCD_RESOURCES_FINALIZER = "resources-finalizer.argocd.argoproj.io"

GITOPS = [item for item in example_documents() if item.path.is_relative_to(GITOPS_DIR)]


def _docs(path: Path) -> list[dict[str, Any]]:
    return [item.doc for item in GITOPS if item.path == path]


def _one(path: Path, kind: str) -> dict[str, Any]:
    found = [doc for doc in _docs(path) if doc["kind"] == kind]
    assert len(found) == 1, f"{path.name}: expected one {kind}, found {len(found)}"
    return found[0]


def _chart_version() -> str:
    """The chart's version; skips the calling test while the chart is not in the repository."""
    chart_file = CHART_DIR / "Chart.yaml"
    if not chart_file.exists():
        pytest.skip("charts/linepool-operator/Chart.yaml does not exist yet")
    chart = yaml.safe_load(chart_file.read_text(encoding="utf-8"))
    assert chart["name"] == CHART_NAME
    return str(chart["version"])


def _merge(base: Any, override: Any) -> Any:
    if isinstance(base, dict) and isinstance(override, dict):
        merged = copy.deepcopy(base)
        for key, value in override.items():
            merged[key] = _merge(base.get(key), value)
        return merged
    return copy.deepcopy(override)


def _unknown_keys(ours: dict[str, Any], theirs: dict[str, Any], where: str = "") -> list[str]:
    unknown = []
    for key, value in ours.items():
        if key not in theirs:
            unknown.append(f"{where}{key}")
        elif isinstance(value, dict) and isinstance(theirs[key], dict) and theirs[key]:
            unknown += _unknown_keys(value, theirs[key], f"{where}{key}.")
    return unknown


def _check_values_against_the_chart(values: dict[str, Any], where: str) -> None:
    values_file = CHART_DIR / "values.yaml"
    if not values_file.exists():
        pytest.skip("charts/linepool-operator/values.yaml does not exist yet")
    defaults = yaml.safe_load(values_file.read_text(encoding="utf-8"))
    assert _unknown_keys(values, defaults) == [], f"{where}: values the chart does not have"
    schema_file = CHART_DIR / "values.schema.json"
    if schema_file.exists():
        schema = json.loads(schema_file.read_text(encoding="utf-8"))
        jsonschema.validate(_merge(defaults, values), schema)


# --------------------------------------------------------------------------------------------------
# Both


def test_the_gitops_examples_exist() -> None:
    assert {item.path for item in GITOPS} == {ARGOCD_FILE, FLUX_FILE}


@pytest.mark.parametrize("item", GITOPS, ids=[item.where for item in GITOPS])
def test_gitops_document_pins_a_current_api_version(item: ExampleDocument) -> None:
    doc = item.doc
    assert doc["kind"] in API_VERSIONS, f"{item.where}: no check for kind {doc['kind']}; add one here"
    assert doc["apiVersion"] == API_VERSIONS[doc["kind"]], item.where
    assert doc["metadata"].get("name"), item.where
    assert doc["metadata"].get("namespace"), f"{item.where}: GitOps objects live in the controller's namespace"


# --------------------------------------------------------------------------------------------------
# Argo CD


def _argocd_sources(application: dict[str, Any]) -> list[dict[str, Any]]:
    spec = application["spec"]
    assert ("source" in spec) != ("sources" in spec), "an Application has either spec.source or spec.sources"
    sources = spec["sources"] if "sources" in spec else [spec["source"]]
    assert sources
    return list(sources)


def _argocd_chart_source(application: dict[str, Any]) -> dict[str, Any]:
    charts = [s for s in _argocd_sources(application) if s.get("chart") == CHART_NAME
              or Path(s.get("path", "")).name == CHART_NAME]
    assert len(charts) == 1, "exactly one source must be the linepool-operator chart"
    return charts[0]


def test_argocd_application_has_what_argocd_requires() -> None:
    application = _one(ARGOCD_FILE, "Application")
    spec = application["spec"]
    assert spec.get("project"), "spec.project is required"
    destination = spec["destination"]
    assert destination.get("server") or destination.get("name"), "spec.destination needs server or name"
    assert destination.get("namespace"), "the chart's namespaced objects need a destination namespace"
    for source in _argocd_sources(application):
        assert source.get("repoURL"), source
        assert source.get("targetRevision"), f"{source['repoURL']}: pin targetRevision"
        assert source.get("chart") or source.get("path"), f"{source['repoURL']}: a chart or a path"


def test_argocd_application_installs_our_chart_at_the_chart_version() -> None:
    source = _argocd_chart_source(_one(ARGOCD_FILE, "Application"))
    version = _chart_version()
    if "chart" in source:  # from a Helm repository: targetRevision is the chart version
        assert source["targetRevision"] == version
    else:  # from Git: targetRevision is the release tag
        assert source["targetRevision"] == f"v{version}"


def test_argocd_application_syncs_server_side_creates_the_namespace_and_keeps_crds() -> None:
    application = _one(ARGOCD_FILE, "Application")
    options = application["spec"].get("syncPolicy", {}).get("syncOptions", [])
    assert "ServerSideApply=true" in options
    assert "CreateNamespace=true" in options
    # With this finalizer, deleting the Application would delete the CRDs and every pool with them.
    assert ARGOCD_RESOURCES_FINALIZER not in application["metadata"].get("finalizers", [])
    helm = _argocd_chart_source(application).get("helm", {})
    if helm.get("skipCrds"):
        assert any(Path(s.get("path", "")).name == "crds" for s in _argocd_sources(application)), (
            "with skipCrds the CRDs must come from another source"
        )


def test_argocd_helm_values_exist_in_the_chart() -> None:
    helm = _argocd_chart_source(_one(ARGOCD_FILE, "Application")).get("helm", {})
    assert "values" not in helm, "use valuesObject (structured, checked) rather than a values string"
    _check_values_against_the_chart(helm.get("valuesObject", {}), ARGOCD_FILE.name)


# --------------------------------------------------------------------------------------------------
# Flux


def test_flux_helmrelease_names_a_source_in_the_same_file() -> None:
    release = _one(FLUX_FILE, "HelmRelease")
    chart = release["spec"]["chart"]["spec"]
    assert chart["chart"] == CHART_NAME
    ref = chart["sourceRef"]
    assert ref["kind"] in FLUX_SOURCE_KINDS
    namespace = ref.get("namespace", release["metadata"]["namespace"])
    sources = [d for d in _docs(FLUX_FILE) if d["kind"] == ref["kind"] and d["metadata"]["name"] == ref["name"]
               and d["metadata"]["namespace"] == namespace]
    assert len(sources) == 1, f"no {ref['kind']} {namespace}/{ref['name']} in {FLUX_FILE.name}"
    source = sources[0]
    assert source["spec"].get("url"), "the source needs a url"
    assert GO_DURATION.match(str(source["spec"].get("interval", ""))), "the source needs an interval"


def test_flux_helmrelease_has_intervals_and_the_chart_version() -> None:
    release = _one(FLUX_FILE, "HelmRelease")
    assert GO_DURATION.match(str(release["spec"].get("interval", ""))), "spec.interval is required"
    chart = release["spec"]["chart"]["spec"]
    if "interval" in chart:
        assert GO_DURATION.match(str(chart["interval"]))
    assert chart.get("version") == _chart_version()


def test_flux_helmrelease_creates_and_replaces_crds() -> None:
    """Flux's default for upgrades (Skip) would leave old CRDs behind a new operator."""
    spec = _one(FLUX_FILE, "HelmRelease")["spec"]
    assert spec["install"]["crds"] == "CreateReplace"
    assert spec["upgrade"]["crds"] == "CreateReplace"


def test_flux_helm_values_exist_in_the_chart() -> None:
    _check_values_against_the_chart(_one(FLUX_FILE, "HelmRelease")["spec"].get("values", {}), FLUX_FILE.name)


def test_argocd_and_flux_install_the_same_release() -> None:
    """Both examples describe one installation: same release name, namespace and values."""
    application = _one(ARGOCD_FILE, "Application")
    argocd_helm = _argocd_chart_source(application).get("helm", {})
    release = _one(FLUX_FILE, "HelmRelease")["spec"]
    assert argocd_helm.get("releaseName") == release.get("releaseName")
    assert application["spec"]["destination"]["namespace"] == release.get("targetNamespace")
    assert argocd_helm.get("valuesObject") == release.get("values")
