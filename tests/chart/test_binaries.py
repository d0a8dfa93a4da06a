"""tests/binaries.py hands out the pinned helm and kubectl, not whatever happens to be cached."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests import binaries


def _output(*args: str) -> str:
    return subprocess.run(args, capture_output=True, text=True, timeout=30, check=True).stdout


def test_helm_is_the_pinned_version(helm: object) -> None:  # the fixture skips without npm
    path = binaries.helm()
    assert path.is_relative_to(binaries.TOOLS) and os.access(path, os.X_OK)
    assert _output(str(path), "version", "--short").startswith(binaries.HELM_VERSION + "+")


def test_kubectl_is_the_pinned_version() -> None:
    try:
        path = binaries.kubectl()
    except binaries.BinaryUnavailable as exc:
        pytest.skip(str(exc))
    assert f"Client Version: {binaries.KUBECTL_VERSION}" in _output(str(path), "version", "--client")


def test_helm_env_keeps_helm_out_of_home(tmp_path: os.PathLike[str]) -> None:
    env = binaries.helm_env(tmp_path)
    for name in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
        assert env[name].startswith(str(tmp_path)) and os.path.isdir(env[name])
    assert "KUBECONFIG" not in env
