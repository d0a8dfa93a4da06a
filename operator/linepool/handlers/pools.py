"""The LinePool daemon: one loop per pool that polls Prometheus and carries out decisions.

Each pass observes (servers from the watch-fed index, traffic from Prometheus), decides
(``logic.pool.decide_pool``) and acts (labels, status, events, new servers). A pass that
changes nothing writes nothing.
"""

import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import kopf

from linepool import telemetry
from linepool.adapters.kubernetes import CredentialsError, KubernetesError, KubernetesWriter, SecretReader
from linepool.adapters.messaging import MessagingAdapter, MessagingError, OutgoingMessage, send_guarded
from linepool.adapters.prometheus import PrometheusClient, PrometheusError, render_queries
from linepool.api import (
    ASSIGNABLE_LABEL,
    CREATED_BY_ANNOTATION,
    GROUP,
    OPERATOR_NAME,
    PAUSED_ANNOTATION,
    POOLS,
    SERVERS,
    VERSION,
)
from linepool.api.conditions import condition, format_time, merge_conditions, parse_time, reports_new_problem
from linepool.api.errors import SpecError
from linepool.api.spec import PoolSpec, ServerSpec, parse_pool_spec
from linepool.api.types import ConditionType, LineState, Reason
from linepool.handlers import forecast as forecasting
from linepool.handlers.events import post_event
from linepool.handlers.servers import report_missing_pool
from linepool.logic.forecast import runs_out_within, status_patch
from linepool.logic.health import explain_flag, quiet_period
from linepool.logic.health_status import SUMMARY_KEYS as HEALTH_SUMMARY_KEYS
from linepool.logic.health_status import FlagEvidence, needs_report
from linepool.logic.keepalive import Delivery, Send, Settled, settle
from linepool.logic.observations import Observation
from linepool.logic.pool import (
    CredentialProblem,
    Event,
    PoolDecision,
    PoolMemory,
    PoolView,
    ServerView,
    decide_pool,
    needs_write,
    record_keep_alives,
)
from linepool.logic.scaling import mode_allows_changes, render_server
from linepool.logic.window import promql_range, window_length

# How long an invalid pool waits before looking at its spec again (a fix also wakes it sooner,
# because the daemon reads the live body on every pass).
INVALID_SPEC_RETRY_SECONDS = 10.0
# Flag forensics costs two queries a line; a pool whose lines are flagged by the dozen reports
# them over a few passes rather than stalling one.
FORENSICS_PER_PASS = 5


@dataclass(kw_only=True)
class PoolRuntime:
    """What one pool's loop carries between passes."""

    memory: PoolMemory = field(default_factory=PoolMemory)
    known_servers: set[str] = field(default_factory=set)
    # Servers whose token was read: None when that worked, else why not. Rebuilt after a restart
    # by the next send; until then a server simply has no CredentialsAvailable condition.
    credentials: dict[str, CredentialProblem | None] = field(default_factory=dict)
    forecast: forecasting.ForecastMemory = field(default_factory=forecasting.ForecastMemory)


# Signal first and cancel only if the loop has not left after 5s: a deleted pool still has to
# report its orphaned servers on the way out.
@kopf.daemon(GROUP, VERSION, POOLS, cancellation_backoff=5.0, cancellation_timeout=10.0)
async def run_pool(
    *,
    stopped: kopf.DaemonStopped,
    body: kopf.Body,
    name: str,
    namespace: str | None,
    memo: Any,
    logger: kopf.Logger,
    **kwargs: Any,
) -> None:
    # kopf passes each index as a keyword named after its function.
    servers_by_namespace: kopf.Index[str, dict[str, Any]] = kwargs["servers_by_namespace"]
    namespace = namespace or ""
    runtime = PoolRuntime()
    interval = INVALID_SPEC_RETRY_SECONDS
    try:
        while not stopped:
            try:
                interval = await reconcile_once(
                    body=body, name=name, namespace=namespace, memo=memo, logger=logger,
                    servers=list(servers_by_namespace.get(namespace, [])), runtime=runtime,
                )
            except Exception:
                # A bug must not stop the pool's loop: servers keep their last label and status
                # (the fail-static state), and the next pass tries again.
                telemetry.RECONCILE_ERRORS.labels(namespace, name, "internal").inc()
                logger.exception("Unexpected error in a pass over pool %s/%s; retrying", namespace, name)
            await stopped.wait(interval)
    finally:
        telemetry.forget_pool(namespace=namespace, pool=name, servers=sorted(runtime.known_servers))
    if stopped.reason is not None and stopped.reason & kopf.DaemonStoppingReason.RESOURCE_DELETED:
        # The user's own servers outlive the pool (the operator's are garbage-collected through
        # their owner references): say on each of them that nothing decides for it any more.
        for server in servers_by_namespace.get(namespace, []):
            if (server.get("spec") or {}).get("pool") == name:
                await report_missing_pool(server=server, writer=memo.kubernetes)


async def reconcile_once(
    *,
    body: Mapping[str, Any],
    name: str,
    namespace: str,
    memo: kopf.Memo,
    logger: kopf.Logger,
    servers: list[dict[str, Any]],
    runtime: PoolRuntime,
) -> float:
    """One pass over a pool. Returns the seconds to wait before the next pass."""
    started = time.perf_counter()
    writer: KubernetesWriter = memo.kubernetes
    prometheus: PrometheusClient = memo.prometheus
    now = datetime.now(tz=UTC)
    status = dict(body.get("status") or {})
    try:
        spec = parse_pool_spec(body.get("spec") or {})
    except SpecError as error:
        telemetry.RECONCILE_ERRORS.labels(namespace, name, "spec").inc()
        await _report_invalid_pool(body=body, namespace=namespace, name=name, status=status, error=error,
                                   writer=writer, now=now)
        return INVALID_SPEC_RETRY_SECONDS

    meta = body.get("metadata") or {}
    paused = str((meta.get("annotations") or {}).get(PAUSED_ANNOTATION, "")).lower() == "true"
    own = [s for s in servers if (s.get("spec") or {}).get("pool") == name]
    foreign_lines = frozenset(
        str(line.get("id")) for s in servers if (s.get("spec") or {}).get("pool") != name
        for line in (s.get("spec") or {}).get("lines") or [] if isinstance(line, Mapping)
    )
    current = {str(s["metadata"]["name"]) for s in own}
    if runtime.known_servers - current:
        telemetry.forget_servers(namespace=namespace, pool=name, servers=sorted(runtime.known_servers - current))
    runtime.known_servers = current

    observation, metrics_error = None, None
    quiet = quiet_period(now=now, rule=spec.health.off_hours, timezone=spec.quotas.timezone)
    queries = render_queries(
        templates=spec.metrics.queries, servers=[str(s["metadata"]["name"]) for s in own],
        window=promql_range(window_length(window=spec.quotas.window, timezone=spec.quotas.timezone, now=now)),
        health=spec.health if spec.health.enabled else None,
        quiet_since=now - quiet[0] if quiet is not None else None,
    )
    try:
        observation = await prometheus.observe(base_url=spec.metrics.prometheus_url, queries=queries, at=now)
    except PrometheusError as error:
        metrics_error = str(error)
        telemetry.RECONCILE_ERRORS.labels(namespace, name, "metrics").inc()
        # Warn once per outage; the condition and the event carry it from then on.
        log = logger.warning if runtime.memory.first_failure is None else logger.debug
        log("Metrics unavailable for pool %s/%s: %s", namespace, name, error)
    finally:
        telemetry.PROMETHEUS_QUERIES.labels(namespace, name).inc(len(queries.all()))

    pool = PoolView(name=name, namespace=namespace, uid=str(meta.get("uid") or ""),
                    generation=meta.get("generation"), spec=spec, status=status, paused=paused)
    await _recheck_credentials(runtime=runtime, servers=own, namespace=namespace, secrets=memo.secrets)
    flags = await _flag_forensics(pool=pool, servers=own, observation=observation, prometheus=prometheus,
                                  now=now, logger=logger) if observation is not None else {}
    decision = decide_pool(
        pool=pool, servers=[server_view(s) for s in own], observation=observation,
        metrics_error=metrics_error, memory=runtime.memory, now=now, foreign_lines=foreign_lines,
        credentials=runtime.credentials, answer_delay=memo.options.answer_delay, flags=flags,
    )
    runtime.memory = decision.memory
    for flag in flags.values():
        cause = flag.report.cause.value if flag.report.cause is not None else "None"
        telemetry.FLAG_REPORTS.labels(namespace, name, cause).inc()
    if decision.keep_alive.sends:
        results = await _send_keep_alives(decision=decision, pool=pool, memo=memo, runtime=runtime)
        decision = record_keep_alives(decision=decision, pool=pool, results=results, now=datetime.now(tz=UTC))
    forecast = await forecasting.refresh(
        pool=pool, decision=decision, memory=runtime.forecast, prometheus=prometheus, now=now, logger=logger,
        servers={str(s["metadata"]["name"]): (s.get("metadata") or {}).get("generation") for s in own})
    try:
        await _act(decision=decision, pool=pool, body=body, servers=own, writer=writer, now=now, logger=logger,
                   forecast=forecast)
    except KubernetesError as error:
        telemetry.RECONCILE_ERRORS.labels(namespace, name, "kubernetes").inc()
        logger.error("Could not apply decisions for pool %s/%s: %s", namespace, name, error)
    _export(decision=decision, pool=pool, now=now)
    telemetry.RECONCILE_DURATION.labels(namespace, name).observe(time.perf_counter() - started)
    return spec.metrics.poll_interval.total_seconds()


async def _flag_forensics(*, pool: PoolView, servers: list[dict[str, Any]], observation: Observation,
                          prometheus: PrometheusClient, now: datetime,
                          logger: kopf.Logger) -> dict[tuple[str, str], FlagEvidence]:
    """Measure the hour before the flag of each line that turned Flagged and has no report for that flag.

    A line already reported in status (``lastFlag``) for the same flagged spell costs nothing, so a
    restarted operator reports no flag twice; a flag that came while the operator was down is dated
    from Prometheus's history and reported now. At most ``FORENSICS_PER_PASS`` lines per pass.
    """
    found: dict[tuple[str, str], FlagEvidence] = {}
    spec = pool.spec
    for server in servers:
        name = str(server["metadata"]["name"])
        samples = observation.server(name) or {}
        previous = {str(item.get("id")): item for item in (server.get("status") or {}).get("lines") or []
                    if isinstance(item, Mapping)}
        for line, sample in samples.items():
            old = previous.get(line, {})
            if sample.state is not LineState.FLAGGED or len(found) >= FORENSICS_PER_PASS:
                continue
            # Same flagged spell as last pass, already reported: nothing to ask Prometheus.
            if old.get("state") == LineState.FLAGGED.value and not needs_report(old=old, flagged_at=None):
                continue
            queries = telemetry.PROMETHEUS_QUERIES.labels(pool.namespace, pool.name)
            try:
                queries.inc()
                flagged_at = await prometheus.flag_time(base_url=spec.metrics.prometheus_url, server=name,
                                                        line=line, at=now) or now
                if not needs_report(old=old, flagged_at=flagged_at):
                    continue
                queries.inc()
                figures = await prometheus.flag_figures(
                    base_url=spec.metrics.prometheus_url, server=name, line=line, spec=spec.health,
                    flag_time=flagged_at, templates=spec.metrics.queries, timezone=spec.quotas.timezone)
            except PrometheusError as error:
                logger.warning("Cannot measure the hour before the flag of %s on %s: %s", line, name, error)
                continue
            found[(name, line)] = FlagEvidence(time=flagged_at, figures=figures,
                                               report=explain_flag(figures=figures, spec=spec.health))
    return found


async def _recheck_credentials(*, runtime: PoolRuntime, servers: list[dict[str, Any]], namespace: str,
                               secrets: SecretReader) -> None:
    """Look again at Secrets that were missing, so a fixed Secret clears the condition (reads are cached)."""
    by_name = {str(s["metadata"]["name"]): s for s in servers}
    for name, problem in list(runtime.credentials.items()):
        server = by_name.get(name)
        if server is None:
            del runtime.credentials[name]
            continue
        if problem is None:
            continue
        ref = (server.get("spec") or {}).get("credentialsSecretRef") or {}
        try:
            await secrets.token(namespace=namespace, name=str(ref.get("name")), key=str(ref.get("key")))
        except CredentialsError as error:
            runtime.credentials[name] = (Reason(error.reason), str(error))
        else:
            runtime.credentials[name] = None


async def _send_keep_alives(*, decision: PoolDecision, pool: PoolView, memo: kopf.Memo,
                            runtime: PoolRuntime) -> list[tuple[Send, Settled]]:
    """Send what is due. Each exchange was recorded in status by an earlier pass, with its key."""
    results: list[tuple[Send, Settled]] = []
    for send in decision.keep_alive.sends:
        exchange = decision.keep_alive.lines[send.owner].exchange
        server_spec = decision.server_specs.get(send.server)
        if exchange is None or server_spec is None:
            continue
        delivery, detail, retry_after = await _deliver(send=send, server_spec=server_spec, namespace=pool.namespace,
                                                       memo=memo, runtime=runtime)
        settled = settle(plan=decision.keep_alive, send=send, exchange=exchange, delivery=delivery, detail=detail,
                         retry_after=retry_after, spec=pool.spec.keep_alive, timezone=pool.spec.quotas.timezone,
                         policy=memo.options.keep_alive_retry, now=datetime.now(tz=UTC))
        telemetry.KEEPALIVE_SENDS.labels(pool.namespace, pool.name, send.server, settled.outcome).inc()
        results.append((send, settled))
    return results


async def _deliver(*, send: Send, server_spec: ServerSpec, namespace: str, memo: kopf.Memo,
                   runtime: PoolRuntime) -> tuple[Delivery, str, timedelta | None]:
    secrets: SecretReader = memo.secrets
    adapter: MessagingAdapter = memo.messaging
    ref = server_spec.credentials
    if ref is None:
        runtime.credentials[send.server] = (Reason.SECRET_NOT_FOUND, "no Secret is referenced")
        return Delivery.BLOCKED, "no credentials", None
    try:
        token = await secrets.token(namespace=namespace, name=ref.name, key=ref.key)
    except CredentialsError as error:
        runtime.credentials[send.server] = (Reason(error.reason), str(error))
        return Delivery.BLOCKED, str(error), None
    runtime.credentials[send.server] = None
    message = OutgoingMessage(sender=send.sender, recipient=send.recipient, text=send.text,
                              idempotency_key=send.idempotency_key)
    try:
        await send_guarded(adapter, endpoint=server_spec.endpoint, token=token, message=message,
                           limit=memo.options.send_timeout)
    except MessagingError as error:
        if error.status in (401, 403):
            secrets.forget(namespace=namespace, name=ref.name, key=ref.key)  # a rotated token is read again
        return error.delivery, str(error), error.retry_after
    return Delivery.SENT, "sent", None


def server_view(snapshot: Mapping[str, Any]) -> ServerView:
    meta = snapshot.get("metadata") or {}
    return ServerView(
        name=str(meta.get("name")),
        generation=meta.get("generation"),
        created=parse_time(meta.get("creationTimestamp")),
        created_by_operator=(meta.get("annotations") or {}).get(CREATED_BY_ANNOTATION) == OPERATOR_NAME,
        spec=snapshot.get("spec") or {},
        status=snapshot.get("status") or {},
    )


async def _act(*, decision: PoolDecision, pool: PoolView, body: Mapping[str, Any],
               servers: list[dict[str, Any]], writer: KubernetesWriter, now: datetime,
               logger: kopf.Logger, forecast: Mapping[str, Any] | None = None) -> None:
    by_name = {str(s["metadata"]["name"]): s for s in servers}
    for outcome in decision.servers:
        snapshot = by_name[outcome.name]
        labels = (snapshot.get("metadata") or {}).get("labels") or {}
        wanted = "true" if outcome.assignable else "false"
        if labels.get(ASSIGNABLE_LABEL) != wanted:
            await writer.patch_labels(plural=SERVERS, namespace=pool.namespace, name=outcome.name,
                                      labels={ASSIGNABLE_LABEL: wanted})
            _count_write(pool, "server-label")
        if needs_write(snapshot.get("status"), outcome.status):
            await writer.patch_status(plural=SERVERS, namespace=pool.namespace, name=outcome.name,
                                      status=outcome.status)
            _count_write(pool, "server-status")

    pool_status = dict(decision.pool_status)
    if decision.plan.creates:
        allowed = mode_allows_changes(pool.spec.scaling.mode, paused=pool.paused)
        if allowed and await _scale_up(decision=decision, pool=pool, body=body, writer=writer, logger=logger):
            pool_status["lastScaleTime"] = format_time(now)
        elif any(e.reason is Reason.SCALE_UP_RECOMMENDED for e in decision.events):
            telemetry.SCALE_EVENTS.labels(pool.namespace, pool.name, "recommended").inc()
    if any(e.reason is Reason.SCALE_UP_BLOCKED for e in decision.events):
        telemetry.SCALE_EVENTS.labels(pool.namespace, pool.name, "blocked").inc()

    _post_events(decision.events, pool_body=body, servers=by_name)
    previous_forecast = (body.get("status") or {}).get("forecast")
    if forecast is not None:
        pool_status["forecast"] = dict(forecast)
        lead_time = pool.spec.forecast.lead_time
        if runs_out_within(forecast, lead_time=lead_time) and not runs_out_within(previous_forecast,
                                                                                  lead_time=lead_time):
            post_event(body, type="Warning", reason=Reason.INVENTORY_RUNNING_OUT, message=str(forecast.get("message")))
    if needs_write(body.get("status"), pool_status):
        patch = dict(pool_status)
        if previous_forecast is not None or forecast is not None:
            # A figure that left the forecast (or the whole forecast) is removed, not kept by the merge.
            patch["forecast"] = status_patch(previous=previous_forecast, current=forecast)
        await writer.patch_status(plural=POOLS, namespace=pool.namespace, name=pool.name, status=patch)
        _count_write(pool, "pool-status")


async def _scale_up(*, decision: PoolDecision, pool: PoolView, body: Mapping[str, Any],
                    writer: KubernetesWriter, logger: kopf.Logger) -> bool:
    """Create the planned servers. True when at least one was created now."""
    created_any = False
    for server in decision.plan.new_servers:
        manifest = render_server(pool=pool.name, namespace=pool.namespace, pool_uid=pool.uid,
                                 scaling=pool.spec.scaling, server=server)
        try:
            created = await writer.create(plural=SERVERS, namespace=pool.namespace, body=manifest)
        except KubernetesError as error:
            telemetry.SCALE_EVENTS.labels(pool.namespace, pool.name, "failed").inc()
            post_event(body, type="Warning", reason=Reason.SCALE_UP_FAILED,
                       message=f"could not create server {server.name}: {error}")
            raise
        _count_write(pool, "server-create")
        if not created:
            # Already there: an earlier pass (or a crashed predecessor) created it.
            logger.info("Server %s already exists; not creating it again.", server.name)
            continue
        created_any = True
        telemetry.SCALE_EVENTS.labels(pool.namespace, pool.name, "created").inc()
        post_event(body, type="Normal", reason=Reason.SCALED_UP,
                   message=f"added server {server.name} with lines {', '.join(server.lines)}: "
                           f"{decision.plan.reason}")
    return created_any


def _post_events(events: Iterable[Event], *, pool_body: Mapping[str, Any],
                 servers: Mapping[str, Mapping[str, Any]]) -> None:
    for event in events:
        target = pool_body if event.server is None else servers.get(event.server)
        if target is not None:
            post_event(target, type=event.type, reason=event.reason, message=event.message)


async def _report_invalid_pool(*, body: Mapping[str, Any], namespace: str, name: str, status: dict[str, Any],
                               error: SpecError, writer: KubernetesWriter, now: datetime) -> None:
    """Raise InvalidSpec with the field and reason; keep every other status field as it was."""
    message = f"{error.field}: {error.reason}"
    generation = (body.get("metadata") or {}).get("generation")
    new_status = dict(status)
    new_status["conditions"] = merge_conditions(
        previous=status.get("conditions"),
        current=[
            condition(ConditionType.INVALID_SPEC, True, Reason.INVALID_SPEC, message),
            condition(ConditionType.READY, False, Reason.INVALID_SPEC, f"the spec is invalid: {message}"),
        ],
        now=now, observed_generation=generation,
    )
    if generation is not None:
        new_status["observedGeneration"] = generation
    if reports_new_problem(status.get("conditions"), ConditionType.INVALID_SPEC, message):
        post_event(body, type="Warning", reason=Reason.INVALID_SPEC,
                   message=f"the pool is not reconciled until its spec is fixed: {message}")
    if needs_write(status, new_status):
        await writer.patch_status(plural=POOLS, namespace=namespace, name=name, status=new_status)


def _count_write(pool: PoolView, what: str) -> None:
    telemetry.KUBERNETES_WRITES.labels(pool.namespace, pool.name, what).inc()


def _export(*, decision: PoolDecision, pool: PoolView, now: datetime) -> None:
    ns, name = pool.namespace, pool.name
    status = decision.pool_status
    telemetry.POOL_UTILIZATION.labels(ns, name).set(decision.utilization)
    for state, count in status["servers"].items():
        telemetry.POOL_SERVERS.labels(ns, name, state).set(count)
    telemetry.POOL_ASSIGNABLE_LINES.labels(ns, name).set(status["lines"]["assignable"])
    telemetry.POOL_INVENTORY_LINES.labels(ns, name).set(status["lines"]["inventory"])
    telemetry.POOL_STOP_AT.labels(ns, name).set(pool.spec.assignment.stop_at)
    telemetry.POOL_SCALE_UP_AT.labels(ns, name).set(pool.spec.scaling.scale_up_at)
    for cond in status["conditions"]:
        telemetry.POOL_CONDITION.labels(ns, name, cond["type"]).set(1 if cond["status"] == "True" else 0)
    plan = decision.keep_alive
    summary = status["keepAlive"]
    telemetry.KEEPALIVE_LINES.labels(ns, name, "due").set(summary["due"])
    telemetry.KEEPALIVE_LINES.labels(ns, name, "scheduled").set(summary["scheduled"])
    telemetry.KEEPALIVE_LINES.labels(ns, name, "idle").set(sum(1 for o in plan.lines.values() if o.idle))
    by_state = Counter(o.state.value for o in plan.lines.values())
    for state in LineState:
        telemetry.POOL_LINES.labels(ns, name, state.value).set(by_state.get(state.value, 0))
    if plan.oldest_activity is not None:
        telemetry.OLDEST_ACTIVITY_AGE.labels(ns, name).set(max(0.0, (now - plan.oldest_activity).total_seconds()))
    health = status["health"]
    telemetry.FLAG_RISK_LINES.labels(ns, name, "any").set(health["atRisk"])
    unmeasured = set(health.get("unmeasured") or ())
    for pattern, key in HEALTH_SUMMARY_KEYS.items():
        telemetry.FLAG_RISK_LINES.labels(ns, name, pattern.value).set(health[key])
        telemetry.FLAG_RISK_UNMEASURED.labels(ns, name, pattern.value).set(1 if pattern.value in unmeasured else 0)
    for outcome in decision.servers:
        if outcome.utilization is not None:
            telemetry.SERVER_UTILIZATION.labels(ns, name, outcome.name).set(outcome.utilization)
        telemetry.SERVER_ASSIGNABLE.labels(ns, name, outcome.name).set(1 if outcome.assignable else 0)


__all__ = ["PoolRuntime", "PoolSpec", "reconcile_once", "run_pool", "server_view"]
