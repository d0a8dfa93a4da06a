"""The built-in messaging adapter against a real messaging-server stub on loopback.

Every answer of the server maps to what the operator does next: 2xx and 409 are sent, 429
waits (``Retry-After`` honoured), 5xx, a timeout or a refused connection are retried, anything
else is given up. No error message ever carries the server's token.
"""

import asyncio
import time
import traceback
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import aiohttp
import pytest

from linepool.adapters.messaging import HttpMessagingAdapter, MessagingError, OutgoingMessage, send_guarded
from linepool.logic.keepalive import Delivery
from linepool.sandbox.fleet import RelayStub
from linepool.sandbox.prometheus import free_port

pytestmark = pytest.mark.integration

TOKEN = "tok-9f3c1e-SECRET"


def message(key: str = "lp-demo/+15550001111/2024-05-06/a") -> OutgoingMessage:
    return OutgoingMessage(sender="+15550001111", recipient="+15550002222", text="Hey, how's your week going?",
                           idempotency_key=key)


def header(headers: dict[str, str], name: str) -> str | None:
    return next((value for key, value in headers.items() if key.lower() == name.lower()), None)


@pytest.fixture
def relay() -> Iterator[RelayStub]:
    with RelayStub() as stub:
        yield stub


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
def adapter(session: aiohttp.ClientSession) -> HttpMessagingAdapter:
    return HttpMessagingAdapter(session=session, timeout=5)


async def failure(adapter: HttpMessagingAdapter, endpoint: str, *, token: str = TOKEN,
                  key: str = "lp-demo/+15550001111/2024-05-06/a") -> MessagingError:
    with pytest.raises(MessagingError) as caught:
        await adapter.send(endpoint=endpoint, token=token, message=message(key))
    error = caught.value
    assert TOKEN not in str(error) and token not in str(error), "the token leaked into an error message"
    return error


# --- success -------------------------------------------------------------------------------


async def test_a_sent_message_follows_the_documented_contract(relay: RelayStub, adapter: HttpMessagingAdapter) -> None:
    await adapter.send(endpoint=relay.url, token=TOKEN, message=message())

    [request] = relay.requests
    assert (request.method, request.path, request.status) == ("POST", "/v1/messages", 202)
    assert request.body == {"from": "+15550001111", "to": "+15550002222", "text": "Hey, how's your week going?",
                            "idempotencyKey": "lp-demo/+15550001111/2024-05-06/a"}
    assert header(request.headers, "Authorization") == f"Bearer {TOKEN}"
    assert header(request.headers, "Content-Type") == "application/json"
    assert relay.messages == [request.body]


async def test_an_endpoint_with_a_trailing_slash_still_posts_to_v1_messages(
        relay: RelayStub, adapter: HttpMessagingAdapter) -> None:
    await adapter.send(endpoint=f"{relay.url}/", token=TOKEN, message=message())
    await adapter.send(endpoint=f"{relay.url}//", token=TOKEN, message=message("second"))
    assert [(r.path, r.status) for r in relay.requests] == [("/v1/messages", 202), ("/v1/messages", 202)]


async def test_an_endpoint_path_prefix_is_kept(relay: RelayStub, adapter: HttpMessagingAdapter) -> None:
    # A server behind a reverse proxy under /relay/ is reached at /relay/v1/messages; the stub
    # only serves /v1/messages, so it answers 404, which is not worth a retry.
    error = await failure(adapter, f"{relay.url}/relay/")
    assert [r.path for r in relay.requests] == ["/relay/v1/messages"]
    assert (error.delivery, error.status) == (Delivery.REJECTED, 404)
    assert relay.messages == []


async def test_a_resent_idempotency_key_counts_as_sent_and_is_delivered_once(
        relay: RelayStub, adapter: HttpMessagingAdapter) -> None:
    await adapter.send(endpoint=relay.url, token=TOKEN, message=message("once"))
    await adapter.send(endpoint=relay.url, token=TOKEN, message=message("once"))  # no exception: already sent

    assert [r.status for r in relay.requests] == [202, 409]
    assert [m["idempotencyKey"] for m in relay.messages] == ["once"]


# --- failures ------------------------------------------------------------------------------


async def test_rate_limited_defers_with_retry_after(relay: RelayStub, adapter: HttpMessagingAdapter) -> None:
    relay.fail_next(1, status=429, retry_after=7)
    error = await failure(adapter, relay.url)
    assert (error.delivery, error.status, error.retry_after) == (Delivery.DEFERRED, 429, timedelta(seconds=7))
    assert "429" in str(error)


async def test_rate_limited_without_retry_after(relay: RelayStub, adapter: HttpMessagingAdapter) -> None:
    relay.fail_next(1, status=429)
    error = await failure(adapter, relay.url)
    assert (error.delivery, error.status, error.retry_after) == (Delivery.DEFERRED, 429, None)


@pytest.mark.parametrize("status", [500, 503])
async def test_server_errors_are_retryable(relay: RelayStub, adapter: HttpMessagingAdapter, status: int) -> None:
    relay.fail_next(1, status=status)
    error = await failure(adapter, relay.url)
    assert (error.delivery, error.status, error.retry_after) == (Delivery.RETRYABLE, status, None)
    assert str(status) in str(error)
    assert relay.messages == []


async def test_a_bad_request_is_rejected(relay: RelayStub, adapter: HttpMessagingAdapter) -> None:
    relay.fail_next(1, status=400)
    error = await failure(adapter, relay.url)
    assert (error.delivery, error.status) == (Delivery.REJECTED, 400)


async def test_a_wrong_token_is_rejected_without_showing_either_token(adapter: HttpMessagingAdapter) -> None:
    with RelayStub(token=TOKEN) as relay:
        wrong = "tok-wrong-0000-SECRET"
        error = await failure(adapter, relay.url, token=wrong)
        assert (error.delivery, error.status) == (Delivery.REJECTED, 401)
        assert header(relay.requests[0].headers, "Authorization") == f"Bearer {wrong}"
        # The right token goes through, so the 401 was about the token and nothing else.
        await adapter.send(endpoint=relay.url, token=TOKEN, message=message("after-rotation"))
        assert [m["idempotencyKey"] for m in relay.messages] == ["after-rotation"]


async def test_a_server_slower_than_the_timeout_is_retryable(relay: RelayStub,
                                                             session: aiohttp.ClientSession) -> None:
    adapter = HttpMessagingAdapter(session=session, timeout=0.5)
    relay.delay_next(1, seconds=3)
    started = time.monotonic()
    error = await failure(adapter, relay.url)
    assert time.monotonic() - started < 2.5, "the adapter waited for the slow answer"
    assert (error.delivery, error.status) == (Delivery.RETRYABLE, None)
    assert "no answer within 0.5s" in str(error)


async def test_a_refused_connection_is_retryable(adapter: HttpMessagingAdapter) -> None:
    error = await failure(adapter, f"http://127.0.0.1:{free_port()}")
    assert (error.delivery, error.status) == (Delivery.RETRYABLE, None)
    assert "/v1/messages" in str(error)


async def test_no_failure_shows_the_token(adapter: HttpMessagingAdapter, session: aiohttp.ClientSession) -> None:
    # failure() checks every message; this runs them all in one place against a token-protected server.
    with RelayStub(token=TOKEN) as guarded:
        guarded.fail_next(1, status=429, retry_after=3)
        guarded.fail_next(1, status=500)
        guarded.fail_next(1, status=503)
        guarded.fail_next(1, status=400)
        errors = [await failure(adapter, guarded.url) for _ in range(4)]
        errors.append(await failure(adapter, guarded.url, token=f"{TOKEN}-old"))
        guarded.delay_next(1, seconds=3)
        errors.append(await failure(HttpMessagingAdapter(session=session, timeout=0.3), guarded.url))
    errors.append(await failure(adapter, f"http://127.0.0.1:{free_port()}"))
    assert [e.status for e in errors] == [429, 500, 503, 400, 401, None, None]
    for error in errors:
        # Not even a logged traceback shows it: no chained exception (which might hold headers) is printed.
        assert TOKEN not in "".join(traceback.format_exception(error))


# --- send_guarded: the operator's guard around any adapter, plug-ins included ----------------


class Hangs:
    async def send(self, *, endpoint: str, token: str, message: OutgoingMessage) -> None:
        await asyncio.sleep(3600)


class Crashes:
    async def send(self, *, endpoint: str, token: str, message: OutgoingMessage) -> None:
        raise RuntimeError(f"secret tok {token}")


class Defers:
    async def send(self, *, endpoint: str, token: str, message: OutgoingMessage) -> None:
        raise MessagingError("quota", delivery=Delivery.DEFERRED, status=429, retry_after=timedelta(minutes=1))


async def guarded_failure(adapter: Any, *, limit: float = 5.0) -> MessagingError:
    with pytest.raises(MessagingError) as caught:
        await send_guarded(adapter, endpoint="http://127.0.0.1:1", token=TOKEN, message=message(), limit=limit)
    return caught.value


async def test_an_adapter_that_never_answers_is_cut_off_at_the_limit() -> None:
    started = time.monotonic()
    error = await guarded_failure(Hangs(), limit=0.2)
    assert 0.15 < time.monotonic() - started < 2
    assert (error.delivery, error.status) == (Delivery.RETRYABLE, None)
    assert "did not answer within 0.2s" in str(error)


async def test_an_adapter_that_crashes_is_retryable_and_its_text_is_not_shown() -> None:
    error = await guarded_failure(Crashes())
    assert error.delivery is Delivery.RETRYABLE
    assert "RuntimeError" in str(error)
    assert "secret tok" not in str(error) and TOKEN not in str(error)
    assert "secret tok" not in "".join(traceback.format_exception(error)), "a logged traceback shows the text"


async def test_an_adapter_verdict_passes_through_unchanged() -> None:
    error = await guarded_failure(Defers())
    assert (error.delivery, error.status, error.retry_after) == (Delivery.DEFERRED, 429, timedelta(minutes=1))


async def test_the_guard_lets_a_real_send_through(relay: RelayStub, adapter: HttpMessagingAdapter) -> None:
    await send_guarded(adapter, endpoint=relay.url, token=TOKEN, message=message(), limit=5)
    assert len(relay.messages) == 1
