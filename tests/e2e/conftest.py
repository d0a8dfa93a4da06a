"""End-to-end tests on a real cluster made with kind. They need Docker and the kind binary;
without them every test here is skipped with the reason, so `make test` stays green here."""

import shutil
import subprocess

import pytest


def _docker_ready() -> str | None:
    if shutil.which("docker") is None:
        return "docker is not installed"
    if subprocess.run(["docker", "info"], capture_output=True, check=False, timeout=30).returncode != 0:
        return "no Docker daemon is running"
    if shutil.which("kind") is None:
        return "kind is not installed (https://kind.sigs.k8s.io)"
    if shutil.which("kubectl") is None:
        return "kubectl is not installed"
    return None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    reason = _docker_ready()
    for item in items:
        if "tests/e2e" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)
            if reason is not None:
                item.add_marker(pytest.mark.skip(reason=f"e2e needs kind: {reason}"))
