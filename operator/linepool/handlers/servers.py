"""MessagingServers whose pool does not exist: reported, never touched otherwise.

A server of an existing pool is decided by that pool's daemon, which is the only writer of
its status. A server naming a pool that is not there has no daemon, so this handler raises
``InvalidSpec`` (reason PoolNotFound) on it. When the pool appears, its daemon takes over and
clears the condition.
"""

from datetime import UTC, datetime
from typing import Any

import kopf

from linepool.api import GROUP, SERVERS, VERSION
from linepool.api.conditions import condition, find_condition, merge_conditions
from linepool.api.types import ConditionType, Reason, ServerPhase
from linepool.handlers.events import post_event
from linepool.logic.pool import needs_write


@kopf.on.event(GROUP, VERSION, SERVERS)
async def report_orphan(
    *,
    type: str,
    body: kopf.Body,
    name: str,
    namespace: str | None,
    memo: Any,
    **kwargs: Any,
) -> None:
    pools_by_namespace: kopf.Index[str, str] = kwargs["pools_by_namespace"]
    if type == "DELETED" or namespace is None:
        return
    pool = (body.get("spec") or {}).get("pool")
    if pool in set(pools_by_namespace.get(namespace, [])):
        return
    status = dict(body.get("status") or {})
    message = f"spec.pool: LinePool {pool!r} does not exist in namespace {namespace}"
    old = find_condition(status.get("conditions"), ConditionType.INVALID_SPEC)
    generation = body.metadata.get("generation")
    new_status = {
        **status,
        "phase": ServerPhase.PENDING.value,
        "assignable": False,
        "conditions": merge_conditions(
            previous=status.get("conditions"),
            current=[
                condition(ConditionType.INVALID_SPEC, True, Reason.POOL_NOT_FOUND, message),
                condition(ConditionType.ASSIGNABLE, False, Reason.POOL_NOT_FOUND,
                          "no pool decides for this server; see InvalidSpec"),
            ],
            now=datetime.now(tz=UTC), observed_generation=generation,
        ),
    }
    if old is None or old.get("message") != message or old.get("status") != "True":
        post_event(body, type="Warning", reason=Reason.INVALID_SPEC, message=f"skipping this server: {message}")
    if needs_write(status, new_status):
        await memo.kubernetes.patch_status(plural=SERVERS, namespace=namespace, name=name, status=new_status)
