"""Capacity planning in model mode: a pool simulated hour by hour through the operator's own decisions.

This module owns the traffic model (:class:`TrafficModel`), the simulation (:func:`simulate`) and its
result (:class:`PlanResult`). Every decision the operator makes is taken by the operator's code:
a server's assignability by :func:`~linepool.logic.assignment.server_assignable` (with its
hysteresis), a line's by :func:`~linepool.logic.assignment.line_assignable`, the order new users
are placed in by :func:`~linepool.logic.assignment.round_robin`, and every scale-up by
:func:`~linepool.logic.scaling.plan_scale`, with the same inputs ``decide_pool`` gives it. The
model only supplies the traffic: who arrives, and how many messages their lines send.

Simplifications, each chosen so that the figures err on the side of needing capacity sooner:

- The quota window is rolling 24 hours, as ``Rolling24h``. A ``CalendarDay`` pool is planned with
  the same rolling window: over whole days the two count the same messages, and the rolling one
  never resets at midnight, so it is the stricter of the two.
- Time is UTC, and the hour-of-day shape is read in UTC.
- Every line is Active or Idle (no line is Flagged, Deactivated or held by the health rules), and
  Fallback lines are treated like Primary ones.
- A new user who finds no line with budget that hour is refused and counted; they do not retry.
- Metrics are always fresh, and the pool is never paused.

Speed: a year of 1,000 servers is 8.8 million server-hours, so the per-server state is kept in
plain lists of ints and floats, and per-line work is done only where a line's figures change
(a placement, an expiring placement, churn).
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from itertools import compress
from operator import truediv

from linepool.api.spec import PoolSpec
from linepool.api.types import LineState, Reason, RecommendedAction
from linepool.logic.assignment import line_assignable, round_robin, server_assignable
from linepool.logic.scaling import ScaleInputs, mode_allows_changes, plan_scale

HOURS_PER_DAY = 24
DAYS_PER_WEEK = 7
MAX_DAYS = 730
DEFAULT_LEAD_TIME = timedelta(days=7)
# Synthetic lines of the unlimited-inventory run; never a valid line id, so never confused with one.
PLANNED_LINE_PREFIX = "planned-"

# A weekday-like day in UTC: quiet at night, rising through the morning, peaking in the evening.
# Relative weights, normalised below so that they sum to 1.
_DAY_CURVE = (1, 0.6, 0.4, 0.3, 0.3, 0.5, 1, 2, 3.5, 4.5, 5, 5.5,
              6, 6, 5.5, 5.5, 6, 6.5, 7.5, 8, 8, 7, 5, 2.5)
DEFAULT_HOUR_SHAPE: tuple[float, ...] = tuple(w / sum(_DAY_CURVE) for w in _DAY_CURVE)
FLAT_HOUR_SHAPE: tuple[float, ...] = (1 / HOURS_PER_DAY,) * HOURS_PER_DAY


@dataclass(frozen=True, kw_only=True)
class TrafficModel:
    """What the users do. Rates are per day; growth and churn are fractions per week."""

    new_users_per_day: float
    weekly_growth: float = 0.0
    messages_per_user_per_day: float
    weekly_churn: float = 0.0
    # Users who write first. Carried into the report; the health rules are not simulated.
    inbound_first: float = 1.0
    # Users already on the pool's lines at the start, spread evenly over the starting servers' lines.
    initial_users: int = 0
    hour_shape: tuple[float, ...] = DEFAULT_HOUR_SHAPE

    def __post_init__(self) -> None:
        if len(self.hour_shape) != HOURS_PER_DAY or any(w < 0 for w in self.hour_shape):
            raise ValueError("hour_shape must be 24 non-negative weights")
        if not math.isclose(sum(self.hour_shape), 1.0, abs_tol=1e-6):
            raise ValueError(f"hour_shape must sum to 1, not {sum(self.hour_shape):g}")
        for name in ("new_users_per_day", "weekly_growth", "messages_per_user_per_day", "weekly_churn"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if not 0 <= self.inbound_first <= 1 or not 0 <= self.weekly_churn <= 1:
            raise ValueError("inbound_first and weekly_churn are shares between 0 and 1")
        if self.initial_users < 0:
            raise ValueError("initial_users must not be negative")

    def new_users_on(self, day: int) -> float:
        """New users arriving on ``day`` (0 = the first), compounded weekly growth applied daily."""
        return float(self.new_users_per_day * (1 + self.weekly_growth) ** (day / DAYS_PER_WEEK))


@dataclass(frozen=True, kw_only=True)
class PlanServer:
    """A server at the start of the plan: its name, its lines and its own quota (None: the pool's)."""

    name: str
    lines: tuple[str, ...]
    quota: int | None = None
    cordoned: bool = False


@dataclass(frozen=True, kw_only=True)
class PlanDay:
    day: int
    date: date
    users: int
    messages: int
    servers: int
    lines: int
    pool_utilization: float  # peak of the day
    max_server_utilization: float  # peak of the day, over uncordoned servers
    saturated: int  # peak of the day: servers out of rotation because of their utilization
    scale_ups: int  # servers added that day
    recommended: int  # ScaleUp recommendations not carried out (scaling mode Off or DryRun)
    spare_inventory: int  # at the end of the day
    refused: int  # new users who found no line with budget
    line_initiated: int  # new users whose conversation the line started (1 - inbound_first)


@dataclass(frozen=True, kw_only=True)
class PlanSummary:
    first_scale_up_day: int | None
    inventory_exhausted_day: int | None
    servers_needed_at_end: int
    lines_needed_at_end: int
    lines_to_order: int
    order_by: date | None


@dataclass(frozen=True, kw_only=True)
class PlanResult:
    days: tuple[PlanDay, ...]
    summary: PlanSummary
    scale_up_times: tuple[datetime, ...] = field(default=())


@dataclass(kw_only=True)
class _Run:
    """The outcome of one simulation run, before the two runs are combined."""

    days: list[PlanDay]
    scale_up_times: list[datetime]
    servers: int
    lines: int
    planned_used: int
    exhausted_day: int | None
    inventory_short: bool


def simulate(
    *,
    spec: PoolSpec,
    servers: Sequence[PlanServer],
    model: TrafficModel,
    days: int,
    start: datetime,
    pool: str = "pool",
    lead_time: timedelta = DEFAULT_LEAD_TIME,
) -> PlanResult:
    """Simulate ``days`` days of the pool from ``start``, and say what it needs.

    The table comes from a run with the pool's real inventory. What the pool *needs* (servers and
    lines at the end, lines to order) comes from a second run whose inventory never runs out: after
    the pool's own spare lines it draws synthetic ones (``planned-N``). Its servers and lines at the
    end are what the pool would have if it could always grow, and the synthetic lines it used are
    the lines to order. When the real run was never held back by its inventory the two runs are the
    same, and the second is not run; when it was, planning takes twice as long (the second run
    starts again from day 0 rather than from the first shortage).
    """
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"days must be between 1 and {MAX_DAYS}, not {days}")
    real = _run(spec=spec, servers=servers, model=model, days=days, start=start, pool=pool, unlimited=False)
    unlimited = real
    if real.inventory_short:
        unlimited = _run(spec=spec, servers=servers, model=model, days=days, start=start, pool=pool, unlimited=True)
    first_scale_up = next((row.day for row in real.days if row.scale_ups or row.recommended), None)
    lines_to_order = unlimited.planned_used
    order_by: date | None = None
    if lines_to_order and real.exhausted_day is not None:
        # Never in the past: a date before the start means "order now".
        order_by = max(start.date(), (start + timedelta(days=real.exhausted_day) - lead_time).date())
    return PlanResult(
        days=tuple(real.days),
        scale_up_times=tuple(real.scale_up_times),
        summary=PlanSummary(
            first_scale_up_day=first_scale_up,
            inventory_exhausted_day=real.exhausted_day,
            servers_needed_at_end=unlimited.servers,
            lines_needed_at_end=unlimited.lines,
            lines_to_order=lines_to_order,
            order_by=order_by,
        ),
    )


def _run(*, spec: PoolSpec, servers: Sequence[PlanServer], model: TrafficModel, days: int, start: datetime,
         pool: str, unlimited: bool) -> _Run:
    scaling = spec.scaling
    stop_at, resume_at = spec.assignment.stop_at, spec.assignment.resume_at
    budget = spec.quotas.new_conversations_per_line_per_day
    default_quota = spec.quotas.messages_per_server_per_day
    template_quota = scaling.server_template.spec.get("dailyMessageQuota")
    new_server_quota = template_quota if isinstance(template_quota, int) and template_quota > 0 else default_quota
    applies = mode_allows_changes(scaling.mode, paused=False)
    shape = model.hour_shape

    # Per server (index s), in the order servers are listed and then created.
    names: list[str] = []
    quotas: list[int] = []
    cordoned: list[bool] = []
    server_lines: list[list[int]] = []  # global line indices
    server_users: list[int] = []
    previous: list[bool | None] = []
    window: list[float] = []  # messages in the last 24 hours
    # Messages sent in each of the last 24 hours: ring[slot][s], slot-major so an hour swaps one list.
    ring: list[list[float]] = [[] for _ in range(HOURS_PER_DAY)]
    open_lines: list[list[str]] = []  # the server's lines that pass line_assignable, in spec order
    # Per line (index i).
    line_ids: list[str] = []
    line_server: list[int] = []
    line_users: list[int] = []
    line_new: list[int] = []  # new conversations in the last 24 hours
    line_churn_carry: list[float] = []
    line_open: list[bool] = []  # the line's half of line_assignable, as last computed
    index_of: dict[str, int] = {}
    allocated: set[str] = set()

    def add_server(name: str, lines: Sequence[str], quota: int, is_cordoned: bool) -> None:
        s = len(names)
        names.append(name)
        quotas.append(quota)
        cordoned.append(is_cordoned)
        previous.append(None)
        window.append(0.0)
        for hourly in ring:
            hourly.append(0.0)
        server_users.append(0)
        indices = []
        for line in lines:
            i = len(line_ids)
            line_ids.append(line)
            line_server.append(s)
            line_users.append(0)
            line_new.append(0)
            line_churn_carry.append(0.0)
            line_open.append(False)
            index_of[line] = i
            allocated.add(line)
            indices.append(i)
        server_lines.append(indices)
        open_lines.append([])
        for i in indices:
            recheck(i)
        reopen(s)

    def recheck(i: int) -> bool:
        """Recompute the line's half of line_assignable after its counters changed; True if it flipped.

        The server's half (server_assignable) is applied each hour, when the round-robin list is built.
        """
        state = LineState.ACTIVE if line_users[i] else LineState.IDLE
        now_open = line_assignable(server_assignable=True, state=state, new_conversations=line_new[i],
                                   new_conversation_quota=budget)
        flipped = now_open != line_open[i]
        line_open[i] = now_open
        return flipped

    def reopen(s: int) -> None:
        open_lines[s] = [line_ids[i] for i in server_lines[s] if line_open[i]]

    for server in servers:
        add_server(server.name, server.lines, server.quota or default_quota, server.cordoned)
    spare: list[str] = [line for line in spec.inventory if line not in allocated]
    planned_used = 0

    # Users already there: spread evenly over the starting lines, sending as they did yesterday.
    starting_lines = [i for s in range(len(names)) if not cordoned[s] for i in server_lines[s]]
    if model.initial_users and starting_lines:
        per, extra = divmod(model.initial_users, len(starting_lines))
        for k, i in enumerate(starting_lines):
            line_users[i] = per + (1 if k < extra else 0)
            server_users[line_server[i]] += line_users[i]
        for s in range(len(names)):
            for slot in range(HOURS_PER_DAY):
                sent = server_users[s] * model.messages_per_user_per_day * shape[(start.hour + slot) % HOURS_PER_DAY]
                ring[slot][s] = sent
                window[s] += sent

    # The operator's first pass happens before any user arrives: servers start with a decision.
    previous = [
        server_assignable(previous=None, utilization=w / q, stop_at=stop_at, resume_at=resume_at, cordoned=c)
        for w, q, c in zip(window, quotas, cordoned, strict=True)
    ]
    placed_at: list[list[int]] = [[] for _ in range(HOURS_PER_DAY)]  # lines given a new user, by hour slot
    arrival_carry = 0.0
    outbound_carry = 0.0
    churn_per_day = 1 - (1 - model.weekly_churn) ** (1 / DAYS_PER_WEEK)
    last_scale: datetime | None = None
    cursor = 0
    rows: list[PlanDay] = []
    scale_up_times: list[datetime] = []
    exhausted_day: int | None = None
    inventory_short = False
    names_set = set(names)
    any_cordoned = any(cordoned)  # new servers are never cordoned

    for day in range(days):
        arrivals_today = model.new_users_on(day)
        if day and churn_per_day:
            _churn(line_users=line_users, line_server=line_server, server_users=server_users,
                   carry=line_churn_carry, rate=churn_per_day)
        peak_pool = peak_server = 0.0
        peak_saturated = scale_ups = recommended = refused = outbound = 0
        messages = 0.0
        for hour in range(HOURS_PER_DAY):
            t = day * HOURS_PER_DAY + hour
            now = start + timedelta(hours=t)
            slot = t % HOURS_PER_DAY
            weight = shape[now.hour]

            # Placements of 24 hours ago leave the lines' new-conversation windows.
            expired = placed_at[slot]
            if expired:
                touched = set()
                for i in expired:
                    line_new[i] -= 1
                    if recheck(i):
                        touched.add(line_server[i])
                for s in touched:
                    reopen(s)
                placed_at[slot] = []

            # New users arrive, and go round-robin to the lines the operator publishes as assignable.
            arrival_carry += arrivals_today * weight
            wanted = int(arrival_carry)
            arrival_carry -= wanted
            placed = 0
            while placed < wanted:
                rotation = [s for s in range(len(names)) if previous[s] and open_lines[s]]
                if not rotation:
                    break
                start_at = cursor % len(rotation)
                rotation = rotation[start_at:] + rotation[:start_at]
                # round_robin takes every server's first line before any second one, so with a cap
                # below the number of servers only the first ``cap`` servers can appear: pass just those.
                cap = wanted - placed
                order = round_robin([open_lines[s] for s in rotation[:cap]], cap=cap)
                touched = set()
                placed_now = placed_at[slot]
                for line in order:
                    # recheck(), inlined: this runs once per placed user.
                    i = index_of[line]
                    line_users[i] += 1
                    line_new[i] += 1
                    server_users[line_server[i]] += 1
                    placed_now.append(i)
                    now_open = line_assignable(server_assignable=True, state=LineState.ACTIVE,
                                               new_conversations=line_new[i], new_conversation_quota=budget)
                    if now_open != line_open[i]:
                        line_open[i] = now_open
                        touched.add(line_server[i])
                for s in touched:
                    reopen(s)
                placed += len(order)
                cursor += len(order)
            refused += wanted - placed
            outbound_carry += placed * (1 - model.inbound_first)
            outbound += int(outbound_carry)
            outbound_carry -= int(outbound_carry)

            # Each line's users send their messages; each server's window rolls by one hour.
            rate = model.messages_per_user_per_day * weight
            sent_now = [u * rate for u in server_users]
            window = [w + new - gone for w, new, gone in zip(window, sent_now, ring[slot], strict=True)]
            ring[slot] = sent_now
            messages += sum(sent_now)

            # The operator's pass: each server's assignability, then the pool's scale decision.
            # Comprehensions, not a loop: this is the simulation's hot path.
            utilizations = list(map(truediv, window, quotas))
            previous = [
                server_assignable(previous=p, utilization=u, stop_at=stop_at, resume_at=resume_at, cordoned=c)
                for p, u, c in zip(previous, utilizations, cordoned, strict=True)
            ]
            if any_cordoned:
                counted = [not c for c in cordoned]
                quota_total = sum(compress(quotas, counted))
                utilization = sum(compress(window, counted)) / quota_total if quota_total else 0.0
                peak_server = max(peak_server, max(compress(utilizations, counted), default=0.0))
                uncordoned = sum(counted)
            else:
                quota_total = sum(quotas)
                utilization = sum(window) / quota_total if quota_total else 0.0
                peak_server = max(peak_server, max(utilizations, default=0.0))
                uncordoned = len(quotas)
            # A cordoned server is never assignable, so every True is an uncordoned server.
            saturated = uncordoned - previous.count(True)
            assignable_lines = sum(map(len, compress(open_lines, previous)))
            peak_pool = max(peak_pool, utilization)
            peak_saturated = max(peak_saturated, saturated)

            if unlimited:
                # Top up with synthetic lines so that the inventory never limits the pool.
                wanted_lines = scaling.lines_per_server * max(1, scaling.min_servers - len(names))
                while len(spare) < wanted_lines:
                    spare.append(f"{PLANNED_LINE_PREFIX}{planned_used + len(spare)}")
            plan = plan_scale(ScaleInputs(
                pool=pool, scaling=scaling, metrics_ok=True, utilization=utilization,
                assignable_lines=assignable_lines, server_names=names_set, remaining_inventory=spare,
                last_scale_time=last_scale, now=now,
            ))
            if plan.needed and plan.limited_by is Reason.INVENTORY_EXHAUSTED:
                inventory_short = True
                if exhausted_day is None and not unlimited:
                    exhausted_day = day
            if plan.action is RecommendedAction.SCALE_UP and not applies:
                recommended += 1
            elif plan.action is RecommendedAction.SCALE_UP:
                for new in plan.new_servers:
                    add_server(new.name, new.lines, new_server_quota, False)
                    names_set.add(new.name)
                    taken = set(new.lines)
                    planned_used += sum(1 for line in new.lines if line.startswith(PLANNED_LINE_PREFIX))
                    spare = [line for line in spare if line not in taken]
                    scale_ups += 1
                    scale_up_times.append(now)
                last_scale = now
                if len(names) < scaling.min_servers and len(spare) < scaling.lines_per_server:
                    inventory_short = True
                if exhausted_day is None and not unlimited and len(spare) < scaling.lines_per_server:
                    # This scale-up used the last lines a server could be built from.
                    exhausted_day = day

        rows.append(PlanDay(
            day=day, date=(start + timedelta(days=day)).date(), users=sum(server_users), messages=round(messages),
            servers=len(names), lines=len(line_ids), pool_utilization=peak_pool, max_server_utilization=peak_server,
            saturated=peak_saturated, scale_ups=scale_ups, recommended=recommended,
            spare_inventory=sum(1 for line in spare if not line.startswith(PLANNED_LINE_PREFIX)),
            refused=refused, line_initiated=outbound,
        ))
    return _Run(days=rows, scale_up_times=scale_up_times, servers=len(names), lines=len(line_ids),
                planned_used=planned_used, exhausted_day=exhausted_day, inventory_short=inventory_short)


def _churn(*, line_users: list[int], line_server: list[int], server_users: list[int], carry: list[float],
           rate: float) -> None:
    """Remove ``rate`` of each line's users; fractions carry over per line, so small lines churn too."""
    # Comprehensions over every line, then a loop over the few lines that lose someone today.
    due = [users * rate + left for users, left in zip(line_users, carry, strict=True)]
    gone = [int(amount) for amount in due]  # never above the line's users: rate <= 1 and carry < 1
    carry[:] = [amount - lost for amount, lost in zip(due, gone, strict=True)]
    for i in [i for i, lost in enumerate(gone) if lost]:
        line_users[i] -= gone[i]
        server_users[line_server[i]] -= gone[i]
