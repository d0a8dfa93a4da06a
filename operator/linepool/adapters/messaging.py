"""Send keep-alive messages through a messaging server's API.

The default adapter speaks the contract documented in the README::

    POST {endpoint}/v1/messages
    Authorization: Bearer <token from the server's credentialsSecretRef>
    {"from": ..., "to": ..., "text": ..., "idempotencyKey": ...}

2xx is sent; 409 means the server already has this idempotency key, so it was sent before;
429 defers (``Retry-After`` is honoured); 5xx, a timeout or a refused connection is worth a
retry; anything else is not. Every failure is a :class:`MessagingError`.

Other providers plug in through the ``linepool.messaging`` entry point group: a class whose
instances have the ``send`` method of :class:`MessagingAdapter`, selected with
``linepool run --messaging-adapter NAME``.
"""

import asyncio
import math
from dataclasses import dataclass
from datetime import timedelta
from importlib.metadata import entry_points
from typing import Any, Protocol, runtime_checkable

import aiohttp

from linepool.logic.keepalive import Delivery

ENTRY_POINT_GROUP = "linepool.messaging"
DEFAULT_ADAPTER = "http"


class MessagingError(Exception):
    """A send did not go through. ``delivery`` says what to do about it."""

    def __init__(self, message: str, *, delivery: Delivery, status: int | None = None,
                 retry_after: timedelta | None = None) -> None:
        super().__init__(message)
        self.delivery = delivery
        self.status = status
        self.retry_after = retry_after


@dataclass(frozen=True, kw_only=True)
class OutgoingMessage:
    sender: str
    recipient: str
    text: str
    idempotency_key: str


@runtime_checkable
class MessagingAdapter(Protocol):
    async def send(self, *, endpoint: str, token: str, message: OutgoingMessage) -> None:
        """Deliver one message, or raise :class:`MessagingError`. Sending it twice must be harmless."""


class HttpMessagingAdapter:
    """The built-in adapter: one JSON POST per message, on a shared aiohttp session."""

    def __init__(self, *, session: aiohttp.ClientSession, timeout: float = 10.0) -> None:
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def send(self, *, endpoint: str, token: str, message: OutgoingMessage) -> None:
        url = endpoint.rstrip("/") + "/v1/messages"
        body = {"from": message.sender, "to": message.recipient, "text": message.text,
                "idempotencyKey": message.idempotency_key}
        # The token goes in the header only; no error message below ever includes headers.
        headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": message.idempotency_key}
        try:
            async with self._session.post(url, json=body, headers=headers, timeout=self._timeout) as response:
                status = response.status
                retry_after = _retry_after(response.headers.get("Retry-After"))
                reason = response.reason or ""
        except TimeoutError:
            raise MessagingError(f"POST {url}: no answer within {self._timeout.total:g}s",
                                 delivery=Delivery.RETRYABLE) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise MessagingError(f"POST {url}: {type(exc).__name__}", delivery=Delivery.RETRYABLE) from None
        if 200 <= status < 300 or status == 409:
            return
        what = f"POST {url}: HTTP {status} {reason}".rstrip()
        if status == 429:
            raise MessagingError(what, delivery=Delivery.DEFERRED, status=status, retry_after=retry_after)
        if status >= 500:
            raise MessagingError(what, delivery=Delivery.RETRYABLE, status=status)
        raise MessagingError(what, delivery=Delivery.REJECTED, status=status)


def _retry_after(value: str | None) -> timedelta | None:
    """Seconds from a ``Retry-After`` header; the HTTP-date form is rare enough to ignore."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return timedelta(seconds=math.ceil(seconds)) if seconds > 0 and math.isfinite(seconds) else None


def load_adapter(name: str, *, session: aiohttp.ClientSession) -> MessagingAdapter:
    """The adapter called ``name``: the built-in ``http``, or one installed under the entry point group.

    A plug-in class is called with ``session=`` (the operator's shared aiohttp session) when it
    accepts it, else with no arguments.
    """
    if name == DEFAULT_ADAPTER:
        return HttpMessagingAdapter(session=session)
    where, factory = _load_plugin(name)
    try:
        adapter = factory(session=session)
    except TypeError:
        adapter = factory()
    if not isinstance(adapter, MessagingAdapter):
        raise ValueError(f"messaging adapter {name!r} ({where}) has no async send() method")
    return adapter


def check_adapter(name: str) -> None:
    """Raise ValueError, saying why, unless ``name`` can be loaded and has a ``send`` method."""
    if name == DEFAULT_ADAPTER:
        return
    where, factory = _load_plugin(name)
    if not callable(getattr(factory, "send", None)):
        raise ValueError(f"messaging adapter {name!r} ({where}) has no send() method")


def _load_plugin(name: str) -> tuple[str, Any]:
    """The entry point's target (``module:Class``) and what it loads; ValueError when neither can be had."""
    found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if not found:
        raise ValueError(f"no messaging adapter named {name!r}; installed: {', '.join(adapter_names())}")
    try:
        return found[0].value, found[0].load()
    except Exception as exc:
        raise ValueError(f"messaging adapter {name!r} ({found[0].value}) cannot be imported: "
                         f"{type(exc).__name__}: {exc}") from None


def adapter_names() -> list[str]:
    """Every adapter ``--messaging-adapter`` accepts."""
    return sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)} | {DEFAULT_ADAPTER})


async def send_guarded(adapter: MessagingAdapter, *, endpoint: str, token: str, message: OutgoingMessage,
                       limit: float) -> None:
    """Guard against a plug-in that never returns: the pool's loop must go on."""
    try:
        async with asyncio.timeout(limit):
            await adapter.send(endpoint=endpoint, token=token, message=message)
    except TimeoutError:
        raise MessagingError(f"the messaging adapter did not answer within {limit:g}s",
                             delivery=Delivery.RETRYABLE) from None
    except MessagingError:
        raise
    except Exception as exc:
        # A plug-in's own exception text might carry the token; only its type is reported.
        raise MessagingError(f"the messaging adapter failed with {type(exc).__name__}",
                             delivery=Delivery.RETRYABLE) from None
