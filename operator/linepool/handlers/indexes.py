"""Watch-fed in-memory indexes: every poll reads servers and pools from here, not from the API.

Each entry is a plain snapshot of the object as last seen by the watch.
"""

from typing import Any

import kopf

from linepool.api import GROUP, POOLS, SERVERS, VERSION


def snapshot(body: kopf.Body) -> dict[str, Any]:
    """A detached copy of what the operator needs of an object (including status)."""
    return {
        "apiVersion": body.get("apiVersion", f"{GROUP}/{VERSION}"),
        "kind": body.get("kind", ""),
        "metadata": {
            key: body.metadata.get(key)
            for key in ("name", "namespace", "uid", "generation", "creationTimestamp", "labels",
                        "annotations", "resourceVersion")
        },
        "spec": dict(body.get("spec") or {}),
        "status": dict(body.get("status") or {}),
    }


@kopf.index(GROUP, VERSION, SERVERS)
def servers_by_namespace(*, namespace: str | None, body: kopf.Body, **_: Any) -> dict[str, dict[str, Any]]:
    return {namespace or "": snapshot(body)}


@kopf.index(GROUP, VERSION, POOLS)
def pools_by_namespace(*, namespace: str | None, name: str, **_: Any) -> dict[str, str]:
    return {namespace or "": name}
