"""The store: pragmas, migrations, and the writer thread's all-or-nothing transactions."""

import asyncio
import sqlite3

import pytest

from edge.core import sqlite
from edge.store import db
from edge.store.migrations import MIGRATIONS


def test_pragmas_and_migrations(tmp_path):
    conn = db.open_store_db(tmp_path / "s" / "store.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2          # FULL
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert db.schema_version(conn) == len(MIGRATIONS)
    assert db.migrate(conn) == []                                           # nothing left to apply
    conn.close()


def test_a_newer_schema_is_refused(tmp_path):
    conn = db.open_store_db(tmp_path / "store.db")
    conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(db.SchemaTooNew, match="install the newer store-edge"):
        db.migrate(conn)


def test_split_sql_keeps_triggers_whole():
    statements = sqlite.split_sql("CREATE TABLE t (a);\nCREATE TRIGGER x BEFORE DELETE ON t\n"
                              "BEGIN SELECT RAISE(ABORT, 'no'); END;\n")
    assert len(statements) == 2 and statements[1].endswith("END;")
    with pytest.raises(ValueError):
        sqlite.split_sql("CREATE TABLE t (a")


async def test_writer_commits_or_rolls_back_whole(tmp_path):
    store = db.open_store(tmp_path / "store.db")
    store.open()
    try:
        now = "2026-01-01T00:00:00.000Z"

        def good(conn):
            conn.execute("INSERT INTO products (sku, name, price_fen, updated_at) VALUES ('A', 'a', 1, ?)", (now,))
            return "done"

        def half_then_fail(conn):
            conn.execute("INSERT INTO products (sku, name, price_fen, updated_at) VALUES ('B', 'b', 1, ?)", (now,))
            raise RuntimeError("boom")

        assert await store.write(good) == "done"
        with pytest.raises(RuntimeError, match="boom"):
            await store.write(half_then_fail)
        with pytest.raises(sqlite3.IntegrityError):     # a constraint error reaches the caller too
            await store.write(good)
        skus = await store.read(lambda conn: [r[0] for r in conn.execute("SELECT sku FROM products")])
        assert skus == ["A"]

        # many coroutines at once: every write lands, one at a time, on the one writer thread
        async def add(i):
            return await store.write(lambda conn: conn.execute(
                "INSERT INTO products (sku, name, price_fen, updated_at) VALUES (?, 'n', 1, ?)",
                (f"C{i}", now)).lastrowid)
        await asyncio.gather(*(add(i) for i in range(200)))
        count = await store.read(lambda conn: conn.execute("SELECT count(*) FROM products").fetchone()[0])
        assert count == 201
        assert store.healthy
    finally:
        store.close()
    assert not store.healthy
