"""The CRD files in ``crds/`` and the test-case files, loaded for static lints.

This module only reads files: it judges nothing. Whether the API server accepts an object, and what
it stores (defaults, pruning, CEL rules), is asked of the genuine kube-apiserver (the session
``kube`` fixture in tests/conftest.py, helpers in :mod:`tests.schema.admission`). What is here
serves the checks that need no server: descriptions, bounds, printer columns, names, the rule
messages every bad-manifest case must cover, and the ``# key: value`` headers of those cases.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = REPO_ROOT / "crds"
EXAMPLES_DIR = REPO_ROOT / "examples"
BAD_MANIFESTS_DIR = REPO_ROOT / "tests" / "bad_manifests"

Schema = dict[str, Any]


@dataclass(frozen=True)
class CustomResourceDefinition:
    """One CustomResourceDefinition document from ``crds/``."""

    name: str
    group: str
    kind: str
    plural: str
    scope: str
    raw: Mapping[str, Any]
    source: Path

    @property
    def versions(self) -> list[dict[str, Any]]:
        """The ``spec.versions`` entries."""
        return list(self.raw["spec"]["versions"])

    def version(self, name: str) -> dict[str, Any]:
        """The ``spec.versions`` entry called ``name``."""
        for version in self.versions:
            if version["name"] == name:
                return dict(version)
        raise KeyError(f"{self.name} has no version {name!r}")

    def schema(self, version: str) -> Schema:
        """The ``openAPIV3Schema`` of ``version``."""
        return dict(self.version(version)["schema"]["openAPIV3Schema"])


def load_yaml_documents(path: Path) -> list[Any]:
    """All non-empty YAML documents in ``path``."""
    with path.open(encoding="utf-8") as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc is not None]


@cache
def load_crds(crd_dir: Path = CRD_DIR) -> tuple[CustomResourceDefinition, ...]:
    """Every CRD document in every ``*.yaml`` file of ``crd_dir``."""
    crds = []
    for path in sorted(crd_dir.glob("*.yaml")):
        for doc in load_yaml_documents(path):
            if doc.get("kind") != "CustomResourceDefinition":
                continue
            names = doc["spec"]["names"]
            crds.append(
                CustomResourceDefinition(
                    name=doc["metadata"]["name"],
                    group=doc["spec"]["group"],
                    kind=names["kind"],
                    plural=names["plural"],
                    scope=doc["spec"]["scope"],
                    raw=doc,
                    source=path,
                )
            )
    return tuple(crds)


def crd_named(name: str, crd_dir: Path = CRD_DIR) -> CustomResourceDefinition:
    """The CRD whose ``metadata.name`` is ``name`` (e.g. ``linepools.linepool.dev``)."""
    for crd in load_crds(crd_dir):
        if crd.name == name:
            return crd
    raise KeyError(f"no CRD named {name!r} in {crd_dir}")


def iter_schema_nodes(schema: Schema, path: str = "") -> Iterator[tuple[str, Schema]]:
    """Every schema node, with a display path: ``[*]`` for array items, ``.*`` for map values."""
    yield (path or "<root>"), schema
    for name, sub in schema.get("properties", {}).items():
        yield from iter_schema_nodes(sub, f"{path}.{name}" if path else name)
    if isinstance(schema.get("items"), dict):
        yield from iter_schema_nodes(schema["items"], f"{path}[*]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from iter_schema_nodes(schema["additionalProperties"], f"{path}.*")


def iter_validation_rules(schema: Schema) -> Iterator[tuple[str, Schema, dict[str, Any]]]:
    """Every ``x-kubernetes-validations`` rule as ``(display path, node, rule)``."""
    for path, node in iter_schema_nodes(schema):
        for rule in node.get("x-kubernetes-validations", []):
            yield path, node, rule


def rule_message(rule: Mapping[str, Any]) -> str:
    """A rule's ``message`` as the API server reports it: YAML's folded lines joined by one space."""
    return " ".join(str(rule.get("message", "")).split())


def read_header(path: Path) -> dict[str, list[str]]:
    """``# key: value`` lines at the top of a file, before the first YAML content.

    A key may repeat (several ``# expect:`` lines); values keep their order.
    """
    header: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if not stripped.startswith("#"):
            break
        match = re.match(r"^#\s*([A-Za-z][\w-]*):\s*(.*?)\s*$", stripped)
        if match:
            header.setdefault(match.group(1).lower(), []).append(match.group(2))
    return header
