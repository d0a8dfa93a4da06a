"""
An in-memory Kubernetes API that behaves like a real API server where clients can tell.

Stock ``kmock.KubernetesEmulator`` is "a database over HTTP": kopf 1.45 and the
``kubernetes`` client v37 do not work against it unchanged (see /work/shared/TESTING.md).
:class:`RealisticEmulator` adds what they rely on:

* server-owned metadata: ``uid``, a global monotonic ``resourceVersion``, ``generation``
  (bumped only by non-metadata, non-status changes), ``creationTimestamp``,
  ``generateName``, and 201 Created;
* PATCH by content type (merge, strategic-merge as merge, JSON patch with 422 on a
  failed ``test``), PUT with optimistic concurrency (409), no-op writes that change nothing;
* the ``status`` subresource kept apart from the main resource;
* list metadata (``kind``/``apiVersion``/``resourceVersion``), label and field selectors
  on lists and watches, and watches that resume from a ``resourceVersion``;
* finalizers: DELETE only marks objects that have finalizers; removing the last one
  deletes the object — as stock kmock does, but with the metadata above;
* a log of API writes, so benchmarks can count them per resource and subresource.

The HTTP plumbing (threads, ports, kubeconfigs) lives in :mod:`linepool.sandbox.apiserver`.
All state changes go through the async ``*_object`` methods under one lock, both for
HTTP requests and for the direct helpers used by the demo and the tests.
"""
import asyncio
import base64
import collections
import collections.abc
import copy
import dataclasses
import datetime
import json
import random
import re
import string
import threading
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Callable, Mapping
from types import EllipsisType
from typing import Any, Final

import aiohttp.web
import attrs
import kmock
from kmock._internal.rendering import Response as KmockResponse  # re-exported, but not in __all__
from typing_extensions import override

from linepool.sandbox import patches
from linepool.sandbox.selectors import ObjectSelector, SelectorError

WRITE_METHODS: Final = frozenset({'POST', 'PUT', 'PATCH', 'DELETE'})

# Fields of metadata that only the server may set. Clients' values are ignored on writes,
# as a real API server does, so that e.g. a PUT of a stale body cannot rewind the uid.
_SERVER_OWNED_METADATA: Final = (
    'name', 'namespace', 'uid', 'resourceVersion', 'generation', 'creationTimestamp',
    'deletionTimestamp', 'deletionGracePeriodSeconds',
)


# kmock's URL parser reads ".../namespaces/X" as "in namespace X", even when the namespaces
# resource itself is meant: "/api/v1/namespaces" crashes it, "/api/v1/namespaces/X" loses
# the resource. We route such paths through an alias that parses well, then restore it.
_NAMESPACES_PATH: Final = re.compile(r'/api/v1/namespaces(?:/[^/]+(?:/(?:status|finalize))?)?/?')
_NAMESPACES_ALIAS: Final = '__namespaces__'
_NAMESPACES: Final = kmock.resource('', 'v1', 'namespaces')


class _Shutdown:
    """A marker put on the watch buses to end all watch-streams when the server stops."""


_SHUTDOWN: Final = _Shutdown()


@dataclasses.dataclass(frozen=True)
class WriteRecord:
    """One API write (POST/PUT/PATCH/DELETE) as it reached the server, with its outcome."""
    method: str
    group: str
    version: str
    plural: str
    subresource: str | None
    namespace: str | None
    name: str | None
    status: int
    user_agent: str
    timestamp: float


@dataclasses.dataclass(frozen=True)
class _Change:
    """A committed change, as kept for watch-streams (live and resumed from a version)."""
    resource_version: int
    resource: kmock.resource
    type: str  # ADDED, MODIFIED, DELETED
    obj: dict[str, Any]
    old: dict[str, Any] | None  # the previous state, to re-evaluate selectors for watchers


def api_error(status: int, reason: str, message: str, **details: Any) -> kmock.KubernetesError:
    """An error rendered as a Kubernetes ``Status`` with the real server's ``reason`` names."""
    return kmock.KubernetesError(status=status, reason=reason, message=message, details=details or None)


def not_found(resource: kmock.resource, name: str | None) -> kmock.KubernetesError:
    what = f"{resource.plural}.{resource.group}" if resource.group else f"{resource.plural}"
    return api_error(404, 'NotFound', f'{what} "{name}" not found', name=name, kind=resource.plural)


def rfc3339_now() -> str:
    # Real API servers store timestamps with second precision and a "Z" suffix.
    return datetime.datetime.now(tz=datetime.UTC).strftime('%Y-%m-%dT%H:%M:%SZ')


def _status_response(error: kmock.KubernetesError) -> aiohttp.web.Response:
    return aiohttp.web.json_response({
        'apiVersion': 'v1',
        'kind': 'Status',
        'metadata': {},
        'status': 'Failure',
        'message': error.message or error.reason or 'error',
        'reason': error.reason or 'InternalError',
        'details': error.details or {},
        'code': error.status,
    }, status=error.status)


def _content_type(request: kmock.Request) -> str:
    raw = next((v for k, v in request.headers.items() if k.lower() == 'content-type'), '')
    return raw.split(';', 1)[0].strip().lower()


def _json_body(request: kmock.Request) -> Any:
    try:
        return json.loads(request.body) if request.body else None
    except ValueError as e:
        raise api_error(400, 'BadRequest', f"the request body is not valid JSON: {e}") from e


@attrs.define(kw_only=True)
class RealisticEmulator(kmock.KubernetesEmulator):
    """
    A :class:`kmock.KubernetesEmulator` that kopf and the ``kubernetes`` client accept.

    The objects stay in ``self.objects`` (kmock's versioned storage), so kmock-style
    assertions keep working. Use one instance per event loop: kmock's locks and buses
    bind to the loop that first uses them.
    """

    # How many past versions to keep per object: a long demo patches status every few seconds.
    history_limit: int | None = 20
    # How many past changes to keep for watches that resume from a resourceVersion;
    # older resumptions get "410 Gone", and clients (kopf included) re-list, as with a real server.
    watch_log_size: int = 10_000
    # Whether to keep every served request for kmock-style assertions (``emulator.requests``).
    # kmock matches each new request against all past ones, so keeping them makes every request
    # slower than the last: 20 ms after 200 requests, 120 ms after 800. A demo or a benchmark
    # makes thousands, so by default requests are forgotten once answered.
    keep_requests: bool = False
    # Injected faults, for tests of crash recovery: (plural, subresource) -> HTTP status that
    # every write to it answers, without changing anything. Subresource None is the object itself.
    failing_writes: dict[tuple[str, str | None], int] = attrs.field(factory=dict)

    _resource_version: int = attrs.field(default=0, init=False)
    _changes: collections.deque[_Change] = attrs.field(factory=collections.deque, init=False)
    _evicted_up_to: int = attrs.field(default=0, init=False)
    _outcomes: dict[int, dict[str, Any]] = attrs.field(factory=dict, init=False)
    _writes: list[WriteRecord] = attrs.field(factory=list, init=False)
    _writes_lock: threading.Lock = attrs.field(factory=threading.Lock, init=False)
    _closing: bool = attrs.field(default=False, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        # kmock guesses no action for PUT, so the stock fallbacks never see it; route it here.
        self.fallback[kmock.method.PUT] << self._serve_replace

    # ------------------------------------------------------------------------------------------
    # Introspection and accounting (thread-safe, for tests and benchmarks).

    @property
    def resource_version(self) -> int:
        """The latest resourceVersion handed out (global across all resources, as in etcd)."""
        return self._resource_version

    def write_log(self) -> list[WriteRecord]:
        """A copy of all API writes received over HTTP since the last :meth:`reset_counters`."""
        with self._writes_lock:
            return list(self._writes)

    def write_count(
            self,
            resource_plural: str | None = None,
            *,
            subresource: str | EllipsisType | None = ...,
            method: str | None = None,
            successful_only: bool = False,
    ) -> int:
        """
        Count API writes over HTTP, optionally by plural, subresource and method.

        ``subresource=...`` (the default) counts all; ``None`` counts only writes to the
        main resource; ``'status'`` counts only writes to ``/status``. Writes made by the
        direct helpers (:meth:`create_object` etc. from Python) are not API writes and are
        not counted, so a benchmark sees only what its clients (the operator) did.
        """
        return sum(
            1 for record in self.write_log()
            if resource_plural is None or record.plural == resource_plural
            if subresource is ... or record.subresource == subresource
            if method is None or record.method == method.upper()
            if not successful_only or record.status < 400
        )

    def reset_counters(self) -> None:
        with self._writes_lock:
            self._writes.clear()

    def resolve(self, ref: str | kmock.resource) -> kmock.resource:
        """
        Find a served resource by ``'plural'``, ``'plural.group'`` or ``'group/version/plural'``.

        A bare plural prefers the core API group (``'events'`` is ``v1/events``, not
        ``events.k8s.io``), then the first group alphabetically.
        """
        if isinstance(ref, kmock.resource) and ref.group is not None and ref.version is not None:
            return ref
        wanted = ref if isinstance(ref, kmock.resource) else kmock.resource(ref)
        candidates = [res for res in self._get_resources() if wanted.check(res) and res.plural is not None]
        if not candidates:
            raise LookupError(f"the sandbox serves no resource matching {ref!r}")
        candidates.sort(key=lambda res: (res.group != '', res.group or '', res.version or ''))
        return candidates[0]

    def resolve_kind(self, api_version: str, kind: str) -> kmock.resource:
        """Find a served resource by ``apiVersion`` and ``kind``, as in a manifest."""
        group, _, version = api_version.rpartition('/')
        for res in self._get_resources():
            if res.group == group and res.version == version and self.kind_of(res) == kind:
                return res
        raise LookupError(f"the sandbox serves no resource of kind {kind!r} in {api_version!r}")

    def kind_of(self, resource: kmock.resource) -> str:
        info = self._info(resource)
        if info is not None and info.kind:
            return info.kind
        return (resource.plural or '').capitalize()

    def is_namespaced(self, resource: kmock.resource) -> bool:
        info = self._info(resource)
        return True if info is None or info.namespaced is None else info.namespaced

    @staticmethod
    def api_version_of(resource: kmock.resource) -> str:
        return f"{resource.group}/{resource.version}" if resource.group else f"{resource.version}"

    # ------------------------------------------------------------------------------------------
    # State changes: the only places that write to ``self.objects``.

    async def create_object(
            self, resource: kmock.resource, namespace: str | None, body: Any,
    ) -> dict[str, Any]:
        """Create an object as POST does; returns the stored object (what a 201 carries)."""
        if not isinstance(body, Mapping) or not isinstance(body.get('metadata', {}), Mapping):
            raise api_error(400, 'BadRequest', "the object must be a JSON object with a metadata object")
        self._require_known(resource)
        obj: dict[str, Any] = copy.deepcopy(dict(body))
        meta: dict[str, Any] = obj.setdefault('metadata', {})

        namespace = self._object_namespace(resource, namespace, meta.get('namespace'))
        if namespace is None:
            meta.pop('namespace', None)
        else:
            meta['namespace'] = namespace

        async with self._lock:
            name = meta.get('name') or self._generate_name(resource, namespace, meta.get('generateName'))
            key = (resource, namespace, name)
            if key in self._objects and not self._objects[key].deleted:
                what = f"{resource.plural}.{resource.group}" if resource.group else f"{resource.plural}"
                raise api_error(409, 'AlreadyExists', f'{what} "{name}" already exists',
                                name=name, kind=resource.plural)

            rv = self._next_resource_version()
            for field in _SERVER_OWNED_METADATA:
                meta.pop(field, None)
            meta.update({
                'name': name,
                'uid': str(uuid.uuid4()),
                'resourceVersion': str(rv),
                'generation': 1,
                'creationTimestamp': rfc3339_now(),
            })
            if namespace is not None:
                meta['namespace'] = namespace
            obj['apiVersion'] = self.api_version_of(resource)
            obj['kind'] = self.kind_of(resource)
            _apply_builtin_semantics(resource, obj)
            # With the status subresource, a real server drops the status of new objects:
            # only writes to /status may set it.
            if self._has_status_subresource(resource):
                obj.pop('status', None)

            if key in self._objects:
                self._objects[key].create(obj)  # re-creation after a soft deletion
            else:
                self._objects[key] = obj
            self._trim_history(key)
            await self._publish(_Change(rv, resource, 'ADDED', obj, None))
            return copy.deepcopy(obj)

    async def patch_object(
            self,
            resource: kmock.resource,
            namespace: str | None,
            name: str,
            body: Any,
            *,
            content_type: str = patches.MERGE_PATCH,
            subresource: str | None = None,
    ) -> dict[str, Any]:
        """Patch an object as PATCH does; returns the object after the patch."""
        if content_type not in patches.SUPPORTED_PATCH_TYPES:
            raise api_error(415, 'UnsupportedMediaType',
                            f"the body of the request was in an unknown format - "
                            f"accepted media types include: {', '.join(sorted(patches.SUPPORTED_PATCH_TYPES))}")
        async with self._lock:
            key, old = self._current(resource, namespace, name)
            try:
                candidate = patches.apply_patch(old, body, content_type)
            except patches.PatchTestFailed as e:
                raise api_error(422, 'Invalid', f"the server rejected our request due to an error "
                                                f"in our request: {e}", name=name) from e
            except patches.PatchError as e:
                raise api_error(422, 'Invalid', f"the patch cannot be applied: {e}", name=name) from e

            # A merge patch that carries metadata.resourceVersion is a precondition, as in a real server.
            if content_type != patches.JSON_PATCH and isinstance(body, Mapping):
                wanted = (body.get('metadata') or {}).get('resourceVersion')
                self._check_precondition(resource, name, old, wanted)
            return await self._commit_update(key, old, candidate, subresource)

    async def replace_object(
            self,
            resource: kmock.resource,
            namespace: str | None,
            name: str,
            body: Any,
            *,
            subresource: str | None = None,
    ) -> dict[str, Any]:
        """Replace an object as PUT does; a stale ``metadata.resourceVersion`` gives 409."""
        if not isinstance(body, Mapping) or not isinstance(body.get('metadata', {}), Mapping):
            raise api_error(400, 'BadRequest', "the object must be a JSON object with a metadata object")
        meta = body.get('metadata') or {}
        if meta.get('name') not in (None, name):
            raise api_error(400, 'BadRequest', "the name of the object does not match the name on the URL")
        if namespace is not None and meta.get('namespace') not in (None, namespace):
            raise api_error(400, 'BadRequest', "the namespace of the provided object does not match "
                                               "the namespace sent on the request")
        async with self._lock:
            key, old = self._current(resource, namespace, name)
            self._check_precondition(resource, name, old, meta.get('resourceVersion'))
            return await self._commit_update(key, old, copy.deepcopy(dict(body)), subresource)

    async def delete_object(self, resource: kmock.resource, namespace: str | None, name: str) -> dict[str, Any]:
        """
        Delete an object as DELETE does; returns its last state.

        Objects with finalizers are only marked with ``deletionTimestamp`` and stay
        until a write removes the last finalizer — exactly what kopf relies on.
        """
        async with self._lock:
            key, old = self._current(resource, namespace, name)
            meta = old.get('metadata', {})
            if meta.get('deletionTimestamp'):
                return copy.deepcopy(old)  # already being deleted: nothing changes
            if meta.get('finalizers'):
                new = copy.deepcopy(old)
                rv = self._next_resource_version()
                new['metadata'].update({
                    'deletionTimestamp': rfc3339_now(),
                    'deletionGracePeriodSeconds': 0,
                    'resourceVersion': str(rv),
                })
                self._objects[key].history.append(new)
                self._trim_history(key)
                await self._publish(_Change(rv, resource, 'MODIFIED', new, old))
                return copy.deepcopy(new)
            return await self._purge(key, old)

    async def shutdown(self) -> None:
        """
        End all watch-streams, so that an HTTP server can close without waiting for them.

        This is final: serve a fresh emulator next time (kmock's locks and buses are bound
        to the event loop that first used them anyway).
        """
        self._closing = True
        for bus in list(self._buses.values()):
            await bus.put(_SHUTDOWN)

    # ------------------------------------------------------------------------------------------
    # Reading (no lock needed for consistency of single objects: versions are never mutated).

    def get_object(self, resource: kmock.resource, namespace: str | None, name: str) -> dict[str, Any] | None:
        key = (resource, namespace if self.is_namespaced(resource) else None, name)
        if key not in self._objects or self._objects[key].deleted:
            return None
        return copy.deepcopy(self._objects[key].raw)

    def list_objects(
            self,
            resource: kmock.resource,
            namespace: str | None = None,
            selector: ObjectSelector | None = None,
            name: str | None = None,
    ) -> list[dict[str, Any]]:
        selector = selector or ObjectSelector()
        return [
            copy.deepcopy(raw)
            for (res, _, _), obj in list(self._objects.items())
            if res == resource and not obj.deleted
            for raw in [obj.raw]
            if self._visible(raw, namespace, name, selector)
        ]

    # ------------------------------------------------------------------------------------------
    # HTTP: the request interceptor and the fallback handlers kmock dispatches to.

    @override
    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        if _NAMESPACES_PATH.fullmatch(raw_request.path):
            path = raw_request.rel_url.path.replace('/namespaces', f'/{_NAMESPACES_ALIAS}', 1)
            rel_url = raw_request.rel_url.with_path(path).with_query(raw_request.rel_url.query)
            raw_request = raw_request.clone(rel_url=rel_url)
        return await super().__call__(raw_request)

    @override
    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        response: aiohttp.web.StreamResponse
        if request.resource is not None and request.resource.plural == _NAMESPACES_ALIAS:
            request = self._restore_namespaces_request(request)
        try:
            self._inject_fault(request)
            if request.resource is not None and request.resource.plural is not None:
                await self._apply_request(request)
            # Skip the stock KubernetesEmulator._handle: its state changes are replaced by ours.
            response = await kmock.RawHandler._handle(self, request)
        except kmock.KubernetesError as e:
            # API errors are regular answers, not server faults: render them here, so that
            # kmock does not accumulate them as errors for the whole life of the server.
            response = _status_response(e)
        finally:
            self._outcomes.pop(id(request), None)
            if not self.keep_requests:
                self._forget(request)
        self._record_write(request, response.status)
        return response

    def _inject_fault(self, request: kmock.Request) -> None:
        if not self.failing_writes or request.resource is None or request.method is None:
            return
        if request.method.value.upper() not in {"POST", "PUT", "PATCH", "DELETE"}:
            return
        status = self.failing_writes.get((str(request.resource.plural), request.subresource))
        if status is not None:
            raise api_error(status, "InjectedFault", f"the sandbox was told to fail this write with {status}")

    def _forget(self, request: kmock.Request) -> None:
        """Drop an answered request from kmock's logs: the root's, and the reactions' own."""
        _remove_by_identity(self._requests, request)
        for payload in self._payloads:
            _remove_by_identity(payload._requests, request)

    def _restore_namespaces_request(self, aliased: kmock.Request) -> kmock.Request:
        """Undo the alias of :meth:`__call__`, also in kmock's request log (it matches by identity)."""
        path = aliased.url.path.replace(f'/{_NAMESPACES_ALIAS}', '/namespaces', 1)
        request = attrs.evolve(aliased, resource=_NAMESPACES,
                               url=aliased.url.with_path(path).with_query(aliased.url.query))
        for index in range(len(self._requests) - 1, -1, -1):
            if self._requests[index] is aliased:
                self._requests[index] = request
                break
        return request

    async def _apply_request(self, request: kmock.Request) -> None:
        """Validate the request and apply its state change; remember what to answer."""
        assert request.resource is not None
        method = str(request.method.value).upper()
        resource = request.resource
        if method == 'GET':
            # Validate early, while a proper 400 can still be answered (not mid-stream).
            self._parse_selector(request)
            if request.action == kmock.action.WATCH:
                self._parse_since(request)
                self._parse_timeout(request)
            return
        if method == 'POST' and request.name is None:
            outcome = await self.create_object(resource, request.namespace, _json_body(request))
        elif method == 'PATCH' and request.name is not None:
            outcome = await self.patch_object(
                resource, request.namespace, request.name, _json_body(request),
                content_type=_content_type(request), subresource=request.subresource)
        elif method == 'PUT' and request.name is not None:
            outcome = await self.replace_object(
                resource, request.namespace, request.name, _json_body(request),
                subresource=request.subresource)
        elif method == 'DELETE' and request.name is not None and request.subresource is None:
            outcome = await self.delete_object(resource, request.namespace, request.name)
        else:
            return
        self._outcomes[id(request)] = outcome

    def _outcome(self, request: kmock.Request) -> dict[str, Any]:
        try:
            return self._outcomes[id(request)]
        except KeyError:
            raise api_error(405, 'MethodNotAllowed', "the server does not allow this method on the requested "
                                                     "resource") from None

    @override
    async def _serve_create(self, request: kmock.Request) -> kmock.Payload:
        return KmockResponse(status=201, payload=self._outcome(request))

    @override
    async def _serve_update(self, request: kmock.Request) -> kmock.Payload:
        return self._outcome(request)

    async def _serve_replace(self, request: kmock.Request) -> kmock.Payload:
        return self._outcome(request)

    @override
    async def _serve_delete(self, request: kmock.Request) -> kmock.Payload:
        return self._outcome(request)

    @override
    async def _serve_fetch(self, request: kmock.Request) -> kmock.Payload:
        assert request.resource is not None and request.name is not None
        obj = self.get_object(request.resource, request.namespace, request.name)
        if obj is None:
            raise not_found(request.resource, request.name)
        return obj

    @override
    async def _serve_list(self, request: kmock.Request) -> kmock.Payload:
        assert request.resource is not None
        self._require_known(request.resource)
        selector = self._parse_selector(request)
        async with self._lock:
            items = self.list_objects(request.resource, request.namespace, selector, request.name)
            rv = self._resource_version
        return {
            'apiVersion': self.api_version_of(request.resource),
            'kind': f"{self.kind_of(request.resource)}List",
            'metadata': {'resourceVersion': str(rv), 'continue': ''},
            'items': items,
        }

    @override
    async def _serve_watch(self, request: kmock.Request) -> AsyncIterator[kmock.Payload]:
        assert request.resource is not None
        resource = request.resource
        selector = self._parse_selector(request)
        since = self._parse_since(request)
        timeout = self._parse_timeout(request)
        deadline = asyncio.get_running_loop().time() + timeout if timeout is not None else None

        # Send the headers now: clients wait for them before they consider the watch started.
        yield b''

        bus = self._buses[resource]

        def visible(obj: Mapping[str, Any]) -> bool:
            return self._visible(obj, request.namespace, request.name, selector)

        # Mark the bus and take the snapshot under the same lock that writers hold while
        # publishing: every change is then either in the snapshot or on the bus, never both.
        async with self._lock:
            marker = await bus.mark()
            initial: list[dict[str, Any]] = []
            if since is None:
                initial = [{'type': 'ADDED', 'object': obj} for obj in self.list_objects(
                    resource, request.namespace, selector, request.name)]
                if request.params.get('sendInitialEvents') == 'true':
                    initial.append(self._initial_events_end_bookmark(resource))
            elif since < self._evicted_up_to:
                initial = [{'type': 'ERROR', 'object': {
                    'apiVersion': 'v1', 'kind': 'Status', 'metadata': {}, 'status': 'Failure',
                    'message': f"too old resource version: {since} ({self._evicted_up_to})",
                    'reason': 'Expired', 'code': 410,
                }}]
            else:
                for change in self._changes:
                    if change.resource_version > since and change.resource == resource:
                        event = _render_change(change, visible)
                        if event is not None:
                            initial.append(event)

        stream = bus.stream(since=marker)
        try:
            for event in initial:
                yield event
                if event['type'] == 'ERROR':
                    return
            while not self._closing:
                try:
                    async with asyncio.timeout_at(deadline):
                        change = await anext(stream)
                except TimeoutError:
                    return  # the server-side timeout ends the stream; clients reconnect
                if isinstance(change, _Shutdown):
                    return
                if isinstance(change, _Change):
                    rendered = _render_change(change, visible)
                    if rendered is not None:
                        yield rendered
        finally:
            if isinstance(stream, collections.abc.AsyncGenerator):
                await stream.aclose()
            await bus.unmark(marker)

    # ------------------------------------------------------------------------------------------
    # Internals.

    def _info(self, resource: kmock.resource) -> kmock.ResourceInfo | None:
        # NB: ResourcesArray auto-creates entries on reading (even via .get()), so check first.
        return self._resources[resource] if resource in self._resources else None  # noqa: SIM401

    def _has_status_subresource(self, resource: kmock.resource) -> bool:
        info = self._info(resource)
        return info is not None and 'status' in info.subresources

    def _require_known(self, resource: kmock.resource) -> None:
        if resource not in self._get_resources():
            raise api_error(404, 'NotFound', f"the server could not find the requested resource "
                                             f"({resource.group}/{resource.version}/{resource.plural})")

    def _object_namespace(self, resource: kmock.resource, url_ns: str | None, body_ns: Any) -> str | None:
        if not self.is_namespaced(resource):
            return None
        if url_ns is not None and body_ns not in (None, '', url_ns):
            raise api_error(400, 'BadRequest', "the namespace of the provided object does not match "
                                               "the namespace sent on the request")
        namespace = url_ns or body_ns
        if not namespace or not isinstance(namespace, str):
            raise api_error(400, 'BadRequest', "a namespaced object needs a namespace")
        return namespace

    def _generate_name(self, resource: kmock.resource, namespace: str | None, prefix: Any) -> str:
        if not prefix or not isinstance(prefix, str):
            raise api_error(422, 'Invalid', "name or generateName is required")
        alphabet = string.ascii_lowercase + string.digits
        # A real server uses 5 random chars and retries on collisions; so do we.
        for _ in range(100):
            name = prefix + ''.join(random.choices(alphabet, k=5))
            key = (resource, namespace, name)
            if key not in self._objects or self._objects[key].deleted:
                return name
        raise api_error(409, 'AlreadyExists', f"could not generate a unique name for {prefix!r}")

    def _current(
            self, resource: kmock.resource, namespace: str | None, name: str,
    ) -> tuple[tuple[kmock.resource, str | None, str], dict[str, Any]]:
        key = (resource, namespace if self.is_namespaced(resource) else None, name)
        if key not in self._objects or self._objects[key].deleted:
            raise not_found(resource, name)
        return key, self._objects[key].raw

    def _check_precondition(self, resource: kmock.resource, name: str, old: Mapping[str, Any], wanted: Any) -> None:
        actual = old.get('metadata', {}).get('resourceVersion')
        if wanted not in (None, '') and str(wanted) != actual:
            what = f"{resource.plural}.{resource.group}" if resource.group else f"{resource.plural}"
            raise api_error(409, 'Conflict', f'Operation cannot be fulfilled on {what} "{name}": the object '
                                             f'has been modified; please apply your changes to the latest '
                                             f'version and try again', name=name, kind=resource.plural)

    async def _commit_update(
            self,
            key: tuple[kmock.resource, str | None, str],
            old: dict[str, Any],
            candidate: dict[str, Any],
            subresource: str | None,
    ) -> dict[str, Any]:
        """Turn a client's desired state into the stored one; the caller holds the lock."""
        resource = key[0]
        has_status = self._has_status_subresource(resource)
        if subresource == 'status':
            if not has_status:
                raise not_found(resource, key[2])
            # Writes to /status change the status and nothing else.
            new = copy.deepcopy(old)
            if 'status' in candidate:
                new['status'] = candidate['status']
            else:
                new.pop('status', None)
        elif subresource is None:
            new = candidate
            if has_status:
                # Writes to the main resource cannot change the status.
                if 'status' in old:
                    new['status'] = copy.deepcopy(old['status'])
                else:
                    new.pop('status', None)
        else:
            raise not_found(resource, f"{key[2]}/{subresource}")

        if not isinstance(new.get('metadata'), dict):
            raise api_error(422, 'Invalid', "metadata must be an object", name=key[2])
        new_meta: dict[str, Any] = new['metadata']
        old_meta: dict[str, Any] = old['metadata']
        for field in _SERVER_OWNED_METADATA:
            if field in old_meta:
                new_meta[field] = old_meta[field]
            else:
                new_meta.pop(field, None)
        new['apiVersion'] = old.get('apiVersion')
        new['kind'] = old.get('kind')
        _apply_builtin_semantics(resource, new)

        if old_meta.get('deletionTimestamp'):
            added = set(new_meta.get('finalizers') or []) - set(old_meta.get('finalizers') or [])
            if added:
                raise api_error(422, 'Invalid', f"Forbidden: no new finalizers can be added if the object "
                                                f"is being deleted, found new finalizers {sorted(added)!r}",
                                name=key[2])

        # A write that changes nothing is a no-op: no new resourceVersion, no watch event.
        if new == old:
            return copy.deepcopy(old)

        if _generation_fields(new, has_status) != _generation_fields(old, has_status):
            new_meta['generation'] = int(old_meta.get('generation', 0)) + 1
        rv = self._next_resource_version()
        new_meta['resourceVersion'] = str(rv)
        self._objects[key].history.append(new)
        self._trim_history(key)
        await self._publish(_Change(rv, resource, 'MODIFIED', new, old))

        # Removing the last finalizer of an object being deleted deletes it.
        if new_meta.get('deletionTimestamp') and not new_meta.get('finalizers'):
            await self._purge(key, new)
        return copy.deepcopy(new)

    async def _purge(self, key: tuple[kmock.resource, str | None, str], last: dict[str, Any]) -> dict[str, Any]:
        """Delete the object for real; the caller holds the lock."""
        rv = self._next_resource_version()
        final = copy.deepcopy(last)
        final['metadata']['resourceVersion'] = str(rv)
        self._objects[key].delete()
        self._trim_history(key)
        await self._publish(_Change(rv, key[0], 'DELETED', final, None))
        return copy.deepcopy(final)

    def _next_resource_version(self) -> int:
        self._resource_version += 1
        return self._resource_version

    def _trim_history(self, key: tuple[kmock.resource, str | None, str]) -> None:
        history = self._objects[key].history
        if self.history_limit is not None and len(history) > self.history_limit:
            del history[:len(history) - self.history_limit]

    async def _publish(self, change: _Change) -> None:
        self._changes.append(change)
        while len(self._changes) > self.watch_log_size:
            self._evicted_up_to = self._changes.popleft().resource_version
        await self._buses[change.resource].put(change)

    def _record_write(self, request: kmock.Request, status: int) -> None:
        method = str(request.method.value).upper()
        resource = request.resource
        if method not in WRITE_METHODS or resource is None or resource.plural is None:
            return
        user_agent = next((v for k, v in request.headers.items() if k.lower() == 'user-agent'), '')
        record = WriteRecord(
            method=method, group=resource.group or '', version=resource.version or '',
            plural=resource.plural, subresource=request.subresource,
            namespace=request.namespace, name=request.name,
            status=status, user_agent=user_agent, timestamp=time.time(),
        )
        with self._writes_lock:
            self._writes.append(record)

    @staticmethod
    def _parse_selector(request: kmock.Request) -> ObjectSelector:
        try:
            return ObjectSelector.parse(request.params.get('labelSelector'), request.params.get('fieldSelector'))
        except SelectorError as e:
            raise api_error(400, 'BadRequest', f"unable to parse requirement: {e}") from e

    @staticmethod
    def _parse_since(request: kmock.Request) -> int | None:
        raw = request.params.get('resourceVersion')
        # "" and "0" mean "any version": start with the current state, as a real server does.
        if raw in (None, '', '0'):
            return None
        try:
            return int(raw)
        except ValueError:
            raise api_error(400, 'BadRequest', f"invalid resourceVersion: {raw!r}") from None

    @staticmethod
    def _parse_timeout(request: kmock.Request) -> float | None:
        raw = request.params.get('timeoutSeconds')
        if raw in (None, ''):
            return None
        try:
            return max(0.0, float(raw))
        except ValueError:
            raise api_error(400, 'BadRequest', f"invalid timeoutSeconds: {raw!r}") from None

    def _initial_events_end_bookmark(self, resource: kmock.resource) -> dict[str, Any]:
        return {'type': 'BOOKMARK', 'object': {
            'apiVersion': self.api_version_of(resource),
            'kind': self.kind_of(resource),
            'metadata': {
                'resourceVersion': str(self._resource_version),
                'annotations': {'k8s.io/initial-events-end': 'true'},
            },
        }}

    @staticmethod
    def _visible(obj: Mapping[str, Any], namespace: str | None, name: str | None, selector: ObjectSelector) -> bool:
        meta = obj.get('metadata') or {}
        if namespace is not None and meta.get('namespace') != namespace:
            return False
        if name is not None and meta.get('name') != name:
            return False
        return selector.matches(obj)


def _remove_by_identity(requests: list[kmock.Request], request: kmock.Request) -> None:
    # Search from the end: the request is usually among the latest (in-flight ones only).
    for index in range(len(requests) - 1, -1, -1):
        if requests[index] is request:
            del requests[index]
            return


_SECRETS: Final = kmock.resource('', 'v1', 'secrets')


def _apply_builtin_semantics(resource: kmock.resource, obj: dict[str, Any]) -> None:
    """The few server-side conversions of built-ins that clients can observe."""
    # Secrets: stringData is write-only sugar; the server stores it base64-encoded in data,
    # and readers (the operator included) only ever see data.
    if resource == _SECRETS and isinstance(obj.get('stringData'), Mapping):
        data = dict(obj.get('data') or {})
        for key, value in obj.pop('stringData').items():
            data[key] = base64.b64encode(str(value).encode('utf-8')).decode('ascii')
        obj['data'] = data


def _generation_fields(obj: Mapping[str, Any], has_status_subresource: bool) -> dict[str, Any]:
    """What a generation counts: everything but metadata (and status, if it is a subresource)."""
    return {
        key: value for key, value in obj.items()
        if key not in ('metadata', 'apiVersion', 'kind')
        if not (has_status_subresource and key == 'status')
    }


def _render_change(change: _Change, visible: Callable[[Mapping[str, Any]], bool]) -> dict[str, Any] | None:
    """
    Render a change for one watcher, as seen through its namespace and selectors.

    Like a real server, an object that starts matching a selector arrives as ADDED,
    and one that stops matching leaves as DELETED, so watchers' caches stay consistent.
    """
    now = visible(change.obj)
    if change.type != 'MODIFIED':
        return {'type': change.type, 'object': change.obj} if now else None
    before = change.old is not None and visible(change.old)
    if now and before:
        return {'type': 'MODIFIED', 'object': change.obj}
    if now:
        return {'type': 'ADDED', 'object': change.obj}
    if before:
        return {'type': 'DELETED', 'object': change.obj}
    return None


def make_emulator() -> RealisticEmulator:
    """An emulator that serves the built-in resources, kopf's peerings and our CRDs."""
    emulator = RealisticEmulator()
    # The built-ins (namespaces, events, secrets, …): without them kopf hangs after login.
    # kmock 0.8 reads them with a deprecated importlib API; that warning is not ours to fix.
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)
        emulator.resources.load_bundled()
    crd_verbs = {'list', 'watch', 'get', 'patch', 'create', 'delete', 'update'}
    emulator.resources['linepool.dev/v1alpha1/linepools'] = kmock.ResourceInfo(
        kind='LinePool', singular='linepool', namespaced=True, verbs=crd_verbs,
        subresources={'status'}, shortnames={'lp'})
    emulator.resources['linepool.dev/v1alpha1/messagingservers'] = kmock.ResourceInfo(
        kind='MessagingServer', singular='messagingserver', namespaced=True, verbs=crd_verbs,
        subresources={'status'}, shortnames={'msrv'})
    # kopf's own CRDs have no status subresource: kopf writes peers' status as plain fields.
    emulator.resources['kopf.dev/v1/kopfpeerings'] = kmock.ResourceInfo(
        kind='KopfPeering', singular='kopfpeering', namespaced=True, verbs=crd_verbs)
    emulator.resources['kopf.dev/v1/clusterkopfpeerings'] = kmock.ResourceInfo(
        kind='ClusterKopfPeering', singular='clusterkopfpeering', namespaced=False, verbs=crd_verbs)
    return emulator
