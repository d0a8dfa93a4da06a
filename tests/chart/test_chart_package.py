"""The chart as a package: helm lint --strict, helm package, and Chart.yaml kept in step with the code."""

from __future__ import annotations

import pathlib
import tarfile
from typing import Any

import pytest
import yaml

import linepool

from .conftest import CHART, KUBE_VERSION, VALUES_FULL, Helm


def chart_yaml() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((CHART / "Chart.yaml").read_text(encoding="utf-8"))
    return data


@pytest.mark.parametrize("values", [[], [VALUES_FULL]], ids=["default-values", "values-full"])
def test_helm_lint_strict_passes(helm: Helm, values: list[pathlib.Path]) -> None:
    args: list[str | pathlib.Path] = ["lint", CHART, "--strict", "--kube-version", KUBE_VERSION]
    for path in values:
        args += ["--values", path]
    result = helm.run(*args)
    assert result.returncode == 0, f"helm lint --strict failed:\n{result.stdout}\n{result.stderr}"
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout, result.stdout
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout, result.stdout


def test_helm_package_ships_crds_schema_readme_and_no_test_files(helm: Helm, tmp_path: pathlib.Path) -> None:
    result = helm.run("package", CHART, "--destination", tmp_path)
    assert result.returncode == 0, result.stderr
    archive = tmp_path / f"linepool-operator-{chart_yaml()['version']}.tgz"
    with tarfile.open(archive) as tgz:
        names = {name.removeprefix("linepool-operator/") for name in tgz.getnames()}
    expected = {"Chart.yaml", "values.yaml", "values.schema.json", "README.md", "templates/NOTES.txt",
                *(f"crds/{path.name}" for path in (CHART / "crds").glob("*.yaml"))}
    assert expected <= names, sorted(expected - names)
    assert not [n for n in names if n.endswith((".pyc", ".orig", ".swp", "~"))], sorted(names)


def test_app_version_is_the_operators_version() -> None:
    """The image tag defaults to appVersion: it must name the image of this operator version."""
    assert chart_yaml()["appVersion"] == linepool.__version__


def test_chart_declares_kube_version_and_artifacthub_metadata() -> None:
    chart = chart_yaml()
    assert chart["apiVersion"] == "v2" and chart["name"] == "linepool-operator"
    assert chart["kubeVersion"] == ">=1.30.0-0"
    annotations = chart["annotations"]
    assert annotations["artifacthub.io/operator"] == "true"
    assert annotations["artifacthub.io/license"] == "Apache-2.0"
    for key in ("artifacthub.io/links", "artifacthub.io/images", "artifacthub.io/changes"):
        assert yaml.safe_load(annotations[key]), key
    images = yaml.safe_load(annotations["artifacthub.io/images"])
    assert images[0]["image"].endswith(f":{chart['appVersion']}")


def test_artifacthub_crd_list_matches_the_crds() -> None:
    """Artifact Hub shows this list: every LinePool/MessagingServer CRD, with its served version."""
    listed = {(c["kind"], c["version"], c["name"])
              for c in yaml.safe_load(chart_yaml()["annotations"]["artifacthub.io/crds"])}
    for entry in yaml.safe_load(chart_yaml()["annotations"]["artifacthub.io/crds"]):
        assert entry["displayName"] and entry["description"], entry
    actual = set()
    for path in (CHART / "crds").glob("*.yaml"):
        for crd in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if crd and crd["spec"]["group"] == "linepool.dev":
                actual |= {(crd["spec"]["names"]["kind"], version["name"], crd["metadata"]["name"])
                           for version in crd["spec"]["versions"] if version["served"]}
    assert listed == actual
