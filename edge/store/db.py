"""The store's database: edge/core/sqlite.py with this store's migrations."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from edge.core import sqlite
from edge.core.sqlite import SchemaTooNew, Store, connect, schema_version, transaction  # noqa: F401 (the store's API)
from edge.store.migrations import MIGRATIONS, STEPS


def migrate(conn: sqlite3.Connection) -> list[int]:
    return sqlite.migrate(conn, MIGRATIONS, STEPS)


def open_store_db(path: str | Path) -> sqlite3.Connection:
    """Open (creating the folder and schema if needed) the read-write connection."""
    return sqlite.open_db(path, MIGRATIONS, STEPS)


def open_store(path: str | Path, readers: int = 2, read_limit: float | None = None) -> Store:
    """The running store (not yet opened): a writer thread and a pool of readers (each read stopped
    after read_limit seconds, if given)."""
    return Store(path, MIGRATIONS, readers, read_limit, STEPS)


def read_only(path: str | Path, fn, *args, timeout: float = 2.0):
    """fn(conn, *args) on a read-only connection to a store file (the doctor: it never creates or
    migrates one)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=timeout)
    try:
        return fn(conn, *args)
    finally:
        conn.close()


def inspect(path: str | Path, timeout: float) -> int:
    """The schema version of a store file, read-only, after reading its whole schema (a damaged file
    raises sqlite3.Error here, not in the daemon)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=timeout)
    try:
        version = schema_version(conn)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return version
    finally:
        conn.close()
