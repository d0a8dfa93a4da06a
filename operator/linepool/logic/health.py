"""Line health: the five behaviours that get a line flagged by Apple, seen before Apple sees them.

This module owns the pattern rules of ``spec.health``: which figures of a line make which pattern
(``findings``), how a pattern becomes a risk of a flag and how long the risk lasts (``evaluate_line``:
one episode per pattern, from the first poll that sees it until ``cooldown`` after the last one), the
quiet period in the pool's local time (``quiet_period``), and the probable cause of a flag once it
has happened (``explain_flag``). A risk of a flag is not the deactivation risk of keep-alive
(``LineState.AtRisk``): that one is about a line that is too quiet, this one about a line that
behaves like a robot.

Thresholds, as the issue's table gives them:

- burst: ``messages`` or more sent within ``within`` (at the limit counts: "100 or more");
- no exchange: at least ``minSent`` sent in ``window`` and fewer replies than ``minReplyRatio``
  of them (a line that sent fewer than ``minSent`` is not judged);
- follow-ups: any send with ``max + 1`` unanswered messages before it;
- cold outreach: more than ``maxLineInitiated`` conversations started by the line in ``window``;
- off-hours: inside the quiet period, more than ``maxNetOutbound`` sent beyond what was received.

A figure that is absent (``None``: the relay does not export that metric) leaves its pattern
unmeasured. Unmeasured is not healthy: it is reported, and a risk already recorded for that pattern
is kept rather than cleared, because nothing says the pattern stopped.

Everything here is pure: the clock is an argument, and status comes in and goes out as plain data.
"""

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from linepool.api.conditions import format_time, parse_time
from linepool.api.durations import format_duration
from linepool.api.spec import Health, OffHoursRule
from linepool.api.types import HealthPattern

# Status limits of the CRD: a risk's message, and the message of the last flag.
RISK_MESSAGE_MAX = 256
FLAG_MESSAGE_MAX = 512
# What to change, per pattern: the end of a forensics message.
ADVICE: Mapping[HealthPattern, str] = {
    HealthPattern.BURST: "pace sends",
    HealthPattern.NO_EXCHANGE: "send where users reply, design for inbound-first",
    HealthPattern.FOLLOW_UPS: "stop after {n} unanswered messages",
    HealthPattern.COLD_OUTREACH: "message only people who wrote first",
    HealthPattern.OFF_HOURS: "send nothing during quiet hours",
}
_LABELS: Mapping[HealthPattern, str] = {
    HealthPattern.BURST: "burst",
    HealthPattern.NO_EXCHANGE: "no exchange",
    HealthPattern.FOLLOW_UPS: "follow-ups",
    HealthPattern.COLD_OUTREACH: "cold outreach",
    HealthPattern.OFF_HOURS: "off-hours",
}
# The order: it breaks ties between patterns equally far over their thresholds.
_ORDER: Mapping[HealthPattern, int] = {pattern: index for index, pattern in enumerate(HealthPattern)}


class HealthSample(NamedTuple):
    """One line's figures in one poll; ``None`` means the metric is absent (the pattern is unmeasured).

    A tuple, like ``LineSample``: a poll builds one per line, so it must be cheap to make.
    """

    burst_sent: float | None = None          # messages sent in the last burst.within
    exchange_sent: float | None = None       # sent in noExchange.window
    exchange_received: float | None = None   # received in noExchange.window
    over_cap_follow_ups: float | None = None  # sends with streak >= followUps.max + 2 in the last cooldown
    line_initiated: float | None = None      # new conversations the line started in coldOutreach.window
    quiet_sent: float | None = None          # sent since the current quiet period began (None outside it)
    quiet_received: float | None = None      # received since then


@dataclass(frozen=True, kw_only=True)
class Finding:
    """A pattern seen: its figure against its threshold, and a message that says both."""

    pattern: HealthPattern
    figure: float
    threshold: float
    message: str

    def to_status(self) -> dict[str, Any]:
        return {"pattern": self.pattern.value, "figure": self.figure, "threshold": self.threshold,
                "message": _clip(self.message, RISK_MESSAGE_MAX)}


# --- the quiet period ---------------------------------------------------------------------------


def quiet_period(*, now: datetime, rule: OffHoursRule, timezone: str) -> tuple[datetime, datetime] | None:
    """The quiet period containing ``now`` as UTC datetimes ``[start, end)``, else None.

    ``quiet_start`` and ``quiet_end`` are local wall times of ``timezone``; a start after the end
    crosses midnight (22:00 to 08:00 ends the next morning). On a day the clocks change the period
    keeps its local hours, so it is an hour shorter or longer in real time. A bound that the clock
    skips (02:30 on the night clocks spring from 02:00 to 03:00) falls at the jump; a bound the
    clock shows twice (falling back) is its first showing. Equal bounds make no quiet period.
    """
    start_at, end_at = rule.quiet_start, rule.quiet_end
    if start_at == end_at:
        return None
    zone = ZoneInfo(timezone)
    today = now.astimezone(zone).date()
    crosses = start_at > end_at
    # The period containing now began today or, crossing midnight, yesterday.
    for day in (today - timedelta(days=1), today):
        start = _first_showing(day, start_at, zone)
        end = _first_showing(day + timedelta(days=1) if crosses else day, end_at, zone)
        if start <= now < end:
            return start, end
    return None


def _first_showing(day: date, at: time, zone: ZoneInfo) -> datetime:
    """The first moment (UTC) at which the clock of ``zone`` reads ``at`` on ``day``, or later."""
    wall = datetime.combine(day, at)
    earlier = wall.replace(tzinfo=zone).astimezone(UTC)   # fold=0: the first of two showings
    if earlier.astimezone(zone).replace(tzinfo=None) == wall:
        return earlier
    # The clock skips ``at``. The jump lies between the two readings of the skipped time (one with
    # the offset after the change, one with the offset before); the wall clock only moves forward
    # in between, so search for the first second that reads ``at`` or later.
    lo = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    hi = earlier
    if lo > hi:
        lo, hi = hi, lo
    while hi - lo > timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        if mid.astimezone(zone).replace(tzinfo=None) >= wall:
            hi = mid
        else:
            lo = mid
    return hi.replace(microsecond=0)


# --- findings -----------------------------------------------------------------------------------


def findings(*, sample: HealthSample, spec: Health,
             in_quiet_period: bool) -> tuple[list[Finding], set[HealthPattern]]:
    """Patterns seen now (in the issue's order), and patterns unmeasured (metric absent).

    Off-hours is unmeasured only inside the quiet period: outside it there is nothing to measure.
    """
    burst, sent, received, over_cap, initiated = sample[:5]
    # The common case, first: every figure measured and inside its rule (the same tests as the
    # rules below, inlined; most lines of a pool are healthy at every poll).
    if (not in_quiet_period and burst is not None and burst < spec.burst.messages
            and sent is not None and received is not None
            and (sent < spec.no_exchange.min_sent or sent <= 0 or received / sent >= spec.no_exchange.min_reply_ratio)
            and over_cap is not None and over_cap <= 0
            and initiated is not None and initiated <= spec.cold_outreach.max_line_initiated):
        return [], set()
    seen: list[Finding] = []
    unmeasured: set[HealthPattern] = set()
    if sample.burst_sent is None:
        unmeasured.add(HealthPattern.BURST)
    else:
        _add(seen, _burst(sent=sample.burst_sent, spec=spec))
    if sample.exchange_sent is None or sample.exchange_received is None:
        unmeasured.add(HealthPattern.NO_EXCHANGE)
    else:
        _add(seen, _no_exchange(sent=sample.exchange_sent, received=sample.exchange_received, spec=spec))
    if sample.over_cap_follow_ups is None:
        unmeasured.add(HealthPattern.FOLLOW_UPS)
    else:
        _add(seen, _follow_ups(over_cap=sample.over_cap_follow_ups, spec=spec))
    if sample.line_initiated is None:
        unmeasured.add(HealthPattern.COLD_OUTREACH)
    else:
        _add(seen, _cold_outreach(initiated=sample.line_initiated, spec=spec))
    if in_quiet_period:
        if sample.quiet_sent is None or sample.quiet_received is None:
            unmeasured.add(HealthPattern.OFF_HOURS)
        else:
            _add(seen, _off_hours(net=sample.quiet_sent - sample.quiet_received, spec=spec))
    return seen, unmeasured


def _add(seen: list[Finding], finding: Finding | None) -> None:
    if finding is not None:
        seen.append(finding)


def _burst(*, sent: float, spec: Health) -> Finding | None:
    rule = spec.burst
    if sent < rule.messages:
        return None
    return Finding(pattern=HealthPattern.BURST, figure=_round(sent), threshold=rule.messages,
                   message=f"{_n(sent)} messages in {_span(rule.within)}, limit {rule.messages}")


# Each rule below words its span only for a pattern seen: most lines of a pool show none, every poll.


def _no_exchange(*, sent: float, received: float, spec: Health, span: str | None = None) -> Finding | None:
    rule = spec.no_exchange
    # Too few sends to judge a conversation; a line that sent nothing has nothing to answer.
    if sent < rule.min_sent or sent <= 0:
        return None
    ratio = received / sent
    if ratio >= rule.min_reply_ratio:
        return None
    return Finding(pattern=HealthPattern.NO_EXCHANGE, figure=_round(ratio, 4), threshold=rule.min_reply_ratio,
                   message=f"{_n(sent)} sent, {_replies(received)} ({_pct(ratio)}) "
                           f"{span or 'in ' + _span(rule.window)}, "
                           f"need {_pct(rule.min_reply_ratio)}")


def _follow_ups(*, over_cap: float, spec: Health, span: str | None = None) -> Finding | None:
    rule = spec.follow_ups
    if over_cap <= 0:
        return None
    # The figure is the count of sends over the cap, so its threshold is zero of them.
    return Finding(pattern=HealthPattern.FOLLOW_UPS, figure=_round(over_cap), threshold=0,
                   message=f"{_n(over_cap)} {_plural(over_cap, 'send')} after {rule.max + 1} unanswered in a row "
                           f"{span or 'in ' + _span(spec.cooldown)}, limit {rule.max} {_plural(rule.max, 'follow-up')}")


def _cold_outreach(*, initiated: float, spec: Health, span: str | None = None) -> Finding | None:
    rule = spec.cold_outreach
    if initiated <= rule.max_line_initiated:
        return None
    return Finding(pattern=HealthPattern.COLD_OUTREACH, figure=_round(initiated), threshold=rule.max_line_initiated,
                   message=f"{_n(initiated)} {_plural(initiated, 'conversation')} started by the line "
                           f"{span or 'in ' + _span(rule.window)}, "
                           f"limit {rule.max_line_initiated}")


def _off_hours(*, net: float, spec: Health, span: str | None = None) -> Finding | None:
    rule = spec.off_hours
    if net <= rule.max_net_outbound:
        return None
    return Finding(pattern=HealthPattern.OFF_HOURS, figure=_round(net), threshold=rule.max_net_outbound,
                   message=f"{_n(net)} more sent than received {span or f'since {rule.quiet_start:%H:%M}'}, "
                           f"limit {rule.max_net_outbound}")


# --- risks of a flag, over polls -----------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)   # slots: one per line, every poll
class LineHealth:
    """One line's risks of a flag after a poll, and the episodes that started or ended in it.

    A pattern can be in both ``cleared`` and ``started`` when its recorded episode had already
    ended (a gap between polls longer than the cooldown) and the pattern is seen again: report
    the ``cleared`` ones first.
    """

    risks: list[dict[str, Any]]      # status ``flagRisks``: pattern, figure, threshold, message, since, lastSeen
    started: list[Finding]           # new episodes (one event each)
    cleared: list[HealthPattern]     # episodes that ended (cooldown passed without the pattern)
    unmeasured: set[HealthPattern]


@dataclass(frozen=True, kw_only=True)
class _Recorded:
    raw: Mapping[str, Any]
    last_seen: datetime


def _recorded(previous: Iterable[Any]) -> dict[HealthPattern, _Recorded]:
    """The previous ``flagRisks`` by pattern; an unreadable entry counts as no record."""
    out: dict[HealthPattern, _Recorded] = {}
    for raw in previous:
        if not isinstance(raw, Mapping):
            continue
        last_seen = parse_time(raw.get("lastSeen"))
        try:
            pattern = HealthPattern(str(raw.get("pattern")))
        except ValueError:
            continue
        if last_seen is not None and pattern not in out:
            out[pattern] = _Recorded(raw=raw, last_seen=last_seen)
    return out


def evaluate_line(*, sample: HealthSample | None, spec: Health, previous: Sequence[Mapping[str, Any]],
                  now: datetime, in_quiet_period: bool) -> LineHealth:
    """A line's risks of a flag after this poll.

    A risk stays while the pattern is seen, and for ``spec.cooldown`` after it was last seen
    (``lastSeen``): it clears at exactly ``lastSeen + cooldown``. Seeing the pattern again before
    then continues the same episode (no second event); ``since`` is kept from the previous entry
    of the same pattern. With ``sample`` None (no fresh metrics) the previous risks are kept
    unchanged (fail static) and nothing starts or clears; an unmeasured pattern keeps its risk the
    same way. With ``spec.enabled`` False there are no risks at all: the previous ones clear.
    """
    recorded = _recorded(previous) if previous else {}
    if not spec.enabled:
        return LineHealth(risks=[], started=[], cleared=list(recorded), unmeasured=set())
    if sample is None:
        return LineHealth(risks=[dict(item.raw) for item in recorded.values()], started=[], cleared=[],
                          unmeasured=set())

    seen, unmeasured = findings(sample=sample, spec=spec, in_quiet_period=in_quiet_period)
    if not seen and not recorded:
        # The common case, every poll, for most lines of a pool.
        return LineHealth(risks=[], started=[], cleared=[], unmeasured=unmeasured)
    by_pattern = {finding.pattern: finding for finding in seen}
    stamp = format_time(now)
    risks: list[dict[str, Any]] = []
    started: list[Finding] = []
    cleared: list[HealthPattern] = []
    for pattern in HealthPattern:
        finding, old = by_pattern.get(pattern), recorded.get(pattern)
        live = old is not None and now < old.last_seen + spec.cooldown
        if old is not None and not live and pattern not in unmeasured:
            cleared.append(pattern)
        if finding is not None:
            since = old.raw.get("since") if old is not None and live else None
            if not isinstance(since, str) or parse_time(since) is None:
                since = stamp
                started.append(finding)
            risks.append({**finding.to_status(), "since": since, "lastSeen": stamp})
        elif old is not None and (live or pattern in unmeasured):
            # Unchanged, so a line in cooldown costs no status write.
            risks.append(dict(old.raw))
    return LineHealth(risks=risks, started=started, cleared=cleared, unmeasured=unmeasured)


# --- flag forensics -----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class FlagFigures:
    """What a line did in the hour before its flag, measured at the flag time; None when absent."""

    burst_peak: float | None = None           # the most messages sent within burst.within
    sent: float | None = None
    received: float | None = None
    over_cap_follow_ups: float | None = None
    line_initiated: float | None = None
    quiet_net_outbound: float | None = None   # sent minus received during quiet hours; None: none in the hour
    peak_per_minute: float | None = None


@dataclass(frozen=True, kw_only=True)
class FlagReport:
    """The probable cause of a flag (None: no pattern seen), the evidence, and what to change.

    ``evidence`` holds every pattern seen, furthest over its threshold first (the cause).
    """

    cause: HealthPattern | None
    evidence: list[Finding]
    message: str
    unmeasured: set[HealthPattern] = field(default_factory=set)


_BEFORE_FLAG = "in the hour before the flag"


def explain_flag(*, figures: FlagFigures, spec: Health) -> FlagReport:
    """Name the probable cause of a flag: the pattern furthest over its threshold in the hour before.

    Patterns are seen by the same thresholds as the risks, applied to that hour. How far over is
    relative to the threshold: ``figure / threshold`` for a limit (a burst of 180 against 60 is 3);
    for the reply ratio, a floor, it is ``1 + shortfall / floor`` (no reply at all is 2, like a
    limit doubled); a zero limit counts as a limit of one. Ties go to the
    pattern the issue names first. With no pattern seen the cause is None and the message says
    so, with the line's traffic, and which patterns could not be measured.
    """
    seen, unmeasured = _flag_findings(figures=figures, spec=spec)
    ranked = sorted(seen, key=lambda finding: (-_how_far(finding), _ORDER[finding.pattern]))
    if not ranked:
        traffic = ", ".join((
            f"{_maybe(figures.sent)} sent",
            _replies(figures.received) if figures.received is not None else "replies unknown",
            f"peak {_maybe(figures.peak_per_minute)}/min",
        ))
        message = f"no pattern seen {_BEFORE_FLAG}: {traffic}"
        if unmeasured:
            message += "; not measured: " + ", ".join(_LABELS[p] for p in HealthPattern if p in unmeasured)
        return FlagReport(cause=None, evidence=[], message=_clip(message, FLAG_MESSAGE_MAX), unmeasured=unmeasured)
    cause = ranked[0]
    advice = ADVICE[cause.pattern].format(n=spec.follow_ups.max + 1)
    message = f"{_LABELS[cause.pattern]}: {cause.message}; {advice}"
    if len(ranked) > 1:
        message += " (also seen: " + ", ".join(_LABELS[f.pattern] for f in ranked[1:]) + ")"
    return FlagReport(cause=cause.pattern, evidence=ranked, message=_clip(message, FLAG_MESSAGE_MAX),
                      unmeasured=unmeasured)


def _flag_findings(*, figures: FlagFigures, spec: Health) -> tuple[list[Finding], set[HealthPattern]]:
    seen: list[Finding] = []
    unmeasured: set[HealthPattern] = set()
    if figures.burst_peak is None:
        unmeasured.add(HealthPattern.BURST)
    elif (burst := _burst(sent=figures.burst_peak, spec=spec)) is not None:
        within, limit = _span(spec.burst.within), spec.burst.messages
        seen.append(Finding(pattern=burst.pattern, figure=burst.figure, threshold=burst.threshold,
                            message=f"{_n(figures.burst_peak)} messages in {within} before the flag (limit {limit})"))
    if figures.sent is None or figures.received is None:
        unmeasured.add(HealthPattern.NO_EXCHANGE)
    else:
        _add(seen, _no_exchange(sent=figures.sent, received=figures.received, spec=spec, span=_BEFORE_FLAG))
    if figures.over_cap_follow_ups is None:
        unmeasured.add(HealthPattern.FOLLOW_UPS)
    else:
        _add(seen, _follow_ups(over_cap=figures.over_cap_follow_ups, spec=spec, span=_BEFORE_FLAG))
    if figures.line_initiated is None:
        unmeasured.add(HealthPattern.COLD_OUTREACH)
    else:
        _add(seen, _cold_outreach(initiated=figures.line_initiated, spec=spec, span=_BEFORE_FLAG))
    # None here also means the hour held no quiet time, so off-hours is never reported unmeasured.
    if figures.quiet_net_outbound is not None:
        _add(seen, _off_hours(net=figures.quiet_net_outbound, spec=spec, span=f"during quiet hours {_BEFORE_FLAG}"))
    return seen, unmeasured


def _how_far(finding: Finding) -> float:
    """How far a finding is beyond its threshold, comparable across patterns (1 is at the threshold)."""
    if finding.pattern is HealthPattern.NO_EXCHANGE:
        floor = finding.threshold
        return 1 + (floor - finding.figure) / floor if floor > 0 else 1.0
    # A zero limit counts as a limit of one: one message over it is as far as a limit reached.
    return finding.figure / max(finding.threshold, 1)


# --- words and numbers --------------------------------------------------------------------------


def _round(figure: float, digits: int = 2) -> float:
    # Prometheus extrapolates increases, so figures carry noise that status need not keep.
    return round(figure, digits)


def _n(figure: float) -> str:
    """A count for people: whole when it is (nearly) whole, else one decimal."""
    if math.isclose(figure, round(figure), abs_tol=0.05):
        return str(round(figure))
    return f"{figure:.1f}"


def _span(value: timedelta) -> str:
    # Windows read best in hours ("24h", not "1d"), as the issue writes them.
    seconds = int(value.total_seconds())
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    return format_duration(value)


def _maybe(figure: float | None) -> str:
    return "?" if figure is None else _n(figure)


def _plural(figure: float, word: str) -> str:
    return word if _n(figure) == "1" else f"{word}s"


def _replies(received: float) -> str:
    return f"{_n(received)} {'reply' if _n(received) == '1' else 'replies'}"


def _pct(ratio: float) -> str:
    return f"{ratio * 100:.0f}%"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
