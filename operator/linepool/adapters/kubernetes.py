"""Talk to the Kubernetes API: status patches, label flips, new MessagingServers, and Secrets.

Our own objects are read from kopf's watch-fed indexes, so a steady poll reads nothing from the
API server; the only reads here are the Secrets holding server tokens, when a send is due.
It uses the official client, configured the way kubectl is
(in-cluster first, then ``KUBECONFIG``), and runs its blocking calls in worker threads.
"""

import asyncio
import base64
import json
from collections import Counter
from collections.abc import Mapping
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from linepool.api import GROUP, VERSION


class KubernetesError(Exception):
    """The API server refused a write or could not be reached."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def load_api_client() -> kubernetes.client.ApiClient:
    """An API client configured like kubectl: in-cluster service account, else KUBECONFIG."""
    configuration = kubernetes.client.Configuration()
    try:
        kubernetes.config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    return kubernetes.client.ApiClient(configuration)


class KubernetesWriter:
    """Writes of the operator's own resources. Counts them, for metrics and the benchmark."""

    def __init__(self, api_client: kubernetes.client.ApiClient) -> None:
        self._objects = kubernetes.client.CustomObjectsApi(api_client)
        self.writes: Counter[str] = Counter()

    async def patch_status(self, *, plural: str, namespace: str, name: str, status: Mapping[str, Any]) -> None:
        """Merge-patch the status subresource. Lists in it (conditions, lines) are replaced whole."""
        await self._call(
            f"patch {plural}/status", self._objects.patch_namespaced_custom_object_status,
            GROUP, VERSION, namespace, plural, name, {"status": dict(status)},
        )

    async def patch_labels(self, *, plural: str, namespace: str, name: str, labels: Mapping[str, str]) -> None:
        await self._call(
            f"patch {plural}", self._objects.patch_namespaced_custom_object,
            GROUP, VERSION, namespace, plural, name, {"metadata": {"labels": dict(labels)}},
        )

    async def create(self, *, plural: str, namespace: str, body: Mapping[str, Any]) -> bool:
        """Create an object. False when it already exists: creation by deterministic name is idempotent."""
        try:
            await self._call(
                f"create {plural}", self._objects.create_namespaced_custom_object,
                GROUP, VERSION, namespace, plural, dict(body),
            )
        except KubernetesError as exc:
            if exc.status == 409:
                return False
            raise
        return True

    async def _call(self, what: str, method: Any, *args: Any) -> Any:
        self.writes[what] += 1
        try:
            return await asyncio.to_thread(method, *args)
        except ApiException as exc:
            raise KubernetesError(f"{what} failed: HTTP {exc.status}: {_api_message(exc)}",
                                  status=exc.status) from None
        except (HTTPError, OSError) as exc:
            raise KubernetesError(f"{what} failed: {type(exc).__name__}: {exc}") from None


class CredentialsError(KubernetesError):
    """A server's credentials Secret is missing, unreadable, or lacks the key."""

    def __init__(self, message: str, *, reason: str, status: int | None = None) -> None:
        super().__init__(message, status=status)
        self.reason = reason


class SecretReader:
    """Reads one key of a Secret: the API token of a MessagingServer.

    Tokens are read only when a send is due, and cached briefly so a burst of sends makes one
    read. Failures are cached for less time, so a fixed Secret is picked up quickly. Error
    messages name the Secret and the key, never the value.
    """

    def __init__(self, api_client: kubernetes.client.ApiClient, *, ttl: float = 300.0,
                 failure_ttl: float = 15.0) -> None:
        self._core = kubernetes.client.CoreV1Api(api_client)
        self._ttl = ttl
        self._failure_ttl = failure_ttl
        self._cache: dict[tuple[str, str, str], tuple[float, str | CredentialsError]] = {}
        self.reads = 0

    async def token(self, *, namespace: str, name: str, key: str) -> str:
        cache_key = (namespace, name, key)
        now = asyncio.get_running_loop().time()
        cached = self._cache.get(cache_key)
        if cached is not None and now < cached[0]:
            if isinstance(cached[1], CredentialsError):
                raise cached[1]
            return cached[1]
        try:
            value = await self._read(namespace=namespace, name=name, key=key)
        except CredentialsError as error:
            self._cache[cache_key] = (now + self._failure_ttl, error)
            raise
        self._cache[cache_key] = (now + self._ttl, value)
        return value

    def forget(self, *, namespace: str, name: str, key: str) -> None:
        """Drop a cached token, e.g. after the server refused it."""
        self._cache.pop((namespace, name, key), None)

    async def _read(self, *, namespace: str, name: str, key: str) -> str:
        self.reads += 1
        where = f"Secret {namespace}/{name}"
        try:
            secret = await asyncio.to_thread(self._core.read_namespaced_secret, name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                raise CredentialsError(f"{where} does not exist", reason="SecretNotFound", status=404) from None
            raise CredentialsError(f"reading {where} failed: HTTP {exc.status}", reason="SecretNotFound",
                                   status=exc.status) from None
        except (HTTPError, OSError) as exc:
            raise CredentialsError(f"reading {where} failed: {type(exc).__name__}", reason="SecretNotFound") from None
        data = secret.data or {}
        if key not in data or not data[key]:
            raise CredentialsError(f"{where} has no key {key!r}", reason="SecretKeyMissing")
        try:
            return base64.b64decode(data[key], validate=True).decode("utf-8").strip()
        except (ValueError, UnicodeDecodeError):
            raise CredentialsError(f"{where} key {key!r} is not valid base64 UTF-8 text",
                                   reason="SecretKeyMissing") from None


def _api_message(exc: ApiException) -> str:
    try:
        body = json.loads(exc.body or "{}")
    except ValueError:
        return str(exc.reason)
    return str(body.get("message") or exc.reason) if isinstance(body, dict) else str(exc.reason)
