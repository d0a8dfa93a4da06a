"""Observed traffic: per-line samples assembled from the batch of PromQL answers."""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from linepool.api.types import LineState

# One PromQL vector element: its labels and its value.
Sample = tuple[Mapping[str, str], float]

_STATES = {"active": LineState.ACTIVE, "flagged": LineState.FLAGGED, "deactivated": LineState.DEACTIVATED}


@dataclass(frozen=True, kw_only=True)
class LineSample:
    sent: float = 0.0
    new_conversations: float = 0.0
    state: LineState | None = None
    activity: float | None = None


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
) -> Observation:
    """Join the four query answers on (server, line). Series without those labels are ignored."""
    fields: dict[tuple[str, str], dict[str, object]] = {}

    def put(rows: Iterable[Sample], name: str) -> None:
        for labels, value in rows:
            server, line = labels.get("server"), labels.get("line")
            if not server or not line:
                continue
            slot = fields.setdefault((server, line), {})
            if name == "state":
                state = _STATES.get(str(labels.get("state", "")).lower())
                if state is not None and value >= 1:
                    slot["state"] = _worst(slot.get("state"), state)
            else:
                slot[name] = float(slot.get(name, 0.0)) + float(value)  # type: ignore[arg-type]

    put(sent, "sent")
    put(new_conversations, "new_conversations")
    put(line_state, "state")
    put(activity, "activity")
    samples: dict[str, dict[str, LineSample]] = {}
    for (server, line), values in fields.items():
        samples.setdefault(server, {})[line] = LineSample(**values)  # type: ignore[arg-type]
    return Observation(time=time, samples=samples)


_SEVERITY = [LineState.ACTIVE, LineState.FLAGGED, LineState.DEACTIVATED]


def _worst(current: object, new: LineState) -> LineState:
    # A relay mid-transition may report two states; the more severe one is the safe reading.
    if isinstance(current, LineState) and _SEVERITY.index(current) > _SEVERITY.index(new):
        return current
    return new
