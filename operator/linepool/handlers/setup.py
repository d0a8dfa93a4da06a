"""Operator start-up: kopf settings and the shared clients every handler uses."""

import logging
from typing import Any

import aiohttp
import kopf

from linepool.adapters.kubernetes import KubernetesWriter, load_api_client
from linepool.adapters.prometheus import PrometheusClient

PEERING_NAME = "linepool-operator"


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # Events tell people what the operator decided; kopf's own debug chatter does not belong there.
    settings.posting.level = logging.WARNING
    settings.posting.enabled = True
    # Reconnect watches well before load balancers drop idle connections.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    # The operator keeps its state in status; kopf's diff-base annotation would add a write per change.
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix="linepool.dev", key="last-handled-configuration")
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="linepool.dev")
    settings.persistence.finalizer = "linepool.dev/finalizer"
    memo.http = aiohttp.ClientSession()
    memo.prometheus = PrometheusClient(session=memo.http)
    memo.kubernetes = KubernetesWriter(load_api_client())


@kopf.on.cleanup()
async def close(memo: kopf.Memo, **_: Any) -> None:
    session = getattr(memo, "http", None)
    if session is not None:
        await session.close()
