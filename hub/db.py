"""The hub's database: one interface over SQLite (the default, here) and PostgreSQL (asyncpg,
hub/db_postgres.py; issue 13).

Hub code that touches the database is written once, as `async def fn(db: Conn, *args)` with
PostgreSQL's numbered placeholders (`$1`, `$2`, ...), and handed to `Database.read`, `.write` or
`.write_bulk`, which run it in one transaction.

On SQLite the function runs on the store's writer thread (or a reader's), as the edge's store runs
its plain functions (edge/core/sqlite.py: one writer, a bulk lane behind person-facing writes), and
its coroutine is driven to the end right there, without an event loop: `SqliteConn`'s methods call
the blocking sqlite3 connection and never suspend, so the coroutine finishes in its first step.
SQLite numbers its parameters `?1`, `?2`: the `$n` of the shared SQL are rewritten once per statement
text. A function that awaits anything but its `Conn` (a sleep, a network call) is refused at once:
that would hold the single writer, and no other work belongs inside a transaction.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
from functools import lru_cache
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable, Protocol, Sequence, TypeVar

from edge.core.sqlite import Store

T = TypeVar("T")
Row = Any  # sqlite3.Row or asyncpg.Record: both index by position and by column name, and dict() them


class Conn(Protocol):
    """A connection inside one transaction, as hub code sees it."""
    dialect: str   # "sqlite" | "postgresql": for the few statements that must differ

    async def fetch(self, sql: str, *args: Any) -> list[Row]: ...

    async def fetchrow(self, sql: str, *args: Any) -> Row | None: ...

    async def fetchval(self, sql: str, *args: Any) -> Any: ...

    async def execute(self, sql: str, *args: Any) -> None: ...

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None: ...


Work = Callable[..., Awaitable[T]]


@lru_cache(maxsize=1024)
def sqlite_sql(sql: str) -> str:
    """`$1` → `?1`: SQLite's numbered parameters take the same positional arguments."""
    return re.sub(r"\$(\d+)", r"?\1", sql)


class SqliteConn:
    dialect = "sqlite"

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    async def fetch(self, sql: str, *args: Any) -> list[Row]:
        return self.conn.execute(sqlite_sql(sql), args).fetchall()

    async def fetchrow(self, sql: str, *args: Any) -> Row | None:
        return self.conn.execute(sqlite_sql(sql), args).fetchone()

    async def fetchval(self, sql: str, *args: Any) -> Any:
        row = self.conn.execute(sqlite_sql(sql), args).fetchone()
        return None if row is None else row[0]

    async def execute(self, sql: str, *args: Any) -> None:
        self.conn.execute(sqlite_sql(sql), args)

    async def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self.conn.executemany(sqlite_sql(sql), rows)


def placeholders(first: int, count: int) -> str:
    """`$first, …` for `count` values, as a list inside `IN (…)` or `VALUES (…)` takes them; NULL for none
    (`IN (NULL)` is no row)."""
    return ", ".join(f"${n}" for n in range(first, first + count)) or "NULL"


async def _fetchval(db: Conn, sql: str, *args: Any) -> Any:
    return await db.fetchval(sql, *args)


def drive(coro: Awaitable[T]) -> T:
    """Run a coroutine that never suspends to its end, here, without a loop (see the module's doc)."""
    try:
        coro.send(None)  # type: ignore[attr-defined]
    except StopIteration as done:
        return done.value
    coro.close()  # type: ignore[attr-defined]
    raise RuntimeError("a hub transaction awaited something other than its database connection")


def on_sqlite(fn: Work[T]) -> Callable[..., T]:
    """fn as the plain function edge.core.sqlite.Store runs on its threads."""
    def run(conn: sqlite3.Connection, *args: Any) -> T:
        return drive(fn(SqliteConn(conn), *args))
    run.__qualname__ = getattr(fn, "__qualname__", "hub work")  # the store's slow-read log names it
    return run


class Database(Protocol):
    """Where the hub keeps its data: SqliteDatabase, or PostgresDatabase (hub/db_postgres.py)."""
    dialect: str
    where: str       # for the log: a path, or a URL without its password
    slice_events: int  # an upload's events applied per transaction (hub/events.py)

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def read(self, fn: Work[T], *args: Any) -> T: ...

    async def fetchval(self, sql: str, *args: Any) -> Any:
        """One read-only statement's first value, outside a transaction (one statement is one snapshot):
        on PostgreSQL one round trip where `read` takes three. For the hot reads: every request's token."""

    async def write(self, fn: Work[T], *args: Any) -> T: ...

    async def write_bulk(self, fn: Work[T], *args: Any, place: tuple[float, int] | None = None) -> T:
        """As `write`, behind every admin write, for uploads' slices; bulk work runs by `place`."""

    def bulk_place(self, due: float | None = None) -> tuple[float, int]:
        """A place for bulk work: earliest `due` (time.monotonic(); None: now) first, then first taken."""


# Upload slices queued together commit together: one COMMIT (one fsync) for up to this many, or what
# edge.core.sqlite.GROUP_SECONDS lets in (0.48 ms a 10-event job alone, 0.27 grouped by 16, measured).
GROUP_BULK = 16
# SQLite's own page cache (2 MB) is kept: measured with bench/chain.py (1,000 stores, 2,500 events/s,
# 30 s), 64 MB on the writer and readers cost more than it saved (0.35-0.37 ms of hub CPU an event
# against 0.32, upload p99 200-330 ms against 114, 37 MB more memory). The pages the inserts miss
# come cheaply from the OS's cache, and a reader's cache is emptied whenever the writer commits (WAL).
# Worth measuring again when hub.db outgrows the machine's memory.


class SqliteDatabase:
    """The embedded default: DIR/hub.db behind edge.core.sqlite.Store's writer and readers."""
    dialect = "sqlite"
    # the one writer serves admin writes too: an order waits for at most one slice of an upload
    slice_events = 50

    def __init__(self, path: Path, migrations: list[tuple[str, str]]):
        self.store = Store(path, migrations=migrations, group_bulk=GROUP_BULK)
        self.path = path
        self.where = str(path)

    async def open(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.store.open)

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.store.close)

    async def read(self, fn: Work[T], *args: Any) -> T:
        return await self.store.read(on_sqlite(fn), *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self.read(_fetchval, sql, *args)

    async def write(self, fn: Work[T], *args: Any) -> T:
        return await self.store.write(on_sqlite(fn), *args)

    async def write_bulk(self, fn: Work[T], *args: Any, place: tuple[float, int] | None = None) -> T:
        return await self.store.write_bulk(on_sqlite(fn), *args, place=place)

    def bulk_place(self, due: float | None = None) -> tuple[float, int]:
        return self.store.bulk_place(due)
