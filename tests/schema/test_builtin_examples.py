"""Every document under examples/ of a built-in kind (Secret, Namespace, ...) is valid Kubernetes.

Checked with kubernetes-validate in strict mode (unknown fields are errors, as with
`kubectl apply --validate=strict`), against each Kubernetes version the CI e2e matrix runs;
test_examples.py also creates them on the genuine API server of the tests, which is one version.
Our own kinds are test_examples.py's business, Argo CD's and Flux's test_gitops_examples.py's.
"""

from __future__ import annotations

import re
from typing import Any

import kubernetes_validate
import pytest

from tests.ci_workflow import e2e_kubernetes_versions

from .examples import example_documents

KUBERNETES_VERSIONS = e2e_kubernetes_versions()
BUILT_IN = [item for item in example_documents() if item.family == "builtin"]
# A Secret in an example holds a placeholder, never something that could be a real credential.
PLACEHOLDER = re.compile(r"replace-me|not-a-real", re.IGNORECASE)


def test_there_are_built_in_examples_and_versions_to_check_them_against() -> None:
    assert "Secret" in {item.doc["kind"] for item in BUILT_IN}
    assert KUBERNETES_VERSIONS
    assert all(tuple(map(int, v.split("."))) <= tuple(map(int, kubernetes_validate.latest_version().split(".")))
               for v in KUBERNETES_VERSIONS), "kubernetes-validate is older than the CI matrix"


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("item", BUILT_IN, ids=[item.where for item in BUILT_IN])
def test_built_in_example_is_valid(item: Any, version: str) -> None:
    try:
        kubernetes_validate.validate(item.doc, version, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        pytest.fail(f"{item.where}: {item.doc.get('apiVersion')} {item.doc.get('kind')} is not a Kubernetes "
                    f"{version} kind; if it is a custom resource, give it a test of its own")
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path) or "<root>"
        pytest.fail(f"{item.where} on Kubernetes {version}: {path}: {exc.message}")


@pytest.mark.parametrize("item", [i for i in BUILT_IN if i.doc["kind"] == "Secret"],
                         ids=[i.where for i in BUILT_IN if i.doc["kind"] == "Secret"])
def test_example_secrets_hold_placeholders_only(item: Any) -> None:
    secret = item.doc
    assert "data" not in secret, f"{item.where}: use stringData, so the placeholder is visible"
    assert secret.get("stringData"), f"{item.where}: no stringData"
    for key, value in secret["stringData"].items():
        assert PLACEHOLDER.search(str(value)), f"{item.where}: {key} does not look like a placeholder"
    assert secret["metadata"].get("namespace"), f"{item.where}: a Secret must name its namespace"
