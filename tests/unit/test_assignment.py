"""Assignability with hysteresis, line gating and the round-robin order."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from linepool.api.types import LineState
from linepool.logic.assignment import line_assignable, round_robin, server_assignable

STOP, RESUME = 0.75, 0.65


@pytest.mark.parametrize(("previous", "utilization", "cordoned", "expected"), [
    (None, 0.10, False, True),
    (None, 0.70, False, True),     # first sight inside the band: not yet at stopAt
    (None, 0.75, False, False),    # at stopAt stops
    (True, 0.74, False, True),
    (True, 0.75, False, False),
    (False, 0.74, False, False),   # saturated stays saturated inside the band
    (False, 0.66, False, False),
    (False, 0.65, False, False),   # resumeAt itself is not "below"
    (False, 0.6499, False, True),
    (True, 0.10, True, False),     # cordoned never takes users
    (None, 0.00, True, False),
])
def test_server_assignability(previous: bool | None, utilization: float, cordoned: bool, expected: bool) -> None:
    assert server_assignable(previous=previous, utilization=utilization, stop_at=STOP, resume_at=RESUME,
                             cordoned=cordoned) is expected


@given(st.lists(st.floats(min_value=0, max_value=1.2), min_size=1, max_size=60))
def test_hysteresis_never_flaps_inside_the_band(trace: list[float]) -> None:
    """Between resumeAt and stopAt the answer never changes."""
    previous: bool | None = None
    for utilization in trace:
        current = server_assignable(previous=previous, utilization=utilization, stop_at=STOP,
                                    resume_at=RESUME, cordoned=False)
        if previous is not None and RESUME <= utilization < STOP:
            assert current == previous
        if utilization >= STOP:
            assert current is False
        if utilization < RESUME:
            assert current is True
        previous = current


@pytest.mark.parametrize(("server_ok", "state", "new", "expected"), [
    (True, LineState.ACTIVE, 0, True),
    (True, LineState.IDLE, 49, True),
    (True, LineState.ACTIVE, 50, False),
    (True, LineState.FLAGGED, 0, False),
    (True, LineState.DEACTIVATED, 0, False),
    (False, LineState.ACTIVE, 0, False),
])
def test_line_assignability(server_ok: bool, state: LineState, new: int, expected: bool) -> None:
    assert line_assignable(server_assignable=server_ok, state=state, new_conversations=new,
                           new_conversation_quota=50) is expected


def test_round_robin_interleaves_servers() -> None:
    assert round_robin([["a1", "a2", "a3"], ["b1"], ["c1", "c2"]]) == ["a1", "b1", "c1", "a2", "c2", "a3"]


def test_round_robin_is_capped() -> None:
    servers = [[f"s{s}-l{i}" for i in range(10)] for s in range(50)]
    order = round_robin(servers, cap=100)
    assert len(order) == 100
    assert order[:3] == ["s0-l0", "s1-l0", "s2-l0"]
    assert len(set(order)) == 100
