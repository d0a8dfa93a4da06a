"""Asking the genuine kube-apiserver whether it accepts a manifest, as ``kubectl create`` would send it.

The server is the session ``kube`` fixture of tests/conftest.py: a real kube-apiserver with the CRDs
from crds/ installed. This module owns the few conventions every schema, chart and e2e test shares
when it asks that server:

* requests use **strict field validation**, as kubectl does by default: an unknown field is
  refused (400, "strict decoding error: unknown field ...") instead of silently dropped;
* namespaced objects are created in a namespace of the test's own (the examples and bad manifests
  name ``messaging``, ``demo`` ...; other tests share the server), never in the one they name;
* a refusal is a :class:`KubeApiError`; :func:`causes` lists its ``(field, message)`` pairs without
  the server's note that CEL rules were skipped because of an earlier structural error.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from linepool.sandbox.kubeapi import KubeApiError, KubeApiServer
from tests.conftest import new_namespace

# The server adds this cause whenever a structural error kept it from running the CEL rules.
RULES_NOT_CHECKED = "some validation rules were not checked because the object was invalid"


def resource_key(obj: Mapping[str, Any]) -> str:
    """``linepool.dev/v1alpha1/LinePool``, ``v1/Secret``: how the server's discovery names a kind."""
    return f"{obj['apiVersion']}/{obj['kind']}"


def serves(kube: KubeApiServer, obj: Mapping[str, Any]) -> bool:
    """Whether the server serves this object's ``apiVersion`` and ``kind`` at all."""
    try:
        kube.path(resource_key(obj))
    except KeyError:
        return False
    return True


def is_namespaced(kube: KubeApiServer, obj: Mapping[str, Any]) -> bool:
    key = resource_key(obj)
    return kube.path(key, "some-namespace") != kube.path(key)


def in_namespace(obj: Mapping[str, Any], namespace: str) -> dict[str, Any]:
    """A deep copy of ``obj`` with ``metadata.namespace`` set to ``namespace``."""
    moved = copy.deepcopy(dict(obj))
    moved["metadata"] = {**(moved.get("metadata") or {}), "namespace": namespace}
    return moved


def create(kube: KubeApiServer, obj: Mapping[str, Any], *, dry_run: bool = True, strict: bool = True) -> dict[str, Any]:
    """POST ``obj`` where its ``metadata.namespace`` says; the stored object, defaults applied.

    ``dry_run`` (the default) asks the server to validate, default and admit it without storing it.
    ``strict=False`` uses the server's own default field validation (Warn: unknown fields dropped).
    Raises :class:`KubeApiError` when the server refuses it.
    """
    namespace = (obj.get("metadata") or {}).get("namespace") if is_namespaced(kube, obj) else None
    params = {"fieldValidation": "Strict" if strict else "Warn"}
    if dry_run:
        params["dryRun"] = "All"
    stored: dict[str, Any] = kube.request("POST", kube.path(resource_key(obj), namespace), body=dict(obj),
                                          params=params)
    return stored


def refusal(kube: KubeApiServer, obj: Mapping[str, Any], *, namespace: str | None = None,
            strict: bool = True) -> KubeApiError | None:
    """The server's refusal of a dry-run create of ``obj``, or ``None`` if it accepts it.

    A namespaced object goes to ``namespace``, else to a fresh namespace of its own.
    """
    if is_namespaced(kube, obj):
        obj = in_namespace(obj, namespace or new_namespace(kube, "dry"))
    try:
        create(kube, obj, strict=strict)
    except KubeApiError as error:
        return error
    return None


def causes(error: KubeApiError) -> list[tuple[str, str]]:
    """``(field, message)`` for each cause the server gave, without its "rules not checked" note."""
    details = error.body.get("details", {}) if isinstance(error.body, dict) else {}
    return [(cause.get("field", ""), cause.get("message", "")) for cause in details.get("causes", [])
            if RULES_NOT_CHECKED not in cause.get("message", "")]
