"""One decision pass over a pool: from spec, servers and observed traffic to new status.

``decide_pool`` is the heart of the operator. It is pure: the handler gathers the inputs
(objects from the API server, samples from Prometheus, the time), calls it, and carries out
what it returns (status patches, label flips, events, new servers).
"""

import math
from collections import Counter
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from linepool.api.conditions import (
    Condition,
    condition,
    find_condition,
    format_time,
    merge_conditions,
    parse_time,
    reports_new_problem,
)
from linepool.api.errors import SpecError
from linepool.api.spec import Health, PoolSpec, ServerSpec, parse_server_spec
from linepool.api.types import (
    ConditionType,
    HealthPattern,
    LineRole,
    LineState,
    Reason,
    RecommendedAction,
    ScalingMode,
    ServerPhase,
)
from linepool.logic.assignment import line_assignable, round_robin, server_assignable
from linepool.logic.health import HealthSample, quiet_period
from linepool.logic.health_status import FlagEvidence, Notice, apply_line_health
from linepool.logic.health_status import pool_summary as health_summary
from linepool.logic.keepalive import ANSWER_DELAY, KeepAlivePlan, ServerFacts, Settled, headroom, plan_keep_alive
from linepool.logic.keepalive import Send as KeepAliveSend
from linepool.logic.keepalive_status import (
    at_risk_events,
    collect_lines,
    line_index,
    pool_summary,
    record_results,
    write_plan,
)
from linepool.logic.observations import LineSample, Observation
from linepool.logic.scaling import ScaleInputs, ScalePlan, plan_scale, remaining_inventory

# lastActivityTime is for spotting lines idle for weeks; refreshing it more often than hourly
# would rewrite status on every poll while traffic flows.
ACTIVITY_RESOLUTION = timedelta(hours=1)
# Fields that move with every message. They are refreshed whenever anything else in the status
# changes (at the latest when utilization moves by a whole percent), never on their own.
VOLATILE_KEYS = frozenset({"messagesInWindow", "newConversationsInWindow"})
# Enum members to their API strings, without the cost of the enum ``value`` descriptor per line.
_TEXT: dict[LineState | LineRole, str] = {**{s: s.value for s in LineState}, **{r: r.value for r in LineRole}}
# Keep-alive fields a line's status keeps from pass to pass (nextKeepAliveTime is recomputed).
_CARRIED_KEYS = ("lastKeepAliveTime", "keepAlive")
# A line status without keep-alive or health fields has this many keys; more means there is
# something to carry (keep-alive records) or to look at (flag risks, the last flag).
_PLAIN_LINE_KEYS = 7
_FLAGGED = LineState.FLAGGED.value
# Phases that mean the server's relay has been seen in Prometheus.
_OBSERVED_PHASES = frozenset({ServerPhase.ACTIVE.value, ServerPhase.SATURATED.value})


@dataclass(frozen=True, kw_only=True)
class ServerView:
    """A MessagingServer as the handler found it."""

    name: str
    generation: int | None = None
    created: datetime | None = None
    created_by_operator: bool = False
    spec: Mapping[str, Any] = field(default_factory=dict)
    status: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class PoolView:
    name: str
    namespace: str
    uid: str = ""
    generation: int | None = None
    spec: PoolSpec
    status: Mapping[str, Any] = field(default_factory=dict)
    paused: bool = False


@dataclass(frozen=True, kw_only=True)
class PoolMemory:
    """What the handler keeps between passes in memory; losing it on restart is harmless."""

    last_success: datetime | None = None
    first_failure: datetime | None = None
    activity: Mapping[tuple[str, str], float] = field(default_factory=dict)
    # Parsed server specs by (name, generation): the generation changes with every spec change.
    specs: Mapping[tuple[str, int], ServerSpec | SpecError] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Event:
    """A Kubernetes event to post: on the pool when ``server`` is None, else on that server."""

    server: str | None
    type: str
    reason: Reason
    message: str


@dataclass(frozen=True, kw_only=True)
class ServerOutcome:
    name: str
    status: dict[str, Any]
    assignable: bool
    valid: bool
    utilization: float | None


@dataclass(frozen=True, kw_only=True)
class PoolDecision:
    pool_status: dict[str, Any]
    servers: tuple[ServerOutcome, ...]
    events: tuple[Event, ...]
    plan: ScalePlan
    memory: PoolMemory
    utilization: float
    metrics_ok: bool
    keep_alive: KeepAlivePlan
    # Valid server specs by name: where the keep-alive sends go, and with which credentials.
    server_specs: Mapping[str, ServerSpec] = field(default_factory=dict)


# A server's credentials: None when its Secret was read fine, else (reason, message).
CredentialProblem = tuple[Reason, str]


@dataclass(frozen=True, kw_only=True)
class _ServerFacts:
    """Intermediate per-server figures the pool totals are built from."""

    outcome: ServerOutcome
    spec: ServerSpec | None
    sent: float
    quota: int
    assignable_lines: tuple[str, ...]
    total_lines: int
    has_series: bool


def whole_percent(fraction: float) -> float:
    """Utilization as status reports it: rounded down to a whole percent."""
    return math.floor(max(fraction, 0.0) * 100 + 1e-9) / 100


def needs_write(previous: Mapping[str, Any] | None, current: Mapping[str, Any]) -> bool:
    """Whether ``current`` differs from ``previous`` in anything but the volatile counters."""
    return bool(_significant(previous or {}) != _significant(current))


def _significant(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _significant(v) for k, v in value.items() if k not in VOLATILE_KEYS}
    if isinstance(value, list):
        return [_significant(v) for v in value]
    return value


def _bool_or_none(value: Any) -> bool | None:
    return bool(value) if isinstance(value, bool) else None


def _raw_line_ids(spec: Mapping[str, Any]) -> list[str]:
    lines = spec.get("lines")
    if not isinstance(lines, list):
        return []
    # Objects come from JSON, so their nested values are plain dicts (cheaper to test than Mapping).
    return [str(item["id"]) for item in lines if isinstance(item, dict) and "id" in item]


def find_line_conflicts(servers: Sequence[ServerView]) -> dict[str, str]:
    """Servers that list a line another server already holds: name -> the conflict message.

    The older server (by creation time, then name) keeps the line; the newer one is the
    invalid one, so a mistaken apply never takes a line away from a working server.
    """
    owner: dict[str, str] = {}
    conflicts: dict[str, str] = {}
    far_past = datetime.min.replace(tzinfo=None)
    ordered = sorted(servers, key=lambda s: ((s.created.replace(tzinfo=None) if s.created else far_past), s.name))
    for server in ordered:
        for index, line in enumerate(_raw_line_ids(server.spec)):
            holder = owner.get(line)
            if holder is not None and holder != server.name:
                conflicts.setdefault(
                    server.name, f"spec.lines[{index}].id: line {line} is already on server {holder}"
                )
            else:
                owner.setdefault(line, server.name)
    return conflicts


def decide_pool(
    *,
    pool: PoolView,
    servers: Sequence[ServerView],
    observation: Observation | None,
    metrics_error: str | None,
    memory: PoolMemory,
    now: datetime,
    foreign_lines: frozenset[str] = frozenset(),
    credentials: Mapping[str, CredentialProblem | None] | None = None,
    answer_delay: timedelta = ANSWER_DELAY,
    flags: Mapping[tuple[str, str], FlagEvidence] | None = None,
) -> PoolDecision:
    """Decide everything about one pool for this pass.

    ``observation`` is None when Prometheus could not be read (``metrics_error`` says why):
    then every server keeps its last known decision and no scale action is planned.
    ``foreign_lines`` are lines held by servers of other pools; they never count as spare.
    ``credentials`` says, for servers whose token was read, whether that worked.
    ``flags`` holds the forensics of lines that turned Flagged and owe their report, by (server, line).
    """
    credentials = credentials or {}
    unmeasured: set[HealthPattern] = set()
    health = _HealthPass(
        spec=pool.spec.health, flags=flags or {}, unmeasured=unmeasured, frozen=pool.paused,
        # DryRun reports risks but takes no line out of rotation, as it creates no server.
        hold=pool.spec.scaling.mode is not ScalingMode.DRY_RUN,
        in_quiet_period=quiet_period(now=now, rule=pool.spec.health.off_hours,
                                     timezone=pool.spec.quotas.timezone) is not None,
    )
    spec = pool.spec
    conflicts = find_line_conflicts(servers)
    if observation is not None and _exporters_gone(servers, observation):
        # Prometheus answered, but every server that had series has none now: the exporters are
        # gone, not the traffic. Counting that as zero would reopen saturated servers.
        observation = None
        metrics_error = "Prometheus answered, but no server of the pool has samples any more"
    metrics_ok = observation is not None
    activity: dict[tuple[str, str], float] = {}
    parsed: dict[tuple[str, int], ServerSpec | SpecError] = {}
    now_text = format_time(now)
    facts: list[_ServerFacts] = []
    events: list[Event] = []

    for server in sorted(servers, key=lambda s: s.name):
        fact = _decide_server(
            pool=pool, server=server, observation=observation, metrics_error=metrics_error,
            conflict=conflicts.get(server.name), memory=memory, now=now, now_text=now_text,
            activity=activity, events=events, parsed=parsed, credentials=credentials, health=health,
        )
        facts.append(fact)

    valid = [f for f in facts if f.spec is not None]
    counted = [f for f in valid if f.spec is not None and not f.spec.cordoned]
    total_quota = sum(f.quota for f in counted)
    # Fail static: with no fresh sample, the pool keeps the figure it last reported.
    previous_utilization = float(pool.status.get("utilization") or 0.0)
    if not metrics_ok:
        utilization = previous_utilization
    else:
        utilization = sum(f.sent for f in counted) / total_quota if total_quota else 0.0

    allocated = {line for server in servers for line in _raw_line_ids(server.spec)} | set(foreign_lines)
    spare = remaining_inventory(inventory=spec.inventory, allocated=allocated)
    # Fallback lines are held in reserve: new users go to them only when no Primary line can take any.
    fallback = {line.id for f in valid if f.spec is not None for line in f.spec.lines if line.role is LineRole.FALLBACK}
    assignable_lines = round_robin([[line for line in f.assignable_lines if line not in fallback] for f in valid]) \
        or round_robin([[line for line in f.assignable_lines if line in fallback] for f in valid])
    assignable_count = sum(len(f.assignable_lines) for f in valid)

    last_scale = _last_scale_time(pool=pool, servers=servers)
    plan = plan_scale(ScaleInputs(
        pool=pool.name, scaling=spec.scaling, metrics_ok=metrics_ok, utilization=utilization,
        assignable_lines=assignable_count, server_names={s.name for s in servers},
        remaining_inventory=spare, last_scale_time=last_scale, now=now,
    ))

    keep_alive = _plan_keep_alive(pool=pool, valid=valid, servers=servers, metrics_ok=metrics_ok, hold=health.hold,
                                  credentials=credentials, events=events, now=now, answer_delay=answer_delay)
    next_memory = _next_memory(memory=memory, fresh=metrics_ok, now=now, activity=activity, specs=parsed)
    conditions = _pool_conditions(
        pool=pool, metrics_ok=metrics_ok, metrics_error=metrics_error, plan=plan,
        assignable_count=assignable_count, memory=next_memory, now=now,
    )
    keep_alive_status, keep_alive_condition = pool_summary(plan=keep_alive, spec=spec.keep_alive)
    conditions.append(keep_alive_condition)
    events.extend(_pool_events(pool=pool, conditions=conditions, plan=plan))

    previous_recommendation = pool.status.get("recommendation") or {}
    recommendation = {
        "action": plan.action.value,
        "reason": plan.reason,
        "serverName": plan.new_servers[0].name if plan.new_servers else "",
        "lines": list(plan.new_servers[0].lines) if plan.new_servers else [],
    }
    unchanged = all(previous_recommendation.get(k) == v for k, v in recommendation.items())
    recommendation["time"] = str(previous_recommendation.get("time")) if unchanged and \
        previous_recommendation.get("time") else format_time(now)

    status: dict[str, Any] = {
        "utilization": whole_percent(utilization),
        "servers": {
            "total": len(servers),
            "assignable": sum(1 for f in valid if f.outcome.assignable),
            "saturated": sum(1 for f in valid if f.outcome.status.get("phase") == ServerPhase.SATURATED.value),
            "cordoned": sum(1 for f in valid if f.spec and f.spec.cordoned),
        },
        "lines": {
            "total": sum(f.total_lines for f in valid),
            "assignable": assignable_count,
            "inventory": len(spare),
        },
        "assignableLines": assignable_lines,
        "recommendation": recommendation,
        "keepAlive": keep_alive_status,
        "health": health_summary(lines=[line for f in valid for line in f.outcome.status["lines"]],
                                 unmeasured=unmeasured),
        "conditions": merge_conditions(
            previous=pool.status.get("conditions"), current=conditions, now=now,
            observed_generation=pool.generation,
        ),
    }
    if last_scale is not None:
        status["lastScaleTime"] = format_time(last_scale)
    if pool.status.get("lastMetricsTime"):
        status["lastMetricsTime"] = pool.status["lastMetricsTime"]
    if not metrics_ok and _was_true(pool.status, ConditionType.METRICS_AVAILABLE) and memory.last_success:
        status["lastMetricsTime"] = format_time(memory.last_success)
    if pool.generation is not None:
        status["observedGeneration"] = pool.generation

    return PoolDecision(
        pool_status=status, servers=tuple(f.outcome for f in facts), events=tuple(events), plan=plan,
        memory=next_memory, utilization=utilization, metrics_ok=metrics_ok, keep_alive=keep_alive,
        server_specs={f.outcome.name: f.spec for f in valid if f.spec is not None},
    )


def _plan_keep_alive(*, pool: PoolView, valid: Sequence["_ServerFacts"], servers: Sequence[ServerView],
                     metrics_ok: bool, hold: bool, credentials: Mapping[str, CredentialProblem | None],
                     events: list[Event], now: datetime, answer_delay: timedelta) -> KeepAlivePlan:
    """Plan keep-alives and write them into the servers' line statuses (state, times, records)."""
    spec = pool.spec
    lines_by_server = {f.outcome.name: f.outcome.status["lines"] for f in valid}
    previous = {s.name: s.status for s in servers}
    server_facts = {
        f.outcome.name: ServerFacts(
            name=f.outcome.name,
            # A paused pool freezes every action; a server whose token cannot be read sends nothing.
            can_send=not pool.paused and credentials.get(f.outcome.name) is None,
            # Without fresh metrics the quota guard is blind, so nothing is sent (fail static).
            headroom=headroom(sent=f.sent, quota=f.quota, stop_at=spec.assignment.stop_at) if metrics_ok else 0,
        )
        for f in valid
    }
    work, directory, oldest = collect_lines(lines_by_server=lines_by_server, idle_after=spec.keep_alive.idle_after,
                                            now=now, hold_flag_risks=hold)
    plan = plan_keep_alive(spec=spec.keep_alive, timezone=spec.quotas.timezone, now=now, servers=server_facts,
                           answer_delay=answer_delay, lines=work, directory=directory, oldest_activity=oldest)
    if plan.lines or plan.upcoming:
        write_plan(plan=plan, line_dicts=line_index(lines_by_server))
    at_risk_servers = Counter(server for (server, _), o in plan.lines.items() if o.state is LineState.AT_RISK)
    for f in valid:
        f.outcome.status["lineSummary"]["atRisk"] = at_risk_servers.get(f.outcome.name, 0)
    events.extend(Event(server=e.server, type=e.type, reason=e.reason, message=e.message)
                  for e in at_risk_events(plan=plan, previous_by_server=previous, spec=spec.keep_alive))
    return plan


def record_keep_alives(*, decision: PoolDecision, pool: PoolView,
                       results: Sequence[tuple[KeepAliveSend, Settled]], now: datetime) -> PoolDecision:
    """The decision after this pass's keep-alive sends: records, times, summary, condition, events."""
    if not results:
        return decision
    plan = record_results(plan=decision.keep_alive, results=results, now=now)
    line_dicts = line_index({o.name: o.status["lines"] for o in decision.servers if o.valid})
    for line_id in decision.keep_alive.upcoming:
        line_dicts.get(line_id, {}).pop("nextKeepAliveTime", None)
    write_plan(plan=plan, line_dicts=line_dicts)
    summary, cond = pool_summary(plan=plan, spec=pool.spec.keep_alive)
    pool_status = dict(decision.pool_status)
    pool_status["keepAlive"] = summary
    pool_status["conditions"] = merge_conditions(previous=pool_status["conditions"], current=[cond], now=now,
                                                 observed_generation=pool.generation)
    events = decision.events + tuple(
        Event(server=e.server, type=e.type, reason=e.reason, message=e.message)
        for _, settled in results for e in settled.events)
    return replace(decision, keep_alive=plan, pool_status=pool_status, events=events)


def _exporters_gone(servers: Sequence[ServerView], observation: Observation) -> bool:
    had_series = [s for s in servers if s.status.get("phase") in _OBSERVED_PHASES]
    return bool(had_series) and not any(observation.server(s.name) for s in servers)


def _next_memory(*, memory: PoolMemory, fresh: bool, now: datetime,
                 activity: Mapping[tuple[str, str], float],
                 specs: Mapping[tuple[str, int], ServerSpec | SpecError]) -> PoolMemory:
    if fresh:
        return PoolMemory(last_success=now, first_failure=None, activity=activity, specs=specs)
    return replace(memory, first_failure=memory.first_failure or now, specs=specs)


def _was_true(status: Mapping[str, Any], type_: ConditionType) -> bool:
    cond = find_condition(status.get("conditions"), type_)
    return cond is None or cond.get("status") == "True"


def _last_scale_time(*, pool: PoolView, servers: Sequence[ServerView]) -> datetime | None:
    """The latest scale-up: from status, or from the newest server the operator created.

    The second source survives a crash between creating a server and recording it in status,
    so a restarted operator still honours the cooldown and does not add a second server.
    """
    candidates = [t for t in [parse_time(pool.status.get("lastScaleTime"))] if t is not None]
    candidates += [s.created for s in servers if s.created_by_operator and s.created is not None]
    return max(candidates) if candidates else None


def _metrics_condition(*, ok: bool, error: str | None, memory: PoolMemory, pool: PoolView,
                       now: datetime) -> Condition:
    if ok:
        return condition(ConditionType.METRICS_AVAILABLE, True, Reason.METRICS_OK,
                         "Prometheus answered every query of the last poll")
    stale_after = pool.spec.metrics.stale_after
    since = memory.first_failure or now
    if now - since >= stale_after:
        return condition(
            ConditionType.METRICS_AVAILABLE, False, Reason.METRICS_STALE,
            f"metrics have been missing for longer than staleAfter; still holding the last decisions: {error}",
        )
    return condition(
        ConditionType.METRICS_AVAILABLE, False, Reason.METRICS_UNAVAILABLE,
        f"holding the last decisions and taking no scale action: {error}",
    )


def _pool_conditions(*, pool: PoolView, metrics_ok: bool, metrics_error: str | None, plan: ScalePlan,
                     assignable_count: int, memory: PoolMemory, now: datetime) -> list[Condition]:
    metrics = _metrics_condition(ok=metrics_ok, error=metrics_error, memory=memory, pool=pool, now=now)
    if plan.limited_by is not None:
        need = "and more capacity is needed now" if plan.needed else "so the pool cannot grow"
        limited = condition(ConditionType.SCALING_LIMITED, True, plan.limited_by,
                            f"{plan.limited_message}, {need}")
    else:
        limited = condition(ConditionType.SCALING_LIMITED, False, Reason.WITHIN_LIMITS,
                            "the pool can add a server when it needs one")
    if pool.paused:
        ready = condition(ConditionType.READY, False, Reason.PAUSED,
                          "the pool is paused (linepool.dev/paused=true); every action is frozen")
    elif not metrics_ok:
        ready = condition(ConditionType.READY, False, metrics.reason, metrics.message)
    elif assignable_count == 0:
        ready = condition(ConditionType.READY, False, Reason.NO_ASSIGNABLE_LINES,
                          "no line in the pool can take new users")
    else:
        ready = condition(ConditionType.READY, True, Reason.RECONCILED,
                          "assignment is gated from live metrics")
    spec_ok = condition(ConditionType.INVALID_SPEC, False, Reason.SPEC_VALID, "the spec is valid")
    return [ready, metrics, limited, spec_ok]


def _pool_events(*, pool: PoolView, conditions: Sequence[Condition], plan: ScalePlan) -> list[Event]:
    events: list[Event] = []
    metrics = next(c for c in conditions if c.type is ConditionType.METRICS_AVAILABLE)
    old_metrics = find_condition(pool.status.get("conditions"), ConditionType.METRICS_AVAILABLE)
    if not metrics.is_true and (old_metrics is None or old_metrics.get("reason") != metrics.reason.value):
        events.append(Event(server=None, type="Warning", reason=metrics.reason, message=metrics.message))
    if metrics.is_true and old_metrics is not None and old_metrics.get("status") == "False":
        events.append(Event(server=None, type="Normal", reason=Reason.METRICS_RESTORED,
                            message="metrics are back; decisions follow live traffic again"))
    old_action = str((pool.status.get("recommendation") or {}).get("action", ""))
    old_server = str((pool.status.get("recommendation") or {}).get("serverName", ""))
    if plan.action is RecommendedAction.BLOCKED and old_action != plan.action.value:
        events.append(Event(server=None, type="Warning", reason=Reason.SCALE_UP_BLOCKED,
                            message=f"cannot add a server: {plan.reason}"))
    if (plan.action is RecommendedAction.SCALE_UP and not pool.paused
            and (old_action != plan.action.value or old_server != plan.new_servers[0].name)
            and pool.spec.scaling.mode.value == "DryRun"):
        events.append(Event(
            server=None, type="Normal", reason=Reason.SCALE_UP_RECOMMENDED,
            message=f"DryRun: would add server {plan.new_servers[0].name} with lines "
                    f"{', '.join(plan.new_servers[0].lines)} because {plan.reason}",
        ))
    return events


def _decide_server(*, pool: PoolView, server: ServerView, observation: Observation | None,
                   metrics_error: str | None, conflict: str | None, memory: PoolMemory, now: datetime,
                   now_text: str, activity: dict[tuple[str, str], float], events: list[Event],
                   parsed: dict[tuple[str, int], ServerSpec | SpecError],
                   credentials: Mapping[str, CredentialProblem | None], health: "_HealthPass") -> _ServerFacts:
    previous = server.status
    try:
        spec = _parsed_spec(server, memory=memory, parsed=parsed)
        if conflict:
            raise SpecError(conflict.split(":", 1)[0], conflict.split(": ", 1)[1])
    except SpecError as error:
        return _invalid_server(server=server, error=error, conflict=bool(conflict), now=now,
                               events=events)

    quota = spec.daily_message_quota or pool.spec.quotas.messages_per_server_per_day
    previous_assignable = _bool_or_none(previous.get("assignable"))
    samples = observation.server(server.name) if observation is not None else None
    has_series = bool(samples)
    sent = sum(s.sent for s in samples.values()) if samples else 0.0

    if observation is None:
        # Fail static: keep the last decision; a server never decided stays out of rotation.
        assignable = bool(previous_assignable) and not spec.cordoned
        utilization = float(previous.get("utilization") or 0.0)
        phase = ServerPhase(previous.get("phase") or ServerPhase.UNKNOWN.value)
        if spec.cordoned:
            phase = ServerPhase.CORDONED
        metrics = condition(ConditionType.METRICS_AVAILABLE, False, Reason.METRICS_UNAVAILABLE,
                            f"holding the last decision: {metrics_error}")
    else:
        utilization = sent / quota
        computed = server_assignable(
            previous=previous_assignable, utilization=utilization, stop_at=pool.spec.assignment.stop_at,
            resume_at=pool.spec.assignment.resume_at, cordoned=spec.cordoned,
        )
        # A paused pool freezes assignment changes too; a first decision is still made.
        assignable = previous_assignable if pool.paused and previous_assignable is not None \
            and not spec.cordoned else computed
        if spec.cordoned:
            phase = ServerPhase.CORDONED
        elif not assignable:
            phase = ServerPhase.SATURATED
        elif not has_series:
            phase = ServerPhase.PENDING
        else:
            phase = ServerPhase.ACTIVE
        metrics = condition(ConditionType.METRICS_AVAILABLE, True, Reason.METRICS_OK,
                            "traffic of every line is read from Prometheus") if has_series else condition(
            ConditionType.METRICS_AVAILABLE, False, Reason.NO_SERIES,
            "Prometheus has no samples for this server yet; it counts as zero traffic")

    lines = _line_statuses(pool=pool, server=server, spec=spec, samples=samples, fresh=observation is not None,
                           assignable=assignable, memory=memory, now=now, now_text=now_text, activity=activity,
                           health=health, health_samples=observation.health.get(server.name, {})
                           if observation is not None else None, events=events)
    assignable_ids = tuple(line["id"] for line in lines if line["assignable"])

    if spec.cordoned:
        assign_cond = condition(ConditionType.ASSIGNABLE, False, Reason.SERVER_CORDONED,
                                "the server is cordoned (spec.cordoned=true)")
    elif assignable:
        assign_cond = condition(
            ConditionType.ASSIGNABLE, True, Reason.BELOW_STOP_AT,
            f"utilization is below stopAt {round(pool.spec.assignment.stop_at * 100)}%")
    else:
        assign_cond = condition(
            ConditionType.ASSIGNABLE, False, Reason.SERVER_SATURATED,
            f"utilization reached stopAt {round(pool.spec.assignment.stop_at * 100)}%; new users resume "
            f"below resumeAt {round(pool.spec.assignment.resume_at * 100)}%")

    events.extend(_server_events(server=server, spec=spec, assignable=assignable,
                                 previous_assignable=previous_assignable, fresh=observation is not None,
                                 pool=pool, utilization=utilization))
    status: dict[str, Any] = {
        "phase": phase.value,
        "utilization": whole_percent(utilization) if observation is not None else utilization,
        "messagesInWindow": round(sent) if observation is not None else int(previous.get("messagesInWindow") or 0),
        "quota": quota,
        "assignable": assignable,
        "lineSummary": {"total": len(lines), "assignable": len(assignable_ids),
                        "flagRisk": sum(1 for line in lines if "flagRisks" in line)},
        "lines": lines,
        "conditions": merge_conditions(
            previous=previous.get("conditions"),
            current=[assign_cond, metrics, condition(ConditionType.INVALID_SPEC, False, Reason.SPEC_VALID,
                                                     "the spec is valid"),
                     *_credentials_condition(server=server, credentials=credentials, events=events)],
            now=now, observed_generation=server.generation,
        ),
    }
    if server.generation is not None:
        status["observedGeneration"] = server.generation
    outcome = ServerOutcome(name=server.name, status=status, assignable=assignable, valid=True,
                            utilization=utilization)
    return _ServerFacts(
        outcome=outcome, spec=spec, sent=sent if observation is not None else utilization * quota,
        quota=quota, assignable_lines=assignable_ids, total_lines=len(lines), has_series=has_series,
    )


def _credentials_condition(*, server: ServerView, credentials: Mapping[str, CredentialProblem | None],
                           events: list[Event]) -> list[Condition]:
    """CredentialsAvailable, once the server's token has been read (only keep-alive sends need it)."""
    if server.name not in credentials:
        return []
    problem = credentials[server.name]
    if problem is None:
        return [condition(ConditionType.CREDENTIALS_AVAILABLE, True, Reason.CREDENTIALS_FOUND,
                          "the API token was read from spec.credentialsSecretRef")]
    reason, message = problem
    text = f"spec.credentialsSecretRef: {message}; keep-alive sends from this server are stopped"
    if reports_new_problem(server.status.get("conditions"), ConditionType.CREDENTIALS_AVAILABLE, text,
                           problem=False):
        events.append(Event(server=server.name, type="Warning", reason=reason,
                            message=f"keep-alive sends from this server stop until spec.credentialsSecretRef "
                                    f"can be read: {message}"))
    return [condition(ConditionType.CREDENTIALS_AVAILABLE, False, reason, text)]


def _parsed_spec(server: ServerView, *, memory: PoolMemory,
                 parsed: dict[tuple[str, int], ServerSpec | SpecError]) -> ServerSpec:
    if server.generation is None:
        return parse_server_spec(server.spec)
    key = (server.name, server.generation)
    result = memory.specs.get(key)
    if result is None:
        try:
            result = parse_server_spec(server.spec)
        except SpecError as error:
            result = error
    parsed[key] = result
    if isinstance(result, SpecError):
        raise result
    return result


def _invalid_server(*, server: ServerView, error: SpecError, conflict: bool, now: datetime,
                    events: list[Event]) -> _ServerFacts:
    reason = Reason.LINE_CONFLICT if conflict else Reason.INVALID_SPEC
    message = f"{error.field}: {error.reason}"
    if reports_new_problem(server.status.get("conditions"), ConditionType.INVALID_SPEC, message):
        events.append(Event(server=server.name, type="Warning", reason=Reason.INVALID_SPEC,
                            message=f"skipping this server until its spec is fixed: {message}"))
    status: dict[str, Any] = {
        "phase": ServerPhase.PENDING.value,
        "assignable": False,
        "conditions": merge_conditions(
            previous=server.status.get("conditions"),
            current=[
                condition(ConditionType.INVALID_SPEC, True, reason, message),
                condition(ConditionType.ASSIGNABLE, False, Reason.INVALID_SPEC,
                          "the spec is invalid; see the InvalidSpec condition"),
            ],
            now=now, observed_generation=server.generation,
        ),
    }
    if server.generation is not None:
        status["observedGeneration"] = server.generation
    outcome = ServerOutcome(name=server.name, status=status, assignable=False, valid=False, utilization=None)
    return _ServerFacts(outcome=outcome, spec=None, sent=0.0, quota=0, assignable_lines=(), total_lines=0,
                        has_series=False)


def _server_events(*, server: ServerView, spec: ServerSpec, assignable: bool, previous_assignable: bool | None,
                   fresh: bool, pool: PoolView, utilization: float) -> list[Event]:
    if previous_assignable == assignable or (previous_assignable is None and assignable) or not fresh:
        return []
    percent = int(utilization * 100)
    if not assignable and spec.cordoned:
        return [Event(server=server.name, type="Normal", reason=Reason.SERVER_CORDONED,
                      message="server is cordoned; new users go elsewhere")]
    if not assignable:
        return [Event(server=server.name, type="Normal", reason=Reason.SERVER_SATURATED,
                      message=f"utilization {percent}% reached stopAt "
                              f"{round(pool.spec.assignment.stop_at * 100)}%; new users go elsewhere")]
    return [Event(server=server.name, type="Normal", reason=Reason.ASSIGNMENT_RESUMED,
                  message=f"utilization {percent}% is below resumeAt "
                          f"{round(pool.spec.assignment.resume_at * 100)}%; taking new users again")]


@dataclass(frozen=True, kw_only=True)
class _HealthPass:
    """This pass's line-health settings, and the pool-wide set of patterns that cannot be measured."""

    spec: Health
    flags: Mapping[tuple[str, str], FlagEvidence]
    unmeasured: set[HealthPattern]
    frozen: bool
    hold: bool
    in_quiet_period: bool
    # Figures already judged healthy in this pass, with their unmeasured patterns.
    healthy: dict[HealthSample, frozenset[HealthPattern]] = field(default_factory=dict)


def _line_statuses(*, pool: PoolView, server: ServerView, spec: ServerSpec,
                   samples: Mapping[str, LineSample] | None, fresh: bool, assignable: bool, memory: PoolMemory,
                   now: datetime, now_text: str, activity: dict[tuple[str, str], float], health: _HealthPass,
                   health_samples: Mapping[str, HealthSample] | None, events: list[Event]) -> list[dict[str, Any]]:
    previous_lines = {
        str(item.get("id")): item for item in server.status.get("lines") or [] if isinstance(item, dict)
    }
    quota = pool.spec.quotas.new_conversations_per_line_per_day
    samples = samples or {}
    remembered = memory.activity
    lines: list[dict[str, Any]] = []
    for line in spec.lines:
        old = previous_lines.get(line.id, {})
        sample = samples.get(line.id)
        state: LineState
        if fresh:
            sent = sample.sent if sample else 0.0
            new_conversations = sample.new_conversations if sample else 0.0
            if sample and sample.state is not None and sample.state is not LineState.ACTIVE:
                state = sample.state
            else:
                state = LineState.ACTIVE if sent > 0 else LineState.IDLE
        else:
            sent = float(old.get("messagesInWindow") or 0)
            new_conversations = float(old.get("newConversationsInWindow") or 0)
            state = LineState(old.get("state") or LineState.IDLE.value)
        key = (server.name, line.id)
        current = sample.activity if sample else None
        old_activity = old.get("lastActivityTime")
        if current is not None:
            activity[key] = current
        # The common case, first: a known line whose counters did not move keeps its time.
        if sample is not None and sample.last_seen is not None:
            last_activity = _seen_activity(old=old_activity, seen=sample.last_seen)
        elif isinstance(old_activity, str) and old_activity and (current is None or remembered.get(key) == current):
            last_activity = old_activity
        else:
            last_activity = _last_activity(old=old_activity, current=current, before=remembered.get(key),
                                           now=now, now_text=now_text)
        entry: dict[str, Any] = {
            "id": line.id,
            "role": _TEXT[line.role],
            "state": _TEXT[state],
            "assignable": line_assignable(server_assignable=assignable, state=state,
                                          new_conversations=new_conversations, new_conversation_quota=quota),
            "messagesInWindow": round(sent),
            "newConversationsInWindow": round(new_conversations),
            "lastActivityTime": last_activity,
        }
        # The keep-alive memory of the line rides along; the planner then updates what it is about.
        if len(old) > _PLAIN_LINE_KEYS:
            for carried in _CARRIED_KEYS:
                if carried in old:
                    entry[carried] = old[carried]
        figures = health_samples.get(line.id) if health_samples is not None else None
        # A line with nothing of health to carry (a plain status, not Flagged, no report owed)
        # whose figures were already judged healthy this pass costs one lookup: most lines of a
        # pool, at every poll, share their server's all-zero sample.
        plain = len(old) <= _PLAIN_LINE_KEYS and old.get("state") != _FLAGGED and key not in health.flags
        known = health.healthy.get(figures) if plain and figures is not None else None
        unmeasured: Collection[HealthPattern]
        if known is not None:
            unmeasured = known
        else:
            notices: list[Notice] = []
            unmeasured = apply_line_health(
                entry=entry, old=old, sample=figures, spec=health.spec, now=now,
                in_quiet_period=health.in_quiet_period, frozen=health.frozen, flag=health.flags.get(key),
                notices=notices)
            if notices:
                events.extend(Event(server=server.name, type=n.type, reason=n.reason, message=n.message)
                              for n in notices)
            elif plain and figures is not None and "flagRisks" not in entry:
                health.healthy[figures] = frozenset(unmeasured)
        if unmeasured:
            health.unmeasured.update(unmeasured)
        if health.hold and "flagRisks" in entry:
            entry["assignable"] = False  # a line at risk of a flag takes no new users
        lines.append(entry)
    return lines


def _seen_activity(*, old: Any, seen: float) -> str:
    """The relay's own last-activity gauge wins, but moves status only by whole hours."""
    moment = datetime.fromtimestamp(seen, tz=UTC)
    previous = parse_time(old)
    if previous is not None and abs(moment - previous) < ACTIVITY_RESOLUTION:
        return str(old)
    return format_time(moment)


def _last_activity(*, old: Any, current: float | None, before: float | None, now: datetime, now_text: str) -> str:
    """When the line last sent or received, at hourly resolution, as status writes it.

    A line seen for the first time starts its clock now, not at the epoch. Activity is a rise of
    the sent+received counters between two polls; a counter reset (relay restart) also counts.
    """
    if not isinstance(old, str) or not old:
        return now_text
    if current is None or before is None or current == before:
        return old
    previous = parse_time(old)
    if previous is None or now - previous >= ACTIVITY_RESOLUTION:
        return now_text
    return old
