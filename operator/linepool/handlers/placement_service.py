"""``linepool serve``: the placement service's process, from its flags to a running HTTP server.

It wires the adapters together (the pool watch, the store, the access check), hands them to the
routes in ``placement_api``, and runs them with uvicorn. The store is opened (and migrated) in
the background until it answers, so the process starts, and reports not-ready, while its
database is still coming up; the pools are watched from the first second.
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime

import uvicorn
from fastapi import FastAPI

from linepool.adapters.access import Access, KubernetesAccess, TokenFileAccess
from linepool.adapters.kubernetes import load_api_client
from linepool.adapters.placement_store import PlacementStore, StoreUnavailable, open_store
from linepool.adapters.pool_watch import PoolWatch
from linepool.handlers.placement_api import LOG_RETENTION, Service, Telemetry, create_app, utc_now

log = logging.getLogger(__name__)

STORE_RETRY_SECONDS = 2.0
PRUNE_EVERY_SECONDS = 3600.0


@dataclass(frozen=True)
class ServeOptions:
    listen: str
    database: str
    token_file: str | None
    namespaces: tuple[str, ...]
    public_url: str | None
    log_level: str = "info"


def parse_listen(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8080`` for IPv6) into its parts; ``ValueError`` names the flag."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--listen {text!r}: expected HOST:PORT, e.g. 127.0.0.1:8080")
    return host.strip("[]") or "0.0.0.0", int(port)


def build_service(*, options: ServeOptions, clock: Callable[[], datetime] = utc_now) -> Service:
    """The adapters a service needs, from its options; raises ``ValueError`` for a bad flag."""
    host, port = parse_listen(options.listen)
    store = open_store(options.database)
    api_client = load_api_client()
    access: Access = (TokenFileAccess(path=options.token_file) if options.token_file
                      else KubernetesAccess(api_client=api_client))
    public = (options.public_url or f"http://{'127.0.0.1' if host in {'0.0.0.0', '::'} else host}:{port}").rstrip("/")
    watch = PoolWatch(api_client=api_client, namespaces=options.namespaces)
    return Service(store=store, watch=watch, access=access, public_url=public, telemetry=Telemetry.create(),
                   clock=clock)


async def _open_store(service: Service) -> None:
    """Open and migrate the store, retrying until the database answers."""
    while True:
        try:
            await service.store.open()
        except StoreUnavailable as exc:
            service.telemetry.store_errors.inc()
            log.warning("placement store not reachable yet (%s); retrying in %.0fs", exc, STORE_RETRY_SECONDS)
            await asyncio.sleep(STORE_RETRY_SECONDS)
            continue
        service.store_ready = True
        log.info("placement store open")
        return


async def _prune(store: PlacementStore, clock: Callable[[], datetime]) -> None:
    while True:
        await asyncio.sleep(PRUNE_EVERY_SECONDS)
        with contextlib.suppress(StoreUnavailable):
            await store.prune(before=clock() - LOG_RETENTION)


def application(service: Service) -> FastAPI:
    """The app with its lifespan: watch the pools, open the store, prune the budget log hourly."""
    app = create_app(service)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        service.watch.start()
        tasks = [asyncio.create_task(_open_store(service)), asyncio.create_task(_prune(service.store, service.clock))]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            service.watch.stop()
            await service.store.close()

    app.router.lifespan_context = lifespan
    return app


def serve(*, service: Service, options: ServeOptions) -> int:
    host, port = parse_listen(options.listen)
    log.info("placement service on %s:%d, store %s, auth %s, public URL %s", host, port,
             type(service.store).__name__, type(service.access).__name__, service.public_url)
    config = uvicorn.Config(application(service), host=host, port=port, log_level=options.log_level,
                            access_log=False, loop="uvloop", http="httptools", lifespan="on",
                            server_header=False, timeout_graceful_shutdown=10)
    uvicorn.Server(config).run()
    return 0
