"""SQLite done one way for the store and the hub: connections, migrations, and the one writer thread.

Every write runs on a single thread that owns the write connection; coroutines hand it a function
and await the result (Datasette's pattern). A write function gets the connection inside an open
`BEGIN IMMEDIATE` transaction: it commits when the function returns and rolls back if it raises,
so a write is all or nothing. Reads run on a small pool of threads, each with its own connection,
and may be given a time limit (Datasette's sqlite_timelimit: a progress handler stops a read past it),
so a runaway query answers an error instead of occupying a reader. Jobs that legitimately read much
(the ledger check, reconciliation) use `read_long`: a thread and connection of their own, no limit,
so they never hold a reader a request is waiting for.

The writer serves two lanes: `write` (a sale, an admin order) always goes before work queued with
`write_bulk` (the hub's event uploads), so a burst of bulk work delays an urgent write by at most the
one bulk transaction already running, never by the whole queue. Bulk work whose caller stopped
waiting (its coroutine was cancelled: the client went away) is skipped if it has not started; a
`write` always runs once queued (a cancelled shutdown must not lose, say, a print job's outcome).

A Store made with `group_bulk` > 1 (the hub's) commits queued bulk jobs together: one transaction, each
job in its own SAVEPOINT (a job that raises is undone alone), one COMMIT (one fsync) for the group, and
no job of it reported done before that COMMIT succeeded.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import queue
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Mapping, TypeVar

log = logging.getLogger("edge.db")
T = TypeVar("T")


class SchemaTooNew(Exception):
    pass


class ReadTimeout(Exception):
    """A read ran past the store's read time limit and was stopped; the caller may try again."""

    status = 503
    code = "read_timeout"

    def __init__(self, limit: float):
        self.limit = limit
        self.message = f"the store did not answer within {limit:g} s; try again"
        super().__init__(self.message)

    def as_dict(self) -> dict:
        return {"error": {"code": self.code, "message": self.message, "fields": []}}


# SQLite calls the progress handler every this many virtual-machine instructions: often enough to
# stop within milliseconds of the limit, rarely enough to cost nothing measurable.
PROGRESS_STEPS = 1000

# A bulk group takes no more jobs after this long: a write queued meanwhile waits at most this and
# one job. Measured on the dev machine, 10-row inserts into a table of 3 indexes: 0.48 ms a job one a
# transaction, 0.28 grouped by 4, 0.27 by 16, 0.25 by 64: the saving is had by a handful of jobs,
# so a short budget costs the hub little and keeps an admin order's wait under a person's notice.
GROUP_SECONDS = 0.02


def connect(path: str | Path, *, readonly: bool = False) -> sqlite3.Connection:
    """Open the store with the settings every connection must have."""
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None,
                               check_same_thread=False)
    else:
        conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout = 5000")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA synchronous = FULL")  # a committed sale survives power loss
    if not readonly:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode != "wal":
            raise RuntimeError(f"cannot switch {path} to WAL (got {mode})")
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection):
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any error."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:  # also when COMMIT itself failed (disk full, I/O error)
            conn.execute("ROLLBACK")
        raise


def ping(conn: sqlite3.Connection) -> None:
    """The cheapest statement that proves the database answers (the systemd watchdog's check)."""
    conn.execute("SELECT 1").fetchone()


def optimize(conn: sqlite3.Connection) -> None:
    """SQLite's own upkeep of its query planner statistics (cheap; done once a night)."""
    conn.execute("PRAGMA optimize")


@contextmanager
def snapshot(conn: sqlite3.Connection):
    """One consistent view for several reads (in WAL mode, while another process may be writing)."""
    conn.execute("BEGIN")
    try:
        yield conn
    finally:
        conn.execute("ROLLBACK")


@contextmanager
def savepoint(conn: sqlite3.Connection, name: str = "part"):
    """A part of the open transaction that an error undoes alone (the error still propagates)."""
    conn.execute(f"SAVEPOINT {name}")
    try:
        yield conn
    except BaseException:
        conn.execute(f"ROLLBACK TO {name}")
        conn.execute(f"RELEASE {name}")
        raise
    conn.execute(f"RELEASE {name}")


def schema_version(conn: sqlite3.Connection) -> int:
    return conn.execute("PRAGMA user_version").fetchone()[0]


def migrate(conn: sqlite3.Connection, migrations: list[tuple[str, str]],
            steps: Mapping[int, Callable[[sqlite3.Connection], None]] | None = None) -> list[int]:
    """Apply pending migrations, each in its own transaction; return the versions applied.

    steps: Python run after the SQL of the migration with that number, in its transaction, for data
    SQL cannot compute (a crash leaves neither the new columns nor half of their values)."""
    current = schema_version(conn)
    latest = len(migrations)
    if current > latest:
        raise SchemaTooNew(f"the database is at schema version {current}, this store-edge knows only "
                           f"up to {latest}: install the newer store-edge or restore a backup")
    applied = []
    for version, (name, sql) in enumerate(migrations[current:], start=current + 1):
        with transaction(conn):
            for statement in split_sql(sql):
                conn.execute(statement)
            if steps and version in steps:
                steps[version](conn)
            conn.execute(f"PRAGMA user_version = {version}")
        log.info("schema migrated", extra={"kv": {"version": version, "migration": name}})
        applied.append(version)
    return applied


def split_sql(script: str) -> list[str]:
    """Split a migration into statements (executescript would commit on its own)."""
    statements, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            if buf.strip():
                statements.append(buf.strip())
            buf = ""
    if buf.strip():
        raise ValueError(f"incomplete SQL statement in migration: {buf[:60]!r}")
    return statements


def open_db(path: str | Path, migrations: list[tuple[str, str]],
            steps: Mapping[int, Callable[[sqlite3.Connection], None]] | None = None) -> sqlite3.Connection:
    """Open (creating the folder and schema if needed) the read-write connection."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = connect(path)
    migrate(conn, migrations, steps)
    return conn


class Store:
    """The running store: a writer thread and a pool of readers, used from the event loop."""

    def __init__(self, path: str | Path, migrations: list[tuple[str, str]], readers: int = 2,
                 read_limit: float | None = None,
                 steps: Mapping[int, Callable[[sqlite3.Connection], None]] | None = None,
                 group_bulk: int = 1, group_seconds: float = GROUP_SECONDS):
        self.path = Path(path)
        # bulk jobs at most per transaction (1: each its own, the store's way) and the time after which
        # a group takes no more, so a write arriving meanwhile waits for a short group only
        self.group_bulk = group_bulk
        self.group_seconds = group_seconds
        self.migrations = migrations
        self.steps = steps
        self._readers = readers
        self.read_limit = read_limit  # seconds a read may take on the request readers; None: no limit
        # (lane, (due, order), item): lane 0 before lane 1 (bulk); within a lane the earliest due
        # first (time.monotonic(); a job without a place is due when it is queued), then FIFO; the
        # stop marker's lane 2 lets everything queued before close() finish first
        self._queue: queue.PriorityQueue = queue.PriorityQueue()
        self._order = itertools.count()
        self._writer: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._long: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._read_conns: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self.listeners: list[Callable[[], None]] = []  # called on the loop after every committed write

    # -- lifecycle ---------------------------------------------------------------------------
    def open(self) -> None:
        conn = open_db(self.path, self.migrations, self.steps)
        self._writer = threading.Thread(target=self._write_loop, args=(conn,), name="store-writer",
                                        daemon=True)
        self._writer.start()
        self._pool = ThreadPoolExecutor(self._readers, thread_name_prefix="store-reader")
        # one thread: long jobs queue behind each other rather than compete for the disk
        self._long = ThreadPoolExecutor(1, thread_name_prefix="store-long-reader")

    def close(self) -> None:
        if self._writer is not None:
            self._queue.put((2, self.bulk_place(), None))
            self._writer.join()
            self._writer = None
        for pool in (self._pool, self._long):
            if pool is not None:
                pool.shutdown(wait=True)
        self._pool = self._long = None
        with self._lock:
            for conn in self._read_conns:
                conn.close()
            self._read_conns.clear()

    @property
    def healthy(self) -> bool:
        return self._writer is not None and self._writer.is_alive()

    # -- writes ------------------------------------------------------------------------------
    async def write(self, fn: Callable[..., T], *args: Any) -> T:
        """Run fn(conn, *args) in one transaction on the writer thread, before any bulk work queued."""
        return await self._submit(0, fn, args)

    async def write_bulk(self, fn: Callable[..., T], *args: Any, place: int | None = None) -> T:
        """As `write`, but behind every `write` queued: for large batches that must not hold up
        the writes a person or a till is waiting for. Cancelled while queued: never run.

        place: the bulk lane's place (from `bulk_place`) of a job done in several transactions: its
        later parts keep the place of its first, so jobs finish one after another instead of all
        at once, interleaved part by part."""
        return await self._submit(1, fn, args, place)

    def bulk_place(self, due: float | None = None) -> tuple[float, int]:
        """A place in the bulk lane: jobs run earliest `due` (time.monotonic()) first, the same due
        in the order the places were taken. None: due now."""
        return (time.monotonic() if due is None else due, next(self._order))

    async def _submit(self, lane: int, fn: Callable[..., T], args: tuple,
                      place: tuple[float, int] | None = None) -> T:
        if self._writer is None:
            raise RuntimeError("store is not open")
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._queue.put((lane, self.bulk_place() if place is None else place, (fn, args, future, loop)))
        result = await future
        for listener in self.listeners:
            listener()
        return result

    def _write_loop(self, conn: sqlite3.Connection) -> None:
        held = None  # an item a bulk group took out of the queue and left to run next
        try:
            while True:
                item, held = held or self._queue.get(), None
                if item[2] is None:
                    break
                lane, _, (fn, args, future, loop) = item
                if lane == 1 and future.cancelled():  # bulk work nobody waits for any more is not begun
                    continue
                if lane == 1 and self.group_bulk > 1:
                    held = self._write_group(conn, item)
                    continue
                try:
                    with transaction(conn):
                        result = fn(conn, *args)
                except BaseException as exc:  # handed to the awaiting coroutine, never lost
                    loop.call_soon_threadsafe(_settle, future, None, exc)
                else:
                    loop.call_soon_threadsafe(_settle, future, result, None)
        finally:
            conn.close()

    def _write_group(self, conn: sqlite3.Connection, item: tuple) -> tuple | None:
        """Run the bulk job `item` and the bulk jobs queued behind it in one transaction; return the
        item that ended the group (a write, the stop marker) for the loop to run next, or None."""
        outcomes: list[list] = []  # [future, loop, result, exc] of each job run, in order
        deadline = time.monotonic() + self.group_seconds
        held = None
        try:
            conn.execute("BEGIN IMMEDIATE")
            while True:
                _, _, (fn, args, future, loop) = item
                if not future.cancelled():
                    outcome = [future, loop, None, None]
                    outcomes.append(outcome)
                    conn.execute("SAVEPOINT bulk_job")
                    try:
                        outcome[2] = fn(conn, *args)
                    except BaseException as exc:
                        outcome[3] = exc
                        if not conn.in_transaction:  # SQLite undid the whole transaction (disk full, I/O)
                            raise
                        conn.execute("ROLLBACK TO bulk_job")
                    conn.execute("RELEASE bulk_job")
                if len(outcomes) >= self.group_bulk or time.monotonic() >= deadline:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item[0] != 1:  # a write (or the stop marker) runs after this group, never inside it
                    held = item
                    break
            conn.execute("COMMIT")
        except BaseException as exc:  # nothing of the group is committed: every job of it hears why
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if not outcomes:  # BEGIN itself failed: the job that opened the group must hear it too
                _, _, (_, _, future, loop) = item
                outcomes.append([future, loop, None, exc])
            for outcome in outcomes:
                outcome[2:] = [None, exc]
        for future, loop, result, exc in outcomes:
            loop.call_soon_threadsafe(_settle, future, result, exc)
        return held

    # -- reads -------------------------------------------------------------------------------
    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run fn(conn, *args) on a reader thread with its own connection, within the read limit
        (ReadTimeout past it)."""
        if self._pool is None:
            raise RuntimeError("store is not open")
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._read, fn, args, self.read_limit)

    async def read_long(self, fn: Callable[..., T], *args: Any) -> T:
        """Run fn(conn, *args) on the long-job thread: one snapshot, no time limit, no request reader."""
        if self._long is None:
            raise RuntimeError("store is not open")
        return await asyncio.get_running_loop().run_in_executor(self._long, self._read, fn, args, None)

    def _read(self, fn, args, limit: float | None):
        local = getattr(self._local, "reader", None)
        if local is None:
            local = self._local.reader = _Reader(connect(self.path))
            with self._lock:
                self._read_conns.append(local.conn)
        conn = local.conn
        conn.execute("BEGIN")  # one snapshot for everything fn reads
        local.deadline = None if limit is None else time.monotonic() + limit
        try:
            return fn(conn, *args)
        except sqlite3.OperationalError:
            if local.stopped:
                log.warning("read stopped at its time limit", extra={"kv": {
                    "read": getattr(fn, "__qualname__", repr(fn)), "limit_s": limit}})
                raise ReadTimeout(limit) from None
            raise
        finally:
            local.deadline, local.stopped = None, False  # the ROLLBACK itself must never be stopped
            conn.execute("ROLLBACK")


class _Reader:
    """A reader thread's connection and the deadline its progress handler enforces."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn
        self.deadline: float | None = None
        self.stopped = False
        conn.set_progress_handler(self._over, PROGRESS_STEPS)

    def _over(self) -> int:
        if self.deadline is not None and time.monotonic() > self.deadline:
            self.stopped = True
            return 1  # SQLite abandons the statement: OperationalError "interrupted"
        return 0


def _settle(future: asyncio.Future, result, exc) -> None:
    if future.cancelled():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)
