"""hub/db.py: hub code written once as coroutines runs on SQLite's threads without a loop."""

import asyncio

import pytest

from hub.db import SqliteDatabase, drive, sqlite_sql

MIGRATIONS = [("create t", "CREATE TABLE t (k TEXT PRIMARY KEY, n INTEGER NOT NULL);")]


def test_numbered_placeholders_become_sqlites():
    assert sqlite_sql("SELECT $1, $2 WHERE a = $10") == "SELECT ?1, ?2 WHERE a = ?10"


def test_a_coroutine_that_waits_for_something_else_is_refused():
    async def sleeps():
        await asyncio.sleep(0)

    with pytest.raises(RuntimeError, match="awaited something other"):
        drive(sleeps())


async def test_write_then_read_in_one_transaction_each(tmp_path):
    db = SqliteDatabase(tmp_path / "hub.db", MIGRATIONS)
    await db.open()
    try:
        async def put(c, k, n):
            await c.execute("INSERT INTO t (k, n) VALUES ($1, $2)", k, n)
            await c.executemany("INSERT INTO t (k, n) VALUES ($1, $2)", [(k + "2", n * 2)])
            return await c.fetchval("SELECT sum(n) FROM t")

        assert await db.write(put, "a", 3) == 9

        async def fails(c):
            await c.execute("INSERT INTO t (k, n) VALUES ($1, $2)", "b", 1)
            raise ValueError("no")

        with pytest.raises(ValueError):
            await db.write(fails)

        async def rows(c):
            return [dict(r) for r in await c.fetch("SELECT k, n FROM t ORDER BY k")], await c.fetchrow(
                "SELECT n FROM t WHERE k = $1", "zz")

        assert await db.read(rows) == ([{"k": "a", "n": 3}, {"k": "a2", "n": 6}], None)  # the failed one rolled back
        assert await db.fetchval("SELECT n FROM t WHERE k = $1", "a2") == 6
        assert await db.fetchval("SELECT n FROM t WHERE k = $1", "zz") is None
    finally:
        await db.close()
