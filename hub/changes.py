"""The change feed: what the hub publishes to stores (protocol section 3), the download of it, and
the store's state and balances as the hub has them (section 4)."""

from __future__ import annotations

import json
import uuid

from aiohttp import web

from hub.db import Conn
from hub.http import answer, auth_store, query_int
from hub.state import HUB
from protocol.stock import checksum as balances_checksum

CHANGES_LOCK = 0x68756232      # pg_advisory_xact_lock key ("hub2") held from a change's insert to its commit


async def add_change(db: Conn, store_id: str | None, change_type: str, payload: dict, now: str) -> tuple[int, str]:
    """Publish a change to one store (None: to every store); (cursor, change id)."""
    change_id = "c-" + str(uuid.uuid4())
    if db.dialect == "postgresql":
        # A cursor is taken from the sequence when the row is inserted, but becomes visible at commit: two
        # transactions could commit in the other order, and a store that pulled after the later cursor
        # would never see the earlier one. Held to the commit, this lock makes the cursor order the commit
        # order. Only changes take it (admin writes, not uploads), so it costs little.
        await db.execute("SELECT pg_advisory_xact_lock($1)", CHANGES_LOCK)
    cursor = await db.fetchval("INSERT INTO changes (id, store_id, type, created_at, payload) VALUES ($1, $2, $3, $4, "
                               "$5) RETURNING cursor", change_id, store_id, change_type, now,
                               json.dumps(payload, ensure_ascii=False, separators=(",", ":")))
    if db.dialect == "postgresql":  # other hub processes wake the stores connected to them, after the commit
        await db.notify({"store_id": store_id, "cursor": cursor})
    return cursor, change_id


async def feed_cursor(db: Conn, store_id: str) -> int:
    return await db.fetchval("SELECT coalesce(max(cursor), 0) FROM changes WHERE store_id = $1 OR store_id IS NULL",
                             store_id)


async def get_changes(request: web.Request) -> web.Response:
    store_id = await auth_store(request)
    after = query_int(request, "after", 0, 0, 2 ** 62)
    limit = query_int(request, "limit", 500, 1, 1000)

    async def page(db: Conn):
        # two ordered, limited index searches (the store's, everyone's) merged: an OR would read and sort
        # every remaining change for each page, and a re-pull of a long feed would grow quadratically
        part = "SELECT cursor, id, type, created_at, payload FROM changes WHERE store_id {} AND cursor > $2 " \
               "ORDER BY cursor LIMIT $3"
        rows = await db.fetch(f"SELECT * FROM ({part.format('= $1')}) AS mine UNION ALL SELECT * FROM "
                              f"({part.format('IS NULL')}) AS everyones ORDER BY cursor LIMIT $3",
                              store_id, after, limit + 1)
        return [{"cursor": r[0], "id": r[1], "type": r[2], "created_at": r[3], "payload": json.loads(r[4])}
                for r in rows]

    changes = await request.app[HUB].db.read(page)
    more = len(changes) > limit
    changes = changes[:limit]
    request.app[HUB].metrics.pulled(store_id, after, changes, request.app[HUB].now())
    return answer(request, {"next_cursor": changes[-1]["cursor"] if changes else after, "more": more,
                            "changes": changes})


async def balance_rows(db: Conn, store_id: str) -> list[dict]:
    """Every SKU whose on-hand or reserved is not zero, in ascending byte order of the SKU."""
    rows = await db.fetch("SELECT sku, on_hand, reserved FROM balances WHERE store_id = $1 AND "
                          "(on_hand <> 0 OR reserved <> 0)", store_id)
    return [{"sku": r[0], "on_hand": r[1], "reserved": r[2]} for r in sorted(rows, key=lambda r: r[0].encode())]


def checksum(rows: list[dict]) -> str:
    return balances_checksum({r["sku"]: (r["on_hand"], r["reserved"]) for r in rows})


async def get_state(request: web.Request) -> web.Response:
    store_id = await auth_store(request)

    async def state(db: Conn):
        rows = await balance_rows(db, store_id)
        next_seq = await db.fetchval("SELECT next_seq FROM stores WHERE store_id = $1", store_id)
        return {"next_seq": next_seq, "last_cursor": await feed_cursor(db, store_id),
                "balances_checksum": checksum(rows), "balances_count": len(rows)}

    return answer(request, await request.app[HUB].db.read(state))


async def get_balances(request: web.Request) -> web.Response:
    store_id = await auth_store(request)

    async def balances(db: Conn):
        rows = await balance_rows(db, store_id)
        next_seq = await db.fetchval("SELECT next_seq FROM stores WHERE store_id = $1", store_id)
        return {"next_seq": next_seq, "balances": rows, "balances_checksum": checksum(rows)}

    return answer(request, await request.app[HUB].db.read(balances))
