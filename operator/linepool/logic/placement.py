"""Placement decisions: which line a new user gets, when a known user keeps theirs, and budgets.

The placement service (``linepool serve``) asks these questions; the store answers them inside
one transaction, so the answers here are pure and the clock is passed in:

- ``pool_facts`` turns a LinePool and its MessagingServers, as the operator last wrote their
  status, into what placement needs: the lines new users may take, in the operator's own
  round-robin order (``round_robin``, primary lines first and fallback lines only when no primary
  line can take anyone), each line's remaining daily budget of new conversations, and whether
  the pool can place anyone at all (``unavailable``);
- ``move_reason`` says whether a known user keeps their line (``None``) or must be re-placed;
- ``candidates`` walks the lines new users may take from the round-robin cursor, primary lines
  before fallback lines (``rotation`` walks one list of them);
- ``window_start`` is where "today" starts for a pool's budgets: the same quota window the
  operator measures (``spec.quotas.window``).

The budget rule is the issue's: placements in the window plus the conversations Prometheus has
already counted on the line stay within ``quotas.newConversationsPerLinePerDay``. A user placed
and already texting is counted twice; that errs on the side of a line's quota, never past it.
"""

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from linepool.api.conditions import find_condition
from linepool.api.errors import SpecError
from linepool.api.spec import ContactCard, PoolSpec, parse_pool_spec
from linepool.api.types import ConditionStatus, ConditionType, LineRole, LineState
from linepool.logic.assignment import round_robin
from linepool.logic.window import window_length

# How long a caller should wait before asking again, by why no line could be given. A full pool
# frees up at the operator's next poll at the earliest (new status, maybe a new server).
RETRY_STORE = 5
RETRY_NOT_READY = 10


class Unavailable(StrEnum):
    """Why a pool places nobody right now: the ``reason`` of a 503 answer."""

    POOL_FULL = "PoolFull"
    METRICS_UNAVAILABLE = "MetricsUnavailable"
    POOL_NOT_READY = "PoolNotReady"
    INVALID_SPEC = "InvalidSpec"
    STORE_UNAVAILABLE = "StoreUnavailable"


class MoveReason(StrEnum):
    """Why a known user's line can no longer carry them (``None`` from ``move_reason``: it can)."""

    FLAGGED = "Flagged"
    DEACTIVATED = "Deactivated"
    SERVER_GONE = "ServerGone"
    LEFT_POOL = "LeftPool"


# A line in these states has lost its standing with Apple: its users move. A saturated server
# or an at-risk line keeps the users it has; only new users avoid it.
UNUSABLE_STATES: Mapping[LineState, MoveReason] = {
    LineState.FLAGGED: MoveReason.FLAGGED,
    LineState.DEACTIVATED: MoveReason.DEACTIVATED,
}


@dataclass(frozen=True, slots=True)
class LineFacts:
    """One line of the pool as the operator last reported it."""

    line: str
    server: str
    role: LineRole
    state: LineState | None  # None until the operator has measured the line
    assignable: bool
    new_conversations: int  # counted by Prometheus in the quota window
    limit: int  # new users the service may still place in the window, before its own placements


@dataclass(frozen=True, slots=True)
class PoolFacts:
    """What placement knows of one pool; rebuilt whenever the pool or one of its servers changes."""

    namespace: str
    name: str
    spec: PoolSpec | None  # None when the spec is invalid
    lines: Mapping[str, LineFacts]
    servers: frozenset[str]
    order: tuple[str, ...]  # new users take these lines in turn
    unavailable: Unavailable | None
    message: str
    primaries: int = 0  # how many of ``order`` are primary lines: they come first, fallback lines after

    @property
    def quota(self) -> int:
        return self.spec.quotas.new_conversations_per_line_per_day if self.spec else 0

    @property
    def first_message(self) -> str:
        return self.spec.placement.first_message if self.spec else ""

    @property
    def contact_card(self) -> ContactCard | None:
        return self.spec.contact_card if self.spec else None

    @property
    def retry_after(self) -> int:
        """Seconds until the operator's next status update: when a full pool may have room."""
        if self.spec is None:
            return RETRY_NOT_READY
        return max(1, int(self.spec.metrics.poll_interval.total_seconds()))


def pool_facts(*, pool: Mapping[str, Any], servers: Sequence[Mapping[str, Any]]) -> PoolFacts:
    """Read a LinePool and the MessagingServers of its namespace into ``PoolFacts``.

    ``servers`` may hold servers of other pools; only those whose ``spec.pool`` names this pool
    count. The order of new users is the operator's: servers by name, each server's assignable
    lines interleaved, primary lines first and fallback lines only when no primary line remains.
    """
    metadata = pool.get("metadata") or {}
    namespace, name = str(metadata.get("namespace") or ""), str(metadata.get("name") or "")
    try:
        spec = parse_pool_spec(pool.get("spec") or {})
    except SpecError as exc:
        return PoolFacts(namespace=namespace, name=name, spec=None, lines={}, servers=frozenset(), order=(),
                         unavailable=Unavailable.INVALID_SPEC, message=f"the pool's spec is invalid: {exc}")
    quota = spec.quotas.new_conversations_per_line_per_day
    mine = sorted((s for s in servers if (s.get("spec") or {}).get("pool") == name),
                  key=lambda s: str((s.get("metadata") or {}).get("name")))
    lines: dict[str, LineFacts] = {}
    primary: list[list[str]] = []
    fallback: list[list[str]] = []
    for server in mine:
        server_name = str(server["metadata"]["name"])
        reported = {str(entry.get("id")): entry for entry in (server.get("status") or {}).get("lines") or []}
        own_primary: list[str] = []
        own_fallback: list[str] = []
        for declared in (server.get("spec") or {}).get("lines") or []:
            line_id = str(declared.get("id"))
            if line_id in lines:  # the operator reports a line claimed twice; the first server keeps it
                continue
            role = LineRole.FALLBACK if declared.get("role") == LineRole.FALLBACK.value else LineRole.PRIMARY
            status = reported.get(line_id) or {}
            observed = int(status.get("newConversationsInWindow") or 0)
            facts = LineFacts(
                line=line_id, server=server_name, role=role, state=_state(status.get("state")),
                assignable=status.get("assignable") is True, new_conversations=observed,
                limit=max(0, quota - observed),
            )
            lines[line_id] = facts
            if facts.assignable and facts.limit > 0:
                (own_fallback if role is LineRole.FALLBACK else own_primary).append(line_id)
        primary.append(own_primary)
        fallback.append(own_fallback)
    everything = len(lines) or 1
    order = tuple(round_robin(primary, cap=everything) + round_robin(fallback, cap=everything))
    unavailable, message = _availability(pool=pool, lines=lines, order=order)
    return PoolFacts(namespace=namespace, name=name, spec=spec, lines=lines,
                     servers=frozenset(str(s["metadata"]["name"]) for s in mine), order=order,
                     unavailable=unavailable, message=message, primaries=sum(len(own) for own in primary))


def _state(value: Any) -> LineState | None:
    try:
        return LineState(value)
    except ValueError:
        return None


def _availability(
    *, pool: Mapping[str, Any], lines: Mapping[str, LineFacts], order: Sequence[str]
) -> tuple[Unavailable | None, str]:
    status = pool.get("status") or {}
    conditions = status.get("conditions")
    metrics = find_condition(conditions, ConditionType.METRICS_AVAILABLE)
    if metrics is None:
        return Unavailable.POOL_NOT_READY, "the operator has not reported on this pool yet"
    if metrics.get("status") != ConditionStatus.TRUE.value:
        # The operator fails static without metrics, and so does placement: no fresh figures, no
        # new users on budgets nobody can measure. Known users keep their lines.
        return Unavailable.METRICS_UNAVAILABLE, str(metrics.get("message") or "the pool's metrics are unavailable")
    if not order:
        return Unavailable.POOL_FULL, (
            f"no line of the pool can take a new user ({len(lines)} lines: saturated, at risk, flagged, "
            "or at their daily budget of new conversations)"
        )
    return None, ""


def move_reason(*, line: str, server: str, facts: PoolFacts) -> MoveReason | None:
    """Why a user placed on ``line`` (on ``server``) must move, or ``None`` when they keep it.

    A line the operator has not measured yet keeps its users: no news is not bad news.
    """
    current = facts.lines.get(line)
    if current is None:
        return MoveReason.SERVER_GONE if server not in facts.servers else MoveReason.LEFT_POOL
    if current.state is None:
        return None
    return UNUSABLE_STATES.get(current.state)


def rotation(*, order: Sequence[str], cursor: int) -> Iterator[str]:
    """Every candidate line once, starting at the round-robin cursor and wrapping around."""
    count = len(order)
    if not count:
        return
    start = cursor % count
    for offset in range(count):
        yield order[(start + offset) % count]


def candidates(*, facts: PoolFacts, cursor: int) -> Iterator[tuple[str, int]]:
    """The lines a new user may take, each once, with the cursor to keep if the user takes it.

    Primary lines come first, in turn from the round-robin cursor; fallback lines only after every
    primary line has been offered (the operator holds them in reserve), in turn from the same
    cursor. The cursor kept after a line is the one that offers the next line of its kind first.
    """
    order, split = facts.order, facts.primaries
    for start, stop in ((0, split), (split, len(order))):
        count = stop - start
        first = cursor % count if count else 0
        for offset in range(count):
            yield order[start + (first + offset) % count], cursor + offset + 1


def has_budget(*, placed: int, facts: LineFacts) -> bool:
    """Whether one more new user fits: placements in the window plus observed stay within quota."""
    return placed < facts.limit


def window_start(*, spec: PoolSpec, now: datetime) -> datetime:
    """The start of the budget window at ``now``: rolling 24 hours, or the pool's local midnight."""
    return now - window_length(window=spec.quotas.window, timezone=spec.quotas.timezone, now=now)


def retry_after(*, reason: Unavailable, facts: PoolFacts | None) -> int:
    """Seconds a caller should wait after a 503 with ``reason``."""
    if reason is Unavailable.STORE_UNAVAILABLE:
        return RETRY_STORE
    if facts is None:
        return RETRY_NOT_READY
    return facts.retry_after


def budget_left(*, facts: LineFacts, placed: int) -> int:
    """New users the line may still take today, never below zero."""
    return max(0, facts.limit - placed)

