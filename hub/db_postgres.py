"""The hub on PostgreSQL (issue 13): hub/db.py's interface over asyncpg, on the event loop.

- `write`: one transaction on a pooled connection of the write pool (admin writes, the hub's own).
- `write_bulk`: the same on a pool of its own: uploads' slices can take all of it and queue for it,
  while orders and cancellations always find a connection in the write pool, never behind them.
- `read`: a read-only REPEATABLE READ transaction on the read pool: a page of the feed or a store's
  state is one snapshot. `fetchval`: one statement on the read pool, without a transaction (one round
  trip, not three): every request's token. In a reconnect storm those reads alone keep a pool of 8
  busy (hundreds a second, each several round trips on a loaded machine): writes have a pool of their
  own, so an order never waits behind them.

Migrations are plain SQL files, hub/sql/postgresql/NNN_name.sql, applied at start in number order in
one transaction, recorded in schema_migrations; a database holding a migration this code does not know
is newer than the code and is refused (SchemaTooNew, as SQLite's user_version). Several hub processes
may start at once: an advisory lock makes them take turns.

Change hints between hub processes: a change's transaction sends NOTIFY (hub/changes.py), PostgreSQL
delivers it to every LISTENing connection after the commit, and `listen` hands it to the hub.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import json
import logging
import re
import secrets
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable, Sequence, TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from edge.core.sqlite import SchemaTooNew
from hub.db import Row, Work

log = logging.getLogger(__name__)

T = TypeVar("T")

MIGRATIONS_DIR = Path(__file__).parent / "sql" / "postgresql"
MIGRATION_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")
MIGRATE_LOCK = 0x68756231      # pg_advisory_xact_lock keys of the hub ("hub1"): its migrations at start
CHANNEL = "hub_changes"         # NOTIFY channel of committed changes and epochs
POOL_SIZE = 8                   # reads
WRITE_POOL_SIZE = 2             # admin writes (orders, cancellations, the catalog): a few a second
BULK_POOL_SIZE = 4              # uploads' slices at once; more wait for one of these, not for the others
LISTEN_RETRY = 1.0              # seconds before a lost LISTEN connection is opened again


def shown_url(url: str) -> str:
    """The URL without its password, for the log and errors."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))


def migrations(folder: Path = MIGRATIONS_DIR) -> list[tuple[int, str, str]]:
    """(number, file name, SQL) of every migration file, in number order."""
    found = []
    for path in folder.iterdir():
        match = MIGRATION_NAME.match(path.name)
        if match:
            found.append((int(match.group(1)), path.name, path.read_text(encoding="utf-8")))
        elif path.suffix == ".sql":
            raise ValueError(f"{path}: a migration is named NNN_name.sql (three digits, lower case)")
    numbers = [n for n, _, _ in found]
    if len(set(numbers)) != len(numbers):
        raise ValueError(f"{folder}: two migrations share a number")
    return sorted(found)


async def migrate(conn: asyncpg.Connection, files: list[tuple[int, str, str]]) -> list[str]:
    """Apply the files the database has not had, in one transaction; the names applied."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATE_LOCK)
        await conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                           "name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
        applied = {r[0]: r[1] for r in await conn.fetch("SELECT version, name FROM schema_migrations")}
        known = {n for n, _, _ in files}
        unknown = sorted(set(applied) - known)
        if unknown:
            raise SchemaTooNew(f"the database has migration {applied[unknown[-1]]} ({unknown[-1]}), which this hub "
                               "does not know: it was written by a newer hub; run that version")
        done = []
        for number, name, sql in files:
            if number not in applied:
                await conn.execute(sql)
                await conn.execute("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", number, name)
                done.append(name)
        return done


class PooledConnection(asyncpg.Connection):
    """A pool's connection given back as it is, without asyncpg's reset query (a round trip per use:
    RESET ALL, UNLISTEN *, CLOSE ALL, pg_advisory_unlock_all). Hub code leaves nothing of that on a
    connection: its locks are transaction-scoped, it sets nothing for the session, its cursors live in
    their transaction and LISTEN has a connection of its own. An open transaction is still ended."""

    def get_reset_query(self) -> str:
        return ""


class PgConn:
    """hub/db.py's Conn on an asyncpg connection inside a transaction."""
    dialect = "postgresql"

    def __init__(self, conn: asyncpg.Connection, origin: str):
        self.conn = conn
        self.origin = origin   # this hub process, in its NOTIFY messages: it does not hint itself twice

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return await self.conn.fetch(sql, *args)

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        return await self.conn.fetchrow(sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self.conn.fetchval(sql, *args)

    async def execute(self, sql: str, *args: Any) -> None:
        await self.conn.execute(sql, *args)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        rows = list(rows)
        if rows:
            await self.conn.executemany(sql, rows)

    async def notify(self, message: dict) -> None:
        """Sent to every hub process LISTENing when (and only if) this transaction commits."""
        await self.conn.execute("SELECT pg_notify($1, $2)", CHANNEL,
                                json.dumps({**message, "origin": self.origin}, separators=(",", ":")))


Notice = Callable[[dict], Awaitable[None]]


class BulkTurns:
    """The bulk pool's connections handed out by place, earliest due first, as SQLite's bulk lane
    does (edge/core/sqlite.py, `Store.bulk_place`): an upload's later slices keep the place of its
    first, so uploads finish one after another (each in a few slices' time) instead of all of them
    slice by slice and all at the end, past their stores' timeout. The admission gate's Retry-After
    counts on uploads finishing in turn."""

    def __init__(self, size: int):
        self.free = size
        self.waiting: list[tuple[tuple[float, int], int, asyncio.Future]] = []
        self.order = itertools.count()

    def place(self, due: float | None = None) -> tuple[float, int]:
        """(due, order): earliest due (time.monotonic()) first, then in the order taken. None: due now."""
        return (time.monotonic() if due is None else due, next(self.order))

    async def take(self, place: tuple[float, int] | None) -> None:
        if self.free and not self.waiting:
            self.free -= 1
            return
        turn = asyncio.get_running_loop().create_future()
        heapq.heappush(self.waiting, (self.place() if place is None else place, next(self.order), turn))
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():   # handed a connection just as it was cancelled
                self.give()
            else:
                self.waiting = [w for w in self.waiting if w[2] is not turn]
                heapq.heapify(self.waiting)
            raise

    def give(self) -> None:
        while self.waiting:
            turn = heapq.heappop(self.waiting)[2]
            if not turn.done():
                turn.set_result(None)
                return
        self.free += 1


class PostgresDatabase:
    dialect = "postgresql"
    # Orders never wait for an upload here (they have the main pool), so a slice only bounds what an
    # abandoned upload finishes: 200 events, the store daemon's batch, is one transaction and one
    # commit where slices of 50 were four (the reconnect storm's drain, bench/chain.py)
    slice_events = 200

    def __init__(self, url: str, *, pool_size: int = POOL_SIZE, write_pool_size: int = WRITE_POOL_SIZE,
                 bulk_pool_size: int = BULK_POOL_SIZE, files: list[tuple[int, str, str]] | None = None):
        self.url = url
        self.where = shown_url(url)
        self.pool_size, self.write_pool_size, self.bulk_pool_size = pool_size, write_pool_size, bulk_pool_size
        self.files = files
        self.origin = secrets.token_hex(6)
        self.pool: asyncpg.Pool | None = None
        self.write_pool: asyncpg.Pool | None = None
        self.bulk_pool: asyncpg.Pool | None = None
        self.turns = BulkTurns(bulk_pool_size)
        self.listener: asyncio.Task | None = None

    async def open(self) -> None:
        files = self.files if self.files is not None else migrations()
        try:
            conn = await asyncpg.connect(self.url)
        except (OSError, asyncpg.PostgresError) as exc:
            raise OSError(f"cannot connect to the database {self.where}: {exc}") from None
        try:
            done = await migrate(conn, files)
        finally:
            await conn.close()
        if done:
            log.info("database migrated", extra={"kv": {"database": self.where, "applied": ",".join(done)}})
        self.pool, self.write_pool, self.bulk_pool = [
            await asyncpg.create_pool(self.url, min_size=1, max_size=size, connection_class=PooledConnection)
            for size in (self.pool_size, self.write_pool_size, self.bulk_pool_size)]

    async def close(self) -> None:
        if self.listener is not None:
            self.listener.cancel()
            await asyncio.gather(self.listener, return_exceptions=True)
            self.listener = None
        for pool in (self.pool, self.write_pool, self.bulk_pool):
            if pool is not None:
                await pool.close()
        self.pool = self.write_pool = self.bulk_pool = None

    async def read(self, fn: Work[T], *args: Any) -> T:
        async with self.pool.acquire() as conn:
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                return await fn(PgConn(conn, self.origin), *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self.pool.fetchval(sql, *args)

    async def write(self, fn: Work[T], *args: Any) -> T:
        async with self.write_pool.acquire() as conn:
            async with conn.transaction():
                return await fn(PgConn(conn, self.origin), *args)

    async def write_bulk(self, fn: Work[T], *args: Any, place: tuple[float, int] | None = None) -> T:
        await self.turns.take(place)
        try:
            async with self.bulk_pool.acquire() as conn:
                async with conn.transaction():
                    return await fn(PgConn(conn, self.origin), *args)
        finally:
            self.turns.give()

    def bulk_place(self, due: float | None = None) -> tuple[float, int]:
        return self.turns.place(due)

    def listen(self, on_notice: Notice) -> None:
        """Hand every other hub process's NOTIFY to on_notice, over a connection of its own, opened again
        when it is lost. A message missed meanwhile is harmless: stores poll the feed anyway."""
        self.listener = asyncio.create_task(self._listen(on_notice), name="hub-listen")

    async def _listen(self, on_notice: Notice) -> None:
        loop = asyncio.get_running_loop()
        handling: set[asyncio.Task] = set()   # the loop keeps only weak references to tasks
        while True:
            lost = loop.create_future()
            try:
                conn = await asyncpg.connect(self.url)
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("change hints from other hub processes paused", extra={"kv": {"error": str(exc)}})
                await asyncio.sleep(LISTEN_RETRY)
                continue

            def received(_conn, _pid, _channel, payload: str) -> None:
                message = json.loads(payload)
                if message.get("origin") != self.origin:
                    task = loop.create_task(on_notice(message))
                    handling.add(task)
                    task.add_done_callback(handling.discard)

            try:
                conn.add_termination_listener(lambda _conn: lost.done() or lost.set_result(None))
                await conn.add_listener(CHANNEL, received)
                await lost
                log.warning("change hints from other hub processes lost: listening again")
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("change hints from other hub processes lost", extra={"kv": {"error": str(exc)}})
            finally:
                if not conn.is_closed():
                    await conn.close(timeout=2)
            await asyncio.sleep(LISTEN_RETRY)
