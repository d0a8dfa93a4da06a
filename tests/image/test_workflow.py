"""The GitHub Actions workflow (.github/workflows/ci.yaml) that forks run: shape and pins.

It cannot run here; these keep it honest: `make test` on the project's Python, the kind e2e on a
matrix of real, pinned kindest/node images, pinned actions and kind, and a matrix that agrees with
the chart's kubeVersion and the image's Python.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from tests.ci_workflow import e2e_kubernetes_versions, e2e_matrix, load_workflow, node_image_minor

from .dockerfile import DOCKERFILE, ROOT, parse_reference, stages

CHART_FILE = ROOT / "charts" / "linepool-operator" / "Chart.yaml"
# A release tag (v4, v1.10.0) or a full commit SHA; never a branch.
PINNED_ACTION = re.compile(r"^[\w.-]+/[\w./-]+@(v\d+(\.\d+){0,2}|[0-9a-f]{40})$")
# The kind release the workflow uses (v0.24.0) publishes node images for 1.30 and 1.31 within the
# supported range (>= 1.30); a newer minor needs a newer kind and its published image tags.
MIN_E2E_VERSIONS = 2


def _job(name: str) -> dict[str, Any]:
    return dict(load_workflow()["jobs"][name])


def _runs(job: dict[str, Any]) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


def _step_using(job: dict[str, Any], action: str) -> dict[str, Any]:
    steps = [step for step in job["steps"] if step.get("uses", "").split("@")[0] == action]
    assert len(steps) == 1, f"expected one step using {action}"
    return dict(steps[0])


def _python_minor_of_the_image() -> str:
    _, image_stages = stages(DOCKERFILE.read_text(encoding="utf-8"))
    tag = parse_reference(image_stages[-1].image).tag or ""
    return ".".join(tag.split("-")[0].split(".")[:2])


def test_the_workflow_runs_on_pushes_and_pull_requests() -> None:
    triggers = load_workflow()["on"]
    assert "push" in triggers
    assert "pull_request" in triggers
    assert load_workflow().get("permissions") == {"contents": "read"}, "least privilege for the token"


@pytest.mark.parametrize("job", ["test", "e2e"])
def test_jobs_use_the_projects_python_and_check_out_the_code(job: str) -> None:
    steps = _job(job)
    assert steps["runs-on"] == "ubuntu-latest"
    _step_using(steps, "actions/checkout")
    python = _step_using(steps, "actions/setup-python")
    assert str(python["with"]["python-version"]) == _python_minor_of_the_image()
    assert steps.get("timeout-minutes"), "a hung cluster must not hold a runner for 6 hours"


def test_the_test_job_installs_prometheus_and_runs_make_test() -> None:
    job = _job("test")
    runs = _runs(job)
    assert re.search(r"apt-get install .*prometheus", runs), "the integration tests need a real Prometheus"
    assert re.search(r"^make test$", runs, re.MULTILINE)


def test_the_e2e_job_runs_make_e2e_on_a_matrix_of_kubernetes_versions() -> None:
    job = _job("e2e")
    assert job.get("needs") == "test"
    assert job["strategy"].get("fail-fast") is False, "one version failing must not hide the others"
    matrix = e2e_matrix()
    assert len(matrix) >= MIN_E2E_VERSIONS
    for entry in matrix:
        assert node_image_minor(entry["node_image"]) == str(entry["kubernetes"]), entry
        assert "latest" not in entry["node_image"]
    assert len(e2e_kubernetes_versions()) == len(matrix), "one entry per Kubernetes minor"
    steps = [step for step in job["steps"] if re.search(r"^make e2e$", step.get("run", ""), re.MULTILINE)]
    assert len(steps) == 1
    env = steps[0].get("env", {})
    assert env.get("KIND_NODE_IMAGE") == "${{ matrix.node_image }}"
    assert env.get("LINEPOOL_E2E_REQUIRED"), "in CI a missing prerequisite must fail, not skip"


def test_kind_is_installed_at_a_pinned_version_and_creates_no_cluster_itself() -> None:
    kind = _step_using(_job("e2e"), "helm/kind-action")
    assert re.match(r"^v\d+\.\d+\.\d+$", str(kind["with"]["version"]))
    assert kind["with"].get("install_only") is True, "the test creates its own cluster from KIND_NODE_IMAGE"


def test_every_action_is_pinned() -> None:
    for name, job in load_workflow()["jobs"].items():
        for step in job["steps"]:
            if "uses" in step:
                assert PINNED_ACTION.match(step["uses"]), f"{name}: {step['uses']} is not pinned to a release"


def test_the_matrix_is_within_the_charts_kubernetes_versions() -> None:
    if not CHART_FILE.exists():
        pytest.skip("charts/linepool-operator/Chart.yaml is not there yet")
    kube_version = str(yaml.safe_load(CHART_FILE.read_text(encoding="utf-8")).get("kubeVersion", ""))
    match = re.match(r"^>=\s*v?(\d+)\.(\d+)", kube_version)
    if match is None:
        pytest.skip(f"the chart's kubeVersion {kube_version!r} has no plain lower bound to compare with")
    minimum = (int(match.group(1)), int(match.group(2)))
    for version in e2e_kubernetes_versions():
        major, minor = (int(part) for part in version.split("."))
        assert (major, minor) >= minimum, f"the e2e tests {version}, which the chart does not support"
