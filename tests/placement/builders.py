"""Raw LinePool and MessagingServer objects, as the API server holds them, for placement tests.

The pool's status carries the operator's MetricsAvailable condition; each server's status lists
its lines the way the operator reports them (state, assignable, newConversationsInWindow). Every
line is Active and assignable unless a test says otherwise, as in tests/placement/conftest.py.
"""

from collections.abc import Iterable, Mapping
from typing import Any

from linepool.logic.placement import PoolFacts, pool_facts

NAMESPACE = "apps"
POOL = "support"
GROUP_VERSION = "linepool.dev/v1alpha1"
USABLE_STATES = frozenset({"Active", "Idle"})


def linepool(
    name: str = POOL, *, namespace: str = NAMESPACE, quota: int | None = 50, metrics: bool | None = True,
    metrics_message: str = "Prometheus at http://prometheus:9090 is unreachable", poll_interval: str = "30s",
    window: str | None = None, timezone: str | None = None, first_message: str | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """A LinePool. ``metrics``: True/False is the MetricsAvailable condition's status, None no condition."""
    quotas: dict[str, Any] = {}
    if quota is not None:
        quotas["newConversationsPerLinePerDay"] = quota
    if window is not None:
        quotas["window"] = window
    if timezone is not None:
        quotas["timezone"] = timezone
    body: dict[str, Any] = {
        "metrics": {"prometheusURL": "http://prometheus:9090", "pollInterval": poll_interval},
        "quotas": quotas, **spec,
    }
    if first_message is not None:
        body["placement"] = {"firstMessage": first_message}
    status: dict[str, Any] = {}
    if metrics is not None:
        status["conditions"] = [{
            "type": "MetricsAvailable", "status": "True" if metrics else "False",
            "reason": "MetricsOK" if metrics else "MetricsUnavailable",
            "message": "fresh" if metrics else metrics_message,
            "lastTransitionTime": "2026-12-01T00:00:00Z",
        }]
    return {"apiVersion": GROUP_VERSION, "kind": "LinePool", "metadata": {"name": name, "namespace": namespace},
            "spec": body, "status": status}


def server(
    name: str, lines: Iterable[str], *, pool: str = POOL, namespace: str = NAMESPACE, fallback: Iterable[str] = (),
    state: Mapping[str, str] | None = None, assignable: Mapping[str, bool] | None = None,
    observed: Mapping[str, int] | None = None, reported: bool = True,
) -> dict[str, Any]:
    """A MessagingServer of ``pool``. ``reported=False``: the operator has not written its status yet."""
    lines = list(lines)
    fallback = set(fallback)
    state, assignable, observed = state or {}, assignable or {}, observed or {}
    body: dict[str, Any] = {
        "apiVersion": GROUP_VERSION, "kind": "MessagingServer", "metadata": {"name": name, "namespace": namespace},
        "spec": {"pool": pool, "endpoint": f"http://{name}.relay:8080",
                 "credentialsSecretRef": {"name": "relay-token", "key": "token"},
                 "lines": [{"id": line, **({"role": "Fallback"} if line in fallback else {})} for line in lines]},
    }
    if reported:
        entries = []
        for line in lines:
            line_state = state.get(line, "Active")
            entries.append({"id": line, "state": line_state,
                            "assignable": assignable.get(line, line_state in USABLE_STATES),
                            "newConversationsInWindow": observed.get(line, 0)})
        body["status"] = {"lines": entries}
    return body


def facts(pool: Mapping[str, Any] | None = None, *servers: Mapping[str, Any]) -> PoolFacts:
    """``pool_facts`` of a pool (the default ``linepool()``) and its namespace's servers."""
    return pool_facts(pool=pool if pool is not None else linepool(), servers=list(servers))


def grid(servers: int, lines: int, **kwargs: Any) -> list[dict[str, Any]]:
    """``servers`` servers ``s0``, ``s1``... with ``lines`` lines each, named ``s0-l0``, ``s0-l1``..."""
    return [server(f"s{s}", [f"s{s}-l{i}" for i in range(lines)], **kwargs) for s in range(servers)]
