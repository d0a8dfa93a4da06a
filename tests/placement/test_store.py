"""The placement store against real databases: SQLite files and a real PostgreSQL server.

Every test runs on both, with an explicit clock (``now``), and checks what an app would notice:
which line a user gets, that it sticks, that no line passes its daily budget, that moves keep the
user's short link, and that nothing acknowledged is ever lost: not under 64 concurrent requests,
not with the database down, not when the process is SIGKILLed.
"""

import asyncio
import os
import pathlib
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from linepool.adapters.placement_store import (
    PlacementStore,
    PlaceOutcome,
    PostgresStore,
    SqliteStore,
    StoreUnavailable,
    open_store,
)
from linepool.logic.placement import PoolFacts, window_start
from linepool.sandbox.postgres import PostgresServer
from tests.placement.builders import NAMESPACE, POOL, facts, grid, linepool, server

REPO = pathlib.Path(__file__).resolve().parents[2]
DAY1 = datetime(2026, 6, 15, 9, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> str:
    """The URL of an empty database: a SQLite file, or a PostgreSQL database of this test's own."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/placements.db"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
async def store(database: str) -> AsyncIterator[PlacementStore]:
    opened = open_store(database)
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()


async def place(store: PlacementStore, pool: PoolFacts, user: str, now: datetime = DAY1,
                first_message: str | None = None) -> PlaceOutcome:
    assert pool.spec is not None
    return await store.place(facts=pool, user=user, first_message=first_message, now=now,
                             since=window_start(spec=pool.spec, now=now))


async def counts(store: PlacementStore, pool: PoolFacts, now: datetime = DAY1) -> dict[str, int]:
    """Placements per line in the budget window at ``now``."""
    assert pool.spec is not None
    return await store.window_counts(namespace=NAMESPACE, pool=POOL, since=window_start(spec=pool.spec, now=now))


async def users(store: PlacementStore) -> dict[str, int]:
    return await store.users_per_line(namespace=NAMESPACE, pool=POOL)


def line_of(outcome: PlaceOutcome) -> str | None:
    return outcome.placement.line if outcome.placement else None


# --- round-robin and stickiness ------------------------------------------------------------------------


async def test_new_users_take_the_lines_in_turn(store: PlacementStore) -> None:
    pool = facts(None, server("a", ["a1", "a2"]), server("b", ["b1", "b2"]))
    outcomes = [await place(store, pool, f"u{i}") for i in range(6)]
    assert [line_of(o) for o in outcomes] == ["a1", "b1", "a2", "b2", "a1", "b1"]
    assert all(o.created and o.previous is None for o in outcomes)
    assert [o.placement.server for o in outcomes if o.placement] == ["a", "b", "a", "b", "a", "b"]
    assert await users(store) == {"a1": 2, "b1": 2, "a2": 1, "b2": 1}
    assert await counts(store, pool) == {"a1": 2, "b1": 2, "a2": 1, "b2": 1}


async def test_a_known_user_keeps_their_placement_and_uses_no_budget(store: PlacementStore) -> None:
    pool = facts(None, server("a", ["a1"]), server("b", ["b1"]))
    first = await place(store, pool, "ana", first_message="Hi Ana here")
    await place(store, pool, "bob")
    before = (await counts(store, pool), await users(store))
    again = await place(store, pool, "ana", now=DAY1 + timedelta(hours=3))
    assert again.created is False
    assert again.previous is None
    assert again.placement == first.placement  # same line, code, placedAt and opener
    assert first.placement is not None and first.placement.first_message == "Hi Ana here"
    assert await store.get(namespace=NAMESPACE, pool=POOL, user="ana") == first.placement
    assert await store.by_code(code=first.placement.code) == first.placement
    assert (await counts(store, pool), await users(store)) == before
    # The round-robin did not move for a known user: the next new user goes on as if ana never asked.
    assert line_of(await place(store, pool, "cy")) == "a1"


async def test_a_new_users_opener_defaults_to_the_pools(store: PlacementStore) -> None:
    pool = facts(linepool(first_message="Hello from Acme"), server("a", ["a1"]))
    outcome = await place(store, pool, "ana")
    assert outcome.placement is not None and outcome.placement.first_message == "Hello from Acme"


async def test_users_are_kept_apart_by_pool_and_namespace(store: PlacementStore) -> None:
    support = facts(None, server("a", ["a1"]))
    sales = facts(linepool("sales"), server("s", ["s1"], pool="sales"))
    other_namespace = facts(linepool(namespace="other"), server("o", ["o1"], namespace="other"))
    lines = [line_of(await place(store, pool, "ana")) for pool in (support, sales, other_namespace)]
    assert lines == ["a1", "s1", "o1"]
    assert await store.get(namespace="other", pool=POOL, user="ana") is not None
    assert await store.get(namespace=NAMESPACE, pool="sales", user="ana") is not None
    assert await users(store) == {"a1": 1}


async def test_fallback_lines_take_new_users_only_when_no_primary_line_has_room(store: PlacementStore) -> None:
    pool = facts(linepool(quota=2), server("a", ["a1", "af"], fallback={"af"}), server("b", ["b1"]))
    placed = [line_of(await place(store, pool, f"u{i}")) for i in range(7)]
    assert placed == ["a1", "b1", "a1", "b1", "af", "af", None]


# --- budgets -------------------------------------------------------------------------------------------


async def test_a_line_takes_its_quota_less_what_prometheus_counted(store: PlacementStore) -> None:
    pool = facts(linepool(quota=3), server("a", ["a1"], observed={"a1": 1}), server("b", ["b1"]))
    placed = [line_of(await place(store, pool, f"u{i}")) for i in range(5)]
    assert placed == ["a1", "b1", "a1", "b1", "b1"]  # a1 after 2 placements: 1 counted + 2 = 3
    assert await counts(store, pool) == {"a1": 2, "b1": 3}


async def test_a_full_pool_places_nobody_and_writes_nothing(store: PlacementStore) -> None:
    pool = facts(linepool(quota=2), server("a", ["a1", "a2"], observed={"a2": 1}))
    placed = [line_of(await place(store, pool, f"u{i}")) for i in range(3)]
    assert sorted(filter(None, placed)) == ["a1", "a1", "a2"]
    before = (await counts(store, pool), await users(store))
    refused = await place(store, pool, "late")
    assert refused.placement is None
    assert refused.previous is None
    assert await store.get(namespace=NAMESPACE, pool=POOL, user="late") is None
    assert (await counts(store, pool), await users(store)) == before == ({"a1": 2, "a2": 1}, {"a1": 2, "a2": 1})


@pytest.mark.parametrize(("window", "later", "fresh"), [
    ("Rolling24h", timedelta(hours=25), True),
    ("Rolling24h", timedelta(hours=23), False),
    ("CalendarDay", timedelta(hours=15, minutes=30), True),  # 00:30 the next day (UTC)
    ("CalendarDay", timedelta(hours=14, minutes=30), False),  # 23:30 the same day
])
async def test_placements_before_the_window_no_longer_count(store: PlacementStore, window: str, later: timedelta,
                                                            fresh: bool) -> None:
    pool = facts(linepool(quota=2, window=window), server("a", ["a1"]))
    assert [line_of(await place(store, pool, f"u{i}")) for i in range(3)] == ["a1", "a1", None]
    then = DAY1 + later
    outcome = await place(store, pool, "next", now=then)
    if fresh:
        assert line_of(outcome) == "a1"
        assert await counts(store, pool, now=then) == {"a1": 1}
    else:
        assert outcome.placement is None
        assert await counts(store, pool, now=then) == {"a1": 2}
    assert await users(store) == {"a1": 3 if fresh else 2}


async def test_a_full_line_is_offered_again_once_prometheus_counts_less(store: PlacementStore) -> None:
    # New status from the operator (a line's window slid past old conversations) gives it room at once.
    busy = facts(linepool(quota=3), server("a", ["a1"], observed={"a1": 2}))
    assert [line_of(await place(store, busy, f"u{i}")) for i in range(2)] == ["a1", None]
    quiet = facts(linepool(quota=3), server("a", ["a1"], observed={"a1": 0}))
    assert line_of(await place(store, quiet, "u9")) == "a1"
    assert line_of(await place(store, quiet, "u10")) == "a1"
    assert (await place(store, quiet, "u11")).placement is None


# --- moves ---------------------------------------------------------------------------------------------


MOVES = {
    "flagged": [server("a", ["a1"], state={"a1": "Flagged"}), server("b", ["b1"])],
    "deactivated": [server("a", ["a1"], state={"a1": "Deactivated"}), server("b", ["b1"])],
    "server-gone": [server("b", ["b1"])],
    "left-pool": [server("a", ["a2"]), server("b", ["b1"])],
}
STAYS = {
    "at-risk": [server("a", ["a1"], state={"a1": "AtRisk"}), server("b", ["b1"])],
    "saturated-server": [server("a", ["a1"], assignable={"a1": False}), server("b", ["b1"])],
    "unmeasured": [server("a", ["a1"], reported=False), server("b", ["b1"])],
    "at-quota": [server("a", ["a1"], observed={"a1": 3}), server("b", ["b1"])],
}


@pytest.mark.parametrize("case", MOVES)
async def test_a_user_whose_line_is_lost_moves_and_keeps_their_link(store: PlacementStore, case: str) -> None:
    before = facts(linepool(quota=3), server("a", ["a1"]), server("b", ["b1"]))
    ana = (await place(store, before, "ana", first_message="Hi it's Ana")).placement
    assert ana is not None and ana.line == "a1"
    after = facts(linepool(quota=3), *MOVES[case])
    later = DAY1 + timedelta(hours=1)
    moved = await place(store, after, "ana", now=later)
    assert moved.placement is not None
    assert (moved.placement.line, moved.placement.server) == ("b1", "b")
    assert moved.created is False
    assert moved.previous == ana
    assert moved.placement.code == ana.code  # an old QR code leads to the new line
    assert moved.placement.first_message == "Hi it's Ana"
    assert moved.placement.placed_at == later
    assert await store.get(namespace=NAMESPACE, pool=POOL, user="ana") == moved.placement
    assert await store.by_code(code=ana.code) == moved.placement
    assert await users(store) == {"b1": 1}
    assert await counts(store, after, now=later) == {"a1": 1, "b1": 1}
    # Asked again, they stay where they are now.
    again = await place(store, after, "ana", now=later)
    assert (again.placement, again.created, again.previous) == (moved.placement, False, None)


async def test_a_move_counts_toward_the_new_lines_budget(store: PlacementStore) -> None:
    before = facts(linepool(quota=2), server("a", ["a1"]), server("b", ["b1"]))
    assert [line_of(await place(store, before, u)) for u in ("ana", "bob")] == ["a1", "b1"]
    after = facts(linepool(quota=2), server("a", ["a1"], state={"a1": "Flagged"}), server("b", ["b1"]))
    assert line_of(await place(store, after, "ana")) == "b1"
    assert (await place(store, after, "cy")).placement is None  # b1: bob and ana, 2 of 2
    assert await counts(store, after) == {"a1": 1, "b1": 2}


async def test_a_user_who_must_move_to_a_full_pool_keeps_their_placement_stored(store: PlacementStore) -> None:
    before = facts(linepool(quota=1), server("a", ["a1"]), server("b", ["b1"]))
    ana = (await place(store, before, "ana")).placement
    await place(store, before, "bob")
    after = facts(linepool(quota=1), server("a", ["a1"], state={"a1": "Flagged"}), server("b", ["b1"]))
    refused = await place(store, after, "ana")
    assert refused.placement is None
    assert refused.previous == ana
    assert await store.get(namespace=NAMESPACE, pool=POOL, user="ana") == ana  # nothing lost; retried later


@pytest.mark.parametrize("case", STAYS)
async def test_a_user_on_a_line_that_only_stopped_taking_new_users_keeps_it(store: PlacementStore,
                                                                             case: str) -> None:
    before = facts(linepool(quota=3), server("a", ["a1"]), server("b", ["b1"]))
    ana = (await place(store, before, "ana")).placement
    after = facts(linepool(quota=3), *STAYS[case])
    assert "a1" not in after.order  # new users avoid it...
    stays = await place(store, after, "ana", now=DAY1 + timedelta(hours=1))
    assert (stays.placement, stays.created, stays.previous) == (ana, False, None)  # ...its users keep it
    assert await counts(store, after) == {"a1": 1}
    assert line_of(await place(store, after, "bob")) == "b1"


# --- release -------------------------------------------------------------------------------------------


async def test_a_released_user_is_forgotten_but_still_counts_today(store: PlacementStore) -> None:
    pool = facts(linepool(quota=2), server("a", ["a1"]))
    ana = (await place(store, pool, "ana")).placement
    assert await store.release(namespace=NAMESPACE, pool=POOL, user="ana") == ana
    assert await store.get(namespace=NAMESPACE, pool=POOL, user="ana") is None
    assert ana is not None and await store.by_code(code=ana.code) is None
    assert await users(store) == {}
    assert await counts(store, pool) == {"a1": 1}
    assert await store.release(namespace=NAMESPACE, pool=POOL, user="ana") is None
    # Placed again, ana is a new user on today's budget: one slot left, then none.
    again = await place(store, pool, "ana")
    assert again.created is True and line_of(again) == "a1"
    assert (await place(store, pool, "bob")).placement is None


# --- concurrency ---------------------------------------------------------------------------------------


async def _hammer(instances: list[PlacementStore]) -> None:
    """64 tasks place 300 users (each asked for 3 times, in random order) on 4 lines of 20 each."""
    pool = facts(linepool(quota=20), *grid(2, 2))
    requests = [f"u{i}" for i in range(300)] * 3
    random.Random(7).shuffle(requests)
    answers: dict[str, set[str | None]] = {}

    async def worker(number: int) -> None:
        mine = instances[number % len(instances)]
        while requests:
            user = requests.pop()
            outcome = await place(mine, pool, user)
            answers.setdefault(user, set()).add(line_of(outcome))

    await asyncio.gather(*(worker(n) for n in range(64)))
    placed = {user: lines - {None} for user, lines in answers.items() if lines - {None}}
    assert len(placed) == 80
    assert all(len(lines) == 1 for lines in placed.values()), "a user got two lines"
    window = await counts(instances[0], pool)
    assert window == {line: 20 for line in pool.order}
    assert await users(instances[0]) == window
    for user, lines in placed.items():
        stored = await instances[-1].get(namespace=NAMESPACE, pool=POOL, user=user)
        assert stored is not None and {stored.line} == lines


async def test_concurrent_requests_never_overshoot_a_budget(store: PlacementStore) -> None:
    await _hammer([store])


async def test_two_replicas_on_one_postgresql_never_overshoot_a_budget(postgres_url: str) -> None:
    replicas = [open_store(postgres_url), open_store(postgres_url)]
    try:
        await asyncio.gather(*(replica.open() for replica in replicas))
        await _hammer(replicas)
    finally:
        for replica in replicas:
            await replica.close()


async def test_two_sqlite_stores_on_one_file_never_overshoot_a_budget(tmp_path: pathlib.Path) -> None:
    # One replica only, but a restart overlapping the old process is two writers on one file.
    replicas = [open_store(f"sqlite:///{tmp_path}/p.db"), open_store(f"sqlite:///{tmp_path}/p.db")]
    try:
        for replica in replicas:
            await replica.open()
        await _hammer(replicas)
    finally:
        for replica in replicas:
            await replica.close()


# --- migrations ----------------------------------------------------------------------------------------


async def _migrations(store: PlacementStore) -> list[tuple[int, int]]:
    async with store.transaction(write=False) as tx:
        rows = await tx.all("SELECT version, count(*) FROM schema_migrations GROUP BY version ORDER BY version")
    return [(int(version), int(count)) for version, count in rows]


async def test_migrations_run_once_and_keep_the_data(database: str) -> None:
    pool = facts(None, server("a", ["a1"]))
    first = open_store(database)
    await first.open()
    ana = (await place(first, pool, "ana")).placement
    await first.close()
    for _ in range(2):
        again = open_store(database)
        await again.open()
        try:
            assert await again.get(namespace=NAMESPACE, pool=POOL, user="ana") == ana
            assert await _migrations(again) == [(1, 1)]
        finally:
            await again.close()


async def test_replicas_starting_together_migrate_once(postgres_url: str) -> None:
    replicas = [open_store(postgres_url) for _ in range(3)]
    try:
        await asyncio.gather(*(replica.open() for replica in replicas))
        assert await _migrations(replicas[0]) == [(1, 1)]
    finally:
        for replica in replicas:
            await replica.close()


# --- an unreachable database ---------------------------------------------------------------------------


async def _unavailable_quickly(call: Any) -> None:
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as caught:
        await asyncio.wait_for(call, timeout=30)
    assert time.monotonic() - started < 8
    assert "PostgreSQL at 127.0.0.1" in str(caught.value)


async def test_a_halted_postgresql_is_store_unavailable_until_it_returns(postgres: PostgresServer,
                                                                          postgres_url: str) -> None:
    pool = facts(None, server("a", ["a1"]), server("b", ["b1"]))
    store = open_store(postgres_url)
    await store.open()
    try:
        ana = (await place(store, pool, "ana")).placement
        postgres.halt()
        try:
            await _unavailable_quickly(place(store, pool, "bob"))
            await _unavailable_quickly(store.get(namespace=NAMESPACE, pool=POOL, user="ana"))
            await _unavailable_quickly(place(store, pool, "ana"))
            await _unavailable_quickly(store.ping())
        finally:
            postgres.start()
        deadline = time.monotonic() + 20
        while True:  # the same instance reconnects on its own
            try:
                await store.ping()
                break
            except StoreUnavailable:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
        assert await store.get(namespace=NAMESPACE, pool=POOL, user="ana") == ana
        bob = await place(store, pool, "bob")
        assert bob.created and line_of(bob) == "b1"
    finally:
        if not postgres.running:
            postgres.start()
        await store.close()


async def test_opening_an_unreachable_postgresql_is_store_unavailable(postgres: PostgresServer) -> None:
    store = open_store(postgres.database_url("no_such_database"))
    try:
        with pytest.raises(StoreUnavailable, match="no_such_database"):
            await asyncio.wait_for(store.open(), timeout=30)
    finally:
        await store.close()


@pytest.mark.parametrize("where", ["under-a-file", "a-directory"])
async def test_a_sqlite_file_that_cannot_be_created_is_store_unavailable(tmp_path: pathlib.Path,
                                                                         where: str) -> None:
    (tmp_path / "plain-file").write_text("not a directory\n")
    path = tmp_path / "plain-file" / "sub" / "p.db" if where == "under-a-file" else tmp_path
    store = open_store(f"sqlite:///{path}")
    with pytest.raises(StoreUnavailable, match=str(path)):
        await store.open()
    await store.close()


async def test_an_unopened_or_closed_sqlite_store_is_store_unavailable(tmp_path: pathlib.Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/p.db")
    pool = facts(None, server("a", ["a1"]))
    with pytest.raises(StoreUnavailable):
        await place(store, pool, "ana")
    await store.open()
    await place(store, pool, "ana")
    await store.close()
    with pytest.raises(StoreUnavailable):
        await store.get(namespace=NAMESPACE, pool=POOL, user="ana")


# --- the --database URL ----------------------------------------------------------------------------------


async def test_a_relative_sqlite_url_is_relative_to_the_working_directory(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store("sqlite:///rel.db")
    assert isinstance(store, SqliteStore)
    await store.open()
    await store.close()
    assert (tmp_path / "rel.db").is_file()


@pytest.mark.parametrize(("query", "level"), [("", 1), ("?synchronous=full", 2), ("?synchronous=NORMAL", 1),
                                              ("?synchronous=extra", 3)])
async def test_an_absolute_sqlite_url_and_its_synchronous_setting(tmp_path: pathlib.Path, query: str,
                                                                  level: int) -> None:
    path = tmp_path / "nested" / "abs.db"
    store = open_store(f"sqlite:///{path}{query}")  # sqlite:////tmp/...: four slashes
    await store.open()
    try:
        async with store.transaction(write=False) as tx:
            row = await tx.one("PRAGMA synchronous")
        assert row is not None and int(row[0]) == level
    finally:
        await store.close()
    assert path.is_file()


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
async def test_both_postgresql_schemes_open_the_database(postgres_url: str, scheme: str) -> None:
    store = open_store(postgres_url.replace("postgresql://", f"{scheme}://", 1))
    assert isinstance(store, PostgresStore)
    await store.open()
    try:
        await store.ping()
    finally:
        await store.close()


@pytest.mark.parametrize("url", ["http://x", "sqlite://", "sqlite:///", "sqlite:///p.db?synchronous=bogus",
                                 "mysql://u@h/db", "placements.db", ""])
def test_urls_that_name_no_store_are_refused_naming_the_flag(url: str) -> None:
    with pytest.raises(ValueError, match="--database"):
        open_store(url)


# --- SIGKILL -------------------------------------------------------------------------------------------


# Places users u0, u1... one by one until killed, and prints "user line" once place() has returned
# ("-" when the pool had no room: after the first 4 x QUOTA users).
CHILD = textwrap.dedent("""
    import asyncio, itertools, sys
    from datetime import datetime, timezone
    from linepool.adapters.placement_store import open_store
    from linepool.logic.placement import window_start
    from tests.placement.builders import facts, grid, linepool

    async def main(url):
        store = open_store(url)
        await store.open()
        pool = facts(linepool(quota=QUOTA), *grid(2, 2))
        now = datetime(2026, 6, 15, 9, 0, tzinfo=timezone.utc)
        for i in itertools.count():
            outcome = await store.place(facts=pool, user=f"u{i}", first_message=None, now=now,
                                        since=window_start(spec=pool.spec, now=now))
            line = outcome.placement.line if outcome.placement else "-"
            print(f"u{i} {line}", flush=True)

    asyncio.run(main(sys.argv[1]))
""")
KILL_QUOTA = 60  # 4 lines: room for 240 users
KILL_AFTER = 150


async def test_a_sigkill_loses_no_acknowledged_placement(database: str) -> None:
    child = await asyncio.to_thread(
        subprocess.Popen, [sys.executable, "-c", CHILD.replace("QUOTA", str(KILL_QUOTA)), database],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'operator'}"})
    acknowledged: dict[str, str] = {}
    try:
        assert child.stdout is not None
        for text in child.stdout:
            user, line = text.split()
            acknowledged[user] = line
            if len(acknowledged) == KILL_AFTER:  # mid-way through the budget, and placing more right now
                os.kill(child.pid, signal.SIGKILL)
                break
        rest, errors = child.communicate(timeout=30)
        for text in rest.splitlines():  # acknowledged before the kill landed
            user, line = text.split()
            acknowledged[user] = line
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL, errors
    assert len(acknowledged) >= KILL_AFTER

    pool = facts(linepool(quota=KILL_QUOTA), *grid(2, 2))
    store = open_store(database)
    await store.open()
    try:
        for user, line in acknowledged.items():
            stored = await store.get(namespace=NAMESPACE, pool=POOL, user=user)
            assert (stored.line if stored else "-") == line, user
        assert all(count <= KILL_QUOTA for count in (await counts(store, pool)).values())
        # The survivor places more users: the budget holds across the crash, and nobody is placed twice.
        everyone = [f"u{i}" for i in range(len(acknowledged) + 300)]
        for user in everyone:
            outcome = await place(store, pool, user)
            if acknowledged.get(user, "-") != "-":
                assert (line_of(outcome), outcome.created) == (acknowledged[user], False)
        window = await counts(store, pool)
        assert window == {line: KILL_QUOTA for line in pool.order}
        assert await users(store) == window
    finally:
        await store.close()
