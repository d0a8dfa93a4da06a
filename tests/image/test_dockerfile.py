"""The container image, checked by reading how it is built (there is no Docker daemon here).

The kind e2e (tests/e2e) builds and runs it where Docker is; these hold everywhere:
pinned base images, a multi-stage build whose runtime stage has no build tools, a non-root numeric
user, the `linepool` entrypoint, runtime dependencies only, and a build context that leaves local
state (.venv, .git, caches) out.
"""

from __future__ import annotations

import re
import tomllib
from typing import Any

import pytest
import yaml
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from .dockerfile import DOCKERFILE, DOCKERIGNORE, ROOT, Stage, ignore_patterns, is_ignored, parse_reference, stages

GLOBAL_ARGS, STAGES = stages(DOCKERFILE.read_text(encoding="utf-8"))
FINAL = STAGES[-1]
PYPROJECT: dict[str, Any] = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
CHART_VALUES = ROOT / "charts" / "linepool-operator" / "values.yaml"

# Anything that installs or is a compiler toolchain: none of it belongs in the runtime stage.
BUILD_TOOLS = re.compile(
    r"\b(apt-get\s+install|apt\s+install|apk\s+add|yum\s+install|dnf\s+install|microdnf\s+install|"
    r"pip3?\s+install|gcc|g\+\+|clang|build-essential|make|cmake|python3?-dev|libc6?-dev)\b"
)
PYTHON_TAG = re.compile(r"^(?P<version>3\.\d+\.\d+)-(?P<variant>slim(-[a-z]+)?)$")


def _stage_names() -> set[str]:
    return {stage.name for stage in STAGES if stage.name}


def test_the_build_is_multi_stage() -> None:
    assert len(STAGES) >= 2
    builder_names = {stage.name for stage in STAGES[:-1]}
    copied_from = {
        match.group(1)
        for instruction in FINAL.all("COPY")
        for match in [re.search(r"--from=(\S+)", instruction.args)]
        if match
    }
    assert copied_from, "the runtime stage copies nothing from a build stage"
    assert copied_from <= builder_names, copied_from


@pytest.mark.parametrize("stage", STAGES, ids=[s.name or f"line{s.line}" for s in STAGES])
def test_every_base_image_is_pinned(stage: Stage) -> None:
    if stage.image in _stage_names():
        return  # FROM an earlier stage
    assert "$" not in stage.image, f"line {stage.line}: unresolved variable in FROM {stage.image}"
    reference = parse_reference(stage.image)
    assert reference.tag or reference.digest, f"line {stage.line}: {stage.image} has neither tag nor digest"
    assert reference.tag != "latest", f"line {stage.line}: never build FROM :latest"


def test_build_and_runtime_stages_share_one_python_base() -> None:
    """The virtualenv links to the base's /usr/local/bin/python: both stages must have the same one."""
    bases = {stage.image for stage in STAGES if stage.image not in _stage_names()}
    assert len(bases) == 1, bases


def test_the_base_python_matches_the_project() -> None:
    reference = parse_reference(FINAL.image)
    assert reference.repository in {"python", "docker.io/library/python"}, reference
    match = PYTHON_TAG.match(reference.tag or "")
    assert match, f"expected a python:3.X.Y-slim-* tag, got {reference.tag}"
    version = Version(match.group("version"))
    assert version in SpecifierSet(PYPROJECT["project"]["requires-python"])
    minor = f"{version.major}.{version.minor}"
    assert PYPROJECT["tool"]["mypy"]["python_version"] == minor, "type-checked for another Python"
    assert PYPROJECT["tool"]["ruff"]["target-version"] == f"py{version.major}{version.minor}"


def test_the_runtime_stage_runs_as_a_non_root_numeric_user() -> None:
    user = FINAL.last("USER")
    assert user is not None, "the runtime stage never sets USER, so it runs as root"
    name, _, group = user.args.partition(":")
    assert name.isdigit(), "a numeric UID lets runAsNonRoot verify the user without /etc/passwd"
    assert int(name) != 0
    assert not group or (group.isdigit() and int(group) != 0)
    # Nothing after USER switches back.
    after = FINAL.instructions[FINAL.instructions.index(user) + 1:]
    assert not [i for i in after if i.keyword in {"USER", "RUN"}]


def test_the_chart_runs_the_same_user_as_the_image() -> None:
    if not CHART_VALUES.exists():
        pytest.skip("charts/linepool-operator is not there yet")
    values = yaml.safe_load(CHART_VALUES.read_text(encoding="utf-8"))
    user = FINAL.last("USER")
    assert user is not None
    uid, _, gid = user.args.partition(":")
    context = values.get("securityContext", {})
    assert str(context.get("runAsUser", uid)) == uid
    assert str(context.get("runAsGroup", gid)) == gid


def test_the_entrypoint_is_linepool_and_runs_the_operator() -> None:
    entrypoint = FINAL.last("ENTRYPOINT")
    assert entrypoint is not None
    assert entrypoint.exec_form() is not None, "exec form, so the operator is PID 1 and gets SIGTERM"
    command = entrypoint.exec_form() or []
    cmd = FINAL.last("CMD")
    arguments = (cmd.exec_form() if cmd else None) or []
    assert command[0] == "linepool"
    assert [*command, *arguments][:2] == ["linepool", "run"], "the default command must run the operator"


def test_the_runtime_stage_installs_nothing_and_has_no_build_tools() -> None:
    for instruction in FINAL.all("RUN"):
        assert not BUILD_TOOLS.search(instruction.args), f"line {instruction.line}: {instruction.args}"
    assert not FINAL.all("ADD"), "ADD in the runtime stage: COPY what it needs from a build stage"


def test_the_runtime_stage_takes_only_the_virtualenv_from_the_builder() -> None:
    """No wheels, no sources, no pip cache: just the installed virtualenv."""
    for instruction in FINAL.all("COPY"):
        assert "--from=" in instruction.args, f"line {instruction.line}: the runtime stage copies from the context"
        sources = [part for part in instruction.args.split()[:-1] if not part.startswith("--")]
        assert sources == ["/opt/venv"], f"line {instruction.line}: {instruction.args}"


def test_the_builder_installs_runtime_dependencies_only() -> None:
    """pyproject's extras (sandbox: kmock; dev: linters, test tools) stay out of the image."""
    installs = [i.args for stage in STAGES[:-1] for i in stage.all("RUN") if "install" in i.args]
    assert installs
    extras = set(PYPROJECT["project"]["optional-dependencies"])
    for command in installs:
        assert "-e " not in command and "--editable" not in command, command
        for extra in extras:
            assert f"[{extra}]" not in command, f"the {extra} extra is installed: {command}"


def test_python_runs_unbuffered_and_writes_no_bytecode() -> None:
    env = FINAL.env()
    assert env.get("PYTHONUNBUFFERED") == "1", "logs must not sit in a buffer when the pod dies"
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1", "the root filesystem is read-only in the chart"
    assert env.get("PATH", "").startswith("/opt/venv/bin:"), "`linepool` must resolve to the virtualenv"


def test_the_exposed_ports_are_the_charts() -> None:
    exposed = {int(port.split("/")[0]) for i in FINAL.all("EXPOSE") for port in i.args.split()}
    assert exposed == {8080, 8081}
    if CHART_VALUES.exists():
        values = yaml.safe_load(CHART_VALUES.read_text(encoding="utf-8"))
        assert {values["metrics"]["port"], values["health"]["port"]} == exposed


def test_oci_labels_describe_the_image() -> None:
    labels = FINAL.labels()
    for key in ("title", "description", "source", "licenses", "version"):
        assert labels.get(f"org.opencontainers.image.{key}"), f"missing label org.opencontainers.image.{key}"
    assert labels["org.opencontainers.image.licenses"] == PYPROJECT["project"]["license"]["text"]
    assert labels["org.opencontainers.image.title"] == PYPROJECT["project"]["name"]
    version = labels["org.opencontainers.image.version"]
    if version.startswith("$"):  # from ARG VERSION=<default>, which `make image` sets from pyproject
        args = {k: v for i in FINAL.all("ARG") for k, v in i.pairs().items()}
        version = args[version.strip("${}")]
    assert version == PYPROJECT["project"]["version"]


def test_dockerignore_keeps_local_state_out_and_the_sources_in() -> None:
    patterns = ignore_patterns(DOCKERIGNORE.read_text(encoding="utf-8"))
    for path in (".venv/bin/python", ".git/HEAD", ".tools/helm", "tests/unit/test_pool.py", ".mypy_cache/x",
                 ".pytest_cache/v", ".ruff_cache/x", "operator/linepool/__pycache__/cli.cpython-311.pyc",
                 ".demo/operator.log"):
        assert is_ignored(path, patterns), f"{path} would be sent to the Docker daemon"
    copied = [
        source
        for stage in STAGES
        for instruction in stage.all("COPY")
        if "--from=" not in instruction.args
        for source in instruction.args.split()[:-1]
    ]
    assert copied
    for source in copied:
        assert not is_ignored(source.rstrip("/"), patterns), f"COPY {source} but .dockerignore drops it"
        assert (ROOT / source).exists(), f"COPY {source}: no such file"
    assert not is_ignored("operator/linepool/cli.py", patterns)
