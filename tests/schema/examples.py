"""The documents under examples/, and which test checks each kind of document.

- ``linepool``: our own kinds, created on the genuine API server by test_examples.py;
- ``builtin``: everything else (Secret, Namespace, ...), created there too, and also checked with
  kubernetes-validate --strict against every Kubernetes version of the e2e matrix by
  test_builtin_examples.py;
- ``gitops``: Argo CD and Flux objects, whose CRDs are not ours (the test server does not serve
  them, and kubernetes-validate only warns about them), checked structurally by
  test_gitops_examples.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .crd_files import EXAMPLES_DIR, load_yaml_documents

Family = Literal["linepool", "gitops", "builtin"]

LINEPOOL_GROUP = "linepool.dev"
GITOPS_GROUPS = ("argoproj.io", "source.toolkit.fluxcd.io", "helm.toolkit.fluxcd.io", "kustomize.toolkit.fluxcd.io")
GITOPS_DIR = EXAMPLES_DIR / "gitops"


@dataclass(frozen=True)
class ExampleDocument:
    path: Path
    index: int
    doc: dict[str, Any]

    @property
    def where(self) -> str:
        """``gitops/flux-helmrelease.yaml#1``: the file under examples/ and the document's position."""
        return f"{self.path.relative_to(EXAMPLES_DIR)}#{self.index}"

    @property
    def family(self) -> Family:
        return family(self.doc)


def family(doc: dict[str, Any]) -> Family:
    api_version = str(doc.get("apiVersion", ""))
    group = api_version.rpartition("/")[0]
    if group == LINEPOOL_GROUP:
        return "linepool"
    if group in GITOPS_GROUPS:
        return "gitops"
    return "builtin"


def example_files() -> list[Path]:
    return sorted(p for pattern in ("*.yaml", "*.yml") for p in EXAMPLES_DIR.rglob(pattern))


def example_documents() -> list[ExampleDocument]:
    return [
        ExampleDocument(path, index, doc)
        for path in example_files()
        for index, doc in enumerate(load_yaml_documents(path))
    ]


def example_sets() -> dict[str, list[dict[str, Any]]]:
    """The documents applied together: each top-level file alone, each subfolder as a whole."""
    sets: dict[str, list[dict[str, Any]]] = {}
    for item in example_documents():
        relative = item.path.relative_to(EXAMPLES_DIR)
        key = relative.parts[0] if len(relative.parts) > 1 else str(relative)
        sets.setdefault(key, []).append(item.doc)
    return sets
