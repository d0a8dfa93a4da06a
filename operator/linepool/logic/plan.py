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
(a placement, an expiring placement, churn). What the pool needs, when its inventory runs short, is
a second, unlimited-inventory run; it is forked from the real one at the hour they part rather than
run again from day 0 (see :func:`simulate`).
"""

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from itertools import compress
from operator import truediv

from linepool.api.spec import PoolSpec, Scaling
from linepool.api.types import LineState, Reason, RecommendedAction
from linepool.logic.assignment import line_assignable, round_robin, server_assignable
from linepool.logic.scaling import ScaleInputs, ScalePlan, mode_allows_changes, plan_scale

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
    # The hour of first_scale_up_day's first ScaleUp decision (carried out, or only recommended in Off
    # and DryRun), and the hour inventory_exhausted_day was reached.
    first_scale_up_time: datetime | None = None
    inventory_exhausted_time: datetime | None = None


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
    first_scale_up_time: datetime | None
    exhausted_time: datetime | None
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
    last_scale_time: datetime | None = None,
) -> PlanResult:
    """Simulate ``days`` days of the pool from ``start``, and say what it needs.

    The table comes from a run with the pool's real inventory. What the pool *needs* (servers and
    lines at the end, lines to order) comes from a second run whose inventory never runs out: after
    the pool's own spare lines it draws synthetic ones (``planned-N``). Its servers and lines at the
    end are what the pool would have if it could always grow, and the synthetic lines it used are
    the lines to order. The two runs are the same hour for hour until the first scale decision the
    real inventory changes (the unlimited run would add a server the real one cannot, or more of
    them), so the second run does not start again from day 0: it is a copy of the real run's state
    taken just before that decision (before any synthetic line is drawn), carried on to the end.
    When there is no such hour (the real run is never held back by its inventory, or the mode is
    Off or DryRun, which add no server either way) the second run is not run at all.

    ``last_scale_time`` is the pool's last scale-up before ``start`` (its ``status.lastScaleTime``):
    the scaling cooldown counts from it from the first hour, as in the operator.
    """
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"days must be between 1 and {MAX_DAYS}, not {days}")
    real, unlimited = _runs(spec=spec, servers=servers, model=model, days=days, start=start, pool=pool,
                            last_scale_time=last_scale_time)
    exhausted_day = _day_of(real.exhausted_time, start=start)
    lines_to_order = unlimited.planned_used
    order_by: date | None = None
    if lines_to_order and exhausted_day is not None:
        # Never in the past: a date before the start means "order now".
        order_by = max(start.date(), (start + timedelta(days=exhausted_day) - lead_time).date())
    return PlanResult(
        days=tuple(real.days),
        scale_up_times=tuple(real.scale_up_times),
        summary=PlanSummary(
            first_scale_up_day=_day_of(real.first_scale_up_time, start=start),
            inventory_exhausted_day=exhausted_day,
            servers_needed_at_end=unlimited.servers,
            lines_needed_at_end=unlimited.lines,
            lines_to_order=lines_to_order,
            order_by=order_by,
            first_scale_up_time=real.first_scale_up_time,
            inventory_exhausted_time=real.exhausted_time,
        ),
    )


def _day_of(moment: datetime | None, *, start: datetime) -> int | None:
    """The plan day (0 for the first) of an hour of the run, or None."""
    return None if moment is None else (moment - start) // timedelta(days=1)


def _runs(*, spec: PoolSpec, servers: Sequence[PlanServer], model: TrafficModel, days: int, start: datetime,
          pool: str, last_scale_time: datetime | None) -> tuple[_Run, _Run]:
    """The real run, and the unlimited one: forked from the real run where they part, or the same run."""
    real = _Sim(setup=_Setup.of(spec=spec, model=model, days=days, start=start, pool=pool),
                servers=servers, last_scale_time=last_scale_time)
    twin = real.run(unlimited=False, fork=True)
    if twin is None:
        outcome = real.outcome()
        return outcome, outcome
    twin.run(unlimited=True)
    return real.outcome(), twin.outcome()


def _run(*, spec: PoolSpec, servers: Sequence[PlanServer], model: TrafficModel, days: int, start: datetime,
         pool: str = "pool", unlimited: bool, last_scale_time: datetime | None = None) -> _Run:
    """One whole run from day 0, with the real inventory or an unlimited one.

    Not used by :func:`simulate`: the plain definition that its forked unlimited run must match.
    """
    sim = _Sim(setup=_Setup.of(spec=spec, model=model, days=days, start=start, pool=pool),
               servers=servers, last_scale_time=last_scale_time)
    sim.run(unlimited=unlimited)
    return sim.outcome()


@dataclass(frozen=True, kw_only=True)
class _Setup:
    """What a run never changes: the pool's spec, the traffic model, and figures read from them once."""

    spec: PoolSpec
    model: TrafficModel
    days: int
    start: datetime
    pool: str
    scaling: Scaling
    stop_at: float
    resume_at: float
    budget: int
    default_quota: int
    new_server_quota: int
    applies: bool  # scale-ups are carried out (Auto), not only recommended
    shape: tuple[float, ...]
    churn_per_day: float

    @classmethod
    def of(cls, *, spec: PoolSpec, model: TrafficModel, days: int, start: datetime, pool: str) -> "_Setup":
        default_quota = spec.quotas.messages_per_server_per_day
        template_quota = spec.scaling.server_template.spec.get("dailyMessageQuota")
        if not isinstance(template_quota, int) or template_quota <= 0:
            template_quota = default_quota
        return cls(
            spec=spec, model=model, days=days, start=start, pool=pool, scaling=spec.scaling,
            stop_at=spec.assignment.stop_at, resume_at=spec.assignment.resume_at,
            budget=spec.quotas.new_conversations_per_line_per_day, default_quota=default_quota,
            new_server_quota=template_quota,
            applies=mode_allows_changes(spec.scaling.mode, paused=False), shape=model.hour_shape,
            churn_per_day=1 - (1 - model.weekly_churn) ** (1 / DAYS_PER_WEEK),
        )


class _Sim:
    """One run of the pool, hour by hour.

    Everything a run changes is an attribute holding plain data (lists, sets, dicts, numbers), so
    that :meth:`fork` can copy a run in the middle of an hour, between the operator's pass and its
    scale decision, and carry the copy on differently. The hour's work reads the attributes into
    locals first: the per-server comprehensions and the per-user loop are the hot path.
    """

    def __init__(self, *, setup: _Setup, servers: Sequence[PlanServer], last_scale_time: datetime | None) -> None:
        self.setup = setup
        model, start, shape = setup.model, setup.start, setup.shape
        # Per server (index s), in the order servers are listed and then created.
        self.names: list[str] = []
        self.quotas: list[int] = []
        self.cordoned: list[bool] = []
        self.server_lines: list[list[int]] = []  # global line indices
        self.server_users: list[int] = []
        self.previous: list[bool | None] = []
        self.window: list[float] = []  # messages in the last 24 hours
        # Messages sent in each of the last 24 hours: ring[slot][s], slot-major so an hour swaps one list.
        self.ring: list[list[float]] = [[] for _ in range(HOURS_PER_DAY)]
        self.open_lines: list[list[str]] = []  # the server's lines that pass line_assignable, in spec order
        # Per line (index i).
        self.line_ids: list[str] = []
        self.line_server: list[int] = []
        self.line_users: list[int] = []
        self.line_new: list[int] = []  # new conversations in the last 24 hours
        self.line_churn_carry: list[float] = []
        self.line_open: list[bool] = []  # the line's half of line_assignable, as last computed
        self.index_of: dict[str, int] = {}
        self.allocated: set[str] = set()

        for server in servers:
            self._add_server(server.name, server.lines, server.quota or setup.default_quota, server.cordoned)
        self.spare: list[str] = [line for line in setup.spec.inventory if line not in self.allocated]
        self.planned_used = 0  # synthetic lines given to servers (unlimited run only)

        # Users already there: spread evenly over the starting lines, sending as they did yesterday.
        starting_lines = [i for s in range(len(self.names)) if not self.cordoned[s] for i in self.server_lines[s]]
        if model.initial_users and starting_lines:
            per, extra = divmod(model.initial_users, len(starting_lines))
            for k, i in enumerate(starting_lines):
                self.line_users[i] = per + (1 if k < extra else 0)
                self.server_users[self.line_server[i]] += self.line_users[i]
            for s in range(len(self.names)):
                for slot in range(HOURS_PER_DAY):
                    sent = (self.server_users[s] * model.messages_per_user_per_day
                            * shape[(start.hour + slot) % HOURS_PER_DAY])
                    self.ring[slot][s] = sent
                    self.window[s] += sent

        # The operator's first pass happens before any user arrives: servers start with a decision.
        self.previous = [
            server_assignable(previous=None, utilization=w / q, stop_at=setup.stop_at, resume_at=setup.resume_at,
                              cordoned=c)
            for w, q, c in zip(self.window, self.quotas, self.cordoned, strict=True)
        ]
        self.placed_at: list[list[int]] = [[] for _ in range(HOURS_PER_DAY)]  # lines given a new user, by hour slot
        self.arrival_carry = 0.0
        self.outbound_carry = 0.0
        self.last_scale = last_scale_time
        self.cursor = 0
        self.rows: list[PlanDay] = []
        self.scale_up_times: list[datetime] = []
        self.first_scale_up_time: datetime | None = None
        self.exhausted_time: datetime | None = None
        self.inventory_short = False
        self.names_set = set(self.names)
        self.any_cordoned = any(self.cordoned)  # new servers are never cordoned

        # The hour in progress, counted from the start; ``passed`` once its traffic and the operator's
        # pass are done and its scale decision is not (the point where a run is forked).
        self.t = 0
        self.passed = False
        # The current day's figures, and the current hour's inputs to the scale decision.
        self.arrivals_today = 0.0
        self.peak_pool = self.peak_server = 0.0
        self.peak_saturated = self.scale_ups = self.recommended = self.refused = self.outbound = 0
        self.messages = 0.0
        self.utilization = 0.0
        self.assignable_lines = 0

    def fork(self) -> "_Sim":
        """An independent copy of the run as it is now. The setup and the finished rows never change: shared."""
        memo: dict[int, object] = {id(self.setup): self.setup}
        memo.update((id(row), row) for row in self.rows)
        return copy.deepcopy(self, memo)

    def run(self, *, unlimited: bool, fork: bool = False) -> "_Sim | None":
        """Run from the hour in progress to the end.

        ``unlimited``: before each scale decision, synthetic lines top up the spare ones, so that the
        inventory never limits the pool. ``fork`` (on a real run): also return a copy of this run taken
        just before the first scale decision the unlimited run would take differently, for it to carry
        on in unlimited mode; None if there is none.
        """
        setup = self.setup
        hours = setup.days * HOURS_PER_DAY
        # Off and DryRun only recommend: neither run ever adds a server, so they never differ.
        watch = fork and setup.applies
        twin: _Sim | None = None
        while self.t < hours:
            t = self.t
            day, hour = divmod(t, HOURS_PER_DAY)
            now = setup.start + timedelta(hours=t)
            if not self.passed:
                if hour == 0:
                    self._start_day(day)
                self._traffic_and_pass(t, now)
                self.passed = True
            if unlimited:
                self._top_up(self.spare)
            plan = self._plan(self.spare, now)
            if watch and twin is None and self._unlimited_differs(plan, now):
                twin = self.fork()
            self._decide(plan, now=now, unlimited=unlimited)
            if hour == HOURS_PER_DAY - 1:
                self._end_day(day)
            self.t += 1
            self.passed = False
        return twin

    def outcome(self) -> _Run:
        return _Run(days=self.rows, scale_up_times=self.scale_up_times, servers=len(self.names),
                    lines=len(self.line_ids), planned_used=self.planned_used,
                    first_scale_up_time=self.first_scale_up_time, exhausted_time=self.exhausted_time,
                    inventory_short=self.inventory_short)

    def _add_server(self, name: str, lines: Sequence[str], quota: int, is_cordoned: bool) -> None:
        s = len(self.names)
        self.names.append(name)
        self.quotas.append(quota)
        self.cordoned.append(is_cordoned)
        self.previous.append(None)
        self.window.append(0.0)
        for hourly in self.ring:
            hourly.append(0.0)
        self.server_users.append(0)
        indices = []
        for line in lines:
            i = len(self.line_ids)
            self.line_ids.append(line)
            self.line_server.append(s)
            self.line_users.append(0)
            self.line_new.append(0)
            self.line_churn_carry.append(0.0)
            self.line_open.append(False)
            self.index_of[line] = i
            self.allocated.add(line)
            indices.append(i)
        self.server_lines.append(indices)
        self.open_lines.append([])
        for i in indices:
            self._recheck(i)
        self._reopen(s)

    def _recheck(self, i: int) -> bool:
        """Recompute the line's half of line_assignable after its counters changed; True if it flipped.

        The server's half (server_assignable) is applied each hour, when the round-robin list is built.
        """
        state = LineState.ACTIVE if self.line_users[i] else LineState.IDLE
        now_open = line_assignable(server_assignable=True, state=state, new_conversations=self.line_new[i],
                                   new_conversation_quota=self.setup.budget)
        flipped = now_open != self.line_open[i]
        self.line_open[i] = now_open
        return flipped

    def _reopen(self, s: int) -> None:
        line_ids, line_open = self.line_ids, self.line_open
        self.open_lines[s] = [line_ids[i] for i in self.server_lines[s] if line_open[i]]

    def _start_day(self, day: int) -> None:
        setup = self.setup
        self.arrivals_today = setup.model.new_users_on(day)
        if day and setup.churn_per_day:
            _churn(line_users=self.line_users, line_server=self.line_server, server_users=self.server_users,
                   carry=self.line_churn_carry, rate=setup.churn_per_day)
        self.peak_pool = self.peak_server = 0.0
        self.peak_saturated = self.scale_ups = self.recommended = self.refused = self.outbound = 0
        self.messages = 0.0

    def _end_day(self, day: int) -> None:
        start = self.setup.start
        self.rows.append(PlanDay(
            day=day, date=(start + timedelta(days=day)).date(), users=sum(self.server_users),
            messages=round(self.messages), servers=len(self.names), lines=len(self.line_ids),
            pool_utilization=self.peak_pool, max_server_utilization=self.peak_server,
            saturated=self.peak_saturated, scale_ups=self.scale_ups, recommended=self.recommended,
            spare_inventory=sum(1 for line in self.spare if not line.startswith(PLANNED_LINE_PREFIX)),
            refused=self.refused, line_initiated=self.outbound,
        ))

    def _traffic_and_pass(self, t: int, now: datetime) -> None:
        """Hour ``t`` up to the scale decision: placements expire, users arrive and send, the operator's pass."""
        setup = self.setup
        model = setup.model
        slot = t % HOURS_PER_DAY
        weight = setup.shape[now.hour]
        line_server, line_users, line_new, line_open = self.line_server, self.line_users, self.line_new, self.line_open
        server_users, open_lines, placed_at = self.server_users, self.open_lines, self.placed_at
        index_of = self.index_of
        reopen = self._reopen

        # Placements of 24 hours ago leave the lines' new-conversation windows.
        expired = placed_at[slot]
        if expired:
            recheck = self._recheck
            touched = set()
            for i in expired:
                line_new[i] -= 1
                if recheck(i):
                    touched.add(line_server[i])
            for s in touched:
                reopen(s)
            placed_at[slot] = []

        # New users arrive, and go round-robin to the lines the operator publishes as assignable.
        self.arrival_carry += self.arrivals_today * weight
        wanted = int(self.arrival_carry)
        self.arrival_carry -= wanted
        previous = self.previous
        budget = setup.budget
        cursor = self.cursor
        placed = 0
        while placed < wanted:
            rotation = [s for s in range(len(previous)) if previous[s] and open_lines[s]]
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
                # _recheck(), inlined: this runs once per placed user.
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
        self.cursor = cursor
        self.refused += wanted - placed
        self.outbound_carry += placed * (1 - model.inbound_first)
        self.outbound += int(self.outbound_carry)
        self.outbound_carry -= int(self.outbound_carry)

        # Each line's users send their messages; each server's window rolls by one hour.
        ring = self.ring
        rate = model.messages_per_user_per_day * weight
        sent_now = [u * rate for u in server_users]
        window = [w + new - gone for w, new, gone in zip(self.window, sent_now, ring[slot], strict=True)]
        self.window = window
        ring[slot] = sent_now
        self.messages += sum(sent_now)

        # The operator's pass: each server's assignability; the pool's scale decision comes next.
        # Comprehensions, not a loop: this is the simulation's hot path.
        quotas, cordoned = self.quotas, self.cordoned
        stop_at, resume_at = setup.stop_at, setup.resume_at
        utilizations = list(map(truediv, window, quotas))
        previous = [
            server_assignable(previous=p, utilization=u, stop_at=stop_at, resume_at=resume_at, cordoned=c)
            for p, u, c in zip(previous, utilizations, cordoned, strict=True)
        ]
        self.previous = previous
        if self.any_cordoned:
            counted = [not c for c in cordoned]
            quota_total = sum(compress(quotas, counted))
            utilization = sum(compress(window, counted)) / quota_total if quota_total else 0.0
            self.peak_server = max(self.peak_server, max(compress(utilizations, counted), default=0.0))
            uncordoned = sum(counted)
        else:
            quota_total = sum(quotas)
            utilization = sum(window) / quota_total if quota_total else 0.0
            self.peak_server = max(self.peak_server, max(utilizations, default=0.0))
            uncordoned = len(quotas)
        # A cordoned server is never assignable, so every True is an uncordoned server.
        saturated = uncordoned - previous.count(True)
        self.utilization = utilization
        self.assignable_lines = sum(map(len, compress(open_lines, previous)))
        self.peak_pool = max(self.peak_pool, utilization)
        self.peak_saturated = max(self.peak_saturated, saturated)

    def _lines_wanted(self) -> int:
        """Spare lines the unlimited run keeps: one server's, or those of every server minServers lacks."""
        scaling = self.setup.scaling
        return scaling.lines_per_server * max(1, scaling.min_servers - len(self.names))

    def _top_up(self, spare: list[str]) -> None:
        """Append synthetic lines to ``spare`` so that the inventory never limits the pool."""
        wanted_lines = self._lines_wanted()
        # Servers take spare lines in order, so the synthetic lines handed out so far are
        # planned-0 .. planned-(planned_used - 1) and those still spare follow them: the next
        # name is never one already given (counting real spare lines here once reused names).
        named = self.planned_used + sum(1 for line in spare if line.startswith(PLANNED_LINE_PREFIX))
        while len(spare) < wanted_lines:
            spare.append(f"{PLANNED_LINE_PREFIX}{named}")
            named += 1

    def _plan(self, spare: Sequence[str], now: datetime) -> ScalePlan:
        setup = self.setup
        return plan_scale(ScaleInputs(
            pool=setup.pool, scaling=setup.scaling, metrics_ok=True, utilization=self.utilization,
            assignable_lines=self.assignable_lines, server_names=self.names_set, remaining_inventory=spare,
            last_scale_time=self.last_scale, now=now,
        ))

    def _unlimited_differs(self, plan: ScalePlan, now: datetime) -> bool:
        """Whether an unlimited run in this run's state would decide otherwise than ``plan`` this hour.

        While the real spare lines hold what the unlimited run keeps, it adds no synthetic line and
        takes the same decision. Once they do not, it adds some, and decides otherwise exactly when
        it scales up where this run cannot (or by more servers, below minServers): only then does
        any state differ, as NONE and BLOCKED change nothing. Until that hour this run cannot add
        a server either (no spare server's worth, or no more than the unlimited run would add, which
        minServers <= maxServers rules out), so its state is the unlimited run's but for the
        synthetic lines, which the copy tops up again, under the same names, before its decision.
        """
        if len(self.spare) >= self._lines_wanted():
            return False
        topped = list(self.spare)
        self._top_up(topped)
        other = self._plan(topped, now)
        return other.action is RecommendedAction.SCALE_UP and (
            plan.action is not RecommendedAction.SCALE_UP or other.new_servers != plan.new_servers)

    def _decide(self, plan: ScalePlan, *, now: datetime, unlimited: bool) -> None:
        """Carry out (or only count, in Off and DryRun) the hour's scale decision."""
        scaling = self.setup.scaling
        if plan.needed and plan.limited_by is Reason.INVENTORY_EXHAUSTED:
            self.inventory_short = True
            if self.exhausted_time is None and not unlimited:
                self.exhausted_time = now
        if plan.action is not RecommendedAction.SCALE_UP:
            return
        if self.first_scale_up_time is None:
            self.first_scale_up_time = now
        if not self.setup.applies:
            self.recommended += 1
            return
        for new in plan.new_servers:
            self._add_server(new.name, new.lines, self.setup.new_server_quota, False)
            self.names_set.add(new.name)
            taken = set(new.lines)
            self.planned_used += sum(1 for line in new.lines if line.startswith(PLANNED_LINE_PREFIX))
            self.spare = [line for line in self.spare if line not in taken]
            self.scale_ups += 1
            self.scale_up_times.append(now)
        self.last_scale = now
        if len(self.names) < scaling.min_servers and len(self.spare) < scaling.lines_per_server:
            self.inventory_short = True
        if self.exhausted_time is None and not unlimited and len(self.spare) < scaling.lines_per_server:
            # This scale-up used the last lines a server could be built from.
            self.exhausted_time = now


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
