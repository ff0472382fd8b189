"""The store: pragmas, migrations, and the writer thread's all-or-nothing transactions."""

import asyncio
import sqlite3

import pytest

from edge.core import sqlite
from edge.store import db, stock
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


def test_the_pinyin_migration_fills_the_products_already_there(tmp_path):
    # a store from before the pinyin keys, with products in it
    conn = db.connect(tmp_path / "store.db")
    # found by name: later migrations are appended after it
    before = [name for name, _ in MIGRATIONS].index("catalog: pinyin and initials of product names")
    sqlite.migrate(conn, MIGRATIONS[:before])
    with db.transaction(conn):
        for sku, name in (("A", "可口可乐 ５００ml"), ("B", "绿茶"), ("C", "Oreo")):
            conn.execute("INSERT INTO products (sku, name, price_fen, updated_at) VALUES (?, ?, 1, '')", (sku, name))
    assert db.migrate(conn) == list(range(before + 1, len(MIGRATIONS) + 1))
    assert [tuple(r) for r in conn.execute("SELECT sku, name_pinyin, name_initials FROM products ORDER BY sku")] == [
        ("A", "kekoukele500ml", "kkkl500ml"), ("B", "lvcha", "lc"), ("C", "oreo", "oreo")]
    assert [item["sku"] for item in stock.list_balances(conn, q="kkkl")["items"]] == ["A"]
    conn.close()


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


# a query that runs for seconds: the read limit, not the data, decides when it ends
SLOW = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100000000) SELECT count(*) FROM n"


async def test_a_read_past_its_limit_is_stopped_and_the_reader_goes_on(tmp_path):
    store = db.open_store(tmp_path / "store.db", readers=1, read_limit=0.05)
    store.open()
    try:
        with pytest.raises(sqlite.ReadTimeout) as caught:
            await store.read(lambda conn: conn.execute(SLOW).fetchone())
        assert caught.value.status == 503 and caught.value.as_dict()["error"]["code"] == "read_timeout"
        # the same (only) reader answers the next read: its connection and snapshot were released
        assert await store.read(lambda conn: conn.execute("SELECT count(*) FROM products").fetchone()[0]) == 0
    finally:
        store.close()


async def test_long_jobs_read_on_their_own_thread_without_the_limit(tmp_path):
    import threading

    store = db.open_store(tmp_path / "store.db", readers=1, read_limit=0.01)
    store.open()
    release = threading.Event()
    try:
        def long_job(conn):
            release.wait(10)  # holds its thread until a request read has been answered
            return threading.current_thread().name, conn.execute(SLOW.replace("100000000", "300000")).fetchone()[0]

        job = asyncio.ensure_future(store.read_long(long_job))
        # the one request reader is free while the long job runs
        assert (await store.read(lambda conn: threading.current_thread().name)).startswith("store-reader")
        release.set()
        thread, counted = await job
        assert thread.startswith("store-long-reader") and counted == 300000
    finally:
        release.set()
        store.close()


async def test_the_ledger_check_and_reconciliation_read_on_the_long_job_thread(tmp_path, monkeypatch):
    import threading
    from types import SimpleNamespace

    from edge.services import jobs
    from edge.store import reconciliations, stock
    from protocol.stock import checksum
    from sync import reconcile

    threads = []
    real_verify = stock.verify

    def verify(conn):
        threads.append(("verify", threading.current_thread().name))
        return real_verify(conn)

    def balances(conn):
        threads.append(("balances", threading.current_thread().name))
        return {}

    class Cloud:
        async def get_state(self):
            return SimpleNamespace(body={"balances_checksum": checksum({})})

    monkeypatch.setattr(jobs.stock, "verify", verify)
    monkeypatch.setattr(reconciliations, "expected_cloud_balances", balances)
    store = db.open_store(tmp_path / "store.db", readers=1, read_limit=5)
    store.open()
    try:
        await jobs.nightly_ledger_check(store)
        assert (await reconcile.reconcile(store, Cloud()))["result"] == "match"
    finally:
        store.close()
    assert [name for name, _ in threads] == ["verify", "balances"]
    assert all(thread.startswith("store-long-reader") for _, thread in threads), threads
