"""A small HTTP load generator for the placement bench: real requests over loopback.

It runs in its own process (so it does not share the service's interpreter lock), keeps
``concurrency`` keep-alive connections busy, and returns each request's status, latency and
answer line.
"""

import asyncio
import json
import multiprocessing
import time
from collections.abc import Sequence
from typing import Any

import aiohttp


async def _run(*, url: str, token: str, bodies: Sequence[dict[str, Any] | None], concurrency: int,
               method: str, paths: Sequence[str] | None) -> list[tuple[int, float, str | None]]:
    results: list[tuple[int, float, str | None]] = [(0, 0.0, None)] * len(bodies)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(len(bodies)):
        queue.put_nowait(index)
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        async def worker() -> None:
            while not queue.empty():
                index = queue.get_nowait()
                body = bodies[index]
                data = json.dumps(body).encode() if body is not None else None
                target = paths[index] if paths else url
                started = time.perf_counter()
                async with session.request(method, target, data=data) as response:
                    payload = await response.read()
                elapsed = time.perf_counter() - started
                line = None
                if response.status < 300:
                    line = json.loads(payload).get("line")
                results[index] = (response.status, elapsed, line)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results


def _child(connection: Any, kwargs: dict[str, Any]) -> None:
    started = time.perf_counter()
    results = asyncio.run(_run(**kwargs))
    connection.send((results, time.perf_counter() - started))
    connection.close()


Result = tuple[int, float, str | None]


def hammer(*, url: str, token: str, bodies: Sequence[dict[str, Any] | None], concurrency: int,
           method: str = "POST", paths: Sequence[str] | None = None) -> tuple[list[Result], float]:
    """Send every body (or GET every path); (status, seconds, line) per request, and the wall time."""
    context = multiprocessing.get_context("spawn")
    parent, child = context.Pipe()
    process = context.Process(target=_child, args=(child, {
        "url": url, "token": token, "bodies": list(bodies), "concurrency": concurrency, "method": method,
        "paths": list(paths) if paths else None}))
    process.start()
    while not parent.poll(1.0):
        if not process.is_alive():
            raise RuntimeError(f"the load generator exited with code {process.exitcode}")
    results, wall = parent.recv()
    process.join()
    return results, wall


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]
