"""Least-privilege RBAC: exactly the rules the operator and kopf need, in both watch modes.

Each rule is compared as (apiGroups, resources, verbs, resourceNames), so an added verb, resource
or wildcard fails here and has to be argued for in templates/rbac.yaml and in this file.
"""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import NAMESPACE, RELEASE, Helm, Rendered

Rule = tuple[frozenset[str], frozenset[str], frozenset[str], frozenset[str]]


def rule(groups: set[str], resources: set[str], verbs: set[str], names: set[str] | None = None) -> Rule:
    return frozenset(groups), frozenset(resources), frozenset(verbs), frozenset(names or ())


def rules_of(role: dict[str, Any]) -> set[Rule]:
    found = [rule(set(r["apiGroups"]), set(r["resources"]), set(r["verbs"]), set(r.get("resourceNames", ())))
             for r in role["rules"]]
    assert len(found) == len(set(found)), f"duplicate rules in {role['metadata']['name']}"
    return set(found)


def namespaced_rules(peerings: str, peering_name: str, secret_names: set[str] | None = None) -> set[Rule]:
    return {
        # kopf watches pools and patches them for its finalizer (the per-pool daemon).
        rule({"linepool.dev"}, {"linepools"}, {"get", "list", "watch", "patch"}),
        # Servers: index, assignable label, creation on scale-up.
        rule({"linepool.dev"}, {"messagingservers"}, {"get", "list", "watch", "patch", "create"}),
        rule({"linepool.dev"}, {"linepools/status", "messagingservers/status"}, {"patch"}),
        rule({""}, {"events"}, {"create"}),
        # Relay API tokens for keep-alive sends: by name only, never list or watch.
        rule({""}, {"secrets"}, {"get"}, secret_names),
        rule({"kopf.dev"}, {peerings}, {"list", "watch"}),
        rule({"kopf.dev"}, {peerings}, {"get", "patch"}, {peering_name}),
    }


CRD_DISCOVERY = rule({"apiextensions.k8s.io"}, {"customresourcedefinitions"}, {"list", "watch"})
NAMESPACE_OBSERVATION = rule({""}, {"namespaces"}, {"list", "watch"})
RBAC_KINDS = {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}


def test_cluster_wide_has_one_cluster_role_with_exactly_these_rules(default_render: Rendered) -> None:
    assert not default_render.of_kind("Role") and not default_render.of_kind("RoleBinding")
    role = default_render.one("ClusterRole")
    assert rules_of(role) == namespaced_rules("clusterkopfpeerings", "linepool-operator") | {CRD_DISCOVERY}


def test_watched_namespaces_get_roles_and_a_small_cluster_role(full_render: Rendered) -> None:
    cluster_role = full_render.operator.one("ClusterRole")
    assert rules_of(cluster_role) == {CRD_DISCOVERY, NAMESPACE_OBSERVATION}
    roles = full_render.operator.of_kind("Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["team-a", "team-b"]
    expected = namespaced_rules("kopfpeerings", "linepool-teams", {"support-0-credentials", "support-1-credentials"})
    for role in roles:
        assert rules_of(role) == expected, role["metadata"]["namespace"]


def test_secret_access_is_narrowed_by_secret_names(helm: Helm) -> None:
    role = helm.template(sets=["rbac.secretNames={relay-a,relay-b}"]).one("ClusterRole")
    secret_rules = [r for r in rules_of(role) if "secrets" in r[1]]
    assert secret_rules == [rule({""}, {"secrets"}, {"get"}, {"relay-a", "relay-b"})]


@pytest.mark.parametrize("which", ["default", "full"])
def test_no_wildcards_and_no_secret_listing(which: str, default_render: Rendered, full_render: Rendered) -> None:
    rendered = default_render if which == "default" else full_render
    for role in rendered.of_kind("ClusterRole") + rendered.of_kind("Role"):
        assert "aggregationRule" not in role
        for r in role["rules"]:
            for field in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
                assert not any("*" in value for value in r.get(field, ())), (role["metadata"]["name"], r)
            if "secrets" in r["resources"]:
                assert set(r["verbs"]) == {"get"}, r
            if r["resources"] == ["linepools/placements"]:
                # The placement client role, bound by apps: delete releases a placement (a row of the
                # placement service's store), not a Kubernetes object. Only there, and bound to nobody.
                assert role["metadata"]["name"].endswith("-placement-client"), role["metadata"]["name"]
                assert set(r["verbs"]) == {"create", "get", "delete"}, r
                continue
            assert not {"delete", "deletecollection", "update", "escalate", "bind", "impersonate"} & set(r["verbs"]), r


@pytest.mark.parametrize("which", ["default", "full"])
def test_bindings_grant_only_the_charts_roles_to_the_components_own_service_account(
        which: str, default_render: Rendered, full_render: Rendered) -> None:
    """The operator's roles go to the operator's ServiceAccount, the placement service's to its own."""
    rendered = default_render if which == "default" else full_render
    roles = {(r["kind"], r["metadata"]["name"], r["metadata"].get("namespace"))
             for r in rendered.of_kind("ClusterRole") + rendered.of_kind("Role")}
    components = ["operator", "placement"] if which == "full" else ["operator"]
    assert not rendered.placement or which == "full"
    for component in components:
        objects = rendered.component(component)
        service_account = objects.one("ServiceAccount")["metadata"]
        assert service_account["namespace"] == NAMESPACE
        bindings = objects.of_kind("ClusterRoleBinding") + objects.of_kind("RoleBinding")
        assert bindings, component
        for binding in bindings:
            ref = binding["roleRef"]
            assert ref["name"] not in {"cluster-admin", "admin", "edit", "view"}, binding
            namespace = binding["metadata"].get("namespace") if ref["kind"] == "Role" else None
            assert (ref["kind"], ref["name"], namespace) in roles, \
                f"{binding['metadata']} refers to a role not rendered"
            assert binding["subjects"] == [{"kind": "ServiceAccount", "name": service_account["name"],
                                            "namespace": NAMESPACE}], (component, binding["metadata"]["name"])
    bound = {b["roleRef"]["name"] for b in rendered.of_kind("ClusterRoleBinding") + rendered.of_kind("RoleBinding")}
    # The placement client role is for apps to bind in their pools' namespaces: the chart binds it to nobody.
    assert not {name for name in bound if name.endswith("-placement-client")}


def test_rbac_can_be_left_to_the_cluster_admin(helm: Helm) -> None:
    rendered = helm.template(sets=["rbac.create=false", "serviceAccount.create=false",
                                   "serviceAccount.name=linepool-managed"])
    assert not rendered.kinds & (RBAC_KINDS | {"ServiceAccount"})
    assert rendered.workload()["spec"]["template"]["spec"]["serviceAccountName"] == "linepool-managed"


def test_cluster_scoped_names_include_the_release(default_render: Rendered) -> None:
    """ClusterRoles are shared by the whole cluster: two releases must not collide."""
    for kind in ("ClusterRole", "ClusterRoleBinding"):
        assert default_render.one(kind)["metadata"]["name"] == f"{RELEASE}-linepool-operator"
