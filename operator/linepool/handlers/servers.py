"""MessagingServers whose pool does not exist: reported, never touched otherwise.

A server of an existing pool is decided by that pool's daemon, which is the only writer of
its status. A server naming a pool that is not there has no daemon, so it is reported here
with ``InvalidSpec`` (reason PoolNotFound): when the server is created or changed, and when its
pool is deleted. When the pool appears, its daemon takes over and clears the condition.
"""

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import kopf

from linepool.adapters.kubernetes import KubernetesWriter
from linepool.api import ASSIGNABLE_LABEL, GROUP, SERVERS, VERSION
from linepool.api.conditions import condition, merge_conditions, reports_new_problem
from linepool.api.types import ConditionType, Reason, ServerPhase
from linepool.handlers.events import post_event
from linepool.logic.pool import needs_write


class _QuietOrphanChecks(logging.Filter):
    """Drop kopf's "Handler 'report_orphan' succeeded." lines.

    kopf logs every successful event handler at INFO, and this one runs on every change of every
    server, the operator's own status writes included: the log would be nothing else.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Handler 'report_orphan' succeeded")


logging.getLogger("kopf.objects").addFilter(_QuietOrphanChecks())


@kopf.on.event(GROUP, VERSION, SERVERS)
async def report_orphan(
    *,
    type: str,
    body: kopf.Body,
    namespace: str | None,
    memo: Any,
    **kwargs: Any,
) -> None:
    pools_by_namespace: kopf.Index[str, str] = kwargs["pools_by_namespace"]
    if type == "DELETED" or namespace is None:
        return
    if (body.get("spec") or {}).get("pool") in set(pools_by_namespace.get(namespace, [])):
        return
    await report_missing_pool(server=body, writer=memo.kubernetes)


async def report_missing_pool(*, server: Mapping[str, Any], writer: KubernetesWriter) -> None:
    """Raise InvalidSpec (PoolNotFound) on a server and take it out of assignment, once."""
    meta = server.get("metadata") or {}
    namespace, name = str(meta.get("namespace")), str(meta.get("name"))
    pool = (server.get("spec") or {}).get("pool")
    status = dict(server.get("status") or {})
    message = f"spec.pool: LinePool {pool!r} does not exist in namespace {namespace}"
    generation = meta.get("generation")
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
    if reports_new_problem(status.get("conditions"), ConditionType.INVALID_SPEC, message):
        post_event(server, type="Warning", reason=Reason.INVALID_SPEC, message=f"skipping this server: {message}")
    if (meta.get("labels") or {}).get(ASSIGNABLE_LABEL) == "true":
        # `kubectl get msrv -l linepool.dev/assignable=true` must not offer it any more.
        await writer.patch_labels(plural=SERVERS, namespace=namespace, name=name, labels={ASSIGNABLE_LABEL: "false"})
    if needs_write(status, new_status):
        await writer.patch_status(plural=SERVERS, namespace=namespace, name=name, status=new_status)
