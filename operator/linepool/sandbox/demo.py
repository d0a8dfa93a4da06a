"""
``make demo``: the operator's main job, live in the terminal, in about two minutes.

Everything runs on this machine, on loopback, with nothing to install but Debian's
``prometheus``:

1. the sandbox Kubernetes API (:class:`~linepool.sandbox.apiserver.ApiServerThread`) with
   a namespace ``demo`` and the manifests of ``examples/demo/`` (a Secret, the LinePool
   ``support`` and its two MessagingServers);
2. a simulated fleet (:class:`~linepool.sandbox.fleet.Fleet`) exporting the metrics
   contract, scraped every second by a real Prometheus on 127.0.0.1:19090 (the port the
   demo LinePool points at);
3. the real operator, as a child process (``python -m linepool run``), logging to
   ``.demo/operator.log``;
4. simulated users: existing conversations keep talking on their lines, and new users are
   placed round-robin on the pool's ``status.assignableLines``, as a real dispatcher would.

The traffic builds for about a minute, then eases. The quota is tiny (1000 messages per
server per day), so within two minutes ``support-0`` reaches ``stopAt`` and is taken out of
rotation, the pool crosses ``scaleUpAt`` and the operator adds ``support-2``, ``support-1``
saturates too, and new users move to ``support-2``. Meanwhile the two Fallback lines, which
carry no users by design and last had traffic 30 days ago, get a keep-alive: the operator
plans a short exchange between them inside the pool's window, records it in status, sends it
through each server's messaging API (a real HTTP stub here) and the partner line answers.

Line health watches every line all along (``spec.health`` is on by default). The users' traffic
is a healthy exchange: most messages get a reply, conversations are started by the users, and
each line's pace stays under the burst limit the demo sets for its compressed day. Early on,
one line of ``support-0`` drifts into a burst (a sudden blast of messages on top of its
conversations): the operator marks it at risk of an Apple flag, and the line leaves the
assignable lines while its server still takes users. Later Apple flags it (the fleet exports
``imessage_line_state{state="flagged"}``), and the operator's forensics event (``LineFlagged``)
names the burst as the cause and says to pace sends. A live view shows all of it, and a summary
at the end says what happened and when.

Run it with ``python -m linepool.sandbox.demo [--duration SECONDS]``. Exit codes: 0 when a
saturation, a scale-up, a keep-alive, the drifting line's flag risk (out of rotation) and its
forensics event were seen, and no healthy line was ever at risk of a flag; 1 when not (the
summary says which is missing); 2 when the demo could not run (port 19090 busy, Prometheus
missing, the operator died); 130 on Ctrl-C or SIGTERM. Everything it started is stopped in every case.
"""
import argparse
import collections
import contextlib
import copy
import dataclasses
import math
import pathlib
import shutil
import signal
import socket
import sys
import textwrap
import time
import urllib.error
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Any, Final, Protocol, TextIO
from zoneinfo import ZoneInfo

import yaml

from linepool.api import ASSIGNABLE_LABEL, CREATED_BY_ANNOTATION, OPERATOR_NAME, POOLS, SERVERS
from linepool.sandbox.apiserver import ApiServerThread
from linepool.sandbox.fleet import Fleet, LineState, RelayStub
from linepool.sandbox.operator_process import OperatorProcess
from linepool.sandbox.placement import PlacementProcess
from linepool.sandbox.prometheus import PrometheusNotInstalled, PrometheusProcess, find_binary

__all__ = ['Profile', 'Traffic', 'main', 'run_demo']

REPO_ROOT: Final = pathlib.Path(__file__).resolve().parents[3]
EXAMPLES_DIR: Final = REPO_ROOT / 'examples' / 'demo'
WORKDIR: Final = REPO_ROOT / '.demo'  # gitignored; the logs stay there after the run for a look

NAMESPACE: Final = 'demo'
DEMO_POOL: Final = 'support'
# The app's credential for the placement service (a token file; in a cluster, a ServiceAccount).
DEMO_TOKEN: Final = 'demo-app-token'
PLACEMENT_PORT: Final = 18080
PLACEMENT_URL: Final = f'http://127.0.0.1:{PLACEMENT_PORT}'
POOL: Final = 'support'
# Fixed, because examples/demo/10-linepool.yaml points the pool at http://127.0.0.1:19090.
PROMETHEUS_PORT: Final = 19090

DEFAULT_DURATION: Final = 120.0
MAX_DURATION: Final = 150.0
MIN_DURATION: Final = 10.0  # start-up alone takes ~6s
TICK: Final = 0.5  # seconds between two rounds of traffic
REFRESH: Final = 2.0  # seconds between two screens: the operator polls every 2s anyway
STARTUP_TIMEOUT: Final = 40.0  # Prometheus discovers its target after ~6s; kopf starts in ~3s

# The operator's own words for what the demo is about.
SATURATED_REASON: Final = 'ServerSaturated'
SCALED_UP_REASON: Final = 'ScaledUp'
KEEP_ALIVE_REASON: Final = 'KeepAliveSent'
ANSWERED_REASON: Final = 'KeepAliveReplied'
FLAGGED_REASON: Final = 'LineFlagged'  # the forensics of a flag
RECOVERED_REASON: Final = 'LineRecovered'
PACE_ADVICE: Final = 'pace sends'  # what the forensics of a burst tell the team to change
# The fallback lines last had traffic this long ago: past the pool's idleAfter (21d). The one on
# support-1, which saturates later, has waited longest, so it starts the exchange.
FALLBACK_IDLE_DAYS: Final[Mapping[str, int]] = {'support-0': 30, 'support-1': 35}
# The demo's clock runs fast: the keep-alive window is open now and closes within about a minute,
# and a partner line answers within seconds (a real pool answers after minutes).
KEEP_ALIVE_WINDOW_MINUTES: Final = 5
# The operator plans the exchange in its first pass, ~7s after the manifests are applied, and needs
# ~8s of the window left for it and its answer (2s, spread up to fourfold); at 15s the window sometimes
# closed first and the exchange went to the next day. Longer, it could come after support-1 saturates.
KEEP_ALIVE_LEAD: Final = timedelta(seconds=25)
OPERATOR_ARGS: Final = ('--keep-alive-answer-delay', '2s')
# Line health, fitted to the demo's clock. The demo compresses a day into about two minutes: at peak
# hour a healthy line sends up to ~380 messages a minute here (a real line sends that in a day), so
# the default burst rule (60 messages in 10m) would take every line out of rotation and the pool would
# scale up for want of lines, not for traffic. So the limit sits a fifth above that peak, over the
# shortest window the API allows. The other rules keep their defaults: the users' traffic never trips
# them (they answer most messages, write first, and get no follow-ups).
BURST_LIMIT: Final = 450
BURST_WITHIN: Final = '1m'
# The quiet hours begin two hours from now: the demo's day is the present moment, as for the keep-alive
# window. Run in the New York night, the default 22:00-08:00 would flag every line for sending at 3 am.
QUIET_STARTS_IN: Final = timedelta(hours=2)
QUIET_LASTS: Final = timedelta(hours=8)
WEEKDAYS: Final = ('Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun')

WIDTH: Final = 100  # every line of the view fits in 100 columns
BAR_WIDTH: Final = 20
EVENTS_SHOWN: Final = 6
EVENT_ROWS: Final = 7  # on a terminal, so that the story's view fits in 24 rows; a long message takes two
EVENT_INDENT: Final = 10  # where a long event message goes on, on its next row
HEALTH_ROWS: Final = 3  # lines shown at risk of a flag, or flagged
RECENT_WINDOW: Final = 10.0  # seconds over which "new users per server" is counted

EXIT_OK: Final = 0
EXIT_NOT_SHOWN: Final = 1
EXIT_CANNOT_START: Final = 2
EXIT_INTERRUPTED: Final = 130


class DemoError(Exception):
    """The demo cannot run here; the message says why and what to do."""


# ------------------------------------------------------------------------------------------------
# The users: a traffic model fed by the pool's own assignment.

LineKey = tuple[str, str]  # (server, line)
Counter = collections.Counter[str]


class TrafficSink(Protocol):
    """What the traffic model writes to: the :class:`Fleet`, or a fake in a tuning script."""

    def send(self, server: str, line: str, n: int = 1) -> None: ...
    def receive(self, server: str, line: str, n: int = 1) -> None: ...
    def new_conversations(self, server: str, line: str, n: int = 1) -> None: ...


@dataclasses.dataclass(frozen=True)
class Profile:
    """A piecewise-linear function of time: ``(seconds, value)`` points, flat beyond both ends."""

    points: tuple[tuple[float, float], ...]

    def __call__(self, elapsed: float) -> float:
        first_time, first_value = self.points[0]
        if elapsed <= first_time:
            return first_value
        for (t0, v0), (t1, v1) in zip(self.points, self.points[1:], strict=False):
            if elapsed <= t1:
                return v0 + (v1 - v0) * (elapsed - t0) / (t1 - t0)
        return self.points[-1][1]


# Messages per second that one open conversation sends: a rush that builds for about a minute,
# holds, then passes. The quota counts a rolling day and forgets nothing within the demo, so
# the rush has to pass: otherwise the pool would cross scaleUpAt again (2100 of 3000 messages)
# and keep adding servers up to maxServers. Tuned (against a model of the operator, then live)
# so that, counted from the first message, support-0 saturates at ~62s, support-2 is added at
# ~63s, support-1 saturates at ~74s, and the pool ends near 60%, or 62% with --duration 150.
# With the drifting line's burst (see DRIFT) on top and fewer users on support-0, support-0 saturates
# at ~52s, support-2 comes at ~58s and support-1 saturates at ~67s, and the pool ends near 61%.
ACTIVITY: Final = Profile(((0.0, 0.14), (35.0, 0.42), (64.0, 0.42), (76.0, 0.03)))
# New users per second. Each one is a new conversation placed on the next assignable line; at
# most ~20 land on one line, well under the pool's 50 new conversations per line per day.
ARRIVALS: Final = Profile(((0.0, 0.5), (40.0, 0.8)))
# Open conversations per line at the start, in each server's line order. support-0 is the
# busier server, so the two saturate one after the other rather than together: its users are
# fewer, but the burst of its second line (DRIFT) spends a good part of its quota.
# The third line of each server is a Fallback line: it carries no users (the operator lists
# Fallback lines as assignable only when no Primary line can take users).
INITIAL_CONVERSATIONS: Final[Mapping[str, tuple[int, ...]]] = {
    'support-0': (7, 6, 0),
    'support-1': (13, 13, 0),
}
# Mean length of a conversation, in seconds (the demo's clock runs fast, like its quota). On a
# server out of rotation, conversations end and none start, so its traffic fades.
LIFETIME: Final = 120.0
REPLY_RATIO: Final = 0.8  # users answer most messages; the operator counts sent ones only


class Traffic:
    """
    Simulated users of the pool's lines, one :meth:`tick` at a time.

    Existing conversations send in proportion to how many are open on each line; new users
    go round-robin to the lines the pool lists as assignable (through the placement service when
    ``placer`` is given, as an app would), and then stay there. So when
    the operator takes a server out of rotation, its traffic stops growing, and a server it
    adds starts empty and fills up with new users only. Fractions of a message carry over to
    the next tick, so low rates are exact on average and the run is deterministic.
    """

    def __init__(
            self,
            *,
            sink: TrafficSink,
            activity: Callable[[float], float] = ACTIVITY,
            arrivals: Callable[[float], float] = ARRIVALS,
            lifetime: float = LIFETIME,
            placer: 'Callable[[str], LineKey | None] | None' = None,
    ) -> None:
        super().__init__()
        self._sink = sink
        self._placer = placer
        self._users = 0
        self._activity = activity
        self._arrivals = arrivals
        self._lifetime = lifetime
        self._conversations: dict[LineKey, float] = {}
        self._carry: dict[LineKey, float] = {}
        self._reply_carry: dict[LineKey, float] = {}
        self._arrival_carry = 0.0
        self._last_placed: str | None = None
        self._halted: set[LineKey] = set()
        self.sent = 0
        self.new_users: collections.Counter[str] = collections.Counter()

    def add_lines(self, *, server: str, lines: Sequence[str], conversations: Sequence[int] = ()) -> None:
        """Start carrying a server's lines, with ``conversations`` open on each (default: none)."""
        for index, line in enumerate(lines):
            self._conversations.setdefault((server, line), conversations[index] if index < len(conversations) else 0)

    def halt(self, *, server: str, line: str) -> None:
        """A line can send no more (Apple flagged it): its conversations end, and no user is placed on it."""
        self._conversations[(server, line)] = 0.0
        self._halted.add((server, line))

    def rate(self, *, elapsed: float) -> float:
        """Messages per second right now, over all lines (new users included)."""
        return sum(self._conversations.values()) * self._activity(elapsed) + self._arrivals(elapsed)

    def tick(self, *, elapsed: float, seconds: float, assignable: Sequence[LineKey]) -> Counter:
        """
        One round of traffic; returns how many new users each server got in it.

        ``assignable`` is the pool's ``status.assignableLines`` in its order, restricted to
        lines the demo carries. When it is empty, arriving users wait for the next tick.
        """
        per_message = self._activity(elapsed)
        ending = math.exp(-seconds / self._lifetime)
        for key, open_conversations in self._conversations.items():
            self._send(key=key, due=open_conversations * per_message * seconds)
            self._conversations[key] = open_conversations * ending
        self._arrival_carry += self._arrivals(elapsed) * seconds
        placed: Counter = collections.Counter()
        assignable = [key for key in assignable if key not in self._halted]
        while self._arrival_carry >= 1 and assignable:
            self._arrival_carry -= 1
            chosen = self._next_line(assignable) if self._placer is None else self._place()
            if chosen is None:  # the placement service had no line for them: they try again later
                break
            server, line = chosen
            self._sink.new_conversations(server, line, 1)
            self._send(key=(server, line), due=1.0)
            self._conversations[(server, line)] = self._conversations.get((server, line), 0) + 1
            placed[server] += 1
        # Users who found no line do not pile up into a burst for the first line that opens.
        self._arrival_carry = min(self._arrival_carry, 3.0)
        self.new_users.update(placed)
        return placed

    def _send(self, *, key: LineKey, due: float) -> None:
        due += self._carry.get(key, 0.0)
        whole = math.floor(due)
        self._carry[key] = due - whole
        if whole <= 0:
            return
        server, line = key
        self._sink.send(server, line, whole)
        self.sent += whole
        replies = self._reply_carry.get(key, 0.0) + whole * REPLY_RATIO
        self._reply_carry[key] = replies - math.floor(replies)
        if replies >= 1:
            self._sink.receive(server, line, math.floor(replies))

    def _place(self) -> LineKey | None:
        """A new user asks the placement service for a line, as an app's sign-up would."""
        assert self._placer is not None
        self._users += 1
        chosen = self._placer(f"demo-user-{self._users}")
        if chosen is None or chosen in self._halted:
            return None
        return chosen

    def _next_line(self, assignable: Sequence[LineKey]) -> LineKey:
        # Continue after the last line used, even when the list changed under us: a fresh
        # start from the top would keep piling users onto the first few lines.
        lines = [line for _, line in assignable]
        start = lines.index(self._last_placed) + 1 if self._last_placed in lines else 0
        chosen = assignable[start % len(assignable)]
        self._last_placed = chosen[1]
        return chosen


class DriftSink(Protocol):
    """What the drifting line writes to: the :class:`Fleet`, or a fake in a test."""

    def send(self, server: str, line: str, n: int = 1) -> None: ...
    def receive(self, server: str, line: str, n: int = 1) -> None: ...
    def set_line_state(self, server: str, line: str, state: LineState) -> None: ...


@dataclasses.dataclass(frozen=True, kw_only=True)
class DriftPlan:
    """One line drifts into a burst, and Apple flags it later. Times in seconds of traffic."""

    server: str
    line: str
    start: float  # the burst starts then at the earliest (see Drift for why it may wait)
    seconds: float  # how long it lasts
    messages: int  # sent on top of the line's conversations
    reply_ratio: float  # a blast gets fewer answers than a conversation
    flag_at: float  # Apple flags the line then at the earliest


# The second Primary line of support-0 drifts early on, while its server still takes users, so that
# it leaves the assignable lines on its own. Its 450 extra messages in 8 seconds, on top of its
# conversations, pass BURST_LIMIT within seconds: its minute reaches 540-600 messages (the forensics
# read 525-603 in four runs), where the busiest healthy line peaks near 380. A quarter of them are
# answered, so the burst is the only pattern it shows (no exchange would need fewer than 20%).
DRIFT: Final = DriftPlan(server='support-0', line='+14155550101', start=14.0, seconds=8.0, messages=450,
                         reply_ratio=0.25, flag_at=78.0)
# Seconds the burst keeps from either end of its wall-clock minute, and the flag from the end.
MINUTE_MARGIN: Final = 3.0


class Drift:
    """
    Plays a :class:`DriftPlan` against the fleet, one :meth:`tick` at a time.

    The burst is kept within one minute of the wall clock, and the flag comes after that minute
    ended. The operator's forensics read the hour before a flag as sends per ``burst.within`` at
    whole minutes (a subquery's steps fall on multiples of its 1m step), so with the demo's 1m
    window a burst that straddled a whole minute would read as two halves, each under the limit.
    A real pool's 10m window loses at most a tenth that way. So the burst waits for the next minute
    when the current one has no room left for it (at most ``seconds`` and two margins), and keeps a
    margin from both ends of its minute: Prometheus scrapes every second.
    """

    def __init__(self, *, plan: DriftPlan, sink: DriftSink, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.plan = plan
        self._sink = sink
        self._clock = clock
        self.begins: float | None = None  # wall-clock seconds
        self._flag_wall: float | None = None
        self._sent = 0
        self._replied = 0
        self.started_at: float | None = None  # seconds of traffic, for the timeline
        self.flagged_at: float | None = None

    @property
    def key(self) -> LineKey:
        return self.plan.server, self.plan.line

    @property
    def sent(self) -> int:
        return self._sent

    def tick(self, *, elapsed: float, seconds: float) -> None:
        """Send what is due by the end of this tick of ``seconds``, and flag the line when it is time."""
        plan, wall = self.plan, self._clock()
        if self.begins is None:
            if elapsed < plan.start:
                return
            into = wall % 60.0
            if into < MINUTE_MARGIN:
                self.begins = wall - into + MINUTE_MARGIN
            elif 60.0 - into >= plan.seconds + MINUTE_MARGIN:
                self.begins = wall
            else:
                self.begins = wall - into + 60.0 + MINUTE_MARGIN
            minute_ends = (self.begins // 60.0 + 1) * 60.0
            self._flag_wall = max(wall + plan.flag_at - elapsed, minute_ends + MINUTE_MARGIN)
        if self._sent < plan.messages and wall >= self.begins:
            if self.started_at is None:
                self.started_at = elapsed
            due = min(plan.messages, math.floor(plan.messages * (wall + seconds - self.begins) / plan.seconds))
            if due > self._sent:
                self._sink.send(plan.server, plan.line, due - self._sent)
                self._sent = due
                replies = math.floor(self._sent * plan.reply_ratio)
                if replies > self._replied:
                    self._sink.receive(plan.server, plan.line, replies - self._replied)
                    self._replied = replies
        if self.flagged_at is None and self._flag_wall is not None and self._sent >= plan.messages \
                and wall >= self._flag_wall:
            self._sink.set_line_state(plan.server, plan.line, 'flagged')
            self.flagged_at = elapsed


# ------------------------------------------------------------------------------------------------
# Reading the cluster.

@dataclasses.dataclass(frozen=True, kw_only=True)
class ServerRow:
    name: str
    phase: str
    utilization: float | None
    assignable: bool | None  # the label linepool.dev/assignable, as dispatchers read it
    lines: tuple[str, ...]
    created_by_operator: bool
    created: datetime | None
    saturated_since: datetime | None  # the pass that took it out of rotation, from its conditions
    keep_alives: tuple['KeepAliveRow', ...] = ()
    health: tuple['LineHealthRow', ...] = ()  # lines at risk of a flag, or flagged


@dataclasses.dataclass(frozen=True, kw_only=True)
class FlagRiskRow:
    """One risk of an Apple flag of a line (``status.lines[].flagRisks[]``)."""

    pattern: str
    message: str
    since: datetime | None


@dataclasses.dataclass(frozen=True, kw_only=True)
class LineHealthRow:
    """A line's health, as its server's status records it: its risks of a flag, and its last flag."""

    line: str
    state: str
    risks: tuple[FlagRiskRow, ...]
    last_flag: Mapping[str, Any] | None  # ``status.lines[].lastFlag``: time, cause, message, evidence


@dataclasses.dataclass(frozen=True, kw_only=True)
class KeepAliveRow:
    """A line's keep-alive exchange, as its server's status records it."""

    line: str
    to: str
    phase: str
    planned: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class EventRow:
    at: datetime
    type: str
    reason: str
    obj: str
    message: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class Snapshot:
    """What the API server says right now about the pool, its servers and the events."""

    pool: Mapping[str, Any]
    servers: tuple[ServerRow, ...]
    events: tuple[EventRow, ...] = ()

    @property
    def status(self) -> Mapping[str, Any]:
        return dict(self.pool.get('status') or {})

    @property
    def assignable_lines(self) -> list[str]:
        return [str(line) for line in self.status.get('assignableLines') or []]


def read_cluster(*, api: ApiServerThread, with_events: bool) -> Snapshot:
    pool = api.get(POOLS, NAMESPACE, POOL) or {}
    servers = [
        server_row(body) for body in api.list(SERVERS, NAMESPACE)
        if (body.get('spec') or {}).get('pool') == POOL
    ]
    events = read_events(api=api) if with_events else ()
    return Snapshot(pool=pool, servers=tuple(sorted(servers, key=lambda s: _ordinal_key(s.name))), events=events)


def server_row(body: Mapping[str, Any]) -> ServerRow:
    meta = body.get('metadata') or {}
    status = body.get('status') or {}
    label = (meta.get('labels') or {}).get(ASSIGNABLE_LABEL)
    utilization = status.get('utilization')
    return ServerRow(
        name=str(meta.get('name')),
        phase=str(status.get('phase') or 'new'),  # no status yet: the operator has not decided it
        utilization=float(utilization) if isinstance(utilization, int | float) else None,
        assignable=None if label is None else label == 'true',
        lines=tuple(str(line.get('id')) for line in (body.get('spec') or {}).get('lines') or []),
        created_by_operator=(meta.get('annotations') or {}).get(CREATED_BY_ANNOTATION) == OPERATOR_NAME,
        created=_parse_time(meta['creationTimestamp']) if meta.get('creationTimestamp') else None,
        saturated_since=_saturated_since(status),
        keep_alives=tuple(
            KeepAliveRow(line=str(line.get('id')), to=str(record.get('to')), phase=str(record.get('phase')),
                         planned=str(record.get('plannedTime') or ''))
            for line in status.get('lines') or [] if isinstance(record := line.get('keepAlive'), dict)),
        health=tuple(line_health(line) for line in status.get('lines') or []
                     if line.get('flagRisks') or line.get('lastFlag') or line.get('state') == 'Flagged'),
    )


def line_health(line: Mapping[str, Any]) -> LineHealthRow:
    """A line of a server's ``status.lines`` as the health part of the view reads it."""
    return LineHealthRow(
        line=str(line.get('id')), state=str(line.get('state') or ''),
        risks=tuple(FlagRiskRow(pattern=str(risk.get('pattern')), message=str(risk.get('message') or ''),
                                since=_parse_time(risk['since']) if risk.get('since') else None)
                    for risk in line.get('flagRisks') or [] if isinstance(risk, dict)),
        last_flag=dict(line['lastFlag']) if isinstance(line.get('lastFlag'), dict) else None,
    )


def _saturated_since(status: Mapping[str, Any]) -> datetime | None:
    for cond in status.get('conditions') or []:
        if cond.get('type') == 'Assignable' and cond.get('status') == 'False' \
                and cond.get('reason') == SATURATED_REASON and cond.get('lastTransitionTime'):
            return _parse_time(cond['lastTransitionTime'])
    return None


def read_events(*, api: ApiServerThread) -> tuple[EventRow, ...]:
    rows = []
    for body in api.list('events', NAMESPACE):
        meta = body.get('metadata') or {}
        stamp = (body.get('eventTime') or body.get('lastTimestamp') or body.get('firstTimestamp')
                 or meta.get('creationTimestamp'))
        rows.append(EventRow(
            at=_parse_time(stamp), type=str(body.get('type') or ''), reason=str(body.get('reason') or ''),
            obj=str((body.get('involvedObject') or {}).get('name') or ''),
            message=' '.join(str(body.get('message') or '').split()),
        ))
    return tuple(sorted(rows, key=lambda e: e.at))


def _parse_time(value: Any) -> datetime:
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return datetime.fromtimestamp(0, tz=UTC)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _ordinal_key(name: str) -> tuple[str, int]:
    # support-10 after support-9, not after support-1.
    base, _, tail = name.rpartition('-')
    return (base, int(tail)) if tail.isdigit() else (name, -1)


# ------------------------------------------------------------------------------------------------
# What happened: milestones for the view and the summary.

@dataclasses.dataclass
class Timeline:
    """When things first happened, in seconds since the demo started; for the summary."""

    started: datetime
    saturated: dict[str, float] = dataclasses.field(default_factory=dict)
    added: dict[str, float] = dataclasses.field(default_factory=dict)
    first_new_user: dict[str, float] = dataclasses.field(default_factory=dict)
    users_after_scale_up: Counter = dataclasses.field(default_factory=collections.Counter)
    events: dict[tuple[datetime, str, str], EventRow] = dataclasses.field(default_factory=dict)
    pool_utilization: float | None = None
    # Line health: the line of `drift` drifts into a burst; every other line must stay healthy.
    drift: DriftPlan | None = None
    drifted: float | None = None  # when its burst began
    burst_sent: int = 0  # messages of the burst, on top of the users'
    apple_flagged: float | None = None  # when the fleet turned it flagged
    flag_risks: dict[LineKey, tuple[float, str]] = dataclasses.field(default_factory=dict)  # the first of each line
    # When the drifting line was first seen at risk of a burst and out of assignableLines, its server not; why.
    left_rotation: tuple[float, str] | None = None

    def observe(self, *, snapshot: Snapshot, elapsed: float) -> None:
        for server in snapshot.servers:
            # Times from the objects themselves (the operator's pass, the API server's create),
            # sharper than our 2-second refreshes; both are whole seconds, so one pass that
            # saturates a server and adds another shows them at the same second.
            if server.saturated_since is not None:
                _earliest(self.saturated, server.name, self.since_start(server.saturated_since))
            elif server.assignable is False:  # the label is what dispatchers read
                _earliest(self.saturated, server.name, elapsed)
            if server.created_by_operator:
                _earliest(self.added, server.name, self.since_start(server.created) if server.created else elapsed)
        for event in snapshot.events:
            self.events.setdefault((event.at, event.reason, event.obj), event)
        self._observe_health(snapshot=snapshot, elapsed=elapsed)
        utilization = snapshot.status.get('utilization')
        if isinstance(utilization, int | float):
            self.pool_utilization = float(utilization)

    def _observe_health(self, *, snapshot: Snapshot, elapsed: float) -> None:
        assignable = set(snapshot.assignable_lines)
        for server in snapshot.servers:
            for row in server.health:
                key = (server.name, row.line)
                for risk in row.risks:
                    at = self.since_start(risk.since) if risk.since else elapsed
                    self.flag_risks.setdefault(key, (at, f"{risk.pattern}: {risk.message}"))
                    # The story is the line leaving rotation for its burst while its server still
                    # takes users; a saturated server would have taken it out anyway.
                    if key == self.watched and risk.pattern == 'Burst' and row.line not in assignable \
                            and server.assignable and self.left_rotation is None:
                        self.left_rotation = (at, f"{risk.pattern}: {risk.message}")

    @property
    def watched(self) -> LineKey | None:
        return (self.drift.server, self.drift.line) if self.drift is not None else None

    def forensics(self) -> list[EventRow]:
        """The operator's reports of the watched line's flag that say what to change."""
        if self.watched is None:
            return []
        server, line = self.watched
        return [event for event in self.events.values() if event.reason == FLAGGED_REASON and event.obj == server
                and line in event.message and PACE_ADVICE in event.message]

    def healthy_at_risk(self) -> list[LineKey]:
        """Lines other than the drifting one that were ever at risk of a flag: the demo's limits misfit."""
        return sorted(key for key in self.flag_risks if key != self.watched)

    def placed(self, *, placed: Counter, elapsed: float) -> None:
        for server, count in placed.items():
            self.first_new_user.setdefault(server, elapsed)
            if self.added:
                self.users_after_scale_up[server] += count

    def reasons(self) -> Counter:
        return collections.Counter(event.reason for event in self.events.values())

    def since_start(self, at: datetime) -> float:
        return (at - self.started).total_seconds()

    def milestones(self) -> list[tuple[float, str]]:
        """(seconds, what) in order; within one second, in the order the operator acts."""
        moments = [(at, 0, f"{name} saturated: out of rotation ({ASSIGNABLE_LABEL}=false)")
                   for name, at in self.saturated.items()]
        moments += [(at, 1, f"{name} added by the operator (ScaledUp)") for name, at in self.added.items()]
        moments += [(self.first_new_user[name], 2, f"first new user placed on {name}")
                    for name in self.added if name in self.first_new_user]
        moments += [(self.since_start(event.at), 3, f"{event.reason} on {event.obj}: {event.message.split(' (')[0]}")
                    for event in self.events.values() if event.reason in (KEEP_ALIVE_REASON, ANSWERED_REASON)]
        if self.drift is not None:
            server, line = self.drift.server, self.drift.line
            if self.drifted is not None:
                moments.append((self.drifted, 4, f"{short_line(line)} on {server} drifts into a burst "
                                                 f"({self.drift.messages} messages in {self.drift.seconds:.0f}s on top "
                                                 "of its conversations)"))
            if self.left_rotation is not None:
                at, why = self.left_rotation
                moments.append((at, 5, f"{short_line(line)} at risk of a flag ({why}): out of "
                                       f"status.assignableLines while {server} still takes users"))
            if self.apple_flagged is not None:
                moments.append((self.apple_flagged, 6, f"Apple flags {short_line(line)} "
                                                       '(imessage_line_state{state="flagged"} is 1)'))
        moments += [(self.since_start(event.at), 7, f"{event.reason} on {event.obj}: {event.message}")
                    for event in self.events.values() if event.reason in (FLAGGED_REASON, RECOVERED_REASON)]
        moments += [(at, 8, f"{short_line(line)} on {server} at risk of a flag ({what}), and it should not be")
                    for (server, line), (at, what) in self.flag_risks.items() if (server, line) != self.watched]
        return [(at, what) for at, _, what in sorted(moments, key=lambda m: (round(m[0]), m[1]))]


def _earliest(moments: dict[str, float], name: str, at: float) -> None:
    moments[name] = min(at, moments.get(name, at))


# ------------------------------------------------------------------------------------------------
# The view.

def bar(*, fraction: float | None, mark: float, width: int = BAR_WIDTH) -> str:
    """``[######|---]``: filled up to ``fraction``, with ``|`` at ``mark`` (a threshold)."""
    if fraction is None:
        return '[' + '?' * width + ']'
    filled = min(width, max(0, round(fraction * width)))
    cells = ['#'] * filled + ['-'] * (width - filled)
    position = min(width - 1, max(0, round(mark * width)))
    cells[position] = '|'
    return '[' + ''.join(cells) + ']'


def percent(fraction: float | None) -> str:
    return '  ?%' if fraction is None else f"{round(fraction * 100):3d}%"


def fit(text: str, width: int = WIDTH) -> str:
    return text if len(text) <= width else text[:width - 1] + '…'


def short_line(line: str) -> str:
    # The demo's numbers share their first digits; the last four tell them apart.
    return '…' + line[-4:] if len(line) > 6 else line


@dataclasses.dataclass(frozen=True, kw_only=True)
class Thresholds:
    stop_at: float
    scale_up_at: float

    @classmethod
    def of(cls, pool: Mapping[str, Any]) -> 'Thresholds':
        spec = pool.get('spec') or {}
        return cls(stop_at=float((spec.get('assignment') or {}).get('stopAt', 0.75)),
                   scale_up_at=float((spec.get('scaling') or {}).get('scaleUpAt', 0.7)))


def render(
        *,
        snapshot: Snapshot,
        timeline: Timeline,
        elapsed: float,
        duration: float,
        traffic: str,
        recent: Mapping[str, int],
        events: Sequence[EventRow],
        compact: bool,
) -> list[str]:
    """The screen, as lines of at most :data:`WIDTH` characters; ``compact`` for logs."""
    limits = Thresholds.of(snapshot.pool)
    status = snapshot.status
    utilization = status.get('utilization')
    pool_fraction = float(utilization) if isinstance(utilization, int | float) else None
    stop_at = f"UTILIZATION (| = stopAt {round(limits.stop_at * 100)}%)"
    lines = [
        fit(f"linepool demo · LinePool {NAMESPACE}/{POOL} · {elapsed:5.1f}s of {duration:.0f}s · {traffic}"),
        f"pool utilization {bar(fraction=pool_fraction, mark=limits.scale_up_at)} {percent(pool_fraction)}"
        f"   (| = scaleUpAt {round(limits.scale_up_at * 100)}%)   servers {len(snapshot.servers)}",
        '',
        f"{'SERVER':<10} {'PHASE':<9} {stop_at:<28} {'ASSIGNABLE':<10} {f'NEW USERS/{RECENT_WINDOW:.0f}s':<13} LINES",
    ]
    for server in snapshot.servers:
        assignable = {True: 'yes', False: 'no', None: '-'}[server.assignable]
        lines.append(fit(
            f"{server.name:<10} {server.phase:<9} {bar(fraction=server.utilization, mark=limits.stop_at)}"
            f" {percent(server.utilization)}  {assignable:<10} {recent.get(server.name, 0):<13}"
            f" {' '.join(short_line(line) for line in server.lines)}"))
    assignable_lines = snapshot.assignable_lines
    shown = ' '.join(short_line(line) for line in assignable_lines[:12]) + (' …' if len(assignable_lines) > 12 else '')
    recommendation = status.get('recommendation') or {}
    lines += [
        '',
        fit(f"new users go to (status.assignableLines, in order): {shown or '(none: every line is full)'}"),
        fit(f"recommendation: {recommendation.get('action', '-')} — {recommendation.get('reason', 'not yet decided')}"),
        fit(describe_keep_alive(snapshot=snapshot)),
        *describe_health(snapshot=snapshot, timeline=timeline),
        '',
    ]
    if events or not compact:
        # In a log, events are printed once, as they come, and in full; nothing new means nothing to print.
        lines.append("events (latest):" if not compact else 'new events:')
        rows = [format_event(event=event, timeline=timeline, rows=None if compact else 2) for event in events]
        if not compact:
            kept: list[list[str]] = []
            budget = EVENT_ROWS
            for event_rows in reversed(rows):
                if len(event_rows) > budget:
                    break
                kept.insert(0, event_rows)
                budget -= len(event_rows)
            rows = kept
        lines += [row for event_rows in rows for row in event_rows] or ['  (none yet)']
    return [line for line in lines if line] if compact else lines


def describe_health(*, snapshot: Snapshot, timeline: Timeline) -> list[str]:
    """The pool's line health: its burst limit, how many lines are at risk of a flag, and which they are."""
    burst = ((snapshot.pool.get('spec') or {}).get('health') or {}).get('burst') or {}
    summary = snapshot.status.get('health') or {}
    assignable = set(snapshot.assignable_lines)
    rows: list[str] = []
    for server in snapshot.servers:
        for row in server.health:
            line = short_line(row.line)
            for risk in row.risks:
                since = f"{timeline.since_start(risk.since):+.0f}s" if risk.since else '?'
                where = 'still assignable' if row.line in assignable else 'out of rotation'
                rows.append(fit(f"  {line} at risk of a flag since {since} · {risk.pattern}: {risk.message} · {where}"))
            last = row.last_flag
            if last:
                at = f"{timeline.since_start(_parse_time(last['time'])):+.0f}s" if last.get('time') else '?'
                state = 'Flagged' if row.state == 'Flagged' else f"{row.state} again, flagged"
                rows.append(fit(f"  {line} {state} at {at} · {last.get('message', '')}"))
    if len(rows) > HEALTH_ROWS:
        rows[HEALTH_ROWS - 1:] = [f"  … and {len(rows) - HEALTH_ROWS + 1} more"]
    head = (f"line health · burst limit {burst.get('messages', 60)} in {burst.get('within', '10m')}"
            f" · lines at risk of an Apple flag: {summary.get('atRisk', '-')}"
            f" · unmeasured: {', '.join(summary.get('unmeasured') or []) or 'none'}")
    return [fit(head), *rows]


def describe_keep_alive(*, snapshot: Snapshot) -> str:
    """``keep-alive: 0102 → 0112 Sent (answer due) · due 0 scheduled 1 sent today 1 at risk 0``."""
    summary = snapshot.status.get('keepAlive') or {}
    rows = [row for server in snapshot.servers for row in server.keep_alives]
    shown = ', '.join(
        f"{short_line(row.line)} → {short_line(row.to)} "
        + {'Planned': f"planned {row.planned[11:19]}", 'Sent': 'sent, answer due', 'Replied': 'answered'}.get(
            row.phase, row.phase)
        for row in rows) or 'no exchange yet'
    figures = ' '.join(f"{label} {summary.get(key, '-')}" for key, label in (
        ('due', 'due'), ('scheduled', 'scheduled'), ('sentToday', 'sent today'), ('atRisk', 'at risk')))
    return f"keep-alive (idle fallback lines): {shown} · {figures}"


def describe_traffic(*, rate: float, elapsed: float, activity: Profile = ACTIVITY) -> str:
    """``traffic 31.2 msg/s (the rush builds)``: why the rate moves, for the headline."""
    slope = activity(elapsed + 1.0) - activity(elapsed - 1.0)
    if slope > 0.002:
        mood = 'the rush builds'
    elif slope < -0.002:
        mood = 'the rush passes'
    elif activity(elapsed) >= max(value for _, value in activity.points) * 0.99:
        mood = 'peak hour'
    else:
        mood = 'quiet again'
    return f"traffic {rate:4.1f} msg/s ({mood})"


def format_event(*, event: EventRow, timeline: Timeline, rows: int | None = None) -> list[str]:
    """An event as rows of the view: a long message goes on below (at most ``rows`` rows, the last cut)."""
    head = f"  {timeline.since_start(event.at):+6.1f}s {event.reason:<16} {event.obj:<10} "
    wrapped = textwrap.wrap(event.message, width=WIDTH, initial_indent=head,
                            subsequent_indent=' ' * EVENT_INDENT) or [head.rstrip()]
    if rows is not None and len(wrapped) > rows:
        wrapped = [*wrapped[:rows - 1], fit(wrapped[rows - 1] + ' …')]
    return wrapped


class Screen:
    """
    Draws the view: in place on a terminal, as appended blocks anywhere else.

    A CI log cannot be redrawn, so there each refresh prints a compact block, and events
    are printed once, when they first appear, instead of as a rolling list.
    """

    def __init__(self, *, out: TextIO) -> None:
        super().__init__()
        self._out = out
        self.tty = out.isatty()
        self._printed_events: set[tuple[datetime, str, str]] = set()

    def pick_events(self, events: Sequence[EventRow]) -> list[EventRow]:
        """The events to show: the latest few on a terminal, the ones not printed yet in a log."""
        if self.tty:
            return list(events[-EVENTS_SHOWN:])
        new = [e for e in events if (e.at, e.reason, e.obj) not in self._printed_events]
        self._printed_events.update((e.at, e.reason, e.obj) for e in new)
        return new

    def draw(self, lines: Sequence[str]) -> None:
        if self.tty:
            # Home, then overwrite each line and clear what is left: no flicker, unlike a full clear.
            self._out.write('\x1b[H' + ''.join(f"{line}\x1b[K\n" for line in lines) + '\x1b[J')
        else:
            self._out.write('\n'.join(['─' * 40, *lines]) + '\n')
        self._out.flush()

    def error(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    def say(self, message: str) -> None:
        self._out.write(message + '\n')
        self._out.flush()

    def clear(self) -> None:
        if self.tty:
            self._out.write('\x1b[H\x1b[2J')
            self._out.flush()


# ------------------------------------------------------------------------------------------------
# Setting up.

def load_manifests(*, folder: pathlib.Path) -> list[dict[str, Any]]:
    """Every YAML document of ``folder/*.yaml``, in file-name order (as ``kubectl apply -f`` does)."""
    files = sorted(folder.glob('*.yaml'))
    if not files:
        raise DemoError(f"no manifests in {folder}; the demo expects examples/demo/*.yaml in the repository")
    manifests: list[dict[str, Any]] = []
    for path in files:
        with path.open(encoding='utf-8') as stream:
            manifests += [doc for doc in yaml.safe_load_all(stream) if isinstance(doc, dict)]
    return manifests


def check_port_free(*, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # As Prometheus binds: a port left in TIME_WAIT by an earlier run is free, a listener is not.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(('127.0.0.1', port))
        except OSError as error:
            raise DemoError(
                f"port {port} on 127.0.0.1 is busy ({error.strerror}).\n"
                f"The demo's LinePool reads Prometheus at http://127.0.0.1:{port}, so the demo must run it there.\n"
                f"Stop whatever listens on it (another demo? a local Prometheus? `ss -ltnp 'sport = :{port}'`\n"
                f"shows it) and run the demo again."
            ) from None


def fresh_workdir(*, workdir: pathlib.Path) -> None:
    """Clear what an earlier run left, so that logs and Prometheus's data are this run's only."""
    # Old samples of support-0 in the TSDB would count toward today's quota in this run too.
    shutil.rmtree(workdir / 'prometheus', ignore_errors=True)
    (workdir / 'operator.log').unlink(missing_ok=True)
    workdir.mkdir(parents=True, exist_ok=True)


def series_ready(*, prometheus: PrometheusProcess, server: str, lines: int) -> bool:
    """Whether Prometheus has scraped every line of the server (so its counters start at zero)."""
    try:
        return len(prometheus.query(f'imessage_messages_sent_total{{server="{server}"}}', timeout=1.0)) >= lines
    except (urllib.error.URLError, OSError, RuntimeError):
        return False


def wait_until(check: Callable[[], bool], *, timeout: float, what: str, alive: Callable[[], None]) -> None:
    """Poll ``check``; ``alive`` raises if a process we wait on died meanwhile."""
    deadline = time.monotonic() + timeout
    while not check():
        alive()
        if time.monotonic() > deadline:
            raise DemoError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.25)


def log_tail(path: pathlib.Path, *, lines: int = 15) -> str:
    try:
        text = path.read_text(encoding='utf-8', errors='replace')
    except OSError:
        return '(no log)'
    return '\n'.join('    ' + line for line in text.splitlines()[-lines:])


class Placer:
    """New users get their line from the placement service (``linepool serve``): one POST each,
    as an app's sign-up would make. ``last`` is the service's last answer, deep links included."""

    def __init__(self) -> None:
        self.service: PlacementProcess | None = None
        self.last: dict[str, Any] | None = None
        self.refused: collections.Counter[str] = collections.Counter()

    def __call__(self, user: str) -> LineKey | None:
        if self.service is None:
            return None
        path = f"/v1/namespaces/{NAMESPACE}/linepools/{DEMO_POOL}/placements"
        try:
            status, _, body = self.service.request("POST", path, body={"user": user}, token=DEMO_TOKEN, timeout=5)
        except OSError:
            self.refused["Unreachable"] += 1
            return None
        if status in {200, 201}:
            self.last = body
            return str(body["server"]), str(body["line"])
        self.refused[str(body.get("reason") if isinstance(body, dict) else status)] += 1
        return None


@dataclasses.dataclass
class Rig:
    """The running pieces, and the demo's own bookkeeping about them."""

    api: ApiServerThread
    fleet: Fleet
    prometheus: PrometheusProcess
    operator: OperatorProcess
    traffic: Traffic
    drift: Drift
    relays: dict[str, RelayStub] = dataclasses.field(default_factory=dict)
    placer: Placer | None = None
    pending: dict[str, int] = dataclasses.field(default_factory=dict)  # exported, not yet scraped

    def check_operator(self) -> None:
        if not self.operator.running:
            raise DemoError(f"the operator exited; the end of {self.operator.log_path}:\n"
                            f"{log_tail(self.operator.log_path)}")

    def track_new_servers(self, *, snapshot: Snapshot) -> None:
        """Export servers the operator added, and carry their lines once Prometheus has them at zero."""
        exported = self.fleet.servers()
        for server in snapshot.servers:
            if server.name not in exported:
                # Exported before any traffic: increase() ignores a counter's value at its first sample.
                self.fleet.add_server(server.name, list(server.lines))
                self.pending[server.name] = len(server.lines)
        for name, count in list(self.pending.items()):
            if series_ready(prometheus=self.prometheus, server=name, lines=count):
                self.traffic.add_lines(server=name, lines=self.fleet.servers()[name])
                del self.pending[name]

    def assignable(self, *, snapshot: Snapshot) -> list[LineKey]:
        """The pool's assignable lines in its order, restricted to lines the users can reach yet."""
        owner = {line: server for server, lines in self.fleet.servers().items()
                 if server not in self.pending for line in lines}
        return [(owner[line], line) for line in snapshot.assignable_lines if line in owner]


def start_rig(*, stack: contextlib.ExitStack, screen: Screen, manifests: Sequence[Mapping[str, Any]],
              workdir: pathlib.Path, deadline: float) -> Rig:
    """Start everything in order; each piece is stopped by ``stack``, also when a later one fails."""
    fresh_workdir(workdir=workdir)

    screen.say("· starting the sandbox Kubernetes API …")
    api = ApiServerThread().start()
    stack.callback(_quietly, api.stop, what='the API server')
    api.apply({'apiVersion': 'v1', 'kind': 'Namespace', 'metadata': {'name': NAMESPACE}})
    kubeconfig = api.write_kubeconfig(workdir / 'kubeconfig', namespace=NAMESPACE)

    screen.say("· starting the simulated fleet and Prometheus on 127.0.0.1:19090 …")
    fleet = Fleet().start()
    stack.callback(_quietly, fleet.stop, what='the fleet')
    placer = Placer()
    traffic = Traffic(sink=fleet, placer=placer)
    servers = [m for m in manifests if m.get('kind') == 'MessagingServer']
    for manifest in servers:
        name = str(manifest['metadata']['name'])
        lines = [str(line['id']) for line in manifest['spec']['lines']]
        # Exported before Prometheus's first scrape, so every counter is first seen at zero.
        fleet.add_server(name, lines)
        traffic.add_lines(server=name, lines=lines, conversations=INITIAL_CONVERSATIONS.get(name, ()))
    prometheus = PrometheusProcess([fleet.target], port=PROMETHEUS_PORT, workdir=workdir / 'prometheus')
    stack.callback(_quietly, prometheus.stop, what='Prometheus')
    try:
        prometheus.start()
    except (RuntimeError, TimeoutError) as error:  # it says why, with the tail of its log
        raise DemoError(f"Prometheus did not start: {error}") from None

    screen.say("· starting the servers' messaging APIs (HTTP stubs that record keep-alive messages) …")
    relays = start_relays(stack=stack, manifests=manifests, fleet=fleet)

    screen.say(f"· applying {len(manifests)} manifests from {_relative(EXAMPLES_DIR)} …")
    for manifest in demo_manifests(manifests=manifests, relays=relays, now=datetime.now(tz=UTC)):
        api.apply(manifest)

    screen.say(f"· starting the operator (log: {_relative(workdir / 'operator.log')}) …")
    operator = OperatorProcess(kubeconfig=kubeconfig, namespaces=[NAMESPACE], log_path=workdir / 'operator.log',
                               extra_args=list(OPERATOR_ARGS))
    stack.callback(_quietly, operator.stop, what='the operator')
    operator.start()
    rig = Rig(api=api, fleet=fleet, prometheus=prometheus, operator=operator, traffic=traffic,
              drift=Drift(plan=DRIFT, sink=fleet), relays=relays, placer=placer)

    screen.say(f"· starting the placement service on {PLACEMENT_URL} (log: {_relative(workdir / 'placement.log')}) …")
    tokens = workdir / 'placement-tokens'
    tokens.write_text(DEMO_TOKEN + '\n')
    service = PlacementProcess(kubeconfig=kubeconfig, database=f"sqlite:///{workdir / 'placements.db'}",
                               log_path=workdir / 'placement.log', token_file=tokens, namespaces=[NAMESPACE],
                               port=PLACEMENT_PORT)
    stack.callback(_quietly, service.stop, what='the placement service')
    service.start()
    try:
        service.wait_ready(timeout=STARTUP_TIMEOUT)
    except (RuntimeError, TimeoutError) as error:
        raise DemoError(f"the placement service did not start: {error}") from None
    placer.service = service

    def budget() -> float:
        return max(1.0, min(STARTUP_TIMEOUT, deadline - time.monotonic()))

    screen.say("· waiting for Prometheus's first scrape and the operator's first pass …")
    exported = fleet.servers()
    wait_until(lambda: all(series_ready(prometheus=prometheus, server=name, lines=len(lines))
                           for name, lines in exported.items()),
               timeout=budget(), what="Prometheus to scrape the fleet", alive=rig.check_operator)
    wait_until(lambda: bool(read_cluster(api=api, with_events=False).assignable_lines), timeout=budget(),
               what="the operator to publish the pool's assignable lines", alive=rig.check_operator)
    return rig


def start_relays(*, stack: contextlib.ExitStack, manifests: Sequence[Mapping[str, Any]],
                 fleet: Fleet) -> dict[str, RelayStub]:
    """One messaging API per server, accepting the token of the demo's Secret; idle fallback lines."""
    secret = next((m for m in manifests if m.get('kind') == 'Secret'), {})
    token = str((secret.get('stringData') or {}).get('token') or '')
    relays: dict[str, RelayStub] = {}
    now = time.time()
    for manifest in manifests:
        if manifest.get('kind') != 'MessagingServer':
            continue
        name = str(manifest['metadata']['name'])
        relays[name] = RelayStub(token=token or None).start()
        stack.callback(_quietly, relays[name].stop, what=f'the messaging API of {name}')
        for line in manifest['spec']['lines']:
            idle_days = FALLBACK_IDLE_DAYS.get(name, 30) if line.get('role') == 'Fallback' else 0
            fleet.set_last_activity(name, str(line['id']), now - idle_days * 86400)
    return relays


def demo_manifests(*, manifests: Sequence[Mapping[str, Any]], relays: Mapping[str, RelayStub],
                   now: datetime) -> list[dict[str, Any]]:
    """The example manifests as the demo applies them: servers at their stubs, a window open now, line
    health fitted to the demo's clock (see BURST_LIMIT and QUIET_STARTS_IN)."""
    out: list[dict[str, Any]] = []
    for manifest in manifests:
        body = copy.deepcopy(dict(manifest))
        name = str((body.get('metadata') or {}).get('name'))
        if body.get('kind') == 'MessagingServer' and name in relays:
            body['spec']['endpoint'] = relays[name].url
        if body.get('kind') == 'LinePool':
            spec = body.setdefault('spec', {})
            zone = ZoneInfo(str((spec.get('quotas') or {}).get('timezone') or 'UTC'))
            # The window closes at the first minute boundary at least KEEP_ALIVE_LEAD from now, so the
            # exchange lands early in the run, before the rush saturates the servers (the quota guard
            # would then hold it). It never wraps past midnight: late at night it is a little earlier.
            local = now.astimezone(zone)
            end = (local + KEEP_ALIVE_LEAD + timedelta(seconds=59, microseconds=999_999)).replace(
                second=0, microsecond=0)
            end = min(end, local.replace(hour=23, minute=59, second=0, microsecond=0))
            start = end - timedelta(minutes=KEEP_ALIVE_WINDOW_MINUTES)
            keep_alive = spec.setdefault('keepAlive', {})
            keep_alive['window'] = {**(keep_alive.get('window') or {}), 'start': start.strftime('%H:%M'),
                                    'end': end.strftime('%H:%M'), 'days': list(WEEKDAYS)}
            health = spec.setdefault('health', {})
            health['burst'] = {**(health.get('burst') or {}), 'messages': BURST_LIMIT, 'within': BURST_WITHIN}
            off_hours = health.setdefault('offHours', {})
            off_hours['quiet'] = {'start': (local + QUIET_STARTS_IN).strftime('%H:%M'),
                                  'end': (local + QUIET_STARTS_IN + QUIET_LASTS).strftime('%H:%M')}
        out.append(body)
    return out


def _quietly(stop: Callable[[], None], *, what: str) -> None:
    # One piece failing to stop must not keep the others running.
    try:
        stop()
    except Exception as error:
        print(f"warning: could not stop {what}: {error}", file=sys.stderr)


def _relative(path: pathlib.Path) -> str:
    try:
        return str(path.relative_to(pathlib.Path.cwd()))
    except ValueError:
        return str(path)


# ------------------------------------------------------------------------------------------------
# Running.

def drive(*, rig: Rig, screen: Screen, timeline: Timeline, started: float, deadline: float, duration: float) -> None:
    """The main loop: traffic every tick, a new screen every refresh, until the deadline."""
    traffic_started = time.monotonic()
    recent: collections.deque[tuple[float, Counter]] = collections.deque()
    next_tick = next_refresh = traffic_started
    while (now := time.monotonic()) < deadline:
        rig.check_operator()
        refresh = now >= next_refresh
        # Read every tick: new users must follow assignableLines as soon as the operator moves it.
        snapshot = read_cluster(api=rig.api, with_events=refresh)
        rig.track_new_servers(snapshot=snapshot)
        placed = rig.traffic.tick(elapsed=now - traffic_started, seconds=TICK,
                                  assignable=rig.assignable(snapshot=snapshot))
        timeline.placed(placed=placed, elapsed=now - started)
        rig.drift.tick(elapsed=now - traffic_started, seconds=TICK)
        timeline.burst_sent = rig.drift.sent
        if rig.drift.started_at is not None and timeline.drifted is None:
            timeline.drifted = now - started
        if rig.drift.flagged_at is not None and timeline.apple_flagged is None:
            timeline.apple_flagged = now - started
            server, line = rig.drift.key
            rig.traffic.halt(server=server, line=line)  # a flagged line sends nothing
        recent.append((now, placed))
        while recent and recent[0][0] < now - RECENT_WINDOW:
            recent.popleft()
        if refresh:
            timeline.observe(snapshot=snapshot, elapsed=now - started)
            screen.draw(render(
                snapshot=snapshot, timeline=timeline, elapsed=now - started, duration=duration,
                traffic=describe_traffic(rate=rig.traffic.rate(elapsed=now - traffic_started),
                                         elapsed=now - traffic_started),
                recent=sum((counts for _, counts in recent), collections.Counter()),
                events=screen.pick_events(snapshot.events), compact=not screen.tty,
            ))
            next_refresh += REFRESH
        next_tick += TICK
        time.sleep(max(0.0, min(next_tick, deadline) - time.monotonic()))


def summarize(*, timeline: Timeline, traffic: Traffic | None, elapsed: float, workdir: pathlib.Path,
              relays: Mapping[str, RelayStub] | None = None,
              placer: Placer | None = None) -> tuple[list[str], list[str]]:
    """The summary lines, and what did not happen (empty when the demo showed its story)."""
    reasons = timeline.reasons()
    lines = [f"Summary after {elapsed:.0f}s:"]
    lines += [row for at, what in timeline.milestones()
              for row in textwrap.wrap(f"{at:+4.0f}s  {what}", width=WIDTH, initial_indent='  ',
                                       subsequent_indent=' ' * 9)] or ["  nothing happened yet"]
    if traffic is not None:
        users = ', '.join(f"{name} {count}" for name, count in sorted(traffic.new_users.items())) or 'none'
        burst = f" (and {timeline.burst_sent} in the burst)" if timeline.burst_sent else ''
        lines.append(f"  new users placed: {users}; messages sent: {traffic.sent}{burst}")
    if timeline.users_after_scale_up:
        after = ', '.join(f"{name} {count}" for name, count in sorted(timeline.users_after_scale_up.items()))
        lines.append(f"  new users since the first scale-up: {after}")
    if timeline.pool_utilization is not None:
        lines.append(f"  pool utilization at the end: {percent(timeline.pool_utilization).strip()}")
    # A no-break space keeps each count with its reason when the list wraps.
    seen = ', '.join(f"{reason}\u00a0×{count}" for reason, count in sorted(reasons.items())) or 'none'
    lines += textwrap.wrap(f"events seen: {seen}", width=WIDTH, initial_indent='  ', subsequent_indent=' ' * 4)
    if placer is not None and placer.last is not None:
        last = placer.last
        refused = ', '.join(f"{reason} ×{count}" for reason, count in sorted(placer.refused.items()))
        lines.append(fit(f"  placement service: every new user above got their line from {PLACEMENT_URL}"
                         + (f" (refused: {refused})" if refused else "")))
        lines.append(fit(f"  last user placed: {last['user']} on {last['line']} ({last['server']})"))
        lines.append(fit(f"    iPhone deep link:  {last['deepLinks']['ios']}"))
        lines.append(fit(f"    Android deep link: {last['deepLinks']['android']}"))
        lines.append(fit(f"    short link: {last['link']} (its QR code: {last['link']}/qr.svg)"))
        lines.append(fit(f"    contact card: {last['contactCard']}"))
    lines.append(f"  logs: {_relative(workdir / 'operator.log')} (the operator), "
                 f"{_relative(workdir / 'prometheus' / 'prometheus.log')}")
    missing = []
    if placer is not None and placer.last is None:
        missing.append("no new user got a line from the placement service")
    if not timeline.saturated:
        missing.append("no server reached stopAt (no ServerSaturated)")
    if not timeline.added and not reasons[SCALED_UP_REASON]:
        missing.append("the operator added no server (no ScaledUp)")
    for name, relay in sorted((relays or {}).items()):
        for message in relay.messages:
            lines.append(fit(f"  {name}'s messaging API received: {message.get('from')} → {message.get('to')} "
                             f"\"{message.get('text')}\""))
    if not reasons[KEEP_ALIVE_REASON]:
        missing.append("no keep-alive went out to the idle fallback lines (no KeepAliveSent)")
    if timeline.drift is not None:
        line = short_line(timeline.drift.line)
        if timeline.left_rotation is None:
            missing.append(f"{line} was not seen at risk of a flag for its burst and out of the assignable lines "
                           f"while {timeline.drift.server} took users")
        if not timeline.forensics():
            missing.append(f"no forensics for the flag of {line} (no {FLAGGED_REASON} event saying "
                           f"\"{PACE_ADVICE}\")")
    if healthy := timeline.healthy_at_risk():
        missing.append("lines with healthy traffic were at risk of a flag, so the demo's health limits misfit its "
                       "traffic: " + ', '.join(f"{short_line(line)} ({timeline.flag_risks[(server, line)][1]})"
                                               for server, line in healthy))
    return lines, missing


def run_demo(*, duration: float, out: TextIO, workdir: pathlib.Path = WORKDIR) -> int:
    """Run the demo for ``duration`` seconds in all (start-up included); returns the exit code."""
    started = time.monotonic()
    screen = Screen(out=out)
    try:
        # Everything that can be checked before anything starts, so a failure leaves nothing behind.
        manifests = load_manifests(folder=EXAMPLES_DIR)
        find_binary('prometheus')
        check_port_free(port=PROMETHEUS_PORT)
    except (DemoError, PrometheusNotInstalled) as error:
        screen.error(f"The demo cannot run: {error}")
        return EXIT_CANNOT_START

    timeline = Timeline(started=datetime.now(tz=UTC), drift=DRIFT)
    rig: Rig | None = None
    code: int | None = None
    try:
        with contextlib.ExitStack() as stack:
            try:
                rig = start_rig(stack=stack, screen=screen, manifests=manifests, workdir=workdir,
                                deadline=started + duration)
                screen.clear()
                drive(rig=rig, screen=screen, timeline=timeline, started=started, deadline=started + duration,
                      duration=duration)
                # A last look, so that the summary includes what happened in the final seconds.
                timeline.observe(snapshot=read_cluster(api=rig.api, with_events=True),
                                 elapsed=time.monotonic() - started)
            finally:
                screen.say("· stopping the operator, Prometheus, the fleet and the API server …")
                # A second Ctrl-C would cut the teardown short and leave children behind.
                with _sigint_ignored():
                    stack.close()
    except (DemoError, PrometheusNotInstalled) as error:
        screen.error(f"\nThe demo {'stopped' if rig else 'cannot run'}: {error}")
        if rig is None:
            return EXIT_CANNOT_START
        code = EXIT_CANNOT_START
    except KeyboardInterrupt:
        screen.say("\nInterrupted.")
        code = EXIT_INTERRUPTED
    return conclude(screen=screen, timeline=timeline, traffic=rig.traffic if rig else None,
                    elapsed=time.monotonic() - started, duration=duration, workdir=workdir, code=code,
                    relays=rig.relays if rig else None, placer=rig.placer if rig else None)


def conclude(*, screen: Screen, timeline: Timeline, traffic: Traffic | None, elapsed: float, duration: float,
             workdir: pathlib.Path, code: int | None, relays: Mapping[str, RelayStub] | None = None,
             placer: Placer | None = None) -> int:
    """Print the summary; the exit code is ``code`` if set, else whether the story was shown."""
    lines, missing = summarize(timeline=timeline, traffic=traffic, elapsed=elapsed, workdir=workdir,
                               relays=relays, placer=placer)
    screen.say('\n' + '\n'.join(lines))
    if code is not None:
        return code
    if missing:
        hint = (f"The demo ran {duration:.0f}s; the whole story needs about {DEFAULT_DURATION:.0f}s."
                if duration < DEFAULT_DURATION else f"See {_relative(workdir / 'operator.log')}.")
        screen.say('\n' + textwrap.fill(f"NOT SHOWN: {'; '.join(missing)}. {hint}", width=WIDTH))
        return EXIT_NOT_SHOWN
    added = sorted(timeline.added, key=_ordinal_key)
    moved = sum(timeline.users_after_scale_up[name] for name in added)
    screen.say('\n' + textwrap.fill(
        f"OK: {', '.join(sorted(timeline.saturated, key=_ordinal_key))} saturated, the operator added "
        f"{', '.join(added) or 'a server'}, and {moved} new users went to {'it' if len(added) < 2 else 'them'}; "
        f"the idle fallback lines got a keep-alive exchange; "
        f"{short_line(timeline.drift.line) if timeline.drift else 'a line'} drifted into a burst and left rotation, "
        f"and its flag was explained (\"{PACE_ADVICE}\").",
        width=WIDTH))
    return EXIT_OK


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _terminate(signum: int, frame: FrameType | None) -> None:
    # SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C, so the children are stopped too.
    raise KeyboardInterrupt


def parse_duration(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not MIN_DURATION <= value <= MAX_DURATION:
        raise argparse.ArgumentTypeError(f"must be between {MIN_DURATION:.0f} and {MAX_DURATION:.0f} seconds")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog='python -m linepool.sandbox.demo',
        description="Run the operator against an embedded cluster, a real Prometheus and a simulated fleet, "
                    "and watch it take saturated servers out of rotation and add a server.",
    )
    parser.add_argument('--duration', type=parse_duration, default=DEFAULT_DURATION, metavar='SECONDS',
                        help=f"how long to run, start-up included (default {DEFAULT_DURATION:.0f}, "
                             f"at most {MAX_DURATION:.0f}); shorter runs are smoke tests")
    parser.add_argument('--workdir', type=pathlib.Path, default=WORKDIR, metavar='DIR',
                        help=f"where the logs, the kubeconfig and Prometheus's data go (default {_relative(WORKDIR)}; "
                             "an earlier run's are replaced)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    return run_demo(duration=args.duration, out=sys.stdout, workdir=args.workdir.resolve())


if __name__ == '__main__':
    sys.exit(main())
