"""Operator start-up: kopf settings and the shared clients every handler uses."""

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import aiohttp
import kopf

from linepool.adapters.kubernetes import KubernetesWriter, SecretReader, load_api_client
from linepool.adapters.messaging import DEFAULT_ADAPTER, load_adapter
from linepool.adapters.prometheus import PrometheusClient
from linepool.logic.keepalive import ANSWER_DELAY, RetryPolicy

PEERING_NAME = "linepool-operator"


@dataclass(kw_only=True)
class Options:
    """Operator-wide settings from the command line (``linepool run``)."""

    messaging_adapter: str = DEFAULT_ADAPTER
    keep_alive_retry: RetryPolicy = field(default_factory=RetryPolicy)
    answer_delay: timedelta = ANSWER_DELAY
    # Longest wait for one keep-alive send, whatever the adapter does.
    send_timeout: float = 30.0


OPTIONS = Options()


def set_options(*, messaging_adapter: str, retry_base: timedelta, max_attempts: int,
                answer_delay: timedelta) -> None:
    """Called by the CLI before kopf starts."""
    OPTIONS.messaging_adapter = messaging_adapter
    OPTIONS.answer_delay = answer_delay
    OPTIONS.keep_alive_retry = RetryPolicy(base=retry_base, max_attempts=max_attempts)


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
    api_client = load_api_client()
    memo.kubernetes = KubernetesWriter(api_client)
    memo.secrets = SecretReader(api_client)
    memo.messaging = load_adapter(OPTIONS.messaging_adapter, session=memo.http)
    memo.options = OPTIONS


@kopf.on.cleanup()
async def close(memo: kopf.Memo, **_: Any) -> None:
    session = getattr(memo, "http", None)
    if session is not None:
        await session.close()
