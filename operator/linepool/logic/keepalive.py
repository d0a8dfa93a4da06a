"""Keep-alive planning: which idle lines get a short exchange, with whom, and when.

Apple deactivates a line after about two months without traffic. A keep-alive is a short
exchange that looks like people talking: the idle line writes to a partner (another line of
the pool, or a handle from ``spec.keepAlive.partners``) and a partner line of the pool answers.

Every planned send lands inside the pool's window (local time, daylight saving included), at a
jittered time, at least ``minSpacing`` after any other keep-alive send of the same server, at
most once per line per local day, within ``maxPerDay`` exchanges per pool, never from a Flagged
or Deactivated line, and never from a server that the send would push over its ``stopAt``.

Exactly once: a plan is recorded in the line's status (``keepAlive``, keyed by line and local
day) before anything is sent. Only exchanges already recorded in an earlier pass are sent, and
the idempotency key goes with the request, so a restart resends at most a request that the
server then answers with 409 (already sent).

Everything here is pure: the clock is an argument. Jitter is a hash of the line and the day, so
two passes (or a restarted operator) compute the same plan.
"""

import math
import zlib
from bisect import bisect_left, insort
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from linepool.api.conditions import Condition, condition, format_time, parse_time
from linepool.api.spec import KeepAlive, KeepAliveWindow
from linepool.api.types import ConditionType, KeepAlivePhase, LineState, Reason

# The planner looks this many local days ahead for a free slot (a long weekend, a full day).
HORIZON_DAYS = 7
# The partner answers at least this long after the first message, and at most four times as long.
ANSWER_DELAY = timedelta(minutes=2)
ANSWER_SPREAD = 3
# Pool lines tried as partners for one idle line before trying the next day.
MAX_PARTNER_TRIES = 8
# Lines that can never send or receive keep-alive traffic.
_DEAD_STATES = frozenset({LineState.FLAGGED, LineState.DEACTIVATED})

# Plain, short, link-free texts, used when spec.keepAlive.messages is empty.
BUILT_IN_MESSAGES: tuple[str, ...] = (
    "Hey, how's your week going?",
    "Morning! Did you end up trying that new coffee place?",
    "Just checking in, hope all is well",
    "Are we still on for later this week?",
    "Thanks again for yesterday",
    "How did the meeting go?",
    "Long day here, how about you?",
    "Did you catch the game last night?",
    "Happy Friday! Any plans?",
    "Quick one: what time works for you tomorrow?",
    "Hope the trip went well",
    "Sorry, missed your call earlier. All good?",
    "Lunch sometime next week?",
    "That was a fun chat the other day",
    "Hi! Just saying hello",
    "Any news on your side?",
)
BUILT_IN_REPLIES: tuple[str, ...] = (
    "All good here, thanks! You?",
    "Pretty busy, but fine. Talk soon",
    "Yes, sounds good",
    "Ha, not yet. Maybe this weekend",
    "Thanks for asking, all well",
    "Went fine, thanks!",
    "Sure, let me check my calendar",
    "Good to hear from you",
    "Same here, nothing new really",
    "Works for me",
    "Hello! Hope you're doing well too",
    "Will let you know soon",
)


class Leg(StrEnum):
    """Which half of an exchange a send is: the idle line's message or the partner's answer."""

    INITIAL = "Initial"
    REPLY = "Reply"


class Delivery(StrEnum):
    """What came of one send, as the messaging adapter reports it."""

    SENT = "Sent"                # 2xx, or 409: the server already had this idempotency key
    DEFERRED = "Deferred"        # 429: try again at the next free slot
    RETRYABLE = "Retryable"      # 5xx, a timeout, a refused connection: back off and retry
    REJECTED = "Rejected"        # any other answer: retrying the same request will not help
    BLOCKED = "Blocked"          # not sent: no credentials, or the send would cross stopAt


@dataclass(frozen=True, kw_only=True)
class Exchange:
    """A line's keep-alive exchange, exactly as ``status.lines[].keepAlive`` records it."""

    key: str
    to: str
    text: str
    planned: datetime
    phase: KeepAlivePhase = KeepAlivePhase.PLANNED
    attempts: int = 0
    last_attempt: datetime | None = None
    reply_planned: datetime | None = None
    message: str = ""

    @property
    def day(self) -> date:
        return date.fromisoformat(self.key.rsplit("/", 1)[1])

    def to_status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "key": self.key, "to": self.to, "text": self.text, "plannedTime": format_time(self.planned),
            "phase": self.phase.value, "attempts": self.attempts,
        }
        if self.last_attempt is not None:
            out["lastAttemptTime"] = format_time(self.last_attempt)
        if self.reply_planned is not None:
            out["replyPlannedTime"] = format_time(self.reply_planned)
        if self.message:
            out["message"] = self.message
        return out


def exchange_from_status(raw: Any) -> Exchange | None:
    """Read a recorded exchange back; anything unreadable counts as no record."""
    if not isinstance(raw, Mapping):
        return None
    planned = parse_time(raw.get("plannedTime"))
    key = raw.get("key")
    try:
        phase = KeepAlivePhase(str(raw.get("phase")))
        if not isinstance(key, str) or "/" not in key or planned is None:
            return None
        date.fromisoformat(key.rsplit("/", 1)[1])
    except ValueError:
        return None
    attempts = raw.get("attempts")
    return Exchange(
        key=key, to=str(raw.get("to") or ""), text=str(raw.get("text") or ""), planned=planned, phase=phase,
        attempts=attempts if isinstance(attempts, int) and not isinstance(attempts, bool) else 0,
        last_attempt=parse_time(raw.get("lastAttemptTime")),
        reply_planned=parse_time(raw.get("replyPlannedTime")), message=str(raw.get("message") or ""),
    )


class LineFacts(NamedTuple):
    """A line that may need keep-alive work (idle, or with an exchange recorded), as the planner sees it."""

    server: str
    line: str
    state: LineState
    last_activity: datetime
    last_keep_alive: datetime | None = None
    exchange: Exchange | None = None


class PoolLine(NamedTuple):
    """Any line of the pool, for pairing and lookups: where it is, its state, its last traffic (RFC 3339)."""

    server: str
    state: LineState
    quiet: str


@dataclass(frozen=True, kw_only=True)
class ServerFacts:
    """One server as the planner sees it."""

    name: str
    can_send: bool = True
    # Messages the server may still send in its quota window before crossing stopAt.
    headroom: int = 10**9


@dataclass(frozen=True, kw_only=True)
class Send:
    """A send that is due now, from an exchange recorded in an earlier pass."""

    owner: tuple[str, str]        # (server, line) whose status holds the exchange
    server: str                   # the server that sends
    sender: str                   # the line that sends
    recipient: str
    text: str
    idempotency_key: str
    leg: Leg


@dataclass(frozen=True, kw_only=True)
class LineOutcome:
    """What the planner says about one line; the decision pass writes it into status."""

    state: LineState
    exchange: Exchange | None
    last_keep_alive: datetime | None
    idle: bool
    due: bool


@dataclass(frozen=True, kw_only=True)
class KeepAliveEvent:
    server: str
    type: str
    reason: Reason
    message: str


@dataclass(kw_only=True)
class KeepAlivePlan:
    """The outcome of one planning pass, plus what ``settle`` needs to place deferred sends."""

    lines: dict[tuple[str, str], LineOutcome]
    sends: tuple[Send, ...]
    today: date
    occupied: dict[str, list[datetime]] = field(default_factory=dict)
    no_partner: bool = False
    answer_delay: timedelta = ANSWER_DELAY
    # When each line next sends or receives a keep-alive (partners of other lines' exchanges too).
    upcoming: dict[str, datetime] = field(default_factory=dict)
    # Every line of the pool: where an exchange's partner line lives.
    directory: Mapping[str, PoolLine] = field(default_factory=dict)
    # The least recent traffic of any line of the pool (None for a pool without lines).
    oldest_activity: datetime | None = None

    def summary(self) -> dict[str, Any]:
        exchanges = [o.exchange for o in self.lines.values() if o.exchange is not None]
        return {
            "due": sum(1 for o in self.lines.values() if o.due),
            "scheduled": sum(1 for e in exchanges if e.phase is KeepAlivePhase.PLANNED
                             or (e.phase is KeepAlivePhase.SENT and e.reply_planned is not None)),
            "sentToday": sum(1 for e in exchanges if e.day == self.today
                             and e.phase in (KeepAlivePhase.SENT, KeepAlivePhase.REPLIED)),
            "atRisk": sum(1 for o in self.lines.values() if o.state is LineState.AT_RISK),
            "day": self.today.isoformat(),
        }


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """Capped exponential backoff for sends that failed in a way worth retrying."""

    base: timedelta = timedelta(seconds=30)
    cap: timedelta = timedelta(minutes=30)
    max_attempts: int = 5

    def delay(self, attempts: int) -> timedelta:
        backoff: timedelta = self.base * (2 ** max(attempts - 1, 0))
        return min(self.cap, backoff)


# --- the window ---------------------------------------------------------------------------------


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def local_day(moment: datetime, timezone: str) -> date:
    return moment.astimezone(_zone(timezone)).date()


def window_on(day: date, *, window: KeepAliveWindow, timezone: str) -> tuple[datetime, datetime] | None:
    """The window of one local day in UTC, or None when the day is not a window day.

    Local wall times are converted through the zone, so a day on which clocks change keeps its
    local hours (10:00 to 19:00 stays 10:00 to 19:00, the day is just an hour shorter or longer).
    """
    if day.weekday() not in window.days:
        return None
    zone = _zone(timezone)
    start = datetime.combine(day, window.start, tzinfo=zone).astimezone(UTC)
    end = datetime.combine(day, window.end, tzinfo=zone).astimezone(UTC)
    return (start, end) if start < end else None


def in_window(moment: datetime, *, window: KeepAliveWindow, timezone: str) -> bool:
    local = moment.astimezone(_zone(timezone))
    bounds = window_on(local.date(), window=window, timezone=timezone)
    return bounds is not None and bounds[0] <= moment < bounds[1]


def _unit(*parts: str) -> float:
    """A stable pseudo-random number in [0, 1) from the parts (jitter that survives restarts)."""
    return zlib.crc32("\x1f".join(parts).encode()) / 2**32


def _pick(texts: Sequence[str], *parts: str) -> str:
    return texts[zlib.crc32("\x1f".join(parts).encode()) % len(texts)]


def free_slot(occupied: Sequence[datetime], *, lo: datetime, hi: datetime, target: datetime,
              spacing: timedelta) -> datetime | None:
    """The free moment in [lo, hi) nearest after ``target`` (else the first one), or None.

    A moment is free when it is at least ``spacing`` from every occupied one; ``occupied`` is
    sorted.
    """
    if lo >= hi:
        return None
    gaps: list[tuple[datetime, datetime]] = []
    cursor = lo
    for taken in occupied[max(bisect_left(occupied, lo - spacing), 0):]:
        if taken - spacing >= hi:
            break
        if taken - spacing > cursor:
            gaps.append((cursor, min(taken - spacing, hi)))
        cursor = max(cursor, taken + spacing)
        if cursor >= hi:
            break
    if cursor < hi:
        gaps.append((cursor, hi))
    # Gaps are half-open except where they touch an occupied moment: exactly `spacing` away is fine.
    for start, end in gaps:
        if start <= target < end or target < start < end:
            return max(start, target)
    return gaps[0][0] if gaps else None


# --- planning -----------------------------------------------------------------------------------


def plan_keep_alive(*, spec: KeepAlive, timezone: str, lines: Sequence[LineFacts],
                    servers: Mapping[str, ServerFacts], now: datetime,
                    answer_delay: timedelta = ANSWER_DELAY,
                    directory: Mapping[str, PoolLine] | None = None,
                    oldest_activity: datetime | None = None) -> KeepAlivePlan:
    """Plan keep-alives for a pool's lines and list the sends that are due now.

    ``lines`` are the lines that may need work: idle past ``idleAfter``, or with an exchange
    recorded. ``directory`` holds every line of the pool (a partner may be a busy line); it is
    built from ``lines`` when not given, and may be empty when ``lines`` is. A partner line of
    the pool answers ``answer_delay`` to four times that after the first message.
    ``oldest_activity`` (the least recent traffic of any line) is only reported.
    """
    external = spec.partners
    today = local_day(now, timezone)
    if directory is None:
        directory = {f.line: PoolLine(f.server, f.state, format_time(_quiet_since(f))) for f in lines}
    outcomes: dict[tuple[str, str], LineOutcome] = {}
    occupied: dict[str, list[datetime]] = {}
    exchanges_by_day: dict[date, int] = {}
    busy: dict[date, set[str]] = {}
    partner_next: dict[str, datetime] = {}
    pending_from: dict[str, int] = {}

    def occupy(server: str, moment: datetime) -> None:
        insort(occupied.setdefault(server, []), moment)

    # 1. Recorded exchanges: keep or drop them, and collect the sends that are due.
    kept: dict[tuple[str, str], Exchange | None] = {}
    candidates: list[tuple[datetime, Send]] = []
    last_sent: dict[str, datetime] = {}

    def sent_at(server: str, moment: datetime) -> None:
        occupy(server, moment)
        if moment > last_sent.get(server, moment - timedelta(seconds=1)):
            last_sent[server] = moment

    for facts in lines:
        exchange = _keep_exchange(facts=facts, spec=spec, today=today, now=now, directory=directory)
        kept[(facts.server, facts.line)] = exchange
        if exchange is None:
            continue
        day = exchange.day
        exchanges_by_day[day] = exchanges_by_day.get(day, 0) + 1
        busy.setdefault(day, set()).add(facts.line)
        partner = directory.get(exchange.to)
        if partner is not None:
            busy[day].add(exchange.to)
        phase = exchange.phase
        if phase is KeepAlivePhase.PLANNED:
            occupy(facts.server, exchange.planned)
            pending_from[facts.server] = pending_from.get(facts.server, 0) + 1
            if exchange.planned <= now:
                candidates.append((exchange.planned, Send(
                    owner=(facts.server, facts.line), server=facts.server, sender=facts.line, recipient=exchange.to,
                    text=exchange.text, idempotency_key=exchange.key, leg=Leg.INITIAL)))
        else:
            # Sent, Replied, or Failed after a send: lastAttemptTime is when the first message went.
            sent_at(facts.server, exchange.last_attempt or exchange.planned)
        if exchange.reply_planned is None or partner is None or phase is KeepAlivePhase.FAILED:
            continue
        if phase is KeepAlivePhase.REPLIED:
            sent_at(partner.server, exchange.reply_planned)
            continue
        occupy(partner.server, exchange.reply_planned)
        pending_from[partner.server] = pending_from.get(partner.server, 0) + 1
        partner_next[exchange.to] = exchange.reply_planned
        if phase is KeepAlivePhase.SENT and exchange.reply_planned <= now:
            candidates.append((exchange.reply_planned, Send(
                owner=(facts.server, facts.line), server=partner.server, sender=exchange.to, recipient=facts.line,
                text=reply_text(exchange), idempotency_key=f"{exchange.key}/reply", leg=Leg.REPLY)))
    sends = _sendable(candidates, servers=servers, last_sent=last_sent, spec=spec, timezone=timezone, now=now)

    # 2. New plans for idle lines, the longest idle first.
    due = [f for f in lines if _is_due(f, spec=spec, now=now) and kept[(f.server, f.line)] is None
           and f.line not in partner_next and _can_send(f.server, servers)]
    due.sort(key=lambda f: (_quiet_since(f), f.server, f.line))
    partner_order = _partner_order(directory=directory, servers=servers, spec=spec, now=now) \
        if due and spec.enabled and not external else []
    no_partner = False
    if spec.enabled and due:
        horizon = [today + timedelta(days=offset) for offset in range(HORIZON_DAYS)]
        window_days = [day for day in horizon if window_on(day, window=spec.window, timezone=timezone) is not None]
        for facts in due:
            if all(exchanges_by_day.get(day, 0) >= spec.max_per_day for day in window_days):
                break  # maxPerDay is reached on every day ahead: the rest wait for a later pass
            if facts.line in partner_next:
                continue  # it answers another idle line's exchange, which refreshes it too
            exchange = _plan_one(
                facts=facts, spec=spec, timezone=timezone, now=now, today=today, external=external,
                answer_delay=answer_delay,
                partner_order=partner_order, directory=directory, servers=servers, occupied=occupied,
                exchanges_by_day=exchanges_by_day, busy=busy, pending_from=pending_from,
            )
            if exchange is None:
                no_partner = no_partner or (not external and len(partner_order) < 2)
                continue
            kept[(facts.server, facts.line)] = exchange
            if exchange.reply_planned is not None:
                partner_next[exchange.to] = exchange.reply_planned

    # 3. What each line reports.
    upcoming = next_times(kept.values(), pool_lines=directory)
    for facts in lines:
        exchange = kept[(facts.server, facts.line)]
        idle_for = now - _quiet_since(facts)
        state = facts.state
        if state not in _DEAD_STATES and idle_for >= spec.deadline:
            state = LineState.AT_RISK
        idle = state not in _DEAD_STATES and idle_for >= spec.idle_after
        outcomes[(facts.server, facts.line)] = LineOutcome(
            state=state, exchange=exchange, last_keep_alive=facts.last_keep_alive,
            idle=idle, due=spec.enabled and idle and exchange is None and facts.line not in partner_next,
        )
    if oldest_activity is None:
        oldest_activity = parse_time(min((entry.quiet for entry in directory.values()), default=None))
    return KeepAlivePlan(lines=outcomes, sends=tuple(sends), today=today, occupied=occupied, answer_delay=answer_delay,
                         no_partner=no_partner, oldest_activity=oldest_activity, upcoming=upcoming,
                         directory=directory)


def next_times(exchanges: Iterable[Exchange | None], *, pool_lines: Container[str]) -> dict[str, datetime]:
    """When each line next sends or receives a keep-alive, from the exchanges that stand."""
    upcoming: dict[str, datetime] = {}
    for exchange in exchanges:
        if exchange is None:
            continue
        owner = exchange.key.rsplit("/", 1)[0]
        if exchange.phase is KeepAlivePhase.PLANNED:
            upcoming[owner] = exchange.planned
        elif exchange.phase is KeepAlivePhase.SENT and exchange.reply_planned is not None:
            upcoming[owner] = exchange.reply_planned
        if exchange.reply_planned is not None and exchange.to in pool_lines and exchange.phase in (
                KeepAlivePhase.PLANNED, KeepAlivePhase.SENT):
            upcoming[exchange.to] = exchange.reply_planned
    return upcoming


def _sendable(candidates: list[tuple[datetime, Send]], *, servers: Mapping[str, ServerFacts],
              last_sent: Mapping[str, datetime], spec: KeepAlive, timezone: str, now: datetime) -> list[Send]:
    """The due sends that may go now: inside the window, one per server per pass, spaced.

    Plans are spaced already; this guards the actual send times when passes run late (an
    operator that was down, a slow pass), so late sends never bunch up.
    """
    if not candidates or not in_window(now, window=spec.window, timezone=timezone):
        return []
    chosen: dict[str, Send] = {}
    for _, send in sorted(candidates, key=lambda item: (item[0], item[1].idempotency_key)):
        if send.server in chosen or not _can_send(send.server, servers):
            continue
        if not _has_headroom(send.server, servers=servers, pending_from={}):
            continue  # the server got busy since the plan: sending now would cross its stopAt
        previous = last_sent.get(send.server)
        if previous is not None and now - previous < spec.min_spacing:
            continue
        chosen[send.server] = send
    return list(chosen.values())


def _whole_second(moment: datetime, *, up: bool = False) -> datetime:
    """Status keeps whole seconds; plans use them too, so spacing survives a round trip."""
    if not moment.microsecond:
        return moment
    return moment.replace(microsecond=0) + (timedelta(seconds=1) if up else timedelta(0))


def _quiet_since(facts: LineFacts) -> datetime:
    """The line's last traffic: its own, or the keep-alive the operator sent from or to it."""
    if facts.last_keep_alive is not None and facts.last_keep_alive > facts.last_activity:
        return facts.last_keep_alive
    return facts.last_activity


def _is_due(facts: LineFacts, *, spec: KeepAlive, now: datetime) -> bool:
    return facts.state not in _DEAD_STATES and now - _quiet_since(facts) >= spec.idle_after


def _keep_exchange(*, facts: LineFacts, spec: KeepAlive, today: date, now: datetime,
                   directory: Mapping[str, PoolLine]) -> Exchange | None:
    """The line's recorded exchange if it still stands, else None (then the line may be replanned)."""
    exchange = facts.exchange
    if exchange is None:
        return None
    if exchange.day < today:
        # Its day is over: finished, failed or missed, it no longer blocks anything.
        return None
    if exchange.phase is not KeepAlivePhase.PLANNED:
        return exchange  # Sent, Replied or Failed stand for the rest of their day
    if not spec.enabled or facts.state in _DEAD_STATES:
        return None
    partner = directory.get(exchange.to)
    if partner is not None and partner.state in _DEAD_STATES:
        return None
    if exchange.attempts == 0 and not _is_due(facts, spec=spec, now=now):
        return None  # real traffic came back before the keep-alive went out
    return exchange


class _Partner(NamedTuple):
    line: str
    server: str


def _partner_order(*, directory: Mapping[str, PoolLine], servers: Mapping[str, ServerFacts], spec: KeepAlive,
                   now: datetime) -> list[_Partner]:
    """Pool lines that can answer, idle ones first: pairing two idle lines refreshes both.

    Built only in a pass that has due lines, so a steady pool never sorts its lines.
    """
    idle_before = format_time(now - spec.idle_after)
    usable = [(entry.quiet > idle_before, entry.quiet, line, entry.server) for line, entry in directory.items()
              if entry.state not in _DEAD_STATES and _can_send(entry.server, servers)]
    usable.sort()
    return [_Partner(line, server) for _, _, line, server in usable]


def _plan_one(*, facts: LineFacts, spec: KeepAlive, timezone: str, now: datetime, today: date,
              external: Sequence[str], answer_delay: timedelta, partner_order: Sequence[_Partner],
              directory: Mapping[str, PoolLine],
              servers: Mapping[str, ServerFacts], occupied: dict[str, list[datetime]],
              exchanges_by_day: dict[date, int], busy: dict[date, set[str]],
              pending_from: dict[str, int]) -> Exchange | None:
    for offset in range(HORIZON_DAYS):
        day = today + timedelta(days=offset)
        if exchanges_by_day.get(day, 0) >= spec.max_per_day or facts.line in busy.get(day, ()):
            continue
        bounds = window_on(day, window=spec.window, timezone=timezone)
        if bounds is None:
            continue
        # A plan made now may be due now: it is still recorded in status before the pass that sends it.
        lo, hi = _whole_second(max(bounds[0], now), up=True), bounds[1]
        if lo >= hi:
            continue
        # The quota guard looks at today's headroom; a send on a later day is checked when due.
        if offset == 0 and not _has_headroom(facts.server, servers=servers, pending_from=pending_from):
            return None
        key = f"{facts.line}/{day.isoformat()}"
        # Leave room for the answer inside the window when a line of the pool answers.
        latest = hi if external else hi - answer_delay * (1 + ANSWER_SPREAD)
        if lo >= latest:
            continue
        target = _whole_second(lo + (latest - lo) * _unit(key))
        first = free_slot(occupied.get(facts.server, []), lo=lo, hi=latest, target=target,
                          spacing=spec.min_spacing)
        if first is None:
            continue
        if external:
            to, reply_at = _pick(external, key, "partner"), None
        else:
            found = _pair(facts=facts, day=day, key=key, first=first, hi=hi, spec=spec, offset=offset,
                          answer_delay=answer_delay,
                          partner_order=partner_order, servers=servers, occupied=occupied, busy=busy,
                          pending_from=pending_from)
            if found is None:
                continue
            to, reply_at = found
        texts = spec.messages or BUILT_IN_MESSAGES
        exchange = Exchange(key=key, to=to, text=_pick(texts, key, "text"), planned=first, reply_planned=reply_at)
        insort(occupied.setdefault(facts.server, []), first)
        pending_from[facts.server] = pending_from.get(facts.server, 0) + 1
        exchanges_by_day[day] = exchanges_by_day.get(day, 0) + 1
        busy.setdefault(day, set()).add(facts.line)
        if reply_at is not None:
            partner_server = directory[to].server
            insort(occupied.setdefault(partner_server, []), reply_at)
            pending_from[partner_server] = pending_from.get(partner_server, 0) + 1
            busy[day].add(to)
        return exchange
    return None


def _pair(*, facts: LineFacts, day: date, key: str, first: datetime, hi: datetime, spec: KeepAlive, offset: int,
          answer_delay: timedelta, partner_order: Sequence[_Partner], servers: Mapping[str, ServerFacts],
          occupied: dict[str, list[datetime]], busy: dict[date, set[str]],
          pending_from: dict[str, int]) -> tuple[str, datetime] | None:
    taken = busy.get(day, set())
    tries = 0
    for partner in partner_order:
        if partner.line == facts.line or partner.line in taken:
            continue
        tries += 1
        if tries > MAX_PARTNER_TRIES:
            return None
        if offset == 0 and not _has_headroom(partner.server, servers=servers, pending_from=pending_from,
                                             extra=1 if partner.server == facts.server else 0):
            continue
        answer_after = _whole_second(first + answer_delay * (1 + ANSWER_SPREAD * _unit(key, "reply")))
        # The answer must keep its distance from the first message too when both share a server.
        slots = list(occupied.get(partner.server, []))
        if partner.server == facts.server:
            insort(slots, first)
        reply_at = free_slot(slots, lo=answer_after, hi=hi, target=answer_after, spacing=spec.min_spacing)
        if reply_at is not None:
            return partner.line, reply_at
    return None


def _can_send(server: str, servers: Mapping[str, ServerFacts]) -> bool:
    facts = servers.get(server)
    return facts is None or facts.can_send


def _has_headroom(server: str, *, servers: Mapping[str, ServerFacts], pending_from: Mapping[str, int],
                  extra: int = 0) -> bool:
    facts = servers.get(server, ServerFacts(name=server))
    return pending_from.get(server, 0) + extra + 1 <= facts.headroom


def reply_text(exchange: Exchange) -> str:
    return _pick(BUILT_IN_REPLIES, exchange.key, "reply")


def headroom(*, sent: float, quota: int, stop_at: float) -> int:
    """Sends a server may still make without its utilization crossing ``stop_at``."""
    return max(0, math.floor(stop_at * quota + 1e-9 - sent))


# --- after the sends ----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Settled:
    exchange: Exchange
    events: tuple[KeepAliveEvent, ...]
    outcome: str          # for metrics: sent, deferred, failed, retrying, blocked
    touched: tuple[str, ...] = ()   # lines whose lastKeepAliveTime becomes now


def settle(*, plan: KeepAlivePlan, send: Send, exchange: Exchange, delivery: Delivery, detail: str,
           retry_after: timedelta | None, spec: KeepAlive, timezone: str, policy: RetryPolicy,
           now: datetime) -> Settled:
    """The exchange after one send, with the events to post. No I/O and no clock, like planning.

    Deferred and retried sends take the next free slot of the same server, so they keep
    ``minSpacing`` from every other keep-alive of that server and stay inside the window. The
    slot is booked in ``plan.occupied``, so a later send settled in the same pass sees it.
    """
    server, who = send.server, f"keep-alive from {send.sender} to {send.recipient}"
    # Status keeps whole seconds; rounding up keeps the recorded send no earlier than the real one.
    at_second = _whole_second(now, up=True)
    if delivery is Delivery.SENT:
        touched = (send.sender, send.recipient)
        if send.leg is Leg.REPLY:
            answered = replace(exchange, phase=KeepAlivePhase.REPLIED, reply_planned=at_second, message="")
            return Settled(exchange=answered, outcome="sent",
                           touched=touched, events=(KeepAliveEvent(
                               server=server, type="Normal", reason=Reason.KEEP_ALIVE_REPLIED,
                               message=f"{who} answered ({send.idempotency_key})"),))
        # The answer is a new leg with its own attempts.
        sent = replace(exchange, phase=KeepAlivePhase.SENT, attempts=0, last_attempt=at_second, message="")
        then = f"; the answer follows at {format_time(exchange.reply_planned)}" if exchange.reply_planned else ""
        return Settled(exchange=sent, outcome="sent", touched=touched, events=(KeepAliveEvent(
            server=server, type="Normal", reason=Reason.KEEP_ALIVE_SENT,
            message=f"{who} sent ({send.idempotency_key}){then}"),))

    if delivery is Delivery.BLOCKED:
        return Settled(exchange=exchange, outcome="blocked", events=())

    if delivery is Delivery.DEFERRED:
        # The deferred message never went out, so only Retry-After (else minSpacing) holds it back.
        earliest = now + (retry_after or spec.min_spacing)
        moved = _move(plan=plan, send=send, exchange=exchange, earliest=earliest, spec=spec, timezone=timezone)
        if moved is not None:
            return Settled(exchange=replace(moved, message=f"deferred: {detail}"), outcome="deferred",
                           events=(KeepAliveEvent(
                               server=server, type="Normal", reason=Reason.KEEP_ALIVE_DEFERRED,
                               message=f"{who} deferred to {format_time(_leg_time(moved, send.leg))}: {detail}"),))
        return _give_up(exchange=exchange, attempts=exchange.attempts, now=now, server=server, who=who,
                        why=f"rate limited and no slot is left in today's window: {detail}")

    attempts = exchange.attempts + 1
    if delivery is Delivery.RETRYABLE and attempts < policy.max_attempts:
        moved = _move(plan=plan, send=send, exchange=exchange, earliest=now + policy.delay(attempts), spec=spec,
                      timezone=timezone)
        if moved is not None:
            moved = replace(moved, attempts=attempts, last_attempt=at_second,
                            message=f"attempt {attempts} failed: {detail}")
            return Settled(exchange=moved, outcome="retrying", events=(KeepAliveEvent(
                server=server, type="Warning", reason=Reason.KEEP_ALIVE_RETRYING,
                message=f"{who} failed ({detail}); retrying at {format_time(_leg_time(moved, send.leg))}"),))
    return _give_up(exchange=exchange, attempts=attempts, now=now, server=server, who=who,
                    why=f"gave up after {attempts} attempt(s): {detail}")


def _give_up(*, exchange: Exchange, attempts: int, now: datetime, server: str, who: str, why: str) -> Settled:
    failed = replace(exchange, phase=KeepAlivePhase.FAILED, attempts=attempts,
                     last_attempt=_whole_second(now, up=True), message=why)
    return Settled(exchange=failed, outcome="failed", events=(KeepAliveEvent(
        server=server, type="Warning", reason=Reason.KEEP_ALIVE_FAILED,
        message=f"{who} stops for today: {why}"),))


def _leg_time(exchange: Exchange, leg: Leg) -> datetime:
    if leg is Leg.REPLY and exchange.reply_planned is not None:
        return exchange.reply_planned
    return exchange.planned


def _move(*, plan: KeepAlivePlan, send: Send, exchange: Exchange, earliest: datetime, spec: KeepAlive,
          timezone: str) -> Exchange | None:
    """The exchange with this leg (and the answer after it) at the next free slots today, or None."""
    bounds = window_on(exchange.day, window=spec.window, timezone=timezone)
    if bounds is None:
        return None
    lo, hi = _whole_second(max(earliest, bounds[0]), up=True), bounds[1]
    slots = plan.occupied.setdefault(send.server, [])
    current = _leg_time(exchange, send.leg)
    _discard(slots, current)
    at = free_slot(slots, lo=lo, hi=hi, target=lo, spacing=spec.min_spacing)
    if at is None:
        insort(slots, current)
        return None
    insort(slots, at)
    if send.leg is Leg.REPLY:
        return replace(exchange, reply_planned=at)
    if exchange.reply_planned is None:
        return replace(exchange, planned=at)
    partner = plan.directory.get(exchange.to)
    partner_server = partner.server if partner is not None else send.server
    partner_slots = plan.occupied.setdefault(partner_server, [])
    _discard(partner_slots, exchange.reply_planned)
    answer_after = at + (exchange.reply_planned - exchange.planned)
    reply = free_slot(partner_slots, lo=at + plan.answer_delay, hi=hi, target=answer_after, spacing=spec.min_spacing)
    if reply is None:
        _discard(slots, at)
        insort(slots, current)
        insort(partner_slots, exchange.reply_planned)
        return None
    insort(partner_slots, reply)
    return replace(exchange, planned=at, reply_planned=reply)


def _discard(slots: list[datetime], moment: datetime) -> None:
    index = bisect_left(slots, moment)
    if index < len(slots) and slots[index] == moment:
        del slots[index]


# --- reporting ----------------------------------------------------------------------------------


def keep_alive_condition(*, plan: KeepAlivePlan, spec: KeepAlive, failed_today: int,
                         at_risk_lines: Iterable[str]) -> Condition:
    at_risk = sorted(at_risk_lines)
    if at_risk:
        shown = ", ".join(at_risk[:5]) + (f" and {len(at_risk) - 5} more" if len(at_risk) > 5 else "")
        action = "" if spec.enabled else "; keep-alive is disabled (spec.keepAlive.enabled=false)"
        return condition(ConditionType.KEEP_ALIVE_HEALTHY, False, Reason.LINES_AT_RISK,
                         f"{len(at_risk)} line(s) without traffic for longer than the deadline "
                         f"({_days(spec.deadline)}) risk deactivation: {shown}{action}")
    if failed_today:
        return condition(ConditionType.KEEP_ALIVE_HEALTHY, False, Reason.KEEP_ALIVE_FAILED,
                         f"{failed_today} keep-alive(s) gave up today; see the servers' KeepAliveFailed events")
    if not spec.enabled:
        return condition(ConditionType.KEEP_ALIVE_HEALTHY, True, Reason.KEEP_ALIVE_DISABLED,
                         "keep-alive is disabled (spec.keepAlive.enabled=false); no line is past the deadline yet")
    if plan.no_partner:
        return condition(ConditionType.KEEP_ALIVE_HEALTHY, False, Reason.KEEP_ALIVE_FAILED,
                         "an idle line has no partner: add a second line or spec.keepAlive.partners")
    return condition(ConditionType.KEEP_ALIVE_HEALTHY, True, Reason.LINES_FRESH,
                     f"no line has gone without traffic for longer than the deadline ({_days(spec.deadline)})")


def _days(span: timedelta) -> str:
    return f"{span.days}d" if span.seconds == 0 else f"{span.total_seconds() / 3600:g}h"
