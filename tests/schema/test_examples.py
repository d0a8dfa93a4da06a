"""Every example under examples/ of a kind the API server serves is created on the genuine server.

That covers our own kinds (LinePool, MessagingServer) and built-in ones (Secret, ...): each example
set (a top-level file alone, a subfolder such as examples/demo/ as a whole) is created for real,
in file order, in namespaces of its own (one fresh namespace for each namespace it names), with
strict field validation as ``kubectl apply`` uses, so an unknown field, a schema constraint or a CEL
rule refuses it. Then each object is applied again unchanged, as a second ``kubectl apply`` would,
which runs the update path and its transition rules, and must change nothing. Argo CD and Flux
objects (examples/gitops/) are of kinds this server does not serve: test_gitops_examples.py checks
them by structure, and kubernetes-validate checks built-in kinds against every Kubernetes version
of the e2e matrix (test_builtin_examples.py). This file also checks that the examples hang
together: servers name pools and Secrets that the example provides.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from linepool.sandbox.kubeapi import KubeApiServer
from tests.conftest import new_namespace

from .admission import create, in_namespace, is_namespaced, serves
from .crd_files import EXAMPLES_DIR, load_yaml_documents
from .examples import example_documents, example_sets, family

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
# The sets with something the server serves: all but examples/gitops/.
SERVED_SETS = sorted(name for name, docs in example_sets().items() if any(family(d) != "gitops" for d in docs))


def test_examples_exist() -> None:
    names = {str(p.relative_to(EXAMPLES_DIR)) for p in _example_files()}
    assert {"linepool-minimal.yaml", "linepool-production.yaml"} <= names
    kinds = {doc["kind"] for _, doc in DOCUMENTS}
    assert kinds == {"LinePool", "MessagingServer"}


def test_the_server_serves_every_example_kind_but_gitops_ones(kube: KubeApiServer) -> None:
    """So the test below skips nothing but Argo CD and Flux objects, which have checks of their own."""
    for item in example_documents():
        assert serves(kube, item.doc) is (item.family != "gitops"), f"{item.where}: {item.doc['kind']}"


@pytest.mark.parametrize("name", SERVED_SETS)
def test_example_is_created_and_reapplied(kube: KubeApiServer, name: str) -> None:
    docs = [doc for doc in example_sets()[name] if serves(kube, doc)]
    assert docs
    namespaces: dict[str, str] = {}
    created = []
    for example in docs:
        doc = example
        if is_namespaced(kube, example):
            written = example["metadata"]["namespace"]  # an example always says where it goes
            if written not in namespaces:
                namespaces[written] = new_namespace(kube, f"example-{written}")
            doc = in_namespace(example, namespaces[written])
        stored = create(kube, doc, dry_run=False)  # raises with the server's message if refused
        created.append((doc, stored))
    for doc, stored in created:
        again = kube.apply(doc)
        where = f"{name}: {doc['kind']}/{doc['metadata']['name']}"
        assert again["metadata"].get("generation") == stored["metadata"].get("generation"), \
            f"{where}: applying the unchanged example again changed it"
        for part in ("spec", "data", "stringData", "type"):
            assert again.get(part) == stored.get(part), f"{where}: {part} changed on a second apply"


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


def test_every_example_document_is_checked_by_some_test() -> None:
    """Our kinds and built-in kinds on the server (built-in ones by kubernetes-validate too), GitOps kinds
    structurally: nothing slips by."""
    for item in example_documents():
        assert isinstance(item.doc, dict), f"{item.where}: not a mapping"
        assert item.doc.get("apiVersion") and item.doc.get("kind"), f"{item.where}: apiVersion and kind"
    families = {item.family for item in example_documents()}
    assert families == {"linepool", "builtin", "gitops"}
    gitops_outside = [i.where for i in example_documents() if i.family == "gitops" and i.path.parent.name != "gitops"]
    # The kind e2e applies examples/*.yaml to a cluster without Argo CD or Flux.
    assert gitops_outside == [], "Argo CD and Flux objects belong in examples/gitops/"


def _secret_refs(doc: dict[str, Any]) -> list[dict[str, str]]:
    """The credentialsSecretRefs of a MessagingServer, or of a LinePool's server template."""
    if doc["kind"] == "MessagingServer":
        return [doc["spec"]["credentialsSecretRef"]]
    template = doc["spec"].get("scaling", {}).get("serverTemplate", {}).get("spec", {})
    return [template["credentialsSecretRef"]] if "credentialsSecretRef" in template else []


# Examples without any Secret (linepool-production.yaml) tell the user to create it by hand.
SETS_WITH_SECRETS = sorted(name for name, docs in example_sets().items() if any(d["kind"] == "Secret" for d in docs))


def test_some_examples_ship_their_secrets() -> None:
    assert {"linepool-minimal.yaml", "messagingserver-credentials.yaml", "demo"} <= set(SETS_WITH_SECRETS)


@pytest.mark.parametrize("name", SETS_WITH_SECRETS)
def test_secret_refs_resolve_where_the_example_brings_its_secrets(name: str) -> None:
    """An example that ships Secrets must ship every Secret (and key) its servers reference."""
    docs = example_sets()[name]
    secrets = {
        (d["metadata"]["namespace"], d["metadata"]["name"]): {*d.get("stringData", {}), *d.get("data", {})}
        for d in docs
        if d["kind"] == "Secret"
    }
    for doc in docs:
        if not str(doc.get("apiVersion", "")).startswith(GROUP_PREFIX):
            continue
        for ref in _secret_refs(doc):
            where = (doc["metadata"]["namespace"], ref["name"])
            assert where in secrets, f"{name}: {doc['metadata']['name']} references missing Secret {where}"
            assert ref["key"] in secrets[where], f"{name}: Secret {where} has no key {ref['key']!r}"


def test_the_credentials_example_adds_a_server_to_the_minimal_pool() -> None:
    """examples/messagingserver-credentials.yaml is applied after linepool-minimal.yaml."""
    minimal = load_yaml_documents(EXAMPLES_DIR / "linepool-minimal.yaml")
    extra = load_yaml_documents(EXAMPLES_DIR / "messagingserver-credentials.yaml")
    pools = {(d["metadata"]["namespace"], d["metadata"]["name"]) for d in minimal if d["kind"] == "LinePool"}
    taken = {line["id"] for d in minimal if d["kind"] == "MessagingServer" for line in d["spec"]["lines"]}
    names = {d["metadata"]["name"] for d in minimal}
    servers = [d for d in extra if d["kind"] == "MessagingServer"]
    assert servers
    for server in servers:
        assert (server["metadata"]["namespace"], server["spec"]["pool"]) in pools
        assert server["metadata"]["name"] not in names
        assert not {line["id"] for line in server["spec"]["lines"]} & taken, "a line cannot be on two servers"
    assert not {d["metadata"]["name"] for d in extra if d["kind"] == "Secret"} & names
