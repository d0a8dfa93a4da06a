"""Where ``linepool plan --from-cluster`` gets its facts: the pool from the cluster, its history from Prometheus.

- The LinePool and its MessagingServers are read once with the official client (kubectl's
  configuration: in-cluster, else ``KUBECONFIG``).
- The history is two range queries on the metrics contract, rendered from the pool's own query
  templates (so overrides in ``spec.metrics.queries`` apply): new conversations and messages sent
  per day, summed over the pool's servers, at one-day steps over the last 28 days at most (a pool
  younger than that loses its first, partly counted day). They go
  through ``prometheus-api-client``, whose range answers become pandas frames; the operator's own
  polling keeps its async client.

Every failure becomes ``PlanSourceError`` with a message for the person at the terminal.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from linepool.adapters.kubernetes import load_api_client
from linepool.adapters.prometheus import history_queries
from linepool.api import GROUP, POOLS, SERVERS, VERSION
from linepool.api.spec import PoolSpec
from linepool.logic.plan_fit import HISTORY_DAYS, daily_series


class PlanSourceError(Exception):
    """The cluster or Prometheus could not give what the plan needs."""


@dataclass(frozen=True)
class ClusterPool:
    pool: Mapping[str, Any]
    servers: list[Mapping[str, Any]]


def read_pool(*, namespace: str, name: str) -> ClusterPool:
    """The LinePool ``namespace/name`` and the MessagingServers of its namespace that belong to it."""
    try:
        api = kubernetes.client.CustomObjectsApi(load_api_client())
        pool: Any = api.get_namespaced_custom_object(GROUP, VERSION, namespace, POOLS, name, _request_timeout=30)
        listing: Any = api.list_namespaced_custom_object(GROUP, VERSION, namespace, SERVERS, _request_timeout=30)
    except ApiException as exc:
        if exc.status == 404:
            raise PlanSourceError(f"no LinePool {name} in namespace {namespace}") from None
        raise PlanSourceError(f"the API server refused to read LinePool {namespace}/{name}: "
                              f"{exc.status} {exc.reason}") from None
    except (HTTPError, OSError) as exc:
        raise PlanSourceError(f"cannot reach the API server: {exc}") from None
    except kubernetes.config.ConfigException as exc:
        raise PlanSourceError(f"no cluster configuration (in-cluster or KUBECONFIG): {exc}") from None
    servers = [s for s in listing.get("items") or [] if (s.get("spec") or {}).get("pool") == name]
    return ClusterPool(pool=pool, servers=servers)


def daily_history(*, spec: PoolSpec, servers: list[str], now: datetime,
                  days: int = HISTORY_DAYS) -> tuple[list[float], list[float]]:
    """New users and messages sent per day, oldest first, for the days Prometheus has data on both."""
    # Imported here: they are the optional `plan` extra, absent from the operator's image.
    from prometheus_api_client import MetricRangeDataFrame, PrometheusConnect  # noqa: PLC0415
    from prometheus_api_client.exceptions import PrometheusApiClientException  # noqa: PLC0415

    new_users_query, sent_query = history_queries(templates=spec.metrics.queries, servers=servers)
    client = PrometheusConnect(url=spec.metrics.prometheus_url, disable_ssl=False)
    start = now - timedelta(days=days)

    def per_day(query: str) -> dict[float, float]:
        try:
            answer = client.custom_query_range(query=query, start_time=start, end_time=now, step="86400")
        except (PrometheusApiClientException, OSError, ValueError) as exc:
            # requests' errors (refused, timed out) are OSErrors.
            raise PlanSourceError(f"Prometheus at {spec.metrics.prometheus_url} did not answer: "
                                  f"{type(exc).__name__}: {exc}") from None
        if not answer:
            return {}
        frame = MetricRangeDataFrame(answer)  # indexed by timestamp, one row per day
        return {stamp.timestamp(): float(value) for stamp, value in frame["value"].astype(float).items()}

    return daily_series(new_users=per_day(new_users_query), messages=per_day(sent_query), days=days)
