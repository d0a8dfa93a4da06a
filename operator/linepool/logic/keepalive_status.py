"""Between keep-alive plans and status: read lines out of MessagingServer status, write plans back.

The decision pass calls these with the line dicts it has just built for this poll. What they
write (``state`` AtRisk, ``lastKeepAliveTime``, ``nextKeepAliveTime``, ``keepAlive``) is the
only memory of keep-alive the operator has, so a restart picks up exactly where it left off.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from linepool.api.conditions import Condition, format_time, parse_time
from linepool.api.spec import KeepAlive
from linepool.api.types import KeepAlivePhase, LineState, Reason
from linepool.logic.keepalive import (
    KeepAliveEvent,
    KeepAlivePlan,
    LineFacts,
    Send,
    Settled,
    exchange_from_status,
    keep_alive_condition,
    next_times,
)

_STATES = {state.value: state for state in LineState}


def collect_lines(*, lines_by_server: Mapping[str, Sequence[Mapping[str, Any]]],
                  previous_by_server: Mapping[str, Mapping[str, Any]], now: datetime) -> list[LineFacts]:
    """The planner's view of every line: this poll's state and activity, last poll's keep-alive record."""
    out: list[LineFacts] = []
    for server, lines in lines_by_server.items():
        previous = {str(item.get("id")): item for item in previous_by_server.get(server, {}).get("lines") or ()
                    if isinstance(item, Mapping)}
        for line in lines:
            old = previous.get(line["id"], {})
            out.append(LineFacts(
                server=server, line=line["id"], state=_STATES.get(line.get("state", ""), LineState.IDLE),
                last_activity=parse_time(line.get("lastActivityTime")) or now,
                last_keep_alive=parse_time(old.get("lastKeepAliveTime")),
                exchange=exchange_from_status(old.get("keepAlive")),
            ))
    return out


def write_plan(*, plan: KeepAlivePlan, lines_by_server: Mapping[str, Sequence[dict[str, Any]]]) -> None:
    """Write each line's keep-alive fields into this poll's line dicts."""
    upcoming = next_times((o.exchange for o in plan.lines.values()), pool_lines={key[1] for key in plan.lines})
    for server, lines in lines_by_server.items():
        for line in lines:
            outcome = plan.lines.get((server, line["id"]))
            if outcome is None:
                continue
            if outcome.state is LineState.AT_RISK:
                line["state"] = LineState.AT_RISK.value
            _set_or_drop(line, "lastKeepAliveTime", outcome.last_keep_alive)
            _set_or_drop(line, "nextKeepAliveTime", upcoming.get(line["id"]))
            if outcome.exchange is not None:
                line["keepAlive"] = outcome.exchange.to_status()
            else:
                line.pop("keepAlive", None)


def _set_or_drop(line: dict[str, Any], key: str, moment: datetime | None) -> None:
    if moment is None:
        line.pop(key, None)
    else:
        line[key] = format_time(moment)


def record_results(*, plan: KeepAlivePlan, results: Iterable[tuple[Send, Settled]], now: datetime) -> KeepAlivePlan:
    """The plan after this pass's sends: new exchange records, and the lines they touched."""
    lines = dict(plan.lines)
    key_of = {key[1]: key for key in lines}
    for send, settled in results:
        lines[send.owner] = replace(lines[send.owner], exchange=settled.exchange)
        for line in settled.touched:
            key = key_of.get(line)
            if key is not None:
                lines[key] = replace(lines[key], last_keep_alive=now, due=False)
    return replace(plan, lines=lines)


def at_risk_events(*, plan: KeepAlivePlan, previous_by_server: Mapping[str, Mapping[str, Any]],
                   spec: KeepAlive) -> list[KeepAliveEvent]:
    """A Warning on the server when one of its lines newly crosses the deadline."""
    events: list[KeepAliveEvent] = []
    for (server, line), outcome in plan.lines.items():
        if outcome.state is not LineState.AT_RISK:
            continue
        was = next((item.get("state") for item in previous_by_server.get(server, {}).get("lines") or ()
                    if isinstance(item, Mapping) and item.get("id") == line), None)
        if was == LineState.AT_RISK.value:
            continue
        plan_text = "a keep-alive is planned" if outcome.exchange is not None else (
            "keep-alive is disabled for the pool" if not spec.enabled else "no keep-alive could be planned yet")
        events.append(KeepAliveEvent(
            server=server, type="Warning", reason=Reason.LINE_AT_RISK,
            message=f"line {line} has had no traffic for longer than the deadline and may be deactivated by "
                    f"Apple; {plan_text}"))
    return events


def pool_summary(*, plan: KeepAlivePlan, spec: KeepAlive) -> tuple[dict[str, Any], Condition]:
    """``status.keepAlive`` and the KeepAliveHealthy condition of the pool."""
    failed_today = sum(1 for o in plan.lines.values() if o.exchange is not None
                       and o.exchange.phase is KeepAlivePhase.FAILED and o.exchange.day == plan.today)
    at_risk = [line for (_, line), o in plan.lines.items() if o.state is LineState.AT_RISK]
    return plan.summary(), keep_alive_condition(plan=plan, spec=spec, failed_today=failed_today,
                                                at_risk_lines=at_risk)
