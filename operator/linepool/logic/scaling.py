"""Scale-up plans: when to add a server, which lines it gets, and what it is called.

The operator only ever adds. It never deletes or shrinks a user's server or line.
"""

import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from linepool.api import API_VERSION, CREATED_BY_ANNOTATION, OPERATOR_NAME, POOL_LABEL
from linepool.api.conditions import format_time
from linepool.api.durations import format_duration
from linepool.api.spec import Scaling
from linepool.api.types import Reason, RecommendedAction, ScalingMode


@dataclass(frozen=True, kw_only=True)
class NewServer:
    name: str
    ordinal: int
    lines: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class ScalePlan:
    """What the pool should do now, and why, in words a person understands."""

    action: RecommendedAction
    reason: str
    new_servers: tuple[NewServer, ...] = ()
    # Set when the pool cannot grow (maxServers reached or inventory too small), needed or not.
    limited_by: Reason | None = None
    limited_message: str = ""
    needed: bool = False

    @property
    def creates(self) -> bool:
        return bool(self.new_servers)


@dataclass(frozen=True, kw_only=True)
class ScaleInputs:
    pool: str
    scaling: Scaling
    metrics_ok: bool
    utilization: float
    assignable_lines: int
    server_names: Collection[str]
    remaining_inventory: Sequence[str]
    last_scale_time: datetime | None
    now: datetime


def remaining_inventory(*, inventory: Iterable[str], allocated: Collection[str]) -> tuple[str, ...]:
    """Spare lines: the pool's inventory minus every line already on a server, in spec order."""
    return tuple(line for line in inventory if line not in allocated)


def next_ordinals(*, pool: str, server_names: Collection[str], count: int) -> list[int]:
    """Ordinals for ``count`` new servers named ``<pool>-<ordinal>``, after the highest in use.

    Names are deterministic, so a retry after a crash asks for the same name again and the API
    server's 409 stops a duplicate.
    """
    pattern = re.compile(rf"^{re.escape(pool)}-(\d+)$")
    used = [int(m.group(1)) for name in server_names if (m := pattern.match(name))]
    start = max(used) + 1 if used else len(server_names)
    ordinals: list[int] = []
    candidate = start
    while len(ordinals) < count:
        if f"{pool}-{candidate}" not in server_names:
            ordinals.append(candidate)
        candidate += 1
    return ordinals


def _limits(inputs: ScaleInputs) -> tuple[Reason | None, str]:
    scaling = inputs.scaling
    if len(inputs.server_names) >= scaling.max_servers:
        count = len(inputs.server_names)
        return Reason.AT_MAX_SERVERS, f"the pool has {count} servers, maxServers is {scaling.max_servers}"
    if len(inputs.remaining_inventory) < scaling.lines_per_server:
        return Reason.INVENTORY_EXHAUSTED, (
            f"the inventory has {len(inputs.remaining_inventory)} spare lines, "
            f"a new server needs linesPerServer={scaling.lines_per_server}"
        )
    return None, ""


def _carve(inputs: ScaleInputs, count: int) -> tuple[NewServer, ...]:
    per = inputs.scaling.lines_per_server
    ordinals = next_ordinals(pool=inputs.pool, server_names=inputs.server_names, count=count)
    return tuple(
        NewServer(
            name=f"{inputs.pool}-{ordinal}",
            ordinal=ordinal,
            lines=tuple(inputs.remaining_inventory[index * per:(index + 1) * per]),
        )
        for index, ordinal in enumerate(ordinals)
    )


def plan_scale(inputs: ScaleInputs) -> ScalePlan:
    """Decide whether to add servers. Never more than maxServers, never without spare lines."""
    scaling = inputs.scaling
    limited_by, limited_message = _limits(inputs)
    count = len(inputs.server_names)

    # Below the floor: bring the pool up to minServers. This does not depend on traffic, so it
    # needs no metrics and no cooldown.
    shortfall = scaling.min_servers - count
    if shortfall > 0:
        fits = min(shortfall, scaling.max_servers - count, len(inputs.remaining_inventory) // scaling.lines_per_server)
        if fits <= 0:
            return ScalePlan(
                action=RecommendedAction.BLOCKED, needed=True, limited_by=limited_by,
                limited_message=limited_message,
                reason=f"the pool has {count} of minServers={scaling.min_servers} servers, but {limited_message}",
            )
        servers = _carve(inputs, fits)
        return ScalePlan(
            action=RecommendedAction.SCALE_UP, needed=True, new_servers=servers,
            limited_by=limited_by, limited_message=limited_message,
            reason=f"the pool has {count} servers, below minServers={scaling.min_servers}",
        )

    if not inputs.metrics_ok:
        return ScalePlan(
            action=RecommendedAction.NONE, limited_by=limited_by, limited_message=limited_message,
            reason="metrics are unavailable; holding the last decisions and taking no scale action",
        )

    percent = int(inputs.utilization * 100)
    if inputs.utilization >= scaling.scale_up_at:
        why = f"pool utilization {percent}% is at or above scaleUpAt {round(scaling.scale_up_at * 100)}%"
    elif inputs.assignable_lines == 0:
        why = "no line in the pool can take new users"
    else:
        return ScalePlan(
            action=RecommendedAction.NONE, limited_by=limited_by, limited_message=limited_message,
            reason=f"pool utilization is below scaleUpAt {round(scaling.scale_up_at * 100)}% "
                   "and lines are assignable",
        )

    if limited_by is not None:
        return ScalePlan(
            action=RecommendedAction.BLOCKED, needed=True, limited_by=limited_by,
            limited_message=limited_message, reason=f"{why}, but {limited_message}",
        )
    if inputs.last_scale_time is not None:
        ready_at = inputs.last_scale_time + scaling.cooldown
        if inputs.now < ready_at:
            return ScalePlan(
                action=RecommendedAction.NONE, needed=True,
                reason=f"{why}; waiting for the {format_duration(scaling.cooldown)} cooldown "
                       f"until {format_time(ready_at)}",
            )
    return ScalePlan(
        action=RecommendedAction.SCALE_UP, needed=True, new_servers=_carve(inputs, 1),
        reason=f"{why}; adding one server",
    )


def render_server(
    *,
    pool: str,
    namespace: str,
    pool_uid: str,
    scaling: Scaling,
    server: NewServer,
) -> dict[str, Any]:
    """The MessagingServer manifest for a new server, from the pool's serverTemplate."""
    template_spec = dict(scaling.server_template.spec)
    endpoint = str(template_spec.get("endpoint", "http://{name}:8080"))
    template_spec["endpoint"] = endpoint.replace("{ordinal}", str(server.ordinal)).replace("{name}", server.name)
    labels = {**scaling.server_template.labels, POOL_LABEL: pool}
    annotations = {**scaling.server_template.annotations, CREATED_BY_ANNOTATION: OPERATOR_NAME}
    return {
        "apiVersion": API_VERSION,
        "kind": "MessagingServer",
        "metadata": {
            "name": server.name,
            "namespace": namespace,
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [{
                "apiVersion": API_VERSION,
                "kind": "LinePool",
                "name": pool,
                "uid": pool_uid,
                "controller": True,
                # The pool does not block on its servers being deleted first.
                "blockOwnerDeletion": False,
            }],
        },
        "spec": {
            **template_spec,
            "pool": pool,
            "lines": [{"id": line, "role": "Primary"} for line in server.lines],
        },
    }


def mode_allows_changes(mode: ScalingMode, *, paused: bool) -> bool:
    """Only Auto mode on an unpaused pool changes anything in the cluster."""
    return mode is ScalingMode.AUTO and not paused
