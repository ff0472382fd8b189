"""The inbox: every change downloaded from the cloud, by id, with what became of it (applied or rejected)."""

from __future__ import annotations

import sqlite3


def rejected(conn: sqlite3.Connection, limit: int) -> list[dict]:
    """Changes the store could not apply, newest first (the manager's sync page and the API)."""
    return [dict(r) for r in conn.execute("SELECT id, cursor, type, reason, received_at FROM inbox "
                                          "WHERE status = 'rejected' ORDER BY cursor DESC LIMIT ?", (limit,))]


def seen(conn: sqlite3.Connection, change_id: str) -> bool:
    return conn.execute("SELECT 1 FROM inbox WHERE id = ?", (change_id,)).fetchone() is not None


def record(conn: sqlite3.Connection, change_id: str, cursor: int, change_type: str, reason: str | None,
           now: str) -> None:
    """The change's fate, in the transaction that applied (or refused) it: seen once, never again."""
    conn.execute("INSERT INTO inbox (id, cursor, type, status, reason, received_at) VALUES (?, ?, ?, ?, ?, ?)",
                 (change_id, cursor, change_type, "applied" if reason is None else "rejected", reason, now))
