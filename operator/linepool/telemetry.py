"""The operator's own Prometheus metrics, served on ``--metrics-port``.

Names are a public contract: the Helm chart's alerts and dashboard query them.
"""

import contextlib

from prometheus_client import Counter, Gauge, Histogram, Info

from linepool import __version__

LABELS = ("namespace", "pool")

BUILD = Info("linepool_build", "Version of the running linepool operator.")
BUILD.info({"version": __version__})

POOL_UTILIZATION = Gauge(
    "linepool_pool_utilization", "Messages sent in the quota window over the pool's quota (0..1).", LABELS)
SERVER_UTILIZATION = Gauge(
    "linepool_server_utilization", "Messages sent in the quota window over the server's quota (0..1).",
    (*LABELS, "server"))
SERVER_ASSIGNABLE = Gauge(
    "linepool_server_assignable", "1 when new users may be assigned to the server.", (*LABELS, "server"))
POOL_SERVERS = Gauge(
    "linepool_pool_servers", "Servers of the pool by state (total, assignable, saturated, cordoned).",
    (*LABELS, "state"))
POOL_ASSIGNABLE_LINES = Gauge(
    "linepool_pool_assignable_lines", "Lines of the pool that may take new users.", LABELS)
POOL_INVENTORY_LINES = Gauge(
    "linepool_pool_inventory_lines", "Spare inventory lines left for new servers.", LABELS)
POOL_CONDITION = Gauge(
    "linepool_pool_condition", "1 when the pool's condition of this type is True.", (*LABELS, "type"))
POOL_STOP_AT = Gauge("linepool_pool_stop_at", "The pool's assignment.stopAt threshold.", LABELS)
POOL_SCALE_UP_AT = Gauge("linepool_pool_scale_up_at", "The pool's scaling.scaleUpAt threshold.", LABELS)
SCALE_EVENTS = Counter(
    "linepool_scale_events_total",
    "Scale decisions by outcome: created, recommended (DryRun), blocked, failed.", (*LABELS, "outcome"))
PROMETHEUS_QUERIES = Counter(
    "linepool_prometheus_queries_total", "PromQL queries sent to Prometheus.", LABELS)
KUBERNETES_WRITES = Counter(
    "linepool_kubernetes_writes_total", "Writes to the Kubernetes API, by kind of write.", (*LABELS, "write"))
RECONCILE_DURATION = Histogram(
    "linepool_reconcile_duration_seconds", "Wall time of one poll of a pool, queries and writes included.",
    LABELS, buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
RECONCILE_ERRORS = Counter(
    "linepool_reconcile_errors_total", "Polls that failed, by stage (metrics, kubernetes, spec, internal).",
    (*LABELS, "stage"))

# Keep-alive: traffic that keeps idle and fallback lines from being deactivated by Apple.
KEEPALIVE_SENDS = Counter(
    "linepool_keepalive_sends_total",
    "Keep-alive sends by outcome: sent, deferred (429), retrying (5xx or timeout, will retry), "
    "failed (gave up for the day), blocked (no credentials).",
    (*LABELS, "server", "outcome"))
KEEPALIVE_LINES = Gauge(
    "linepool_keepalive_lines",
    "Lines of the pool by keep-alive stage: idle (no traffic for idleAfter), due (idle, no keep-alive "
    "planned yet), scheduled (a keep-alive planned or awaiting its answer).",
    (*LABELS, "stage"))
POOL_LINES = Gauge(
    "linepool_pool_lines", "Lines of the pool by state: Active, Idle, AtRisk, Flagged, Deactivated.",
    (*LABELS, "state"))
FLAG_RISK_LINES = Gauge(
    "linepool_pool_flag_risk_lines",
    "Lines at risk of an Apple flag, by pattern (Burst, NoExchange, FollowUps, ColdOutreach, OffHours); "
    "pattern=\"any\" counts lines with at least one.",
    (*LABELS, "pattern"))
FLAG_RISK_UNMEASURED = Gauge(
    "linepool_pool_flag_risk_unmeasured",
    "1 for each pattern the pool's relays export no metric for (reported as unmeasured, not healthy).",
    (*LABELS, "pattern"))
FLAG_REPORTS = Counter(
    "linepool_flag_reports_total",
    "Flags explained by the operator's forensics, by probable cause (a pattern, or None).",
    (*LABELS, "cause"))
OLDEST_ACTIVITY_AGE = Gauge(
    "linepool_pool_oldest_line_activity_age_seconds",
    "Seconds since the least recently active line of the pool had traffic.", LABELS)
FORECAST_RUNWAY = Gauge(
    "linepool_pool_inventory_runway_days",
    "Whole days until the pool's spare inventory runs out, as status.forecast projects it; +Inf when it lasts "
    "beyond spec.forecast.horizon. Absent while the pool has no forecast.", LABELS)
FORECAST_NEXT_SCALE_UP = Gauge(
    "linepool_pool_next_scale_up_days",
    "Whole days until the pool's next projected scale-up; +Inf when none falls within spec.forecast.horizon. "
    "Absent while the pool has no forecast.", LABELS)
FORECAST_LEAD_TIME = Gauge(
    "linepool_pool_forecast_lead_time_days",
    "The pool's spec.forecast.leadTime in days: how long new lines take to provision.", LABELS)
FORECAST_QUERIES = Counter(
    "linepool_forecast_history_queries_total",
    "Range queries made for the pool's capacity forecast (at most one an hour), by outcome.", (*LABELS, "outcome"))


def forget_forecast(*, namespace: str, pool: str) -> None:
    """Drop a pool's forecast series: it has no forecast (disabled, too little history, deleted)."""
    for gauge in (FORECAST_RUNWAY, FORECAST_NEXT_SCALE_UP, FORECAST_LEAD_TIME):
        _remove(gauge, namespace, pool)


def forget_pool(*, namespace: str, pool: str, servers: list[str]) -> None:
    """Drop a deleted pool's series so dashboards and alerts do not show ghosts."""
    for gauge in (POOL_UTILIZATION, POOL_ASSIGNABLE_LINES, POOL_INVENTORY_LINES, POOL_STOP_AT, POOL_SCALE_UP_AT,
                  OLDEST_ACTIVITY_AGE):
        _remove(gauge, namespace, pool)
    forget_forecast(namespace=namespace, pool=pool)
    for labelled, values in ((POOL_CONDITION, _CONDITION_TYPES), (POOL_SERVERS, _SERVER_STATES),
                             (POOL_LINES, _LINE_STATES), (KEEPALIVE_LINES, _KEEPALIVE_STAGES),
                             (FLAG_RISK_LINES, (*_HEALTH_PATTERNS, "any")), (FLAG_RISK_UNMEASURED, _HEALTH_PATTERNS)):
        for value in values:
            _remove(labelled, namespace, pool, value)
    forget_servers(namespace=namespace, pool=pool, servers=servers)


def forget_servers(*, namespace: str, pool: str, servers: list[str]) -> None:
    """Drop the series of servers that left the pool (deleted, or moved to another pool)."""
    for server in servers:
        _remove(SERVER_UTILIZATION, namespace, pool, server)
        _remove(SERVER_ASSIGNABLE, namespace, pool, server)


# Label values the operator sets; listed here so that a pool's series can be removed one by one.
_CONDITION_TYPES = ("Ready", "MetricsAvailable", "ScalingLimited", "InvalidSpec", "KeepAliveHealthy")
_SERVER_STATES = ("total", "assignable", "saturated", "cordoned")
_LINE_STATES = ("Active", "Idle", "AtRisk", "Flagged", "Deactivated")
_KEEPALIVE_STAGES = ("idle", "due", "scheduled")
_HEALTH_PATTERNS = ("Burst", "NoExchange", "FollowUps", "ColdOutreach", "OffHours")


def _remove(gauge: Gauge, *labels: str) -> None:
    with contextlib.suppress(KeyError):
        gauge.remove(*labels)
