"""Assignability of servers and lines, with hysteresis, and the round-robin order of lines."""

from collections.abc import Sequence

from linepool.api.types import LineState

ASSIGNABLE_LINES_CAP = 100
ASSIGNABLE_STATES = frozenset({LineState.ACTIVE, LineState.IDLE})


def server_assignable(
    *, previous: bool | None, utilization: float, stop_at: float, resume_at: float, cordoned: bool
) -> bool:
    """Whether new users may go to a server.

    At or above ``stop_at`` it stops; it starts again only below ``resume_at``. In between it
    keeps its previous answer, so a server hovering at the threshold does not flap. A server
    seen for the first time in that band is assignable: it has not reached ``stop_at``.
    """
    if cordoned or utilization >= stop_at:
        return False
    if utilization < resume_at:
        return True
    return True if previous is None else previous


def line_assignable(
    *, server_assignable: bool, state: LineState, new_conversations: float, new_conversation_quota: int
) -> bool:
    """A line takes new users only on an assignable server, in a usable state, under its quota."""
    return server_assignable and state in ASSIGNABLE_STATES and new_conversations < new_conversation_quota


def round_robin(servers: Sequence[Sequence[str]], *, cap: int = ASSIGNABLE_LINES_CAP) -> list[str]:
    """Interleave each server's assignable lines: the first line of every server, then the second...

    Placing users in this order spreads them across servers as well as lines. Servers come in
    the caller's order, which is stable (by name), so the list does not churn between cycles.
    """
    order: list[str] = []
    depth = max((len(lines) for lines in servers), default=0)
    for index in range(depth):
        for lines in servers:
            if index < len(lines):
                order.append(lines[index])
                if len(order) >= cap:
                    return order
    return order
