"""Write to the Kubernetes API: status patches, label flips, and new MessagingServers.

Reads come from kopf's watch-fed indexes, so a steady poll reads nothing from the API server;
this adapter only writes. It uses the official client, configured the way kubectl is
(in-cluster first, then ``KUBECONFIG``), and runs its blocking calls in worker threads.
"""

import asyncio
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


def _api_message(exc: ApiException) -> str:
    try:
        body = json.loads(exc.body or "{}")
    except ValueError:
        return str(exc.reason)
    return str(body.get("message") or exc.reason) if isinstance(body, dict) else str(exc.reason)
