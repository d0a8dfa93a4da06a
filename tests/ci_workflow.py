"""The CI workflow (.github/workflows/ci.yaml), read by the tests that must agree with it.

The Kubernetes versions of its e2e matrix are the versions the project supports: the schema tests
validate built-in example objects against exactly those, so the two lists cannot drift apart.
"""

from __future__ import annotations

import pathlib
import re
from functools import cache
from typing import Any

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yaml"

_NODE_IMAGE = re.compile(r"^kindest/node:v(?P<minor>\d+\.\d+)\.\d+(@sha256:[0-9a-f]{64})?$")


@cache
def load_workflow(path: pathlib.Path = WORKFLOW) -> dict[str, Any]:
    """A workflow (ci.yaml by default) as a dict. YAML 1.1 reads the key ``on`` as True; it is put back as "on"."""
    with path.open(encoding="utf-8") as stream:
        data: dict[Any, Any] = yaml.safe_load(stream)
    if True in data:
        data["on"] = data.pop(True)
    return data


def e2e_matrix() -> list[dict[str, str]]:
    """The ``include`` entries of the e2e job's matrix: ``kubernetes`` and ``node_image``."""
    return list(load_workflow()["jobs"]["e2e"]["strategy"]["matrix"]["include"])


def node_image_minor(image: str) -> str:
    """``kindest/node:v1.30.4`` (optionally ``@sha256:...``) -> ``1.30``; ValueError for anything else."""
    match = _NODE_IMAGE.match(image)
    if match is None:
        raise ValueError(f"not a pinned kindest/node image: {image!r}")
    return match.group("minor")


def e2e_kubernetes_versions() -> tuple[str, ...]:
    """The Kubernetes minor versions the e2e runs on, oldest first, e.g. ("1.30", "1.31")."""
    minors = {node_image_minor(entry["node_image"]) for entry in e2e_matrix()}
    return tuple(sorted(minors, key=lambda v: tuple(int(p) for p in v.split("."))))
