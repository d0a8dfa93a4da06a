"""Observed traffic: per-line samples assembled from the batch of PromQL answers."""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from linepool.api.types import LineState

# One PromQL vector element: its labels and its value.
Sample = tuple[Mapping[str, str], float]

_STATES = {"active": LineState.ACTIVE, "flagged": LineState.FLAGGED, "deactivated": LineState.DEACTIVATED}


class LineSample(NamedTuple):
    """One line's figures in a poll. A tuple: a poll builds one per line, so it must be cheap."""

    sent: float = 0.0
    new_conversations: float = 0.0
    state: LineState | None = None
    activity: float | None = None
    # Unix seconds of the line's last traffic, from the optional gauge; wins over counters.
    last_seen: float | None = None


@dataclass(frozen=True, kw_only=True)
class Observation:
    """One successful poll: ``samples[server][line]``, taken at ``time``."""

    time: datetime
    samples: Mapping[str, Mapping[str, LineSample]]

    def server(self, name: str) -> Mapping[str, LineSample] | None:
        return self.samples.get(name)


def assemble(
    *,
    time: datetime,
    sent: Iterable[Sample],
    new_conversations: Iterable[Sample],
    line_state: Iterable[Sample],
    activity: Iterable[Sample],
    last_activity: Iterable[Sample] = (),
) -> Observation:
    """Join the query answers on (server, line). Series without those labels are ignored."""
    sent_by_line = _sum_by_line(sent)
    new_by_line = _sum_by_line(new_conversations)
    activity_by_line = _sum_by_line(activity)
    last_seen_by_line = {key: value for labels, value in last_activity
                         if (key := _line_key(labels)) is not None and value > 0}
    state_by_line: dict[tuple[str, str], LineState] = {}
    for labels, value in line_state:
        key = _line_key(labels)
        state = _STATES.get(str(labels.get("state", "")).lower())
        if key is not None and state is not None and value >= 1:
            state_by_line[key] = _worst(state_by_line.get(key), state)

    samples: dict[str, dict[str, LineSample]] = {}
    keys = sent_by_line.keys() | new_by_line.keys() | activity_by_line.keys() | state_by_line.keys()
    for key in keys | last_seen_by_line.keys():
        samples.setdefault(key[0], {})[key[1]] = LineSample(
            sent=sent_by_line.get(key, 0.0),
            new_conversations=new_by_line.get(key, 0.0),
            state=state_by_line.get(key),
            activity=activity_by_line.get(key),
            last_seen=last_seen_by_line.get(key),
        )
    return Observation(time=time, samples=samples)


def _line_key(labels: Mapping[str, str]) -> tuple[str, str] | None:
    server, line = labels.get("server"), labels.get("line")
    return (server, line) if server and line else None


def _sum_by_line(rows: Iterable[Sample]) -> dict[tuple[str, str], float]:
    # The hot loop of a poll (one row per line per query): kept free of helper calls.
    totals: dict[tuple[str, str], float] = {}
    for labels, value in rows:
        server = labels.get("server")
        line = labels.get("line")
        if server and line:
            key = (server, line)
            totals[key] = totals.get(key, 0.0) + value
    return totals


_SEVERITY = [LineState.ACTIVE, LineState.FLAGGED, LineState.DEACTIVATED]


def _worst(current: LineState | None, new: LineState) -> LineState:
    # A relay mid-transition may report two states; the more severe one is the safe reading.
    if current is not None and _SEVERITY.index(current) > _SEVERITY.index(new):
        return current
    return new
