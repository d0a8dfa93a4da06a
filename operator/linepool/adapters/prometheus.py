"""Read traffic from Prometheus: a constant batch of instant queries per pool per poll.

Queries go out as POST form bodies: a pool of a thousand servers makes a long server regex,
and a GET URL of that size is refused by proxies long before Prometheus minds it.

Line health adds one query to the batch, whatever the number of lines: a union of parts, each
tagged with the figure it measures (``linepool_figure``). Each part keeps only the lines past
its pattern's threshold, and per-server ``has_*`` parts say which relays export which metric,
so a healthy line costs nothing to read, and a pattern whose metric a relay lacks reads
unmeasured rather than healthy. Flag forensics makes two more queries
per flag, not per poll: when the line turned flagged (:meth:`PrometheusClient.flag_time`), and
what it did in the hour before (:meth:`PrometheusClient.flag_figures`). The capacity forecast
makes one range query per pool per hour at most (:meth:`PrometheusClient.daily_history`).
"""

import asyncio
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from linepool.api.spec import Health, QueryTemplates
from linepool.logic.health import FlagFigures, quiet_period
from linepool.logic.observations import FIGURE_LABEL, Observation, Sample, assemble, flag_figures

QUERY_TIMEOUT_SECONDS = 10.0


class PrometheusError(Exception):
    """Prometheus could not be read: unreachable, timed out, or answered with an error."""


# Marks which side of the combined activity query a series came from.
SOURCE_LABEL = "linepool_source"
# Marks which side of the combined history query a series came from.
HISTORY_LABEL = "linepool_history"
DAY = timedelta(days=1)

# The values of the `streak` label of imessage_unanswered_sends_total, in order; "5+" is 5 and more.
STREAKS = ("1", "2", "3", "4", "5+")
# Flag forensics looks at this long before the flag, as the issue asks.
FLAG_HOUR = timedelta(hours=1)
# How far back flag_time looks for the moment a line turned flagged, and at which step.
FLAG_LOOKBACK = timedelta(hours=24)
FLAG_RESOLUTION = timedelta(seconds=15)


@dataclass(frozen=True, kw_only=True)
class PoolQueries:
    """The rendered PromQL of one poll; its size does not depend on the number of lines."""

    sent: str
    new_conversations: str
    line_state: str
    # Counters and the optional last-activity gauge in one query, told apart by SOURCE_LABEL.
    activity: str
    # The figures of the five flag patterns in one query, told apart by FIGURE_LABEL; None when
    # health is not evaluated.
    health: str | None = None

    def all(self) -> tuple[str, ...]:
        base = (self.sent, self.new_conversations, self.line_state, self.activity)
        return base if self.health is None else (*base, self.health)


def render_queries(
    *,
    templates: QueryTemplates,
    servers: list[str],
    window: str,
    health: Health | None = None,
    quiet_since: timedelta | None = None,
) -> PoolQueries:
    """Fill ``{{servers}}`` (an anchored regex of exact names) and ``{{window}}`` into each template.

    With ``health`` (enabled), the batch gains the health query, its windows taken from the
    rules; ``quiet_since`` is how long ago the current quiet period began, None outside one.
    """
    alternation = _server_regex(servers)

    def fill(template: str, range_: str = window) -> str:
        return template.replace("{{servers}}", alternation).replace("{{window}}", range_)

    return PoolQueries(
        sent=fill(templates.sent_in_window),
        new_conversations=fill(templates.new_conversations_in_window),
        line_state=fill(templates.line_state),
        # `or` keeps both sides: the added label makes their series distinct.
        activity=(f'label_replace({fill(templates.activity)}, "{SOURCE_LABEL}", "counters", "", "") or '
                  f'label_replace({fill(templates.last_activity_timestamp)}, "{SOURCE_LABEL}", "gauge", "", "")'),
        health=(_health_query(templates=templates, fill=fill, servers=alternation, spec=health,
                              quiet_since=quiet_since)
                if health is not None and health.enabled else None),
    )


def history_queries(*, templates: QueryTemplates, servers: list[str]) -> tuple[str, str]:
    """New conversations and messages sent per day, summed over ``servers``: the history a forecast fits.

    Rendered from the pool's own templates (so overrides in ``spec.metrics.queries`` apply), with a
    one-day window: run at one-day steps, each point is the day before it.
    """
    queries = render_queries(templates=templates, servers=servers, window="1d")
    return f"sum({queries.new_conversations})", f"sum({queries.sent})"


def history_query(*, templates: QueryTemplates, servers: list[str]) -> str:
    """Both :func:`history_queries` in one, told apart by HISTORY_LABEL: one range query per forecast."""
    new_users, sent = history_queries(templates=templates, servers=servers)
    return (f'label_replace({new_users}, "{HISTORY_LABEL}", "new_users", "", "") or '
            f'label_replace({sent}, "{HISTORY_LABEL}", "sent", "", "")')


def promql_duration(length: timedelta) -> str:
    """A PromQL duration: whole seconds when it is whole, else milliseconds; at least 1s."""
    millis = max(round(length.total_seconds() * 1000), 1000)
    return f"{millis // 1000}s" if millis % 1000 == 0 else f"{millis}ms"


def over_cap_streaks(max_follow_ups: int) -> tuple[str, ...]:
    """The ``streak`` values of sends over a cap of ``max_follow_ups``: streak >= max + 2.

    A cap past what the label can tell apart counts the "5+" sends, its closest reading.
    """
    first = min(max_follow_ups + 2, len(STREAKS))
    return STREAKS[first - 1:]


def _server_regex(servers: list[str]) -> str:
    # PromQL string literal inside a regex: escape regex metacharacters, then backslashes for PromQL.
    alternation = "|".join(re.escape(name) for name in sorted(servers)) or "$^"
    return alternation.replace("\\", "\\\\")


def _tag(expr: str, figure: str) -> str:
    return f'label_replace({expr}, "{FIGURE_LABEL}", "{figure}", "", "")'


def _or_zero(expr: str, presence: str) -> str:
    """``expr``, and 0 for the lines that ``presence`` finds but ``expr`` does not."""
    return f"({expr}) or 0 * ({presence})"


def _over_cap(*, unanswered: str, max_follow_ups: int) -> str:
    """The unanswered sends over the cap, summed per line; 0 for a line whose relay has the metric.

    PromQL has no label matcher on an expression, so the streaks over the cap are a vector of
    their own, one series per value, that ``and on (streak)`` keeps.
    """
    streaks = " or ".join(f'label_replace(vector(1), "streak", "{value}", "", "")'
                          for value in over_cap_streaks(max_follow_ups))
    return _or_zero(f"sum by (server, line) ({unanswered} and on (streak) ({streaks}))",
                    f"sum by (server, line) ({unanswered})")


def _line_initiated_presence(servers: str) -> str:
    # A relay with the `initiator` label whose lines started nothing reads 0, one without it absent.
    return f'sum by (server, line) (imessage_new_conversations_total{{server=~"{servers}",initiator!=""}})'


def _health_query(*, templates: QueryTemplates, fill: Callable[[str, str], str], servers: str, spec: Health,
                  quiet_since: timedelta | None) -> str:
    """The poll's health query: rows only for lines over a threshold, and which relays export what.

    A pool of 10,000 healthy lines answers with a few rows per server, not five per line: each
    pattern's part keeps only the lines past its rule (PromQL comparison filters), and a
    ``has_*`` part per metric family says, per server, that its relay exports it, so a line with
    no row reads 0 there and None on a relay without the metric (the pattern is unmeasured).
    """
    def sent(length: timedelta) -> str:
        return fill(templates.sent_in_window, promql_duration(length))

    def received(length: timedelta) -> str:
        return fill(templates.received_in_window, promql_duration(length))

    unanswered = fill(templates.unanswered_sends_in_window, promql_duration(spec.cooldown))
    exchange_sent, exchange_received = sent(spec.no_exchange.window), received(spec.no_exchange.window)
    replies = f"(({exchange_received}) or 0 * ({exchange_sent}))"
    # Lines that sent at least minSent and got too few replies per send.
    quiet_lines = (f"(({exchange_sent}) >= {spec.no_exchange.min_sent}) and on (server, line) "
                   f"({replies} / ({exchange_sent}) < {spec.no_exchange.min_reply_ratio!r})")
    parts = [
        _tag(f"({sent(spec.burst.within)}) >= {spec.burst.messages}", "burst"),
        _tag(quiet_lines, "exchange_sent"),
        _tag(f"{replies} and on (server, line) ({quiet_lines})", "exchange_received"),
        _tag(f"({_over_cap(unanswered=unanswered, max_follow_ups=spec.follow_ups.max)}) > 0", "over_cap"),
        _tag(f"({fill(templates.line_initiated_in_window, promql_duration(spec.cold_outreach.window))}) "
             f"> {spec.cold_outreach.max_line_initiated}", "line_initiated"),
        # Per server: its relay exports the family (the lines of a relay share its metrics).
        _tag(f"count by (server) ({sent(spec.burst.within)})", "has_sent"),
        _tag(f"count by (server) ({exchange_received})", "has_received"),
        _tag(f"count by (server) ({unanswered})", "has_unanswered"),
        _tag(f"count by (server) ({_line_initiated_presence(servers)})", "has_initiator"),
    ]
    if quiet_since is not None:
        # Early in the period its window holds fewer than two samples: a relay that exports reads 0.
        window = max(quiet_since, timedelta(seconds=1))
        quiet_sent = sent(window)
        quiet_received = f"(({received(window)}) or 0 * ({quiet_sent}))"
        over = f"(({quiet_sent}) - {quiet_received}) > {spec.off_hours.max_net_outbound}"
        parts += [
            _tag(f"({quiet_sent}) and on (server, line) ({over})", "quiet_sent"),
            _tag(f"{quiet_received} and on (server, line) ({over})", "quiet_received"),
            # The poll measured the quiet period: lines without a row read 0 there.
            _tag("vector(1)", "quiet"),
        ]
    return " or ".join(parts)


def flag_time_query(*, server: str, line: str, lookback: timedelta = FLAG_LOOKBACK,
                    resolution: timedelta = FLAG_RESOLUTION) -> str:
    """When the line's current flagged spell began: its first flagged step after the last unflagged one.

    The last unflagged step is pinned to the query time (``@ end()``) so that every step of the
    outer subquery compares against the same moment. Steps fall on multiples of ``resolution``,
    so every poll of the same spell finds the same time. A series gap does not end a spell.
    """
    flagged = (f'max by (server, line) (imessage_line_state{{server="{_string(server)}",'
               f'line="{_string(line)}",state="flagged"}})')
    span, step = promql_duration(lookback), promql_duration(resolution)
    last_unflagged = f"max_over_time(timestamp({flagged} < 1)[{span}:{step}] @ end())"
    return (f"min_over_time((timestamp({flagged} == 1) > on () group_left () "
            f"({last_unflagged} or on () vector(0)))[{span}:{step}])")


def flag_figures_query(*, templates: QueryTemplates, server: str, spec: Health,
                       quiet: Sequence[tuple[timedelta, timedelta]] = ()) -> str:
    """The figures of the hour before a flag, for every line of ``server``, to run at the flag time.

    ``quiet`` holds the parts of that hour in the quiet period, each as (from, to) ages before
    the flag time (from > to); their net outbound is what the counters gained between the two.
    """
    servers = _server_regex([server])
    hour = promql_duration(FLAG_HOUR)

    def fill(template: str, length: timedelta) -> str:
        return template.replace("{{servers}}", servers).replace("{{window}}", promql_duration(length))

    def since(template: str, age: timedelta) -> str:
        # Increase since `age` before the flag; a part too short for two samples reads 0.
        return _or_zero(fill(template, age), fill(template, FLAG_HOUR))

    def peak(window: timedelta) -> str:
        # The most sent within `window` at any minute of the hour, and at the flag itself: the
        # subquery's steps fall on whole minutes, so alone it would miss sends in the seconds
        # between the last whole minute and the flag. `(a > b) or b` is the larger of the two.
        moving = fill(templates.sent_in_window, window)
        return f"(max_over_time(({moving})[{hour}:1m]) > ({moving})) or ({moving})"

    parts = [
        _tag(peak(spec.burst.within), "burst_peak"),
        _tag(fill(templates.sent_in_window, FLAG_HOUR), "sent"),
        _tag(fill(templates.received_in_window, FLAG_HOUR), "received"),
        _tag(_over_cap(unanswered=fill(templates.unanswered_sends_in_window, FLAG_HOUR),
                       max_follow_ups=spec.follow_ups.max), "over_cap"),
        _tag(_or_zero(fill(templates.line_initiated_in_window, FLAG_HOUR), _line_initiated_presence(servers)),
             "line_initiated"),
        _tag(peak(timedelta(minutes=1)), "peak_per_minute"),
    ]
    terms = []
    for start, end in quiet:
        net = f"(({since(templates.sent_in_window, start)}) - ({since(templates.received_in_window, start)}))"
        if end > timedelta(0):
            net += (f" - (({since(templates.sent_in_window, end)}) - "
                    f"({since(templates.received_in_window, end)}))")
        terms.append(f"({net})")
    if terms:
        parts.append(_tag(" + ".join(terms), "quiet_net_outbound"))
    return " or ".join(parts)


def quiet_parts(*, flag_time: datetime, spec: Health, timezone: str) -> list[tuple[timedelta, timedelta]]:
    """The parts of the hour before ``flag_time`` in the quiet period, as (from, to) ages before it.

    Quiet bounds are whole minutes, so probing every minute of the hour finds each period that
    overlaps it.
    """
    start = flag_time - FLAG_HOUR
    periods = {period for minute in range(61)
               if (period := quiet_period(now=min(start + timedelta(minutes=minute), flag_time),
                                          rule=spec.off_hours, timezone=timezone)) is not None}
    return sorted(((flag_time - max(begin, start), flag_time - min(end, flag_time))
                   for begin, end in periods if begin < flag_time and end > start), reverse=True)


def _string(value: str) -> str:
    """A PromQL double-quoted string literal's content."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


class PrometheusClient:
    """A small async client of the Prometheus HTTP API: instant queries, and the forecast's range query."""

    def __init__(self, *, session: aiohttp.ClientSession, timeout: float = QUERY_TIMEOUT_SECONDS) -> None:
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def query(self, *, base_url: str, promql: str, at: datetime) -> list[Sample]:
        """Run one instant query; return its vector as (labels, value) pairs."""
        url = base_url.rstrip("/") + "/api/v1/query"
        body = await self._post(url=url, base_url=base_url, form={"query": promql, "time": f"{at.timestamp():.3f}"})
        return _parse_vector(body, url=url)

    async def query_range(self, *, base_url: str, promql: str, start: datetime, end: datetime,
                          step: timedelta) -> list[tuple[dict[str, str], dict[float, float]]]:
        """Run one range query; return each series as (labels, {unix time: value})."""
        url = base_url.rstrip("/") + "/api/v1/query_range"
        body = await self._post(url=url, base_url=base_url, form={
            "query": promql, "start": f"{start.timestamp():.3f}", "end": f"{end.timestamp():.3f}",
            "step": f"{step.total_seconds():g}"})
        return _parse_matrix(body, url=url)

    async def daily_history(self, *, base_url: str, templates: QueryTemplates, servers: list[str], now: datetime,
                            days: int) -> tuple[dict[float, float], dict[float, float]]:
        """New users and messages sent per day over the last ``days`` days, by the day's end: one range query."""
        rows = await self.query_range(base_url=base_url, promql=history_query(templates=templates, servers=servers),
                                      start=now - days * DAY, end=now, step=DAY)
        by_side = {labels.get(HISTORY_LABEL): points for labels, points in rows}
        return by_side.get("new_users", {}), by_side.get("sent", {})

    async def _post(self, *, url: str, base_url: str, form: Mapping[str, str]) -> object:
        try:
            async with self._session.post(url, data=dict(form), timeout=self._timeout) as response:
                try:
                    body = await response.json(content_type=None)
                except ValueError:
                    raise PrometheusError(f"{url} answered HTTP {response.status} with a body that is not JSON") \
                        from None
        except aiohttp.ClientError as exc:
            raise PrometheusError(f"cannot reach {base_url}: {type(exc).__name__}: {exc}") from None
        except TimeoutError:
            raise PrometheusError(f"{base_url} did not answer within {self._timeout.total:g}s") from None
        return body

    async def observe(self, *, base_url: str, queries: PoolQueries, at: datetime) -> Observation:
        """Run a pool's batch concurrently and join it into one observation."""
        sent, new, state, activity, *health = await asyncio.gather(
            *(self.query(base_url=base_url, promql=q, at=at) for q in queries.all())
        )
        counters = [row for row in activity if row[0].get(SOURCE_LABEL) != "gauge"]
        last_seen = [row for row in activity if row[0].get(SOURCE_LABEL) == "gauge"]
        return assemble(time=at, sent=sent, new_conversations=new, line_state=state, activity=counters,
                        last_activity=last_seen, health=health[0] if health else None)

    async def flag_time(self, *, base_url: str, server: str, line: str, at: datetime,
                        lookback: timedelta = FLAG_LOOKBACK) -> datetime | None:
        """When the line's current flagged spell began, within ``lookback`` before ``at``.

        None when the line is not flagged at ``at``. The moment comes from Prometheus's history,
        so a flag that happened while the operator was down is dated right; it is the first
        flagged step of FLAG_RESOLUTION, so it can be up to that much after the true moment,
        and reads the same on every call. A line flagged for all of ``lookback`` reads its start.
        """
        rows = await self.query(base_url=base_url, promql=flag_time_query(server=server, line=line,
                                                                          lookback=lookback), at=at)
        moments = [value for labels, value in rows if labels.get("line") == line]
        return datetime.fromtimestamp(min(moments), tz=UTC) if moments else None

    async def flag_figures(self, *, base_url: str, server: str, line: str, spec: Health, flag_time: datetime,
                           templates: QueryTemplates | None = None, timezone: str | None = None) -> FlagFigures:
        """What the line did in the hour before ``flag_time``: one query, run at that time.

        ``timezone`` (``quotas.timezone``) places the quiet period; without it the quiet net
        outbound is not measured (None), as when the hour held no quiet time.
        """
        quiet = quiet_parts(flag_time=flag_time, spec=spec, timezone=timezone) if timezone else []
        promql = flag_figures_query(templates=templates or QueryTemplates(), server=server, spec=spec, quiet=quiet)
        rows = await self.query(base_url=base_url, promql=promql, at=flag_time)
        return flag_figures(rows, server=server, line=line)


def _result(body: object, *, url: str, kind: str) -> list[Any]:
    """The ``data.result`` of a successful answer of ``kind`` (vector or matrix)."""
    if not isinstance(body, Mapping):
        raise PrometheusError(f"{url} answered with something that is not a Prometheus response")
    if body.get("status") != "success":
        raise PrometheusError(f"query failed: {body.get('errorType', 'error')}: {body.get('error', 'unknown')}")
    data = body.get("data") or {}
    if not isinstance(data, Mapping) or data.get("resultType") != kind:
        found = data.get("resultType") if isinstance(data, Mapping) else data
        raise PrometheusError(f"expected {'an instant vector' if kind == 'vector' else 'a range matrix'}, "
                              f"got {found!r}")
    result = data.get("result") or []
    return result if isinstance(result, list) else []


def _parse_matrix(body: object, *, url: str) -> list[tuple[dict[str, str], dict[float, float]]]:
    series = []
    for item in _result(body, url=url, kind="matrix"):
        try:
            labels = {str(k): str(v) for k, v in item["metric"].items()}
            points = {float(t): float(v) for t, v in item["values"]}
        except (KeyError, TypeError, ValueError):
            continue
        series.append((labels, {t: v for t, v in points.items() if not math.isnan(v)}))
    return series


def _parse_vector(body: object, *, url: str) -> list[Sample]:
    samples: list[Sample] = []
    for item in _result(body, url=url, kind="vector"):
        try:
            labels = {str(k): str(v) for k, v in item["metric"].items()}
            value = float(item["value"][1])
        except (KeyError, IndexError, TypeError, ValueError):
            continue
        if not math.isnan(value):  # NaN from a 0/0 in a user's template carries no information
            samples.append((labels, value))
    return samples
