"""tests/bad_manifests/operator/: specs the API server accepts and only the operator can reject.

For each case the genuine API server accepts every document (a dry-run create, so the check is
"the schema cannot catch this", not an imitation's opinion); then the operator's own validation is
given exactly what the server returned, defaults applied, as the operator would read it from a
watch, and must refuse it, naming the field given by ``# expect:``. The missing-pool case needs the
live pool index, so the integration suite covers the operator's side of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from linepool.api.errors import SpecError
from linepool.api.spec import parse_pool_spec
from linepool.logic.pool import ServerView, find_line_conflicts
from linepool.sandbox.kubeapi import KubeApiError, KubeApiServer

from .admission import create, in_namespace
from .crd_files import BAD_MANIFESTS_DIR, load_yaml_documents, read_header

CASES = sorted((BAD_MANIFESTS_DIR / "operator").glob("*.yaml"))
KINDS = {"LinePool", "MessagingServer"}


def _as_stored(kube: KubeApiServer, path: Path, namespace: str) -> list[dict[str, Any]]:
    """Every document of ``path`` as the server stores it; fails the test if the server refuses one."""
    docs = load_yaml_documents(path)
    assert docs
    assert all(doc.get("kind") in KINDS for doc in docs), path.name
    stored = []
    for doc in docs:
        try:
            stored.append(create(kube, in_namespace(doc, namespace)))
        except KubeApiError as error:
            pytest.fail(f"{path.name}: the server already refuses this; move it up a directory: {error.message}")
    return stored


def operator_errors(documents: list[dict[str, Any]]) -> list[str]:
    errors: list[str] = []
    servers = []
    for doc in documents:
        if doc["kind"] == "LinePool":
            try:
                parse_pool_spec(doc["spec"])
            except SpecError as error:
                errors.append(str(error))
        else:
            servers.append(ServerView(name=doc["metadata"]["name"], spec=doc["spec"]))
    errors.extend(find_line_conflicts(servers).values())
    return errors


def test_there_is_a_corpus() -> None:
    assert len(CASES) >= 6
    assert all(read_header(path).get("expect") for path in CASES), "every case needs '# expect: <field>'"


@pytest.mark.parametrize("path", [p for p in CASES if "pool-missing" not in read_header(p)], ids=lambda p: p.stem)
def test_operator_rejects_what_the_server_accepts(kube: KubeApiServer, dry_run_namespace: str, path: Path) -> None:
    stored = _as_stored(kube, path, dry_run_namespace)
    errors = operator_errors(stored)
    assert errors, f"{path.name} was accepted by the operator too"
    for substring in read_header(path)["expect"]:
        assert any(substring in error for error in errors), (substring, errors)


@pytest.mark.parametrize("path", [p for p in CASES if "pool-missing" in read_header(p)], ids=lambda p: p.stem)
def test_a_server_of_a_missing_pool_is_accepted_by_the_server(kube: KubeApiServer, dry_run_namespace: str,
                                                               path: Path) -> None:
    stored = _as_stored(kube, path, dry_run_namespace)
    pools = {d["metadata"]["name"] for d in stored if d["kind"] == "LinePool"}
    servers = [d for d in stored if d["kind"] == "MessagingServer"]
    assert servers
    assert all(d["spec"]["pool"] not in pools for d in servers)
