"""Read traffic from Prometheus: a constant batch of instant queries per pool per poll.

Queries go out as POST form bodies: a pool of a thousand servers makes a long server regex,
and a GET URL of that size is refused by proxies long before Prometheus minds it.
"""

import asyncio
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import aiohttp

from linepool.api.spec import QueryTemplates
from linepool.logic.observations import Observation, Sample, assemble

QUERY_TIMEOUT_SECONDS = 10.0


class PrometheusError(Exception):
    """Prometheus could not be read: unreachable, timed out, or answered with an error."""


# Marks which side of the combined activity query a series came from.
SOURCE_LABEL = "linepool_source"


@dataclass(frozen=True, kw_only=True)
class PoolQueries:
    """The rendered PromQL of one poll; its size does not depend on the number of lines."""

    sent: str
    new_conversations: str
    line_state: str
    # Counters and the optional last-activity gauge in one query, told apart by SOURCE_LABEL.
    activity: str

    def all(self) -> tuple[str, str, str, str]:
        return (self.sent, self.new_conversations, self.line_state, self.activity)


def render_queries(*, templates: QueryTemplates, servers: list[str], window: str) -> PoolQueries:
    """Fill ``{{servers}}`` (an anchored regex of exact names) and ``{{window}}`` into each template."""
    # PromQL string literal inside a regex: escape regex metacharacters, then backslashes for PromQL.
    alternation = "|".join(re.escape(name) for name in sorted(servers)) or "$^"
    alternation = alternation.replace("\\", "\\\\")

    def fill(template: str) -> str:
        return template.replace("{{servers}}", alternation).replace("{{window}}", window)

    return PoolQueries(
        sent=fill(templates.sent_in_window),
        new_conversations=fill(templates.new_conversations_in_window),
        line_state=fill(templates.line_state),
        # `or` keeps both sides: the added label makes their series distinct.
        activity=(f'label_replace({fill(templates.activity)}, "{SOURCE_LABEL}", "counters", "", "") or '
                  f'label_replace({fill(templates.last_activity_timestamp)}, "{SOURCE_LABEL}", "gauge", "", "")'),
    )


class PrometheusClient:
    """A small async client of the Prometheus HTTP API (instant queries only)."""

    def __init__(self, *, session: aiohttp.ClientSession, timeout: float = QUERY_TIMEOUT_SECONDS) -> None:
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def query(self, *, base_url: str, promql: str, at: datetime) -> list[Sample]:
        """Run one instant query; return its vector as (labels, value) pairs."""
        url = base_url.rstrip("/") + "/api/v1/query"
        try:
            async with self._session.post(
                url, data={"query": promql, "time": f"{at.timestamp():.3f}"}, timeout=self._timeout
            ) as response:
                try:
                    body = await response.json(content_type=None)
                except ValueError:
                    raise PrometheusError(f"{url} answered HTTP {response.status} with a body that is not JSON") \
                        from None
        except aiohttp.ClientError as exc:
            raise PrometheusError(f"cannot reach {base_url}: {type(exc).__name__}: {exc}") from None
        except TimeoutError:
            raise PrometheusError(f"{base_url} did not answer within {self._timeout.total:g}s") from None
        return _parse_vector(body, url=url)

    async def observe(self, *, base_url: str, queries: PoolQueries, at: datetime) -> Observation:
        """Run a pool's batch concurrently and join it into one observation."""
        sent, new, state, activity = await asyncio.gather(
            *(self.query(base_url=base_url, promql=q, at=at) for q in queries.all())
        )
        counters = [row for row in activity if row[0].get(SOURCE_LABEL) != "gauge"]
        last_seen = [row for row in activity if row[0].get(SOURCE_LABEL) == "gauge"]
        return assemble(time=at, sent=sent, new_conversations=new, line_state=state, activity=counters,
                        last_activity=last_seen)


def _parse_vector(body: object, *, url: str) -> list[Sample]:
    if not isinstance(body, Mapping):
        raise PrometheusError(f"{url} answered with something that is not a Prometheus response")
    if body.get("status") != "success":
        raise PrometheusError(f"query failed: {body.get('errorType', 'error')}: {body.get('error', 'unknown')}")
    data = body.get("data") or {}
    if not isinstance(data, Mapping) or data.get("resultType") != "vector":
        kind = data.get("resultType") if isinstance(data, Mapping) else data
        raise PrometheusError(f"expected an instant vector, got {kind!r}")
    samples: list[Sample] = []
    for item in data.get("result") or []:
        try:
            labels = {str(k): str(v) for k, v in item["metric"].items()}
            value = float(item["value"][1])
        except (KeyError, IndexError, TypeError, ValueError):
            continue
        if not math.isnan(value):  # NaN from a 0/0 in a user's template carries no information
            samples.append((labels, value))
    return samples
