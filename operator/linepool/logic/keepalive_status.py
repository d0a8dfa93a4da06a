"""Between keep-alive plans and status: read lines out of MessagingServer status, write plans back.

The decision pass calls these with the line dicts it has just built for this poll. What they
write (``state`` AtRisk, ``lastKeepAliveTime``, ``nextKeepAliveTime``, ``keepAlive``) is the
only memory of keep-alive the operator has, so a restart picks up exactly where it left off.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from linepool.api.conditions import Condition, format_time, parse_time
from linepool.api.spec import KeepAlive
from linepool.api.types import KeepAlivePhase, LineState, Reason
from linepool.logic.keepalive import (
    KeepAliveEvent,
    KeepAlivePlan,
    LineFacts,
    LineOutcome,
    PoolLine,
    Send,
    Settled,
    exchange_from_status,
    keep_alive_condition,
    next_times,
)

_STATES = {state.value: state for state in LineState}


def collect_lines(*, lines_by_server: Mapping[str, Sequence[Mapping[str, Any]]], idle_after: timedelta,
                  now: datetime, hold_flag_risks: bool = True,
                  ) -> tuple[list[LineFacts], dict[str, PoolLine], datetime | None]:
    """The planner's inputs from this poll's line dicts (which carry the last poll's keep-alive fields).

    Returns the lines that may need work (idle past ``idle_after``, or with an exchange recorded),
    a directory of every line (built only when some line needs work), and the oldest last
    traffic. Times are compared as RFC 3339 text, so a busy line costs a few lookups and a
    comparison, not a parse: a steady pool of 10,000 lines is read in a few milliseconds.
    With ``hold_flag_risks``, a line at risk of an Apple flag neither sends nor answers a
    keep-alive while the risk lasts: to the planner it is as good as Flagged.
    """
    idle_before = format_time(now - idle_after)
    oldest = "~"  # sorts after every RFC 3339 time
    work: list[LineFacts] = []
    for server, lines in lines_by_server.items():
        for line in lines:
            activity = line.get("lastActivityTime") or ""
            kept_alive = line.get("lastKeepAliveTime") or ""
            quiet = kept_alive if kept_alive > activity else activity
            if quiet < oldest:  # noqa: PLR1730 (a hot loop: a call to min() costs more)
                oldest = quiet
            record = line.get("keepAlive")
            if record is None and quiet > idle_before:
                continue
            work.append(LineFacts(
                server=server, line=line["id"], state=_planning_state(line, hold=hold_flag_risks),
                last_activity=parse_time(activity) or now, last_keep_alive=parse_time(kept_alive),
                exchange=exchange_from_status(record),
            ))
    directory: dict[str, PoolLine] = {}
    if work:
        for server, lines in lines_by_server.items():
            for line in lines:
                activity = line.get("lastActivityTime") or ""
                kept_alive = line.get("lastKeepAliveTime") or ""
                directory[line["id"]] = PoolLine(server, _planning_state(line, hold=hold_flag_risks),
                                                 kept_alive if kept_alive > activity else activity)
    return work, directory, parse_time(oldest)


def _planning_state(line: Mapping[str, Any], *, hold: bool) -> LineState:
    if hold and line.get("flagRisks"):
        return LineState.FLAGGED
    return _STATES.get(line.get("state", ""), LineState.IDLE)


def write_plan(*, plan: KeepAlivePlan, line_dicts: Mapping[str, dict[str, Any]]) -> None:
    """Write the keep-alive fields of the lines the plan is about into this poll's line dicts."""
    for (_, line_id), outcome in plan.lines.items():
        line = line_dicts.get(line_id)
        if line is None:
            continue
        if outcome.state is LineState.AT_RISK:
            line["state"] = LineState.AT_RISK.value
        _set_or_drop(line, "lastKeepAliveTime", outcome.last_keep_alive)
        if outcome.exchange is not None:
            line["keepAlive"] = outcome.exchange.to_status()
        else:
            line.pop("keepAlive", None)
    for line_id, moment in plan.upcoming.items():
        if line_id in line_dicts:
            line_dicts[line_id]["nextKeepAliveTime"] = format_time(moment)


def line_index(lines_by_server: Mapping[str, Sequence[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    return {line["id"]: line for lines in lines_by_server.values() for line in lines}


def _set_or_drop(line: dict[str, Any], key: str, moment: datetime | None) -> None:
    if moment is None:
        line.pop(key, None)
    else:
        line[key] = format_time(moment)


def record_results(*, plan: KeepAlivePlan, results: Iterable[tuple[Send, Settled]], now: datetime) -> KeepAlivePlan:
    """The plan after this pass's sends: new exchange records, and the lines they touched."""
    lines = dict(plan.lines)
    for send, settled in results:
        lines[send.owner] = replace(lines[send.owner], exchange=settled.exchange)
        for line in settled.touched:
            entry = plan.directory.get(line)
            if entry is None:
                continue  # a partner handle outside the pool
            key = (entry.server, line)
            current = lines.get(key)
            if current is None:
                # A busy partner line: it now has a keep-alive to show, and nothing else changes.
                current = LineOutcome(state=entry.state, exchange=None, last_keep_alive=now,
                                      idle=False, due=False)
            lines[key] = replace(current, last_keep_alive=now, due=False)
    upcoming = next_times((o.exchange for o in lines.values()), pool_lines=plan.directory)
    return replace(plan, lines=lines, upcoming=upcoming)


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
