"""Driving a kind cluster from the e2e tests: prerequisites, the tools, and a small kubectl/helm wrapper.

Nothing here starts anything on import. :func:`missing_prerequisite` says why the e2e cannot run on
this machine (no Docker daemon, no kind), and :func:`find_tools` where helm and kubectl are: the
pinned binaries of tests/binaries.py when that module is there, else the ones on PATH.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import yaml

T = TypeVar("T")

# Set in CI: a missing prerequisite fails the e2e instead of skipping it, so a broken runner
# cannot turn the e2e job green by skipping everything.
REQUIRED_ENV = "LINEPOOL_E2E_REQUIRED"
# Set when debugging: the kind cluster is kept after the run (delete it with `kind delete cluster`).
KEEP_CLUSTER_ENV = "LINEPOOL_E2E_KEEP_CLUSTER"
# The kind node image, one per Kubernetes version in the CI matrix; kind's default when unset.
NODE_IMAGE_ENV = "KIND_NODE_IMAGE"


class CommandFailed(AssertionError):
    """A command exited non-zero; the message has the command, its exit code and its output."""


def run(args: Sequence[str | os.PathLike[str]], *, env: dict[str, str] | None = None, input: str | None = None,
        timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command and capture its output; on failure raise with stderr in the message."""
    argv = [os.fspath(a) for a in args]
    result = subprocess.run(argv, env=env, input=input, capture_output=True, text=True, timeout=timeout,
                            check=False)
    if check and result.returncode != 0:
        raise CommandFailed(
            f"`{' '.join(argv)}` exited with {result.returncode}\n"
            f"--- stdout ---\n{result.stdout[-4000:]}\n--- stderr ---\n{result.stderr[-4000:]}"
        )
    return result


def missing_prerequisite() -> str | None:
    """Why the e2e cannot run here (no Docker CLI, no daemon, no kind), or None when it can."""
    if shutil.which("docker") is None:
        return "the docker CLI is not installed"
    try:
        info = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=30, check=False)
    except subprocess.TimeoutExpired:
        return "`docker info` did not answer within 30s"
    if info.returncode != 0:
        return "no Docker daemon is reachable (`docker info` failed)"
    if shutil.which("kind") is None:
        return "the kind binary is not on PATH (https://kind.sigs.k8s.io/docs/user/quick-start/#installation)"
    return None


@dataclass(frozen=True)
class Tools:
    helm: pathlib.Path
    kubectl: pathlib.Path


def _pinned_binary(name: str) -> pathlib.Path | None:
    """helm or kubectl from tests/binaries.py (pinned, cached), if that module is there."""
    try:
        from tests import binaries
    except ImportError:
        return None
    getter: Callable[[], Any] | None = getattr(binaries, name, None)
    if getter is None:
        return None
    try:
        return pathlib.Path(getter())
    except Exception as exc:  # a failed download must say so, not crash collection
        print(f"tests/binaries.py could not provide {name}: {exc}; falling back to PATH", file=sys.stderr)
        return None


def find_tools() -> Tools | str:
    """The helm and kubectl to use, or why there are none."""
    found: dict[str, pathlib.Path] = {}
    for name in ("helm", "kubectl"):
        path = _pinned_binary(name)
        if path is None:
            on_path = shutil.which(name)
            path = pathlib.Path(on_path) if on_path else None
        if path is None:
            return f"{name} is neither provided by tests/binaries.py nor on PATH"
        found[name] = path
    return Tools(helm=found["helm"], kubectl=found["kubectl"])


@dataclass
class Cluster:
    """One kind cluster, and kubectl and helm pointed at it through its own kubeconfig."""

    name: str
    kubeconfig: pathlib.Path
    tools: Tools
    helm_home: pathlib.Path

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            # Keep helm's repository cache and config out of the user's home.
            "HELM_CACHE_HOME": str(self.helm_home / "cache"),
            "HELM_CONFIG_HOME": str(self.helm_home / "config"),
            "HELM_DATA_HOME": str(self.helm_home / "data"),
        }

    def kubectl(self, *args: str, input: str | None = None, timeout: float = 300, check: bool = True) -> str:
        return run([self.tools.kubectl, *args], env=self.env, input=input, timeout=timeout, check=check).stdout

    def helm(self, *args: str, timeout: float = 600) -> str:
        return run([self.tools.helm, *args], env=self.env, timeout=timeout).stdout

    def apply(self, docs: list[dict[str, Any]], *extra: str) -> str:
        """``kubectl apply`` the documents, given on stdin."""
        return self.kubectl("apply", *extra, "-f", "-", input=yaml.safe_dump_all(docs, sort_keys=False))

    def get(self, resource: str, *args: str) -> dict[str, Any]:
        """``kubectl get ... -o json``, parsed."""
        result: dict[str, Any] = json.loads(self.kubectl("get", resource, *args, "-o", "json"))
        return result

    def items(self, resource: str, namespace: str, *args: str) -> list[dict[str, Any]]:
        return list(self.get(resource, "-n", namespace, *args).get("items", []))

    def diagnostics(self, namespaces: Sequence[str]) -> str:
        """What to look at when a step failed: objects, events and pod logs, never raising."""
        sections = []
        commands: list[tuple[str, ...]] = [
            ("get", "pods", "-A", "-o", "wide"),
            ("get", "linepools,messagingservers", "-A", "-o", "wide"),
        ]
        for namespace in namespaces:
            commands.append(("get", "events", "-n", namespace, "--sort-by=.lastTimestamp"))
            commands.append(("logs", "-n", namespace, "--all-containers", "--tail=150", "--prefix",
                             "-l", "app.kubernetes.io/name"))
        for command in commands:
            try:
                result = run([self.tools.kubectl, *command], env=self.env, timeout=60, check=False)
                sections.append(f"$ kubectl {' '.join(command)}\n{result.stdout}{result.stderr}")
            except Exception as exc:
                sections.append(f"$ kubectl {' '.join(command)}\n(failed: {exc})")
        return "\n".join(sections)


def wait_for(check: Callable[[], T], *, what: str, timeout: float, interval: float = 3.0) -> T:
    """Poll ``check`` until it returns something truthy; fail saying ``what`` after ``timeout`` seconds.

    A check that raises :class:`CommandFailed` (an object not created yet, a webhook not ready) is
    retried like a falsy answer; the last error is in the failure message.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = check()
            if value:
                return value
            last = value
        except CommandFailed as exc:
            last = exc
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last}")
        time.sleep(interval)
