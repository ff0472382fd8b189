"""The inbox: every change downloaded from the cloud, by id, with what became of it (applied or rejected)."""

from __future__ import annotations

import sqlite3


def rejected(conn: sqlite3.Connection, limit: int) -> list[dict]:
    """Changes the store could not apply, newest first (the manager's sync page and the API)."""
    return [dict(r) for r in conn.execute("SELECT id, cursor, type, reason, received_at FROM inbox "
                                          "WHERE status = 'rejected' ORDER BY cursor DESC LIMIT ?", (limit,))]
