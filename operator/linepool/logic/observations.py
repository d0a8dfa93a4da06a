"""Observed traffic: per-line samples assembled from the batch of PromQL answers.

It also owns what the tagged answers of line health mean: the ``linepool_figure`` label that
tells the parts of one health query apart, which figure each tag is, and how the rows become a
line's :class:`HealthSample` (one poll) or :class:`FlagFigures` (the hour before a flag).
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, NamedTuple

from linepool.api.types import LineState
from linepool.logic.health import FlagFigures, HealthSample

# One PromQL vector element: its labels and its value.
Sample = tuple[Mapping[str, str], float]

_STATES = {"active": LineState.ACTIVE, "flagged": LineState.FLAGGED, "deactivated": LineState.DEACTIVATED}

# The label that tags each part of a health query with the figure it measures.
FIGURE_LABEL: Final = "linepool_figure"
# Tag -> HealthSample field, for the health query of a poll.
HEALTH_FIGURES: Final[Mapping[str, str]] = {
    "burst": "burst_sent",
    "exchange_sent": "exchange_sent",
    "exchange_received": "exchange_received",
    "over_cap": "over_cap_follow_ups",
    "line_initiated": "line_initiated",
    "quiet_sent": "quiet_sent",
    "quiet_received": "quiet_received",
}
# Tag -> FlagFigures field, for the forensics query of a flag.
FLAG_FIGURES: Final[Mapping[str, str]] = {
    "burst_peak": "burst_peak",
    "sent": "sent",
    "received": "received",
    "over_cap": "over_cap_follow_ups",
    "line_initiated": "line_initiated",
    "quiet_net_outbound": "quiet_net_outbound",
    "peak_per_minute": "peak_per_minute",
}


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
    """One successful poll: ``samples[server][line]``, taken at ``time``.

    ``health[server][line]`` holds the line-health figures when the poll measured them (empty
    otherwise): every line seen by any query of the poll has one, its fields None where the
    relay does not export the metric behind them.
    """

    time: datetime
    samples: Mapping[str, Mapping[str, LineSample]]
    health: Mapping[str, Mapping[str, HealthSample]] = field(default_factory=dict)

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
    health: Iterable[Sample] | None = None,
) -> Observation:
    """Join the query answers on (server, line). Series without those labels are ignored.

    ``health`` is the answer of the tagged health query, or None when the poll did not run it.
    """
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
    if health is None:
        return Observation(time=time, samples=samples)
    # Rows come only for lines past a threshold; per server, `has_*` rows say which metrics its
    # relay exports. A line without a row reads 0 where its relay exports, None where it does not.
    slot_of = {tag: HealthSample._fields.index(name) for tag, name in HEALTH_FIGURES.items()}
    exported: dict[str, set[str]] = {}
    quiet = False
    rows: list[tuple[str, str, int, float]] = []
    for labels, value in health:
        tag = labels.get(FIGURE_LABEL, "")
        server = labels.get("server")
        if tag == "quiet":
            quiet = True
        elif tag.startswith("has_") and server:
            exported.setdefault(server, set()).add(tag)
        elif (slot := slot_of.get(tag)) is not None and server and (line := labels.get("line")):
            rows.append((server, line, slot, value))
    defaults = {server: _default_sample(families, quiet=quiet) for server, families in exported.items()}
    health_samples: dict[str, dict[str, HealthSample]] = {}
    for server, lines in samples.items():
        default = defaults.get(server, _UNMEASURED)
        health_samples[server] = dict.fromkeys(lines, default)
    slots: dict[tuple[str, str], list[float | None]] = {}
    for server, line, slot, value in rows:
        default = defaults.get(server, _UNMEASURED)
        if default[slot] is None:
            continue  # a family the relay does not export stays unmeasured, whatever a part made of it
        row = slots.get((server, line))
        if row is None:
            row = slots[(server, line)] = list(default)
        row[slot] = value
    for (server, line), row in slots.items():
        health_samples.setdefault(server, {})[line] = HealthSample(*row)
    return Observation(time=time, samples=samples, health=health_samples)


_UNMEASURED = HealthSample()


def _default_sample(families: set[str], *, quiet: bool) -> HealthSample:
    """A line's figures when no part named it: 0 for what its relay exports, None for the rest."""
    has_sent, has_received = "has_sent" in families, "has_received" in families
    return HealthSample(
        burst_sent=0.0 if has_sent else None,
        exchange_sent=0.0 if has_sent else None,
        exchange_received=0.0 if has_received else None,
        over_cap_follow_ups=0.0 if "has_unanswered" in families else None,
        line_initiated=0.0 if "has_initiator" in families else None,
        quiet_sent=0.0 if quiet and has_sent else None,
        quiet_received=0.0 if quiet and has_received else None,
    )


def flag_figures(rows: Iterable[Sample], *, server: str, line: str) -> FlagFigures:
    """One line's figures from the answer of the forensics query; absent ones stay None."""
    return FlagFigures(**_figures_by_line(rows, FLAG_FIGURES).get((server, line), {}))


def _figures_by_line(rows: Iterable[Sample], fields: Mapping[str, str]) -> dict[tuple[str, str], dict[str, float]]:
    """Tagged rows as ``{(server, line): {field: value}}``; rows of one tag and line add up.

    A template that keeps more labels than (server, line) answers in several rows per line.
    """
    out: dict[tuple[str, str], dict[str, float]] = {}
    for labels, value in rows:
        name = fields.get(labels.get(FIGURE_LABEL, ""))
        server = labels.get("server")
        line = labels.get("line")
        if name is not None and server and line:
            figures = out.setdefault((server, line), {})
            figures[name] = figures.get(name, 0.0) + value
    return out


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
