"""The placement service's figures: real HTTP over loopback, against the real ``linepool serve``.

The service watches a pool of 1,000 servers x 10 lines on a genuine kube-apiserver (status as
the operator writes it), with 100,000 users already placed (two days ago, so they are out of
today's budgets). A load generator in its own process then sends:

1. new placements (new users), and
2. sticky look-ups (known users asking again),

first on SQLite, then on a real PostgreSQL. Last, 64 concurrent clients hammer a small pool
whose budgets run out, with users sent more than once at the same time; every answer and the
store are checked: lines over budget and users with two lines must both be 0.
"""

import pathlib
import sqlite3
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from bench.load import hammer, percentile
from linepool.sandbox.kubeapi import KubeApiServer
from linepool.sandbox.placement import PlacementProcess
from linepool.sandbox.postgres import PostgresServer

NAMESPACE = "bench-placement"
TOKEN = "bench-token"
GV = "linepool.dev/v1alpha1"
SERVERS, LINES = 1000, 10
PLACED = 100_000
NEW_USERS = 10_000
LOOKUPS = 20_000
# Closed-loop clients. More connections raise the rate a little and the latency a lot (each waits
# behind the others on one event loop); 4 keep the service busy on this 2-core machine.
CONCURRENCY = 4


def _line(server: int, index: int) -> str:
    return f"+1555{server:04d}{index:03d}"


def _pool(kube: KubeApiServer, name: str, *, servers: int, lines: int, quota: int) -> None:
    kube.apply({"apiVersion": GV, "kind": "LinePool", "metadata": {"name": name, "namespace": NAMESPACE},
                "spec": {"quotas": {"newConversationsPerLinePerDay": quota},
                         "scaling": {"mode": "Off", "minServers": 0, "maxServers": 1000},
                         "metrics": {"prometheusURL": "http://127.0.0.1:9/", "pollInterval": "30s"}}})
    kube.patch_status("linepools", NAMESPACE, name, {"conditions": [{
        "type": "MetricsAvailable", "status": "True", "reason": "MetricsOK", "message": "bench",
        "lastTransitionTime": "2026-12-01T00:00:00Z"}]})
    for number in range(servers):
        server = f"{name}-s{number:04d}"
        ids = [_line(number, index) for index in range(lines)]
        kube.apply({"apiVersion": GV, "kind": "MessagingServer", "metadata": {"name": server, "namespace": NAMESPACE},
                    "spec": {"pool": name, "endpoint": f"http://{server}.relay:8080",
                             "credentialsSecretRef": {"name": "relay", "key": "token"},
                             "lines": [{"id": line} for line in ids]}})
        kube.patch_status("messagingservers", NAMESPACE, server, {"lines": [
            {"id": line, "state": "Active", "assignable": True, "newConversationsInWindow": 0} for line in ids]})


def _placed_rows(pool: str) -> Iterator[tuple[Any, ...]]:
    stamp = (datetime.now(UTC) - timedelta(days=2)).timestamp()
    for number in range(PLACED):
        line = _line(number % SERVERS, (number // SERVERS) % LINES)
        yield (NAMESPACE, pool, f"old-{number}", line, f"{pool}-s{number % SERVERS:04d}", stamp, f"c{number}", "Hey!")


INSERT = ("INSERT INTO placements (namespace, pool, user_id, line, server, placed_at, code, first_message) "
          "VALUES ({0}, {0}, {0}, {0}, {0}, {0}, {0}, {0})")


def _prefill(database: str, pool: str) -> None:
    rows = list(_placed_rows(pool))
    if database.startswith("sqlite:///"):
        with sqlite3.connect(database.removeprefix("sqlite:///")) as db:
            db.executemany(INSERT.format("?"), rows)
    else:
        with psycopg.connect(database) as db, db.cursor() as cursor:
            cursor.executemany(INSERT.format("%s"), rows)
        # What a DBA does after a bulk load: fresh statistics for the planner.
        with psycopg.connect(database, autocommit=True) as db:
            db.execute("ANALYZE")


def _figures(results: list[tuple[int, float, str | None]], wall: float) -> dict[str, float]:
    latencies = [seconds for _, seconds, _ in results]
    return {"rate": len(results) / wall, "p50_ms": percentile(latencies, 0.5) * 1000,
            "p99_ms": percentile(latencies, 0.99) * 1000,
            "errors": sum(1 for status, _, _ in results if status >= 300)}


@contextmanager
def _service(kube: KubeApiServer, workdir: pathlib.Path, database: str, name: str) -> Iterator[PlacementProcess]:
    tokens = workdir / "tokens"
    tokens.write_text(TOKEN + "\n")
    with PlacementProcess(kubeconfig=kube.write_kubeconfig(workdir / "kubeconfig"), database=database,
                          log_path=workdir / f"serve-{name}.log", token_file=tokens, namespaces=[NAMESPACE]) as service:
        service.wait_ready(60)
        yield service


def throughput(kube: KubeApiServer, workdir: pathlib.Path, database: str, name: str, pool: str) -> dict[str, Any]:
    with _service(kube, workdir, database, name) as service:
        _prefill(database, pool)
        url = f"{service.url}/v1/namespaces/{NAMESPACE}/linepools/{pool}/placements"
        # Warm the pool's view (10,000 lines) and the connections before measuring.
        hammer(url=url, token=TOKEN, bodies=[{"user": f"warm-{name}-{n}"} for n in range(200)], concurrency=CONCURRENCY)
        new, wall = hammer(url=url, token=TOKEN, bodies=[{"user": f"new-{name}-{n}"} for n in range(NEW_USERS)],
                           concurrency=CONCURRENCY)
        sticky, sticky_wall = hammer(url=url, token=TOKEN, concurrency=CONCURRENCY,
                                     bodies=[{"user": f"old-{(n * 7919) % PLACED}"} for n in range(LOOKUPS)])
        created = sum(1 for status, _, _ in new if status == 201)
        known = sum(1 for status, _, _ in sticky if status == 200)
        return {"new": _figures(new, wall), "sticky": _figures(sticky, sticky_wall), "created": created,
                "known": known}


def contention(kube: KubeApiServer, workdir: pathlib.Path, database: str, name: str) -> dict[str, int]:
    """64 clients, a 4 x 5-line pool with 10 new users per line per day: 200 places for 600 users."""
    pool = f"contended-{name}"
    _pool(kube, pool, servers=4, lines=5, quota=10)
    with _service(kube, workdir, database, f"contended-{name}") as service:
        url = f"{service.url}/v1/namespaces/{NAMESPACE}/linepools/{pool}/placements"
        # Every user is sent three times, the copies far apart in the queue and at once in flight.
        bodies = [{"user": f"u{n % 600}"} for n in range(1800)]
        results, _ = hammer(url=url, token=TOKEN, bodies=bodies, concurrency=64)
        lines_of: dict[str, set[str]] = defaultdict(set)
        for body, (_, _, line) in zip(bodies, results, strict=True):
            if line:
                lines_of[body["user"]].add(line)
        status, _, summary = service.request("GET", f"/v1/namespaces/{NAMESPACE}/linepools/{pool}/placements:summary",
                                             token=TOKEN)
        assert status == 200, summary
        over = sum(1 for line in summary["lines"]
                   if line["newUsersToday"] > line["budget"] - line["observedNewConversations"])
        return {"placed": summary["users"], "refused": sum(1 for s, _, _ in results if s == 503),
                "over_budget": over, "two_lines": sum(1 for lines in lines_of.values() if len(lines) > 1)}


def measure(workdir: pathlib.Path) -> dict[str, Any]:
    figures: dict[str, Any] = {}
    with KubeApiServer() as kube:
        kube.apply_manifests(sorted(pathlib.Path("crds").glob("*.yaml")))
        kube.create_namespace(NAMESPACE)
        started = time.monotonic()
        _pool(kube, "big-sqlite", servers=SERVERS, lines=LINES, quota=50)
        _pool(kube, "big-postgres", servers=SERVERS, lines=LINES, quota=50)
        figures["setup_s"] = time.monotonic() - started
        sqlite_url = f"sqlite:///{workdir}/placements.db"
        figures["sqlite"] = throughput(kube, workdir, sqlite_url, "sqlite", "big-sqlite")
        figures["sqlite"]["contention"] = contention(kube, workdir, f"sqlite:///{workdir}/contended.db", "sqlite")
        with PostgresServer() as postgres:
            figures["postgres"] = throughput(kube, workdir, postgres.create_database("bench"), "postgres",
                                             "big-postgres")
            figures["postgres"]["contention"] = contention(kube, workdir, postgres.create_database("contended"),
                                                           "postgres")
    return figures


def report(figures: dict[str, Any]) -> None:
    print(f"\nPlacement service ({SERVERS * LINES:,} lines, {PLACED:,} users already placed, "
          f"{CONCURRENCY} connections, real HTTP on loopback; set-up {figures['setup_s']:.0f} s)")
    targets = {"new": (1000, 10.0), "sticky": (3000, 5.0)}
    for store in ("sqlite", "postgres"):
        for kind, label in (("new", "new placements"), ("sticky", "sticky look-ups")):
            row = figures[store][kind]
            rate, p99 = targets[kind]
            mark = "" if store == "postgres" else (
                "  (target >= {:,}/s, p99 <= {} ms: {})".format(
                    rate, p99, "met" if row["rate"] >= rate and row["p99_ms"] <= p99 else "MISSED"))
            print(f"  {store:<8} {label:<16} {row['rate']:>7,.0f}/s  p50 {row['p50_ms']:5.2f} ms  "
                  f"p99 {row['p99_ms']:6.2f} ms  errors {row['errors']}{mark}")
        contended = figures[store]["contention"]
        print(f"  {store:<8} 64 clients, 1,800 requests for 600 users, 200 places: {contended['placed']} placed, "
              f"{contended['refused']} refused (PoolFull), lines over budget {contended['over_budget']}, "
              f"users with two lines {contended['two_lines']}")


def main() -> int:
    import tempfile

    with tempfile.TemporaryDirectory(prefix="linepool-bench-placement-") as workdir:
        report(measure(pathlib.Path(workdir)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
