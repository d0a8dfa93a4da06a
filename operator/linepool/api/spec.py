"""Typed LinePool and MessagingServer specs, parsed and validated from raw objects.

The CRD schema and its CEL rules reject most bad input before it is stored. This module is
the second line: it applies the same defaults (an old CRD, or an API server that skipped
defaulting, must not change behaviour) and checks what a schema cannot, such as the IANA
time zone database. Every failure is a :class:`SpecError` naming the field.
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from linepool.api.durations import format_duration, parse_duration
from linepool.api.errors import SpecError
from linepool.api.text import contains_link
from linepool.api.types import LineRole, QuotaWindow, ScalingMode

LINE_ID = re.compile(r"^(\+[1-9][0-9]{6,14}|[^@\s]+@[^@\s]+\.[^@\s]+)$")
HTTP_URL = re.compile(r"^https?://[^\s/]+(/.*)?$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
MIN_POLL_INTERVAL = timedelta(seconds=1)
MAX_SERVER_LINES = 100
# Keep-alive: the limits the CRD schema states, checked again here.
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")  # index = date.weekday()
CLOCK_TIME = re.compile(r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
LINK = re.compile(r"://|www\.", re.IGNORECASE)
IDLE_AFTER_RANGE = ("1d", "50d")
DEADLINE_RANGE = ("1d", "60d")
MIN_SPACING_RANGE = ("1m", "24h")
NO_LINKS = "must not contain a link (:// or www.): keep-alive traffic carries no links or media"
MAX_PARTNERS = 50
MAX_MESSAGES = 100
MAX_MESSAGE_LENGTH = 320
# Line health: the limits the CRD schema states, checked again here.
HEALTH_COOLDOWN_RANGE = ("5m", "24h")
BURST_WITHIN_RANGE = ("1m", "1h")
HEALTH_WINDOW_RANGE = ("1h", "72h")
# Forecast: the limits the CRD schema states, checked again here.
LEAD_TIME_RANGE = ("0d", "90d")
HORIZON_RANGE = ("7d", "365d")
# Contact card and placement: the limits the CRD schema states, checked again here. RE2's \s is
# ASCII whitespace without \v, so the class is spelled out; fullmatch, since Python's $ also
# matches before a final newline.
HTTPS_URL = re.compile(r"https://[^\t\n\f\r /?#]+([/?#][^\t\n\f\r ]*)?")
MAX_CARD_NAME = 128
MAX_CARD_ORGANIZATION = 128
MAX_PHOTO_URL = 2048
MAX_CARD_NOTE = 1024
MAX_FIRST_MESSAGE = 160
DEFAULT_FIRST_MESSAGE = "Hey!"
NO_LINKS_IN_FIRST_MESSAGE = (
    "must be text only, without a link or web address: Apple suppresses links until the other side replies"
)

E = TypeVar("E", QuotaWindow, ScalingMode, LineRole)


@dataclass(frozen=True, kw_only=True)
class Quotas:
    messages_per_server_per_day: int = 5000
    new_conversations_per_line_per_day: int = 50
    window: QuotaWindow = QuotaWindow.ROLLING_24H
    timezone: str = "UTC"


@dataclass(frozen=True, kw_only=True)
class Assignment:
    stop_at: float = 0.75
    resume_at: float = 0.65


@dataclass(frozen=True, kw_only=True)
class SecretRef:
    name: str
    key: str


@dataclass(frozen=True, kw_only=True)
class ServerTemplate:
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    spec: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Scaling:
    mode: ScalingMode = ScalingMode.AUTO
    scale_up_at: float = 0.75
    min_servers: int = 1
    max_servers: int = 10
    cooldown: timedelta = timedelta(minutes=15)
    lines_per_server: int = 4
    server_template: ServerTemplate = field(default_factory=ServerTemplate)


@dataclass(frozen=True, kw_only=True)
class QueryTemplates:
    """PromQL templates; ``{{servers}}`` is a regex of server names, ``{{window}}`` a range."""

    sent_in_window: str = (
        'sum by (server, line) (increase(imessage_messages_sent_total{server=~"{{servers}}"}[{{window}}]))'
    )
    new_conversations_in_window: str = (
        "sum by (server, line) "
        '(increase(imessage_new_conversations_total{server=~"{{servers}}"}[{{window}}]))'
    )
    line_state: str = 'max by (server, line, state) (imessage_line_state{server=~"{{servers}}"}) == 1'
    activity: str = (
        "sum by (server, line) "
        '({__name__=~"imessage_messages_(sent|received)_total", server=~"{{servers}}"})'
    )
    # Optional gauge of each line's last activity (unix seconds); when a line has it, it takes
    # precedence over increases of the activity counters.
    last_activity_timestamp: str = (
        'max by (server, line) (imessage_line_last_activity_timestamp_seconds{server=~"{{servers}}"})'
    )
    # Line health: {{window}} is the window of the pattern that uses the figure.
    received_in_window: str = (
        'sum by (server, line) (increase(imessage_messages_received_total{server=~"{{servers}}"}[{{window}}]))'
    )
    # Only conversations the line started itself (it wrote first): the cold-outreach figure.
    line_initiated_in_window: str = (
        "sum by (server, line) "
        '(increase(imessage_new_conversations_total{server=~"{{servers}}",initiator="line"}[{{window}}]))'
    )
    # Kept by streak: the follow-up cap is a bound on the streak label.
    unanswered_sends_in_window: str = (
        "sum by (server, line, streak) "
        '(increase(imessage_unanswered_sends_total{server=~"{{servers}}"}[{{window}}]))'
    )


@dataclass(frozen=True, kw_only=True)
class Metrics:
    prometheus_url: str
    poll_interval: timedelta = timedelta(seconds=30)
    stale_after: timedelta = timedelta(minutes=5)
    queries: QueryTemplates = field(default_factory=QueryTemplates)


@dataclass(frozen=True, kw_only=True)
class KeepAliveWindow:
    """Local times and weekdays (in ``quotas.timezone``) in which keep-alive messages may be sent."""

    start: time = time(10, 0)
    end: time = time(19, 0)
    days: frozenset[int] = frozenset({0, 1, 2, 3, 4})  # date.weekday() numbers, 0 = Monday


@dataclass(frozen=True, kw_only=True)
class KeepAlive:
    """Keep-alive traffic for idle lines, so that Apple does not deactivate them."""

    enabled: bool = True
    idle_after: timedelta = timedelta(days=21)
    deadline: timedelta = timedelta(days=45)
    window: KeepAliveWindow = field(default_factory=KeepAliveWindow)
    min_spacing: timedelta = timedelta(minutes=10)
    max_per_day: int = 20
    partners: tuple[str, ...] = ()
    messages: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class BurstRule:
    """Burst sending: ``messages`` or more from one line within ``within``."""

    messages: int = 60
    within: timedelta = timedelta(minutes=10)


@dataclass(frozen=True, kw_only=True)
class NoExchangeRule:
    """No conversation: at least ``min_sent`` sent in ``window``, fewer replies per send than ``min_reply_ratio``."""

    window: timedelta = timedelta(hours=24)
    min_sent: int = 20
    min_reply_ratio: float = 0.2


@dataclass(frozen=True, kw_only=True)
class FollowUpRule:
    """Hammering non-responders: a send whose unanswered streak is ``max + 2`` or more is over the cap."""

    max: int = 2


@dataclass(frozen=True, kw_only=True)
class ColdOutreachRule:
    """Cold outreach: more than ``max_line_initiated`` conversations started by the line in ``window``."""

    window: timedelta = timedelta(hours=24)
    max_line_initiated: int = 10


@dataclass(frozen=True, kw_only=True)
class OffHoursRule:
    """Off-hours sending: sent minus received past ``max_net_outbound`` in the quiet period.

    The quiet period is local to ``quotas.timezone`` and crosses midnight when ``quiet_end``
    is before ``quiet_start``.
    """

    quiet_start: time = time(22, 0)
    quiet_end: time = time(8, 0)
    max_net_outbound: int = 5


@dataclass(frozen=True, kw_only=True)
class Health:
    """The five flag patterns a line is watched for, and how long a risk outlasts its pattern."""

    enabled: bool = True
    cooldown: timedelta = timedelta(hours=1)
    burst: BurstRule = field(default_factory=BurstRule)
    no_exchange: NoExchangeRule = field(default_factory=NoExchangeRule)
    follow_ups: FollowUpRule = field(default_factory=FollowUpRule)
    cold_outreach: ColdOutreachRule = field(default_factory=ColdOutreachRule)
    off_hours: OffHoursRule = field(default_factory=OffHoursRule)


@dataclass(frozen=True, kw_only=True)
class ContactCard:
    """The vCard the placement service serves for every line of the pool."""

    name: str
    organization: str | None = None
    photo_url: str | None = None
    note: str | None = None


@dataclass(frozen=True, kw_only=True)
class PlacementSettings:
    """Per-pool settings of the placement service."""

    # The opener pre-filled in the user's sms: deep link when an app sends none.
    first_message: str = DEFAULT_FIRST_MESSAGE


@dataclass(frozen=True, kw_only=True)
class ForecastSettings:
    """The operator's capacity forecast (``status.forecast``): how far ahead, and how early lines are ordered."""

    enabled: bool = True
    # How long a new line takes to provision: the runway alert fires inside it.
    lead_time: timedelta = timedelta(days=7)
    # How far ahead the forecast simulates; a runway beyond it is reported as none.
    horizon: timedelta = timedelta(days=90)


@dataclass(frozen=True, kw_only=True)
class PoolSpec:
    quotas: Quotas
    assignment: Assignment
    scaling: Scaling
    inventory: tuple[str, ...]
    metrics: Metrics
    keep_alive: KeepAlive = field(default_factory=KeepAlive)
    health: Health = field(default_factory=Health)
    contact_card: ContactCard | None = None
    placement: PlacementSettings = field(default_factory=PlacementSettings)
    forecast: ForecastSettings = field(default_factory=ForecastSettings)


@dataclass(frozen=True, kw_only=True)
class Line:
    id: str
    role: LineRole = LineRole.PRIMARY


@dataclass(frozen=True, kw_only=True)
class ServerSpec:
    pool: str
    endpoint: str
    credentials: SecretRef | None
    daily_message_quota: int | None
    cordoned: bool
    lines: tuple[Line, ...]


# --- small typed readers: each names the field it reads -------------------------------------


def _section(raw: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
    value = raw.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SpecError(f"{path}.{key}", "must be an object")
    return value


def _bool(raw: Mapping[str, Any], key: str, path: str, *, default: bool) -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        raise SpecError(f"{path}.{key}", f"must be true or false, not {value!r}")
    return value


def _int(raw: Mapping[str, Any], key: str, path: str, *, default: int, low: int, high: int) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"{path}.{key}", f"must be a whole number, not {value!r}")
    if not low <= value <= high:
        raise SpecError(f"{path}.{key}", f"must be between {low} and {high}, not {value}")
    return value


def _fraction(raw: Mapping[str, Any], key: str, path: str, *, default: float, low: float, high: float) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SpecError(f"{path}.{key}", f"must be a number, not {value!r}")
    if not low <= float(value) <= high:
        raise SpecError(f"{path}.{key}", f"must be between {low} and {high}, not {value}")
    return float(value)


def _duration(raw: Mapping[str, Any], key: str, path: str, *, default: str, minimum: timedelta) -> timedelta:
    text = raw.get(key, default)
    try:
        value = parse_duration(text)
    except ValueError as exc:
        raise SpecError(f"{path}.{key}", str(exc)) from None
    if value < minimum:
        raise SpecError(f"{path}.{key}", f"must be at least {minimum.total_seconds():g}s, not {text!r}")
    return value


def _bounded_duration(
    raw: Mapping[str, Any], key: str, path: str, *, default: str, bounds: tuple[str, str]
) -> timedelta:
    low, high = bounds
    value = _duration(raw, key, path, default=default, minimum=timedelta(0))
    if not parse_duration(low) <= value <= parse_duration(high):
        raise SpecError(f"{path}.{key}", f"must be between {low} and {high}, not {raw.get(key, default)!r}")
    return value


def _list(raw: Mapping[str, Any], key: str, path: str, *, max_items: int) -> list[Any]:
    value = raw.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise SpecError(f"{path}.{key}", "must be a list")
    if len(value) > max_items:
        raise SpecError(f"{path}.{key}", f"holds at most {max_items} entries, not {len(value)}")
    return value


def _text(raw: Mapping[str, Any], key: str, path: str, *, max_length: int) -> str | None:
    """An optional string of 1 to ``max_length`` characters (code points, as the schema counts them).

    Absent and null both give None: an API server prunes a null to absent.
    """
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise SpecError(f"{path}.{key}", f"must be a non-empty text, not {value!r}")
    if len(value) > max_length:
        raise SpecError(f"{path}.{key}", f"must be at most {max_length} characters, not {len(value)}")
    return value


def _clock(raw: Mapping[str, Any], key: str, path: str, *, default: str) -> time:
    value = raw.get(key, default)
    if not isinstance(value, str) or not CLOCK_TIME.match(value):
        raise SpecError(f"{path}.{key}", f"must be a time of day HH:MM between 00:00 and 23:59, not {value!r}")
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def _enum(
    raw: Mapping[str, Any], key: str, path: str, *, kind: type[E], default: E
) -> E:
    value = raw.get(key, default.value)
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(member.value for member in kind)
        raise SpecError(f"{path}.{key}", f"must be one of {allowed}, not {value!r}") from None


def _url(value: Any, path: str) -> str:
    if not isinstance(value, str) or not HTTP_URL.match(value):
        raise SpecError(path, f"must be an http:// or https:// URL, not {value!r}")
    return value


def _line_id(value: Any, path: str) -> str:
    if not isinstance(value, str) or not LINE_ID.match(value):
        raise SpecError(path, f"{value!r} is neither an E.164 number (+14155550100) nor an Apple ID email")
    return value


def _string_map(raw: Mapping[str, Any], key: str, path: str) -> dict[str, str]:
    value = raw.get(key) or {}
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise SpecError(f"{path}.{key}", "must map strings to strings")
    return dict(value)


def _timezone(value: Any, path: str) -> str:
    if not isinstance(value, str) or not value:
        raise SpecError(path, "must be an IANA time zone name such as America/New_York")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise SpecError(path, f"{value!r} is not a time zone in the IANA database") from None
    return value


# --- the parsers -------------------------------------------------------------------------------


def parse_pool_spec(spec: Mapping[str, Any]) -> PoolSpec:
    """Validate a LinePool spec and return it typed, with defaults applied."""
    quotas_raw = _section(spec, "quotas", "spec")
    quotas = Quotas(
        messages_per_server_per_day=_int(
            quotas_raw, "messagesPerServerPerDay", "spec.quotas", default=5000, low=1, high=10**9
        ),
        new_conversations_per_line_per_day=_int(
            quotas_raw, "newConversationsPerLinePerDay", "spec.quotas", default=50, low=1, high=10**9
        ),
        window=_enum(quotas_raw, "window", "spec.quotas", kind=QuotaWindow, default=QuotaWindow.ROLLING_24H),
        timezone=_timezone(quotas_raw.get("timezone", "UTC"), "spec.quotas.timezone"),
    )

    assignment_raw = _section(spec, "assignment", "spec")
    stop_at = _fraction(assignment_raw, "stopAt", "spec.assignment", default=0.75, low=0.5, high=0.95)
    resume_at = _fraction(
        assignment_raw, "resumeAt", "spec.assignment", default=round(stop_at - 0.10, 4), low=0.0, high=0.95
    )
    if resume_at >= stop_at:
        raise SpecError("spec.assignment.resumeAt", f"must be below stopAt ({stop_at:g}), not {resume_at:g}")

    scaling = _parse_scaling(_section(spec, "scaling", "spec"))

    inventory_raw = spec.get("inventory") or []
    if not isinstance(inventory_raw, list):
        raise SpecError("spec.inventory", "must be a list of line ids")
    inventory = tuple(_line_id(item, f"spec.inventory[{i}]") for i, item in enumerate(inventory_raw))
    _reject_duplicates(inventory, "spec.inventory")

    metrics_raw = _section(spec, "metrics", "spec")
    if "prometheusURL" not in metrics_raw:
        raise SpecError("spec.metrics.prometheusURL", "is required")
    metrics = Metrics(
        prometheus_url=_url(metrics_raw["prometheusURL"], "spec.metrics.prometheusURL"),
        poll_interval=_duration(
            metrics_raw, "pollInterval", "spec.metrics", default="30s", minimum=MIN_POLL_INTERVAL
        ),
        stale_after=_duration(
            metrics_raw, "staleAfter", "spec.metrics", default="5m", minimum=MIN_POLL_INTERVAL
        ),
        queries=_parse_queries(_section(metrics_raw, "queries", "spec.metrics")),
    )
    return PoolSpec(
        quotas=quotas, assignment=Assignment(stop_at=stop_at, resume_at=resume_at),
        scaling=scaling, inventory=inventory, metrics=metrics,
        keep_alive=_parse_keep_alive(_section(spec, "keepAlive", "spec")),
        health=_parse_health(_section(spec, "health", "spec")),
        contact_card=_parse_contact_card(spec),
        placement=_parse_placement(_section(spec, "placement", "spec")),
        forecast=_parse_forecast(_section(spec, "forecast", "spec")),
    )


def _parse_forecast(raw: Mapping[str, Any]) -> ForecastSettings:
    # The schema takes whole days only (as keepAlive.idleAfter); here any duration within range is accepted.
    path = "spec.forecast"
    enabled = _bool(raw, "enabled", path, default=True)
    lead_time = _bounded_duration(raw, "leadTime", path, default="7d", bounds=LEAD_TIME_RANGE)
    horizon = _bounded_duration(raw, "horizon", path, default="90d", bounds=HORIZON_RANGE)
    if lead_time > horizon:
        raise SpecError(f"{path}.leadTime",
                        f"must not be longer than horizon ({format_duration(horizon)}), not {raw.get('leadTime')!r}")
    return ForecastSettings(enabled=enabled, lead_time=lead_time, horizon=horizon)


def _parse_contact_card(spec: Mapping[str, Any]) -> ContactCard | None:
    if spec.get("contactCard") is None:
        return None
    raw = _section(spec, "contactCard", "spec")
    path = "spec.contactCard"
    name = _text(raw, "name", path, max_length=MAX_CARD_NAME)
    if name is None:
        raise SpecError(f"{path}.name", "is required")
    photo_url = _text(raw, "photoURL", path, max_length=MAX_PHOTO_URL)
    if photo_url is not None and not HTTPS_URL.fullmatch(photo_url):
        raise SpecError(f"{path}.photoURL", f"must be an https:// URL, not {photo_url!r}")
    return ContactCard(
        name=name,
        organization=_text(raw, "organization", path, max_length=MAX_CARD_ORGANIZATION),
        photo_url=photo_url,
        note=_text(raw, "note", path, max_length=MAX_CARD_NOTE),
    )


def _parse_placement(raw: Mapping[str, Any]) -> PlacementSettings:
    path = "spec.placement"
    first_message = _text(raw, "firstMessage", path, max_length=MAX_FIRST_MESSAGE) or DEFAULT_FIRST_MESSAGE
    if contains_link(first_message):
        raise SpecError(f"{path}.firstMessage", NO_LINKS_IN_FIRST_MESSAGE)
    return PlacementSettings(first_message=first_message)


def _parse_keep_alive(raw: Mapping[str, Any]) -> KeepAlive:
    # The schema takes idleAfter and deadline in whole days only, because Kubernetes CEL cannot
    # compare durations written in days; here any duration within the range is accepted.
    path = "spec.keepAlive"
    enabled = _bool(raw, "enabled", path, default=True)
    idle_after = _bounded_duration(raw, "idleAfter", path, default="21d", bounds=IDLE_AFTER_RANGE)
    deadline = _bounded_duration(raw, "deadline", path, default="45d", bounds=DEADLINE_RANGE)
    if deadline <= idle_after:
        raise SpecError(
            f"{path}.deadline",
            f"must be longer than idleAfter ({format_duration(idle_after)}), not {raw.get('deadline', '45d')!r}",
        )
    partners = []
    for index, item in enumerate(_list(raw, "partners", path, max_items=MAX_PARTNERS)):
        if not isinstance(item, str) or not LINE_ID.match(item):
            raise SpecError(f"{path}.partners[{index}]", f"{item!r} is neither an E.164 number nor an email")
        if item in partners:
            raise SpecError(f"{path}.partners[{index}]", f"{item} is listed twice")
        partners.append(item)
    messages = []
    for index, item in enumerate(_list(raw, "messages", path, max_items=MAX_MESSAGES)):
        where = f"{path}.messages[{index}]"
        if not isinstance(item, str) or not item.strip():
            raise SpecError(where, f"must be a non-empty text, not {item!r}")
        if len(item) > MAX_MESSAGE_LENGTH:
            raise SpecError(where, f"must be at most {MAX_MESSAGE_LENGTH} characters, not {len(item)}")
        if LINK.search(item):
            raise SpecError(where, NO_LINKS)
        messages.append(item)
    return KeepAlive(
        enabled=enabled,
        idle_after=idle_after,
        deadline=deadline,
        window=_parse_window(_section(raw, "window", path)),
        min_spacing=_bounded_duration(raw, "minSpacing", path, default="10m", bounds=MIN_SPACING_RANGE),
        max_per_day=_int(raw, "maxPerDay", path, default=20, low=1, high=1000),
        partners=tuple(partners),
        messages=tuple(messages),
    )


def _parse_window(raw: Mapping[str, Any]) -> KeepAliveWindow:
    path = "spec.keepAlive.window"
    start = _clock(raw, "start", path, default="10:00")
    end = _clock(raw, "end", path, default="19:00")
    if start >= end:
        raise SpecError(f"{path}.start", f"must be before end ({end:%H:%M}), not {raw.get('start', '10:00')!r}")
    days_raw = raw.get("days")
    if days_raw is None:
        days_raw = list(WEEKDAYS[:5])
    if not isinstance(days_raw, list):
        raise SpecError(f"{path}.days", "must be a list of weekdays such as [Mon, Tue, Wed, Thu, Fri]")
    if not days_raw:
        raise SpecError(f"{path}.days", "must name at least one weekday (set keepAlive.enabled to false instead)")
    days: set[int] = set()
    for index, item in enumerate(days_raw):
        if item not in WEEKDAYS:
            raise SpecError(f"{path}.days[{index}]", f"{item!r} is not one of {', '.join(WEEKDAYS)}")
        if WEEKDAYS.index(item) in days:
            raise SpecError(f"{path}.days[{index}]", f"{item} is listed twice")
        days.add(WEEKDAYS.index(item))
    return KeepAliveWindow(start=start, end=end, days=frozenset(days))


def _parse_health(raw: Mapping[str, Any]) -> Health:
    # The schema takes the durations in ms, s, m and h only (Kubernetes CEL's duration() has no
    # unit d); here any duration within the range is accepted, as for keepAlive.minSpacing.
    path = "spec.health"
    enabled = _bool(raw, "enabled", path, default=True)
    burst = _section(raw, "burst", path)
    no_exchange = _section(raw, "noExchange", path)
    follow_ups = _section(raw, "followUps", path)
    cold_outreach = _section(raw, "coldOutreach", path)
    off_hours = _section(raw, "offHours", path)
    return Health(
        enabled=enabled,
        cooldown=_bounded_duration(raw, "cooldown", path, default="1h", bounds=HEALTH_COOLDOWN_RANGE),
        burst=BurstRule(
            messages=_int(burst, "messages", f"{path}.burst", default=60, low=1, high=10000),
            within=_bounded_duration(burst, "within", f"{path}.burst", default="10m", bounds=BURST_WITHIN_RANGE),
        ),
        no_exchange=NoExchangeRule(
            window=_bounded_duration(
                no_exchange, "window", f"{path}.noExchange", default="24h", bounds=HEALTH_WINDOW_RANGE
            ),
            min_sent=_int(no_exchange, "minSent", f"{path}.noExchange", default=20, low=1, high=10000),
            min_reply_ratio=_fraction(
                no_exchange, "minReplyRatio", f"{path}.noExchange", default=0.2, low=0.0, high=1.0
            ),
        ),
        follow_ups=FollowUpRule(max=_int(follow_ups, "max", f"{path}.followUps", default=2, low=1, high=3)),
        cold_outreach=ColdOutreachRule(
            window=_bounded_duration(
                cold_outreach, "window", f"{path}.coldOutreach", default="24h", bounds=HEALTH_WINDOW_RANGE
            ),
            max_line_initiated=_int(
                cold_outreach, "maxLineInitiated", f"{path}.coldOutreach", default=10, low=0, high=1000
            ),
        ),
        off_hours=_parse_off_hours(off_hours),
    )


def _parse_off_hours(raw: Mapping[str, Any]) -> OffHoursRule:
    path = "spec.health.offHours"
    quiet = _section(raw, "quiet", path)
    start = _clock(quiet, "start", f"{path}.quiet", default="22:00")
    end = _clock(quiet, "end", f"{path}.quiet", default="08:00")
    # Either order is a quiet period (end before start crosses midnight); only an empty one is not.
    if start == end:
        raise SpecError(
            f"{path}.quiet.start", f"must differ from end ({end:%H:%M}), not {quiet.get('start', '22:00')!r}"
        )
    return OffHoursRule(
        quiet_start=start,
        quiet_end=end,
        max_net_outbound=_int(raw, "maxNetOutbound", path, default=5, low=0, high=1000),
    )


def _parse_scaling(raw: Mapping[str, Any]) -> Scaling:
    path = "spec.scaling"
    min_servers = _int(raw, "minServers", path, default=1, low=0, high=1000)
    max_servers = _int(raw, "maxServers", path, default=10, low=1, high=1000)
    if min_servers > max_servers:
        raise SpecError(f"{path}.minServers", f"must not exceed maxServers ({max_servers}), not {min_servers}")
    template_raw = _section(raw, "serverTemplate", path)
    template_meta = _section(template_raw, "metadata", f"{path}.serverTemplate")
    template_spec = dict(_section(template_raw, "spec", f"{path}.serverTemplate"))
    if "endpoint" in template_spec:
        _url(template_spec["endpoint"], f"{path}.serverTemplate.spec.endpoint")
    if "lines" in template_spec or "pool" in template_spec:
        raise SpecError(f"{path}.serverTemplate.spec", "must not set lines or pool; the operator fills them")
    return Scaling(
        mode=_enum(raw, "mode", path, kind=ScalingMode, default=ScalingMode.AUTO),
        scale_up_at=_fraction(raw, "scaleUpAt", path, default=0.75, low=0.5, high=0.95),
        min_servers=min_servers,
        max_servers=max_servers,
        cooldown=_duration(raw, "cooldown", path, default="15m", minimum=timedelta(0)),
        lines_per_server=_int(raw, "linesPerServer", path, default=4, low=1, high=MAX_SERVER_LINES),
        server_template=ServerTemplate(
            labels=_string_map(template_meta, "labels", f"{path}.serverTemplate.metadata"),
            annotations=_string_map(template_meta, "annotations", f"{path}.serverTemplate.metadata"),
            spec=template_spec,
        ),
    )


def _parse_queries(raw: Mapping[str, Any]) -> QueryTemplates:
    defaults = QueryTemplates()
    overrides: dict[str, str] = {}
    for key, attr in (
        ("sentInWindow", "sent_in_window"),
        ("newConversationsInWindow", "new_conversations_in_window"),
        ("lineState", "line_state"),
        ("activity", "activity"),
        ("lastActivityTimestamp", "last_activity_timestamp"),
        ("receivedInWindow", "received_in_window"),
        ("lineInitiatedInWindow", "line_initiated_in_window"),
        ("unansweredSendsInWindow", "unanswered_sends_in_window"),
    ):
        if key in raw:
            value = raw[key]
            if not isinstance(value, str) or not value.strip():
                raise SpecError(f"spec.metrics.queries.{key}", "must be a non-empty PromQL template")
            overrides[attr] = value
    return QueryTemplates(**{**defaults.__dict__, **overrides})


def _reject_duplicates(ids: tuple[str, ...], path: str) -> None:
    seen: set[str] = set()
    for index, line_id in enumerate(ids):
        if line_id in seen:
            raise SpecError(f"{path}[{index}]", f"line {line_id} is listed twice")
        seen.add(line_id)


def parse_server_spec(spec: Mapping[str, Any]) -> ServerSpec:
    """Validate a MessagingServer spec and return it typed, with defaults applied."""
    pool = spec.get("pool")
    if not isinstance(pool, str) or not DNS_LABEL.match(pool):
        raise SpecError("spec.pool", f"must name a LinePool (a DNS label), not {pool!r}")
    endpoint = _url(spec.get("endpoint"), "spec.endpoint")
    credentials = None
    ref = spec.get("credentialsSecretRef")
    if ref is not None:
        if not isinstance(ref, Mapping) or not ref.get("name") or not ref.get("key"):
            raise SpecError("spec.credentialsSecretRef", "needs both name and key")
        credentials = SecretRef(name=str(ref["name"]), key=str(ref["key"]))
    quota = spec.get("dailyMessageQuota")
    if quota is not None:
        quota = _int(spec, "dailyMessageQuota", "spec", default=0, low=1, high=10**9)
    cordoned = _bool(spec, "cordoned", "spec", default=False)
    lines_raw = spec.get("lines") or []
    if not isinstance(lines_raw, list):
        raise SpecError("spec.lines", "must be a list")
    if len(lines_raw) > MAX_SERVER_LINES:
        raise SpecError("spec.lines", f"holds at most {MAX_SERVER_LINES} lines, not {len(lines_raw)}")
    lines = []
    for index, item in enumerate(lines_raw):
        path = f"spec.lines[{index}]"
        if not isinstance(item, Mapping):
            raise SpecError(path, "must be an object with id and role")
        lines.append(Line(
            id=_line_id(item.get("id"), f"{path}.id"),
            role=_enum(item, "role", path, kind=LineRole, default=LineRole.PRIMARY),
        ))
    _reject_duplicates(tuple(line.id for line in lines), "spec.lines")
    return ServerSpec(
        pool=pool, endpoint=endpoint, credentials=credentials, daily_message_quota=quota,
        cordoned=cordoned, lines=tuple(lines),
    )
