"""How the members' ledgers, holds and programmes (hub/member_*.py) reach the hub's database today.

Their code is written for hub/db.py's interface (`async def fn(db: Conn, ...)`, `$n` placeholders), while
the rest of the hub still hands plain functions to an edge.core.sqlite.Store (`hub.store`) until it moves
to hub.db.Database. These three bridges are the only places that know it: when the hub has moved, each
becomes one line (`hub.db.write(fn, ...)`, `await fn(db, ...)`, `await add_change(db, ...)`).
"""

from __future__ import annotations

import sqlite3
from typing import Any

from hub.changes import add_change
from hub.db import Conn, Work, on_sqlite
from hub.state import Hub


async def transact(hub: Hub, fn: Work, *args: Any, read: bool = False) -> Any:
    """fn in one transaction of its own: the writer's, or a reader's."""
    return await (hub.store.read if read else hub.store.write)(on_sqlite(fn), *args)


def within(conn: sqlite3.Connection, fn: Work, *args: Any) -> Any:
    """fn inside a transaction the hub's older code holds (an upload's, a member's certificate)."""
    return on_sqlite(fn)(conn, *args)


async def publish(db: Conn, change_type: str, payload: dict, now: str) -> tuple[int, str]:
    """A change for every store (the shared feed): (cursor, change id)."""
    return add_change(db.conn, None, change_type, payload, now)  # type: ignore[attr-defined]
