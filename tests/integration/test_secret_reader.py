"""Reading MessagingServer tokens from Secrets, through the real client and the genuine API server.

The token is read only when a send is due and cached; a missing Secret or key is reported by
name (never by value), cached briefly, and picked up again once fixed.
"""

import asyncio
import base64
import json
import pathlib
from collections.abc import Iterator

import kubernetes
import pytest

from linepool.adapters.kubernetes import CredentialsError, SecretReader
from linepool.sandbox.kubeapi import KubeApiServer
from linepool.sandbox.prometheus import free_port
from tests.conftest import new_namespace

pytestmark = pytest.mark.integration

TOKEN = "tok-7d2b-SECRET"


@pytest.fixture
def api_client(kube: KubeApiServer, namespace: str, tmp_path: pathlib.Path) -> Iterator[kubernetes.client.ApiClient]:
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig", namespace=namespace)
    client = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    with client:
        yield client


def secret(kube: KubeApiServer, namespace: str, name: str, **data: str) -> None:
    """A Secret as kubectl writes it: values base64-encoded under ``data``."""
    kube.apply({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                     "metadata": {"name": name, "namespace": namespace},
                     "data": {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}})


async def failure(reader: SecretReader, namespace: str, *, name: str, key: str = "token") -> CredentialsError:
    with pytest.raises(CredentialsError) as caught:
        await reader.token(namespace=namespace, name=name, key=key)
    assert TOKEN not in str(caught.value), "the token leaked into an error message"
    return caught.value


async def test_the_token_is_read_and_trimmed(kube: KubeApiServer, namespace: str,
                                             api_client: kubernetes.client.ApiClient) -> None:
    # `echo $TOKEN | kubectl create secret generic --from-file` leaves a newline; spaces sneak in too.
    secret(kube, namespace, "relay-token", token=f"  {TOKEN}\n", other="x")
    reader = SecretReader(api_client)
    assert await reader.token(namespace=namespace, name="relay-token", key="token") == TOKEN
    assert await reader.token(namespace=namespace, name="relay-token", key="other") == "x"


async def test_string_data_works_like_data(kube: KubeApiServer, namespace: str,
                                           api_client: kubernetes.client.ApiClient) -> None:
    kube.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "plain", "namespace": namespace},
                     "stringData": {"token": TOKEN}})
    assert await SecretReader(api_client).token(namespace=namespace, name="plain", key="token") == TOKEN


async def test_a_missing_secret_is_named(namespace: str, api_client: kubernetes.client.ApiClient) -> None:
    error = await failure(SecretReader(api_client), namespace, name="nowhere")
    assert (error.reason, error.status) == ("SecretNotFound", 404)
    assert f"Secret {namespace}/nowhere" in str(error)


async def test_a_secret_in_another_namespace_does_not_count(kube: KubeApiServer, namespace: str,
                                                            api_client: kubernetes.client.ApiClient) -> None:
    elsewhere = new_namespace(kube, "elsewhere")
    kube.apply({"apiVersion": "v1", "kind": "Secret",
                "metadata": {"name": "relay-token", "namespace": elsewhere}, "stringData": {"token": TOKEN}})
    error = await failure(SecretReader(api_client), namespace, name="relay-token")
    assert error.reason == "SecretNotFound"


async def test_a_missing_or_empty_key_is_named(kube: KubeApiServer, namespace: str,
                                               api_client: kubernetes.client.ApiClient) -> None:
    secret(kube, namespace, "relay-token", password=TOKEN, empty="")
    reader = SecretReader(api_client)
    error = await failure(reader, namespace, name="relay-token", key="token")
    assert error.reason == "SecretKeyMissing"
    assert f"Secret {namespace}/relay-token" in str(error) and "'token'" in str(error)
    assert (await failure(reader, namespace, name="relay-token", key="empty")).reason == "SecretKeyMissing"


async def test_a_value_that_is_not_utf8_text_is_reported_without_showing_it(
        kube: KubeApiServer, namespace: str, api_client: kubernetes.client.ApiClient) -> None:
    # A token file saved as UTF-16 (with its byte-order mark) and loaded with --from-file.
    kube.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "utf16", "namespace": namespace},
                     "data": {"token": base64.b64encode(TOKEN.encode("utf-16")).decode()}})
    error = await failure(SecretReader(api_client), namespace, name="utf16")
    assert error.reason == "SecretKeyMissing" and "not valid base64 UTF-8 text" in str(error)
    assert base64.b64encode(TOKEN.encode("utf-16")).decode() not in str(error)


async def test_a_burst_of_sends_makes_one_read(kube: KubeApiServer, namespace: str,
                                               api_client: kubernetes.client.ApiClient) -> None:
    secret(kube, namespace, "relay-token", token=TOKEN)
    reader = SecretReader(api_client, ttl=60)
    tokens = [await reader.token(namespace=namespace, name="relay-token", key="token") for _ in range(2)]
    tokens += await asyncio.gather(*(reader.token(namespace=namespace, name="relay-token", key="token")
                                     for _ in range(3)))
    assert tokens == [TOKEN] * 5
    assert reader.reads == 1


async def test_a_rotated_token_is_seen_after_ttl_or_forget(kube: KubeApiServer, namespace: str,
                                                           api_client: kubernetes.client.ApiClient) -> None:
    secret(kube, namespace, "relay-token", token=TOKEN)
    reader = SecretReader(api_client, ttl=0.5)
    assert await reader.token(namespace=namespace, name="relay-token", key="token") == TOKEN
    secret(kube, namespace, "relay-token", token="rotated-1")
    assert await reader.token(namespace=namespace, name="relay-token", key="token") == TOKEN  # cached
    await asyncio.sleep(0.6)
    assert await reader.token(namespace=namespace, name="relay-token", key="token") == "rotated-1"
    assert reader.reads == 2

    # The operator forgets a token the server refused (401), so a rotation is picked up at once.
    long_lived = SecretReader(api_client, ttl=60)
    assert await long_lived.token(namespace=namespace, name="relay-token", key="token") == "rotated-1"
    secret(kube, namespace, "relay-token", token="rotated-2")
    assert await long_lived.token(namespace=namespace, name="relay-token", key="token") == "rotated-1"
    long_lived.forget(namespace=namespace, name="relay-token", key="token")
    long_lived.forget(namespace=namespace, name="never-read", key="token")  # harmless
    assert await long_lived.token(namespace=namespace, name="relay-token", key="token") == "rotated-2"
    assert long_lived.reads == 2


async def test_a_failure_is_cached_briefly_then_the_fixed_secret_is_picked_up(
        kube: KubeApiServer, namespace: str, api_client: kubernetes.client.ApiClient) -> None:
    reader = SecretReader(api_client, ttl=60, failure_ttl=0.5)
    first = await failure(reader, namespace, name="relay-token")
    again = await failure(reader, namespace, name="relay-token")
    assert (first.reason, again.reason) == ("SecretNotFound", "SecretNotFound")
    assert reader.reads == 1  # the second failure came from the cache

    secret(kube, namespace, "relay-token", token=TOKEN)
    assert (await failure(reader, namespace, name="relay-token")).reason == "SecretNotFound"  # still cached
    await asyncio.sleep(0.6)
    assert await reader.token(namespace=namespace, name="relay-token", key="token") == TOKEN
    assert reader.reads == 2
    # Now the success is cached for the long ttl.
    assert await reader.token(namespace=namespace, name="relay-token", key="token") == TOKEN
    assert reader.reads == 2


async def test_a_cached_failure_is_reread_after_forget(kube: KubeApiServer, namespace: str,
                                                       api_client: kubernetes.client.ApiClient) -> None:
    secret(kube, namespace, "relay-token", password=TOKEN)
    reader = SecretReader(api_client, failure_ttl=60)
    assert (await failure(reader, namespace, name="relay-token")).reason == "SecretKeyMissing"
    secret(kube, namespace, "relay-token", token=TOKEN)
    assert (await failure(reader, namespace, name="relay-token")).reason == "SecretKeyMissing"  # cached for a minute
    reader.forget(namespace=namespace, name="relay-token", key="token")
    assert await reader.token(namespace=namespace, name="relay-token", key="token") == TOKEN
    assert reader.reads == 2


async def test_keys_and_secrets_are_cached_separately(kube: KubeApiServer, namespace: str,
                                                      api_client: kubernetes.client.ApiClient) -> None:
    secret(kube, namespace, "relay-a", token="token-a")
    secret(kube, namespace, "relay-b", token="token-b", spare="token-b2")
    reader = SecretReader(api_client, ttl=60)
    assert await reader.token(namespace=namespace, name="relay-a", key="token") == "token-a"
    assert await reader.token(namespace=namespace, name="relay-b", key="token") == "token-b"
    assert await reader.token(namespace=namespace, name="relay-b", key="spare") == "token-b2"
    assert reader.reads == 3


async def test_an_unreachable_api_server_is_a_credentials_error(kube: KubeApiServer, tmp_path: pathlib.Path) -> None:
    # The genuine server's configuration, but on a port where nothing listens: connections are refused.
    config = kube.kubeconfig()
    config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{free_port()}"
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps(config))
    namespace = "relays"
    client = kubernetes.config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    with client:
        error = await failure(SecretReader(client), namespace, name="relay-token")
    assert error.reason == "SecretNotFound" and error.status is None
    assert f"reading Secret {namespace}/relay-token failed" in str(error)
