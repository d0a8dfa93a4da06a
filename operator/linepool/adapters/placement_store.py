"""The placement store: which user has which line, durably, in SQLite or PostgreSQL.

Placements are the data that must never be lost: a lost placement moves a user's conversation to
a stranger's number. So a placement is acknowledged only after its transaction commits, and the
budget check and the write happen in that same transaction:

- SQLite (the embedded default, one replica): every placement runs in ``BEGIN IMMEDIATE``, which
  takes the database's write lock, so two requests (or two processes on one file) never both see
  room on a line that has one slot left. WAL mode with ``synchronous=NORMAL`` survives a killed
  process; ``?synchronous=full`` in the URL adds an fsync per commit, for power loss.
- PostgreSQL (several replicas): transaction-scoped advisory locks, one on the user and a
  try-lock on each line counted, keep concurrent placements (across replicas too) from placing
  a user twice or spending a line's last slot twice; look-ups take no lock.

Schema migrations are numbered and applied at start-up, once, under a lock (``MIGRATIONS``).
Every failure of either database becomes ``StoreUnavailable``: the service answers 503 then.
"""

import asyncio
import secrets
import sqlite3
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg
import psycopg_pool

from linepool.logic.placement import PoolFacts, candidates, has_budget, move_reason

# A line found at its budget is not asked again for this long: with 10,000 lines mostly full, a
# new user would otherwise cost a count per line. It only skips; the count in the transaction
# still decides. The hint is timed by the caller's clock (``now``), and dropped as soon as the
# window jumps (a new calendar day) or the operator reports more room on the line.
FULL_HINT_SECONDS = 5.0


class StoreUnavailable(Exception):
    """The database could not be reached or refused the transaction; nothing was acknowledged."""


@dataclass(frozen=True, slots=True)
class Placement:
    """A user's line in a pool. ``code`` names the placement's short link."""

    namespace: str
    pool: str
    user: str
    line: str
    server: str
    placed_at: datetime
    code: str
    first_message: str


@dataclass(frozen=True, slots=True)
class PlaceOutcome:
    """What ``place`` did: ``placement`` is None when no line had room for a new one."""

    placement: Placement | None
    created: bool
    previous: Placement | None = None
    placed_on_line: int = 0  # placements on the chosen line in the window, this one included


# (version, statements). Append only: a released version never changes.
MIGRATIONS: Sequence[tuple[int, Sequence[str]]] = (
    (1, (
        """CREATE TABLE placements (
             namespace TEXT NOT NULL, pool TEXT NOT NULL, user_id TEXT NOT NULL,
             line TEXT NOT NULL, server TEXT NOT NULL, placed_at DOUBLE PRECISION NOT NULL,
             code TEXT NOT NULL UNIQUE, first_message TEXT NOT NULL,
             PRIMARY KEY (namespace, pool, user_id))""",
        "CREATE INDEX placements_by_line ON placements (namespace, pool, line)",
        # Every placement made, moves included, kept for a week: the budgets count it.
        """CREATE TABLE placement_log (
             namespace TEXT NOT NULL, pool TEXT NOT NULL, line TEXT NOT NULL,
             user_id TEXT NOT NULL, placed_at DOUBLE PRECISION NOT NULL)""",
        "CREATE INDEX placement_log_by_line ON placement_log (namespace, pool, line, placed_at)",
        """CREATE TABLE placement_cursors (
             namespace TEXT NOT NULL, pool TEXT NOT NULL, position BIGINT NOT NULL,
             PRIMARY KEY (namespace, pool))""",
    )),
)

_COLUMNS = "namespace, pool, user_id, line, server, placed_at, code, first_message"
_SELECT_USER = f"SELECT {_COLUMNS} FROM placements WHERE namespace = ? AND pool = ? AND user_id = ?"
_SELECT_CODE = f"SELECT {_COLUMNS} FROM placements WHERE code = ?"
_KEEP_CURSOR = ("INSERT INTO placement_cursors (namespace, pool, position) VALUES (?, ?, ?) "
                "ON CONFLICT (namespace, pool) DO UPDATE SET position = excluded.position")
# A placement whose every candidate line is locked by concurrent placements tries again this often.
PLACE_ATTEMPTS = 50
_COUNT_LINE = "SELECT count(*) FROM placement_log WHERE namespace = ? AND pool = ? AND line = ? AND placed_at >= ?"


def _placement(row: Sequence[Any]) -> Placement:
    return Placement(namespace=row[0], pool=row[1], user=row[2], line=row[3], server=row[4],
                     placed_at=datetime.fromtimestamp(float(row[5]), UTC), code=row[6], first_message=row[7])


class Tx(ABC):
    """One open transaction; statements use ``?`` placeholders on both databases."""

    @abstractmethod
    async def one(self, sql: str, params: Sequence[Any] = ()) -> Sequence[Any] | None: ...

    @abstractmethod
    async def all(self, sql: str, params: Sequence[Any] = ()) -> list[Sequence[Any]]: ...

    @abstractmethod
    async def run(self, sql: str, params: Sequence[Any] = ()) -> int: ...

    async def lock_user(self, *, namespace: str, pool: str, user: str) -> None:
        """Hold off other placements of this user until commit; a no-op where the transaction locks everything."""
        return

    async def try_lock_line(self, *, namespace: str, pool: str, line: str) -> bool:
        """Take the line for this transaction if no other holds it; True where the transaction locks everything."""
        return True


class PlacementStore(ABC):
    """Placements in a SQL database; subclasses open transactions, this class holds the rules."""

    # Whether the round-robin cursor is written in the placement's own transaction.
    CURSOR_IN_TRANSACTION = True

    def __init__(self) -> None:
        # (namespace, pool, line) -> (until, window start, limit) of the pass that found it full
        self._full: dict[tuple[str, str, str], tuple[float, float, int]] = {}

    # -- what a backend provides -------------------------------------------------------------
    @abstractmethod
    async def open(self) -> None:
        """Connect and apply pending migrations; ``StoreUnavailable`` when the database is down."""

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    def transaction(self, *, write: bool) -> AbstractAsyncContextManager[Tx]:
        """A transaction: committed when the block ends, rolled back when it raises."""

    # -- the rules ---------------------------------------------------------------------------
    async def ping(self) -> None:
        async with self.transaction(write=False) as tx:
            await tx.one("SELECT 1")

    async def get(self, *, namespace: str, pool: str, user: str) -> Placement | None:
        async with self.transaction(write=False) as tx:
            row = await tx.one(_SELECT_USER, (namespace, pool, user))
        return _placement(row) if row else None

    async def by_code(self, *, code: str) -> Placement | None:
        async with self.transaction(write=False) as tx:
            row = await tx.one(_SELECT_CODE, (code,))
        return _placement(row) if row else None

    async def place(
        self, *, facts: PoolFacts, user: str, first_message: str | None, now: datetime, since: datetime
    ) -> PlaceOutcome:
        """Give ``user`` a line: theirs if it is still usable, else the next one with room.

        The answer for a known user with a usable line needs no write and no lock. Otherwise, in
        one locked transaction: look again (a concurrent request may have placed the user), take
        the round-robin cursor, and give the first candidate line whose placements since
        ``since`` are under its budget.
        """
        known = await self.get(namespace=facts.namespace, pool=facts.name, user=user)
        if known is not None and move_reason(line=known.line, server=known.server, facts=facts) is None:
            return PlaceOutcome(placement=known, created=False)
        for attempt in range(PLACE_ATTEMPTS):
            outcome = await self._place_once(facts=facts, user=user, first_message=first_message, now=now,
                                             since=since)
            if outcome is not None:
                return outcome
            # Every line with room was being filled by another transaction: look again shortly.
            await asyncio.sleep(0.001 * (attempt + 1))
        raise StoreUnavailable("every candidate line stayed locked by other placements; try again")

    async def _place_once(
        self, *, facts: PoolFacts, user: str, first_message: str | None, now: datetime, since: datetime
    ) -> PlaceOutcome | None:
        """One transaction of ``place``; None when every line with room was locked by another one."""
        key = (facts.namespace, facts.name, user)
        stamp = now.timestamp()
        async with self.transaction(write=True) as tx:
            await tx.lock_user(namespace=facts.namespace, pool=facts.name, user=user)
            row = await tx.one(_SELECT_USER, key)
            known = _placement(row) if row else None
            if known is not None and move_reason(line=known.line, server=known.server, facts=facts) is None:
                return PlaceOutcome(placement=known, created=False)
            cursor_row = await tx.one("SELECT position FROM placement_cursors WHERE namespace = ? AND pool = ?",
                                      (facts.namespace, facts.name))
            cursor = int(cursor_row[0]) if cursor_row else 0
            chosen, count, after, busy = await self._choose(tx=tx, facts=facts, cursor=cursor, now=stamp,
                                                            since=since.timestamp())
            if chosen is None:
                return None if busy else PlaceOutcome(placement=None, created=known is None, previous=known)
            if self.CURSOR_IN_TRANSACTION:
                await tx.run(_KEEP_CURSOR, (facts.namespace, facts.name, after))
            line = facts.lines[chosen]
            message = first_message or (known.first_message if known else None) or facts.first_message
            placement = Placement(
                namespace=facts.namespace, pool=facts.name, user=user, line=chosen, server=line.server,
                placed_at=now, code=known.code if known else secrets.token_urlsafe(9), first_message=message,
            )
            # The short link stays the user's across moves: an old QR code leads to the new line.
            await tx.run(
                f"INSERT INTO placements ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (namespace, pool, user_id) DO UPDATE SET line = excluded.line, "
                "server = excluded.server, placed_at = excluded.placed_at, first_message = excluded.first_message",
                (*key, chosen, line.server, stamp, placement.code, message),
            )
            await tx.run("INSERT INTO placement_log (namespace, pool, line, user_id, placed_at) VALUES (?, ?, ?, ?, ?)",
                         (facts.namespace, facts.name, chosen, user, stamp))
        if not self.CURSOR_IN_TRANSACTION:
            # Its own short statement after the commit: the row lock would otherwise make every
            # placement of the pool wait for the one before it. The cursor only spreads users;
            # budgets are kept by the line locks.
            async with self.transaction(write=True) as tx:
                await tx.run(_KEEP_CURSOR, (facts.namespace, facts.name, after))
        return PlaceOutcome(placement=placement, created=known is None, previous=known, placed_on_line=count + 1)

    async def _choose(
        self, *, tx: Tx, facts: PoolFacts, cursor: int, now: float, since: float
    ) -> tuple[str | None, int, int, bool]:
        """The first candidate line with room: (line, its placements so far, the cursor to keep, and
        whether a line was skipped because another transaction held it)."""
        busy = False
        for line, after in candidates(facts=facts, cursor=cursor):
            hint = (facts.namespace, facts.name, line)
            limit = facts.lines[line].limit
            full = self._full.get(hint)
            if full is not None and now < full[0] and since - full[1] < FULL_HINT_SECONDS and limit <= full[2]:
                continue
            if not await tx.try_lock_line(namespace=facts.namespace, pool=facts.name, line=line):
                busy = True
                continue
            row = await tx.one(_COUNT_LINE, (facts.namespace, facts.name, line, since))
            placed = int(row[0]) if row else 0
            if has_budget(placed=placed, facts=facts.lines[line]):
                return line, placed, after, busy
            self._full[hint] = (now + FULL_HINT_SECONDS, since, limit)
        return None, 0, 0, busy

    async def update_message(self, *, placement: Placement, first_message: str) -> Placement:
        """Keep the opener a known user's app asked for last; their link pre-fills it."""
        async with self.transaction(write=True) as tx:
            await tx.run("UPDATE placements SET first_message = ? WHERE namespace = ? AND pool = ? AND user_id = ?",
                         (first_message, placement.namespace, placement.pool, placement.user))
        return replace(placement, first_message=first_message)

    async def release(self, *, namespace: str, pool: str, user: str) -> Placement | None:
        """Forget a user's line. The placement still counts toward today's budget: it started a conversation."""
        async with self.transaction(write=True) as tx:
            row = await tx.one(_SELECT_USER, (namespace, pool, user))
            if row is None:
                return None
            await tx.run("DELETE FROM placements WHERE namespace = ? AND pool = ? AND user_id = ?",
                         (namespace, pool, user))
        return _placement(row)

    async def window_counts(self, *, namespace: str, pool: str, since: datetime) -> dict[str, int]:
        """Placements per line since ``since``: what each line's budget has used."""
        async with self.transaction(write=False) as tx:
            rows = await tx.all("SELECT line, count(*) FROM placement_log WHERE namespace = ? AND pool = ? "
                                "AND placed_at >= ? GROUP BY line", (namespace, pool, since.timestamp()))
        return {str(line): int(count) for line, count in rows}

    async def users_per_line(self, *, namespace: str, pool: str) -> dict[str, int]:
        async with self.transaction(write=False) as tx:
            rows = await tx.all("SELECT line, count(*) FROM placements WHERE namespace = ? AND pool = ? GROUP BY line",
                                (namespace, pool))
        return {str(line): int(count) for line, count in rows}

    async def prune(self, *, before: datetime) -> int:
        """Drop log entries no budget window can reach any more."""
        async with self.transaction(write=True) as tx:
            return await tx.run("DELETE FROM placement_log WHERE placed_at < ?", (before.timestamp(),))

    async def _migrate(self) -> None:
        async with self.transaction(write=True) as tx:
            await tx.run("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                         "applied_at DOUBLE PRECISION NOT NULL)")
            done = {int(row[0]) for row in await tx.all("SELECT version FROM schema_migrations")}
            for version, statements in MIGRATIONS:
                if version in done:
                    continue
                for statement in statements:
                    await tx.run(statement)
                await tx.run("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                             (version, time.time()))


# -- SQLite --------------------------------------------------------------------------------------
class _SqliteTx(Tx):
    def __init__(self, connection: sqlite3.Connection) -> None:
        self._db = connection

    async def one(self, sql: str, params: Sequence[Any] = ()) -> Sequence[Any] | None:
        row: Sequence[Any] | None = self._db.execute(sql, params).fetchone()
        return row

    async def all(self, sql: str, params: Sequence[Any] = ()) -> list[Sequence[Any]]:
        return list(self._db.execute(sql, params).fetchall())

    async def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        return self._db.execute(sql, params).rowcount


class SqliteStore(PlacementStore):
    """One SQLite file, used from the event loop's thread.

    Each statement takes tens of microseconds, less than handing it to a thread would, and an
    ``asyncio.Lock`` keeps one transaction open at a time on the one connection.
    """

    def __init__(self, *, path: str, synchronous: str = "NORMAL") -> None:
        super().__init__()
        self.path = path
        self._synchronous = synchronous
        self._db: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()

    async def open(self) -> None:
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: we issue BEGIN ourselves, so a read takes no write lock.
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=5.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={self._synchronous}")
            self._db.execute("PRAGMA foreign_keys=ON")
            await self._migrate()
        except (sqlite3.Error, OSError) as exc:  # OSError: its directory cannot be created
            raise StoreUnavailable(f"SQLite database {self.path}: {exc}") from exc

    async def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @asynccontextmanager
    async def transaction(self, *, write: bool) -> AsyncIterator[Tx]:
        if self._db is None:
            raise StoreUnavailable("the SQLite database is not open")
        db = self._db
        async with self._lock:
            try:
                db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    yield _SqliteTx(db)
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise StoreUnavailable(f"SQLite database {self.path}: {exc}") from exc


# -- PostgreSQL ----------------------------------------------------------------------------------
class _PostgresTx(Tx):
    def __init__(self, connection: psycopg.AsyncConnection[Any]) -> None:
        self._db = connection

    async def one(self, sql: str, params: Sequence[Any] = ()) -> Sequence[Any] | None:
        cursor = await self._db.execute(_pg(sql), params, prepare=True)
        row: Sequence[Any] | None = await cursor.fetchone()
        return row

    async def all(self, sql: str, params: Sequence[Any] = ()) -> list[Sequence[Any]]:
        cursor = await self._db.execute(_pg(sql), params, prepare=True)
        return list(await cursor.fetchall())

    async def run(self, sql: str, params: Sequence[Any] = ()) -> int:
        cursor = await self._db.execute(_pg(sql), params)
        return cursor.rowcount

    async def lock_user(self, *, namespace: str, pool: str, user: str) -> None:
        await self._db.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                               (f"user/{namespace}/{pool}/{user}",), prepare=True)

    async def try_lock_line(self, *, namespace: str, pool: str, line: str) -> bool:
        # Never wait for a line: a transaction holds its user's lock and may have passed other
        # lines, so waiting could deadlock. A busy line is skipped; if every line with room was
        # busy, the placement runs again.
        cursor = await self._db.execute("SELECT pg_try_advisory_xact_lock(hashtextextended(%s, 0))",
                                        (f"line/{namespace}/{pool}/{line}",), prepare=True)
        row = await cursor.fetchone()
        return bool(row and row[0])


_PG_SQL: dict[str, str] = {}


def _pg(sql: str) -> str:
    """``?`` placeholders become psycopg's ``%s``; computed once per statement."""
    converted = _PG_SQL.get(sql)
    if converted is None:
        converted = _PG_SQL[sql] = sql.replace("%", "%%").replace("?", "%s")
    return converted


# Migrations from several replicas starting at once take turns on this lock.
_MIGRATION_LOCK = 0x6C696E65  # "line"


class PostgresStore(PlacementStore):
    """A PostgreSQL database through a psycopg connection pool; several replicas may share it.

    New placements of one pool run in parallel: each takes its user's advisory lock (so a user
    is placed once) and a try-lock on each line it counts (so a line's budget is counted and
    spent by one transaction at a time).
    """

    CURSOR_IN_TRANSACTION = False

    def __init__(self, *, url: str, max_connections: int = 10, timeout: float = 3.0) -> None:
        super().__init__()
        self._url = url
        self._timeout = timeout
        self._pool = psycopg_pool.AsyncConnectionPool(
            conninfo=url, min_size=1, max_size=max_connections, open=False, timeout=timeout,
            kwargs={"autocommit": True, "connect_timeout": max(1, int(timeout))},
        )

    @property
    def description(self) -> str:
        parts = urlsplit(self._url)
        return f"PostgreSQL at {parts.hostname}:{parts.port or 5432}{parts.path}"

    async def open(self) -> None:
        try:
            await self._pool.open(wait=True, timeout=self._timeout)
            async with self._pool.connection() as connection:
                await connection.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK,))
                try:
                    await self._migrate()
                finally:
                    await connection.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK,))
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            raise StoreUnavailable(f"{self.description}: {_reason(exc)}") from exc

    async def close(self) -> None:
        await self._pool.close()

    @asynccontextmanager
    async def transaction(self, *, write: bool) -> AsyncIterator[Tx]:
        try:
            async with self._pool.connection() as connection, connection.transaction():
                yield _PostgresTx(connection)
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            raise StoreUnavailable(f"{self.description}: {_reason(exc)}") from exc


def _reason(exc: BaseException) -> str:
    # psycopg's messages can span lines; the first names the problem.
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def open_store(url: str) -> PlacementStore:
    """The store a ``--database`` URL names: ``sqlite:///relative.db``, ``sqlite:////abs.db`` or
    ``postgresql://user:password@host:5432/db``. Raises ``ValueError`` for anything else."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        if not path:
            raise ValueError(f"--database {url!r}: name the SQLite file, e.g. sqlite:///placements.db")
        synchronous = (parse_qs(parts.query).get("synchronous") or ["NORMAL"])[0].upper()
        if synchronous not in {"NORMAL", "FULL", "EXTRA"}:
            raise ValueError(f"--database {url!r}: synchronous must be normal, full or extra")
        return SqliteStore(path=path, synchronous=synchronous)
    if parts.scheme in {"postgresql", "postgres"}:
        return PostgresStore(url=url)
    raise ValueError(f"--database {url!r}: use sqlite:///FILE or postgresql://USER:PASSWORD@HOST:PORT/DB")
