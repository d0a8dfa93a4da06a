"""Every linepool.dev document under examples/ (recursively, including examples/demo/) is valid.

"Valid" means what the API server would accept: no unknown fields, every schema constraint and
every CEL rule satisfied after defaulting. Documents of other kinds (Secrets, Namespaces, ...) are
skipped: their schemas belong to Kubernetes itself and are not in crds/, so there is nothing here to
check them against (rendered built-in kinds are the business of kubernetes-validate, not this test).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .crd_schema import EXAMPLES_DIR, RULE_EVALUATION_ERROR, admit_manifest, load_yaml_documents

GROUP_PREFIX = "linepool.dev/"


def _example_files() -> list[Path]:
    return sorted(p for pattern in ("*.yaml", "*.yml") for p in EXAMPLES_DIR.rglob(pattern))


def _linepool_documents() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in _example_files():
        for index, doc in enumerate(load_yaml_documents(path)):
            if isinstance(doc, dict) and str(doc.get("apiVersion", "")).startswith(GROUP_PREFIX):
                found.append((f"{path.relative_to(EXAMPLES_DIR)}#{index}", doc))
    return found


DOCUMENTS = _linepool_documents()


def test_examples_exist() -> None:
    names = {str(p.relative_to(EXAMPLES_DIR)) for p in _example_files()}
    assert {"linepool-minimal.yaml", "linepool-production.yaml"} <= names
    kinds = {doc["kind"] for _, doc in DOCUMENTS}
    assert kinds == {"LinePool", "MessagingServer"}


@pytest.mark.parametrize(("where", "manifest"), DOCUMENTS, ids=[where for where, _ in DOCUMENTS])
def test_example_is_valid(where: str, manifest: dict[str, Any]) -> None:
    _, errors = admit_manifest(manifest)
    assert errors == [], f"{where}: {errors}"


@pytest.mark.parametrize(("where", "manifest"), DOCUMENTS, ids=[where for where, _ in DOCUMENTS])
def test_example_survives_an_update_of_itself(where: str, manifest: dict[str, Any]) -> None:
    """Re-applying an unchanged example must pass the transition rules too."""
    _, errors = admit_manifest(manifest, old=manifest)
    assert not [e for e in errors if RULE_EVALUATION_ERROR in e], errors
    assert errors == [], f"{where}: {errors}"


@pytest.mark.parametrize("name", ["linepool-minimal.yaml", "linepool-production.yaml"])
def test_handwritten_examples_are_consistent(name: str) -> None:
    """The checks the operator makes across objects, applied to our own examples."""
    docs = [
        d
        for d in load_yaml_documents(EXAMPLES_DIR / name)
        if d.get("apiVersion", "").startswith(GROUP_PREFIX)
    ]
    assert all(d["metadata"]["namespace"] == "messaging" for d in docs)
    pools = {d["metadata"]["name"]: d for d in docs if d["kind"] == "LinePool"}
    servers = [d for d in docs if d["kind"] == "MessagingServer"]
    assert pools
    assert servers
    placed: dict[str, str] = {}
    for server in servers:
        assert server["spec"]["pool"] in pools, f"{server['metadata']['name']}: pool does not exist"
        for line in server["spec"].get("lines", []):
            assert line["id"] not in placed, (
                f"{line['id']} on {placed.get(line['id'])} and {server['metadata']['name']}"
            )
            placed[line["id"]] = server["metadata"]["name"]
    for pool in pools.values():
        spare = set(pool["spec"].get("inventory", [])) - set(placed)
        assert len(spare) == len(pool["spec"].get("inventory", [])), "inventory lines must be spare"
