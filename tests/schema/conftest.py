"""Fixtures of the schema tests: one namespace for dry-run requests, which store nothing.

The genuine API server itself (``kube``) and per-test namespaces (``namespace``) come from
tests/conftest.py. Dry-run creates leave no object behind, so the many table tests share one
namespace rather than creating one each; tests that store objects take ``namespace``.
"""

from __future__ import annotations

import pytest

from linepool.sandbox.kubeapi import KubeApiServer
from tests.conftest import new_namespace


@pytest.fixture(scope="session")
def dry_run_namespace(kube: KubeApiServer) -> str:
    return new_namespace(kube, "schema-dry-run")
