"""
Serve the sandbox Kubernetes API over HTTP on 127.0.0.1, from a background thread.

This module owns the plumbing around :class:`~linepool.sandbox.emulator.RealisticEmulator`:
an event loop in its own thread, the HTTP listener, a kubeconfig for out-of-process
clients (``kopf run``, ``kubectl``), thread-safe helpers for the demo and the tests, and
a command line to run it standalone::

    python -m linepool.sandbox.apiserver --port 8001 --kubeconfig /tmp/sandbox.kubeconfig

The emulator itself (what the API does) lives in :mod:`linepool.sandbox.emulator`;
its public names are re-exported here.

We run aiohttp's low-level server directly rather than ``kmock.Server``: the latter
also monkey-patches aiohttp's host resolution process-wide, as a stack that must be
unwound in LIFO order. When two servers in one process stop out of order, its exit
raises before it closes its port. Nor can the graceful-shutdown wait (60 s by default in
aiohttp) be set through it; we keep it short and end open watch-streams ourselves.
"""
import argparse
import asyncio
import builtins
import concurrent.futures
import json
import logging
import pathlib
import signal
import sys
import threading
from collections.abc import Callable, Coroutine, Sequence
from types import EllipsisType, FrameType
from typing import Any, Self, TypeVar

import aiohttp.web
import kmock

from linepool.sandbox.emulator import RealisticEmulator, WriteRecord, make_emulator
from linepool.sandbox.lifecycle import Service

__all__ = ['ApiServerThread', 'RealisticEmulator', 'WriteRecord', 'main', 'make_emulator']

logger = logging.getLogger(__name__)

T = TypeVar('T')

SANDBOX_TOKEN = 'linepool-sandbox-token'  # the emulator accepts any credentials; clients want some


class ApiServerThread(Service):
    """
    The emulator behind a real HTTP port, with its own event loop in a daemon thread.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`. The helpers
    (:meth:`apply`, :meth:`get`, :meth:`list`, :meth:`delete`, …) may be called from any
    thread except the server's own: they hop onto the server's loop and change objects
    directly, with watch events, exactly as API requests would (but are not counted as
    API writes).
    """

    def __init__(
            self,
            emulator: RealisticEmulator | None = None,
            *,
            host: str = '127.0.0.1',
            port: int = 0,
            call_timeout: float = 10.0,
            namespaces: Sequence[str] = ('default',),
    ) -> None:
        super().__init__()
        self.emulator = emulator if emulator is not None else make_emulator()
        self.host = host
        self.call_timeout = call_timeout
        self.namespaces = tuple(namespaces)
        self._requested_port = port
        self._port: int | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None

    # ------------------------------------------------------------------------------------------
    # Lifecycle.

    def start(self, timeout: float = 10.0) -> Self:
        """Start serving; returns once the port is bound (so :attr:`url` is known)."""
        if self._thread is not None:
            raise RuntimeError("the API server thread has already been started")
        self._thread = threading.Thread(target=self._run, name='sandbox-apiserver', daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"the sandbox API server did not start within {timeout}s")
        if self._startup_error is not None:
            raise RuntimeError("the sandbox API server failed to start") from self._startup_error
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving: end the watch-streams, close the port, join the thread. Idempotent."""
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None or loop is None or stopping is None:
            return
        if thread.is_alive():
            loop.call_soon_threadsafe(stopping.set)
            thread.join(timeout)
            if thread.is_alive():
                raise TimeoutError(f"the sandbox API server did not stop within {timeout}s")


    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the sandbox API server is not started")
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as e:  # report it to start() rather than dying silently in a thread
            if not self._ready.is_set():
                self._startup_error = e
                self._ready.set()
            else:
                logger.exception("The sandbox API server crashed.")
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        # Entering the emulator starts kmock's background machinery (live streams, errors).
        async with self.emulator:
            # handler_cancellation: a client that hangs up cancels its watch-stream handler,
            # which releases the stream's position on the bus instead of buffering forever.
            server = aiohttp.web.Server(self.emulator, handler_cancellation=True)
            runner = aiohttp.web.ServerRunner(server, shutdown_timeout=1.0)
            await runner.setup()
            try:
                site = aiohttp.web.TCPSite(runner, self.host, self._requested_port, reuse_address=True)
                await site.start()
                sockets = getattr(site._server, 'sockets', None) or []
                self._port = int(sockets[0].getsockname()[1]) if sockets else self._requested_port
                # A real cluster comes with its namespaces; `kubectl get ns` should show them.
                namespaces = self.emulator.resolve('v1/namespaces')
                for name in self.namespaces:
                    if self.emulator.get_object(namespaces, None, name) is None:
                        await self.emulator.create_object(namespaces, None, {'metadata': {'name': name}})
                self._ready.set()
                await self._stopping.wait()
                # End the watch-streams first, so that the runner's graceful shutdown is quick.
                await self.emulator.shutdown()
            finally:
                await runner.cleanup()

    # ------------------------------------------------------------------------------------------
    # Client configuration.

    def write_kubeconfig(
            self,
            path: str | pathlib.Path,
            *,
            namespace: str = 'default',
            context: str = 'linepool-sandbox',
    ) -> pathlib.Path:
        """
        Write a kubeconfig for this server, for out-of-process clients (``KUBECONFIG=…``).

        It is written as JSON, which every YAML reader (kubectl, kopf, the client) accepts.
        """
        path = pathlib.Path(path)
        config = {
            'apiVersion': 'v1',
            'kind': 'Config',
            'clusters': [{'name': context, 'cluster': {'server': self.url}}],
            'users': [{'name': context, 'user': {'token': SANDBOX_TOKEN}}],
            'contexts': [{'name': context, 'context': {
                'cluster': context, 'user': context, 'namespace': namespace}}],
            'current-context': context,
            'preferences': {},
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(config, indent=2) + '\n', encoding='utf-8')
        return path

    # ------------------------------------------------------------------------------------------
    # Thread-safe helpers for the demo and the tests.

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the server's loop and wait for its result."""
        loop = self._loop
        if loop is None or self._thread is None or not self._thread.is_alive():
            coro.close()
            raise RuntimeError("the sandbox API server is not running")
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("the helpers would deadlock on the server's own thread; await the emulator")
        future: concurrent.futures.Future[T] = asyncio.run_coroutine_threadsafe(coro, loop)
        return future.result(self.call_timeout)

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """
        Create the object, or merge-patch its spec and metadata if it exists (like ``kubectl apply``).

        The resource is found by ``apiVersion`` and ``kind``; a namespaced object without
        a namespace goes to ``default``. Returns the stored object.
        """
        emulator = self.emulator
        resource = emulator.resolve_kind(obj['apiVersion'], obj['kind'])
        meta = obj.get('metadata') or {}
        namespace = (meta.get('namespace') or 'default') if emulator.is_namespaced(resource) else None
        name = meta.get('name')
        if name and emulator.get_object(resource, namespace, name) is not None:
            patch: dict[str, Any] = {
                key: value for key, value in obj.items()
                if key not in ('apiVersion', 'kind', 'metadata', 'status')
            }
            patch['metadata'] = {
                key: value for key, value in meta.items()
                if key in ('labels', 'annotations', 'finalizers', 'ownerReferences')
            }
            return self.call(emulator.patch_object(resource, namespace, name, patch))
        return self.call(emulator.create_object(resource, namespace, obj))

    def patch(
            self,
            plural: str,
            namespace: str | None,
            name: str,
            patch: dict[str, Any] | list[dict[str, Any]],
            *,
            subresource: str | None = None,
            content_type: str | None = None,
    ) -> dict[str, Any]:
        """Patch an object (merge patch for dicts, JSON patch for lists); ``subresource='status'`` too."""
        resource = self.emulator.resolve(plural)
        if content_type is None:
            content_type = 'application/json-patch+json' if isinstance(patch, list) else 'application/merge-patch+json'
        return self.call(self.emulator.patch_object(
            resource, namespace, name, patch, content_type=content_type, subresource=subresource))

    def patch_status(self, plural: str, namespace: str | None, name: str, status: dict[str, Any]) -> dict[str, Any]:
        """Merge-patch an object's status (as a controller would, via ``/status``)."""
        return self.patch(plural, namespace, name, {'status': status}, subresource='status')

    def get(self, plural: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        """The object, or ``None`` if it does not exist."""
        resource = self.emulator.resolve(plural)
        return self.call(_as_coroutine(lambda: self.emulator.get_object(resource, namespace, name)))

    def list(self, plural: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """All objects of a resource, in one namespace or (with ``None``) in all of them."""
        resource = self.emulator.resolve(plural)
        return self.call(_as_coroutine(lambda: self.emulator.list_objects(resource, namespace)))

    def delete(self, plural: str, namespace: str | None, name: str, *, missing_ok: bool = True) -> bool:
        """
        Delete an object, honouring finalizers; returns whether it existed.

        With finalizers, the object stays (marked for deletion) until they are removed.
        """
        resource = self.emulator.resolve(plural)
        try:
            self.call(self.emulator.delete_object(resource, namespace, name))
        except kmock.KubernetesError as e:
            if e.status == 404 and missing_ok:
                return False
            raise
        return True

    # Counters, for benchmarks: delegated to the emulator (they are thread-safe there).
    def write_count(
            self,
            resource_plural: str | None = None,
            *,
            subresource: str | EllipsisType | None = ...,
            method: str | None = None,
            successful_only: bool = False,
    ) -> int:
        """API writes over HTTP; see :meth:`RealisticEmulator.write_count`."""
        return self.emulator.write_count(
            resource_plural, subresource=subresource, method=method, successful_only=successful_only)

    # NB: builtins.list, because the list() helper above shadows it in the class body.
    def write_log(self) -> builtins.list[WriteRecord]:
        return self.emulator.write_log()

    def reset_counters(self) -> None:
        self.emulator.reset_counters()


async def _as_coroutine(fn: Callable[[], T]) -> T:
    """Run a plain function on the server's loop: reads then see a state between writes."""
    return fn()


# ------------------------------------------------------------------------------------------------
# Command line.

def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog='python -m linepool.sandbox.apiserver',
        description="Run the sandbox Kubernetes API server on 127.0.0.1 until SIGTERM/SIGINT.",
    )
    parser.add_argument('--port', type=int, default=0, help="the port to listen on (default: a free one)")
    parser.add_argument('--kubeconfig', type=pathlib.Path, help="write a kubeconfig for this server here")
    parser.add_argument('--namespace', default='default', help="the kubeconfig's default namespace")
    parser.add_argument('--verbose', action='store_true', help="log every request")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format='%(asctime)s %(levelname)s %(name)s: %(message)s')

    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    server = ApiServerThread(port=args.port).start()
    try:
        if args.kubeconfig is not None:
            server.write_kubeconfig(args.kubeconfig, namespace=args.namespace)
        # One line on stdout, flushed: a parent process waits for it to know the URL.
        print(f"sandbox API server listening on {server.url}", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
    return 0


if __name__ == '__main__':
    sys.exit(main())
