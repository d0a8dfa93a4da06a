"""The placement service's view of the pools: LinePools and MessagingServers, watched, never written.

One thread per resource and scope lists, then watches from the list's resourceVersion with the
official client's ``watch.Watch``, and lists again when the server says the version is too old
(410) or the connection breaks. The latest copy of each object is kept; ``facts`` turns a pool
and its servers into ``PoolFacts`` lazily, once per change, so a burst of status updates costs one
rebuild, at the next request that needs it. A refused list or watch is retried with back-off and
kept as ``problem``, which ``/readyz`` shows; it never raises to a request.
"""

import fnmatch
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import kubernetes
from kubernetes import watch
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from linepool.api import GROUP, POOLS, SERVERS, VERSION
from linepool.logic.placement import PoolFacts, pool_facts

log = logging.getLogger(__name__)

WATCH_TIMEOUT = 240  # seconds a watch stays open before it is renewed from its last version
RETRY_SECONDS = (1, 2, 5, 10, 30)
_GLOB = set("*?[")

Key = tuple[str, str]  # (namespace, name)


class PoolWatch:
    """The latest LinePools and MessagingServers in the watched namespaces."""

    def __init__(self, *, api_client: kubernetes.client.ApiClient, namespaces: Sequence[str] = (),
                 on_change: Callable[[str], None] | None = None) -> None:
        self._api = kubernetes.client.CustomObjectsApi(api_client)
        patterns = list(namespaces)
        # Exact names get a watch each (the least RBAC needs); a glob needs a cluster-wide watch.
        self._patterns = patterns
        cluster_wide = not patterns or any(_GLOB & set(p) for p in patterns)
        self._scopes: list[str | None] = [None] if cluster_wide else list(patterns)
        self._objects: dict[str, dict[Key, Mapping[str, Any]]] = {POOLS: {}, SERVERS: {}}
        self._lock = threading.Lock()
        self._synced: set[tuple[str, str | None]] = set()
        self._facts: dict[Key, PoolFacts] = {}
        self._dirty: set[str] = set()
        self._errors: dict[tuple[str, str | None], str] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._on_change = on_change

    # -- reading -----------------------------------------------------------------------------
    @property
    def synced(self) -> bool:
        """Every resource in every scope has been listed at least once."""
        return len(self._synced) == 2 * len(self._scopes)

    @property
    def problem(self) -> str | None:
        with self._lock:
            return next(iter(self._errors.values()), None)

    def watches(self, namespace: str) -> bool:
        return not self._patterns or any(fnmatch.fnmatchcase(namespace, p) for p in self._patterns)

    def facts(self, *, namespace: str, name: str) -> PoolFacts | None:
        """The pool's placement facts, rebuilt when it or a server of its namespace has changed."""
        with self._lock:
            if namespace in self._dirty:
                self._dirty.discard(namespace)
                for key in [k for k in self._facts if k[0] == namespace]:
                    del self._facts[key]
            cached = self._facts.get((namespace, name))
            if cached is not None:
                return cached
            pool = self._objects[POOLS].get((namespace, name))
            if pool is None:
                return None
            servers = [obj for (ns, _), obj in self._objects[SERVERS].items() if ns == namespace]
        built = pool_facts(pool=pool, servers=servers)
        with self._lock:
            if namespace not in self._dirty:
                self._facts[(namespace, name)] = built
        return built

    def pools(self) -> list[Key]:
        with self._lock:
            return sorted(self._objects[POOLS])

    # -- watching ----------------------------------------------------------------------------
    def start(self) -> None:
        for plural in (POOLS, SERVERS):
            for scope in self._scopes:
                thread = threading.Thread(target=self._run, kwargs={"plural": plural, "scope": scope},
                                          name=f"watch-{plural}-{scope or 'all'}", daemon=True)
                thread.start()
                self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()

    def wait_synced(self, *, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.synced and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.synced

    def _run(self, *, plural: str, scope: str | None) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                version = self._list(plural=plural, scope=scope)
                failures = 0
                while not self._stop.is_set():
                    next_version = self._watch(plural=plural, scope=scope, version=version)
                    if next_version is None:
                        break  # expired: list again
                    version = next_version
            except ApiException as exc:
                if exc.status == 410:  # the watched version is gone from etcd's history: list again
                    continue
                self._failed(plural=plural, scope=scope, exc=exc, failures=failures)
                failures += 1
            except (HTTPError, OSError, ValueError) as exc:
                self._failed(plural=plural, scope=scope, exc=exc, failures=failures)
                failures += 1

    def _failed(self, *, plural: str, scope: str | None, exc: BaseException, failures: int) -> None:
        message = f"cannot watch {plural}{f' in {scope}' if scope else ''}: {_describe(exc)}"
        with self._lock:
            self._errors[(plural, scope)] = message
        log.warning("%s; retrying", message)
        self._stop.wait(RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)])

    def _call(self, *, plural: str, scope: str | None) -> tuple[Callable[..., Any], dict[str, Any]]:
        if scope is None:
            return self._api.list_cluster_custom_object, {"group": GROUP, "version": VERSION, "plural": plural}
        return self._api.list_namespaced_custom_object, {
            "group": GROUP, "version": VERSION, "namespace": scope, "plural": plural}

    def _list(self, *, plural: str, scope: str | None) -> str:
        method, kwargs = self._call(plural=plural, scope=scope)
        listing = method(**kwargs, _request_timeout=30)
        fresh = {_key(obj): obj for obj in listing.get("items") or [] if self.watches(_key(obj)[0])}
        with self._lock:
            table = self._objects[plural]
            touched = {key[0] for key in table if scope is None or key[0] == scope} | {key[0] for key in fresh}
            for key in [k for k in table if scope is None or k[0] == scope]:
                del table[key]
            table.update(fresh)
            self._dirty |= touched
            self._synced.add((plural, scope))
            self._errors.pop((plural, scope), None)
        self._changed(touched)
        return str(listing["metadata"]["resourceVersion"])

    def _watch(self, *, plural: str, scope: str | None, version: str) -> str | None:
        """Follow changes from ``version``; the version to go on from, or None to list again."""
        method, kwargs = self._call(plural=plural, scope=scope)
        stream = watch.Watch()  # type: ignore[no-untyped-call]
        events = stream.stream(  # type: ignore[no-untyped-call]
            method, **kwargs, resource_version=version, timeout_seconds=WATCH_TIMEOUT,
            allow_watch_bookmarks=True, _request_timeout=WATCH_TIMEOUT + 30)
        for event in events:
            if self._stop.is_set():
                stream.stop()  # type: ignore[no-untyped-call]
                break
            kind, obj = event["type"], event["object"]
            if kind == "ERROR":
                if isinstance(obj, Mapping) and obj.get("code") == 410:
                    return None
                raise ValueError(f"watch error: {obj}")
            version = str(obj.get("metadata", {}).get("resourceVersion") or version)
            if kind == "BOOKMARK":
                continue
            key = _key(obj)
            if not self.watches(key[0]):
                continue
            with self._lock:
                if kind == "DELETED":
                    self._objects[plural].pop(key, None)
                else:
                    self._objects[plural][key] = obj
                self._dirty.add(key[0])
            self._changed({key[0]})
        return version

    def _changed(self, namespaces: set[str]) -> None:
        if self._on_change is not None:
            for namespace in namespaces:
                self._on_change(namespace)


def _key(obj: Mapping[str, Any]) -> Key:
    metadata = obj.get("metadata") or {}
    return str(metadata.get("namespace") or ""), str(metadata.get("name") or "")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ApiException):
        return f"{exc.status} {exc.reason}"
    return str(exc) or type(exc).__name__
