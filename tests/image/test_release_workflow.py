"""The release workflow (.github/workflows/release.yaml): what a tag vX.Y.Z publishes.

It cannot run here; these keep it publishing what the chart pulls. The chart's default image is
values.yaml's ``image.repository`` at the chart's ``appVersion`` (``image.tag`` empty), so the
workflow must push exactly that repository, tagged with the version it verified against the git
tag, pyproject.toml, ``linepool.__version__`` and the chart; for amd64 and arm64 nodes; and the
chart itself must go to an OCI registry with a Helm 3 helm. The version check is the workflow's own
shell step, run here on copies of the files it reads.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

import linepool
from tests import binaries
from tests.chart.helm import CHART
from tests.ci_workflow import load_workflow

from .dockerfile import DOCKERFILE, ROOT, stages
from .test_workflow import PINNED_ACTION, _runs, _step_using

RELEASE = ROOT / ".github" / "workflows" / "release.yaml"
PYPROJECT = ROOT / "pyproject.toml"
PACKAGE_INIT = ROOT / "operator" / "linepool" / "__init__.py"
CHART_FILE = CHART / "Chart.yaml"
VALUES_FILE = CHART / "values.yaml"
# The files the version check reads; it runs on copies of them in a scratch checkout.
VERSION_FILES = (PYPROJECT, PACKAGE_INIT, CHART_FILE)

_EXPRESSION = re.compile(r"\$\{\{\s*env\.(\w+)\s*\}\}")
_SHELL_VARIABLE = re.compile(r"\$\{?(\w+)\}?")


def _workflow() -> dict[str, Any]:
    return load_workflow(RELEASE)


def _job(name: str) -> dict[str, Any]:
    return dict(_workflow()["jobs"][name])


def _expand(text: str, job: dict[str, Any]) -> str:
    """``${{ env.X }}``, ``$X`` and ``${X}`` replaced by the workflow's (or the job's) env."""
    env = {**_workflow().get("env", {}), **job.get("env", {})}
    text = _EXPRESSION.sub(lambda m: str(env[m.group(1)]), text)
    return _SHELL_VARIABLE.sub(lambda m: str(env.get(m.group(1), m.group(0))), text)


def _output_of(step: dict[str, Any], name: str) -> str:
    assert step.get("id"), f"the step using {step.get('uses', step.get('name'))} needs an id"
    return f"${{{{ steps.{step['id']}.outputs.{name} }}}}"


def _version_check() -> dict[str, Any]:
    steps = [step for step in _job("versions")["steps"] if "GITHUB_REF_NAME" in step.get("run", "")]
    assert len(steps) == 1, "expected one step that checks the tag (GITHUB_REF_NAME)"
    return dict(steps[0])


def _version() -> str:
    """The expression the image job uses for the verified version (the check step's output)."""
    versions = _job("versions")
    assert versions["outputs"]["version"] == _output_of(_version_check(), "version")
    return "${{ needs.versions.outputs.version }}"


def _needs(job: dict[str, Any]) -> set[str]:
    needs = job.get("needs", [])
    return {needs} if isinstance(needs, str) else set(needs)


def _pyproject_version() -> str:
    return str(tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["version"])


def _chart() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(CHART_FILE.read_text(encoding="utf-8"))
    return data


def _values_image() -> dict[str, Any]:
    return dict(yaml.safe_load(VALUES_FILE.read_text(encoding="utf-8"))["image"])


def _run_version_check(tmp_path: Path, tag: str, edits: dict[str, tuple[str, str]] | None = None) -> tuple[
        subprocess.CompletedProcess[str], str]:
    """Run the check step as GitHub does (bash -eo pipefail) on a copy of the files it reads.

    ``edits`` maps the path of one of VERSION_FILES, relative to the checkout, to (old, new) text
    replaced in its copy.
    """
    tree = tmp_path / "checkout"
    edits = edits or {}
    assert set(edits) <= {str(source.relative_to(ROOT)) for source in VERSION_FILES}, edits
    for source in VERSION_FILES:
        relative = str(source.relative_to(ROOT))
        copy = tree / relative
        copy.parent.mkdir(parents=True, exist_ok=True)
        text = source.read_text(encoding="utf-8")
        if relative in edits:
            old, new = edits[relative]
            assert old in text, f"{old!r} is not in {source}"
            text = text.replace(old, new)
        copy.write_text(text, encoding="utf-8")
    script = tmp_path / "check.sh"
    script.write_text(_version_check()["run"], encoding="utf-8")
    output = tmp_path / "github_output"
    output.touch()
    env = {"PATH": "/usr/bin:/bin", "GITHUB_REF_NAME": tag, "GITHUB_OUTPUT": str(output)}
    bash = shutil.which("bash")
    assert bash, "bash runs the workflow's steps"
    result = subprocess.run([bash, "--noprofile", "--norc", "-eo", "pipefail", str(script)],
                            cwd=tree, env=env, capture_output=True, text=True, timeout=30, check=False)
    return result, output.read_text(encoding="utf-8")


def test_it_runs_on_version_tags_only() -> None:
    """No branch push, pull request or manual run can publish an image."""
    assert _workflow()["on"] == {"push": {"tags": ["v*"]}}


def test_every_action_is_pinned_to_a_release() -> None:
    """A release tag (v4, v3.18.0) or a commit SHA, never a branch such as @main."""
    jobs = _workflow()["jobs"].items()
    uses = [(name, step["uses"]) for name, job in jobs for step in job["steps"] if "uses" in step]
    assert uses
    for name, action in uses:
        assert PINNED_ACTION.match(action), f"{name}: {action} is not pinned to a release"


def test_only_the_publishing_jobs_may_write_packages_and_a_release_is_never_cancelled() -> None:
    workflow = _workflow()
    assert workflow.get("permissions") == {"contents": "read"}, "least privilege for the token"
    for name, job in workflow["jobs"].items():
        expected = {"contents": "read", "packages": "write"} if name in {"image", "chart"} else None
        assert job.get("permissions") == expected, name
        assert job.get("timeout-minutes"), f"{name}: a hung build must not hold a runner for 6 hours"
    concurrency = workflow["concurrency"]
    assert "${{ github.ref }}" in concurrency["group"], "one group per tag"
    assert concurrency.get("cancel-in-progress") is False, "a cancelled release could push the image without its chart"


def test_the_versions_agree_and_the_chart_defaults_to_its_app_version() -> None:
    """The tag check would refuse to release otherwise; this fails on the commit that breaks it."""
    chart = _chart()
    assert str(chart["appVersion"]) == _pyproject_version() == linepool.__version__
    assert _values_image()["tag"] == "", "an image.tag in values.yaml would override appVersion on every release"


def test_the_tag_check_passes_for_the_tag_of_the_version_and_outputs_the_version(tmp_path: Path) -> None:
    version = _pyproject_version()
    result, output = _run_version_check(tmp_path, f"v{version}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert output.splitlines() == [f"version={version}"]


@pytest.mark.parametrize(
    ("tag", "file", "old", "new", "named"),
    [
        ("v9.9.9", None, "", "", "pyproject.toml version"),
        ("v{version}", "pyproject.toml", 'version = "{version}"', 'version = "9.9.9"', "pyproject.toml version"),
        ("v{version}", "operator/linepool/__init__.py", '__version__ = "{version}"', '__version__ = "9.9.9"',
         "__version__"),
        ("v{version}", "charts/linepool-operator/Chart.yaml", 'appVersion: "{version}"', 'appVersion: "9.9.9"',
         "Chart.yaml appVersion"),
        ("{version}", None, "", "", ""),  # the tag without its leading v
    ],
    ids=["other-tag", "pyproject", "package", "chart", "no-v-prefix"],
)
def test_the_tag_check_fails_and_says_which_version_disagrees(
        tmp_path: Path, tag: str, file: str | None, old: str, new: str, named: str) -> None:
    version = _pyproject_version()
    edits = {file: (old.format(version=version), new)} if file else None
    result, output = _run_version_check(tmp_path, tag.format(version=version), edits)
    assert result.returncode != 0, f"the check let {tag.format(version=version)} through:\n{result.stdout}"
    assert "::error::" in result.stdout and named in result.stdout, result.stdout
    assert "version=" not in output, "nothing may be released with a version that failed the check"


def test_the_image_pushed_is_the_one_the_chart_pulls_tagged_with_the_verified_version() -> None:
    job = _job("image")
    assert "versions" in _needs(job)
    meta = _step_using(job, "docker/metadata-action")
    assert _expand(meta["with"]["images"], job).split() == [_values_image()["repository"]]
    tags = [line.strip() for line in str(meta["with"]["tags"]).splitlines() if line.strip()]
    assert f"type=raw,value={_version()}" in tags, tags
    # Any other tag may only be `latest`: no tag the chart could pull under another version.
    assert all(tag == f"type=raw,value={_version()}" or tag.endswith("value=latest") for tag in tags), tags
    build = _step_using(job, "docker/build-push-action")
    assert build["with"]["push"] is True
    assert build["with"]["tags"] == _output_of(meta, "tags")


def test_the_build_passes_the_version_to_the_dockerfile() -> None:
    """As `make image` does: VERSION becomes the image's org.opencontainers.image.version label."""
    build = _step_using(_job("image"), "docker/build-push-action")
    build_args = [line.strip() for line in str(build["with"]["build-args"]).splitlines()]
    assert f"VERSION={_version()}" in build_args, build_args
    _, image_stages = stages(DOCKERFILE.read_text(encoding="utf-8"))
    final = image_stages[-1]
    assert any("VERSION" in arg.pairs() for arg in final.all("ARG")), "the runtime stage must declare ARG VERSION"
    assert final.labels()["org.opencontainers.image.version"] == "${VERSION}"
    assert build["with"].get("context", ".") == "." and build["with"].get("file", "Dockerfile") == "Dockerfile"


def test_the_image_is_built_for_amd64_and_arm64() -> None:
    job = _job("image")
    platforms = {p.strip() for p in str(_step_using(job, "docker/build-push-action")["with"]["platforms"]).split(",")}
    assert {"linux/amd64", "linux/arm64"} <= platforms
    qemu = _step_using(job, "docker/setup-qemu-action")  # arm64 on an amd64 runner
    emulated = str(qemu.get("with", {}).get("platforms", "all"))
    assert emulated == "all" or "arm64" in emulated, emulated
    _step_using(job, "docker/setup-buildx-action")


def test_it_logs_in_to_the_images_registry_with_the_workflows_token() -> None:
    job = _job("image")
    login = _step_using(job, "docker/login-action")["with"]
    assert login["registry"] == _values_image()["repository"].split("/")[0] == "ghcr.io"
    assert login["password"] == "${{ secrets.GITHUB_TOKEN }}"


def test_the_digest_is_a_job_output_and_in_the_summary() -> None:
    job = _job("image")
    digest = _output_of(_step_using(job, "docker/build-push-action"), "digest")
    assert job["outputs"]["digest"] == digest
    summaries = [step for step in job["steps"] if "GITHUB_STEP_SUMMARY" in step.get("run", "")]
    assert summaries, "the digest must be in the job summary"
    for step in summaries:
        if digest in step.get("run", "") or digest in step.get("env", {}).values():
            return
    pytest.fail("no step writes the build's digest to the job summary")


def test_the_chart_is_pushed_to_ghcr_as_oci_with_helm_3_after_the_image() -> None:
    job = _job("chart")
    assert "image" in _needs(job), "the chart must not be published before the image it pulls"
    helm_version = str(_step_using(job, "azure/setup-helm")["with"]["version"])
    assert re.fullmatch(r"v3\.\d+\.\d+", helm_version), f"the v2 chart needs a pinned helm 3, not {helm_version}"
    assert helm_version == binaries.HELM_VERSION, "release with the helm the tests lint and render the chart with"
    assert _chart()["apiVersion"] == "v2"
    runs = _expand(_runs(job), job)
    assert re.search(r"helm registry login ghcr\.io\b.*--password-stdin", runs), runs
    assert re.search(rf"^\s*helm package {re.escape(str(CHART.relative_to(ROOT)))}\b", runs, re.MULTILINE), runs
    pushes = re.findall(r"^\s*helm push \S+\.tgz \"?(oci://[^\s\"]+)", runs, re.MULTILINE)
    assert pushes == ["oci://ghcr.io/linepool/charts"], runs
    login_step = next(step for step in job["steps"] if "helm registry login" in step.get("run", ""))
    assert "${{ secrets.GITHUB_TOKEN }}" in login_step.get("env", {}).values()


def test_artifact_hub_lists_the_released_image() -> None:
    chart = _chart()
    images = yaml.safe_load(chart["annotations"]["artifacthub.io/images"])
    assert [image["image"] for image in images] == [f"{_values_image()['repository']}:{chart['appVersion']}"]
