"""The change feed: what the hub publishes to stores (protocol section 3), the download of it, and
the store's state and balances as the hub has them (section 4)."""

from __future__ import annotations

import json
import uuid

from aiohttp import web

from hub.http import answer, auth_store, query_int
from hub.state import HUB
from protocol.stock import checksum as balances_checksum


def add_change(conn, store_id: str | None, change_type: str, payload: dict, now: str) -> tuple[int, str]:
    """Publish a change to one store (None: to every store); (cursor, change id)."""
    change_id = "c-" + str(uuid.uuid4())
    cursor = conn.execute("INSERT INTO changes (id, store_id, type, created_at, payload) VALUES (?, ?, ?, ?, ?) "
                          "RETURNING cursor", (change_id, store_id, change_type, now,
                                               json.dumps(payload, ensure_ascii=False, separators=(",", ":")))
                          ).fetchone()[0]
    return cursor, change_id


def feed_cursor(conn, store_id: str) -> int:
    return conn.execute("SELECT coalesce(max(cursor), 0) FROM changes WHERE store_id = ? OR store_id IS NULL",
                        (store_id,)).fetchone()[0]


async def get_changes(request: web.Request) -> web.Response:
    store_id = await auth_store(request)
    after = query_int(request, "after", 0, 0, 2 ** 62)
    limit = query_int(request, "limit", 500, 1, 1000)

    def page(conn):
        # two ordered, limited index searches (the store's, everyone's) merged: an OR would read and sort
        # every remaining change for each page, and a re-pull of a long feed would grow quadratically
        part = "SELECT cursor, id, type, created_at, payload FROM changes WHERE store_id {} AND cursor > ? " \
               "ORDER BY cursor LIMIT ?"
        rows = conn.execute(f"SELECT * FROM ({part.format('= ?')}) UNION ALL SELECT * FROM ({part.format('IS NULL')}) "
                            "ORDER BY cursor LIMIT ?", (store_id, after, limit + 1, after, limit + 1,
                                                        limit + 1)).fetchall()
        return [{"cursor": r[0], "id": r[1], "type": r[2], "created_at": r[3], "payload": json.loads(r[4])}
                for r in rows]

    changes = await request.app[HUB].store.read(page)
    more = len(changes) > limit
    changes = changes[:limit]
    request.app[HUB].metrics.pulled(store_id, after, changes, request.app[HUB].now())
    return answer(request, {"next_cursor": changes[-1]["cursor"] if changes else after, "more": more,
                            "changes": changes})


def balance_rows(conn, store_id: str) -> list[dict]:
    """Every SKU whose on-hand or reserved is not zero, in ascending byte order of the SKU."""
    rows = conn.execute("SELECT sku, on_hand, reserved FROM balances WHERE store_id = ? AND "
                        "(on_hand <> 0 OR reserved <> 0)", (store_id,)).fetchall()
    return [{"sku": r[0], "on_hand": r[1], "reserved": r[2]} for r in sorted(rows, key=lambda r: r[0].encode())]


def checksum(rows: list[dict]) -> str:
    return balances_checksum({r["sku"]: (r["on_hand"], r["reserved"]) for r in rows})


async def get_state(request: web.Request) -> web.Response:
    store_id = await auth_store(request)

    def state(conn):
        rows = balance_rows(conn, store_id)
        next_seq = conn.execute("SELECT next_seq FROM stores WHERE store_id = ?", (store_id,)).fetchone()[0]
        return {"next_seq": next_seq, "last_cursor": feed_cursor(conn, store_id),
                "balances_checksum": checksum(rows), "balances_count": len(rows)}

    return answer(request, await request.app[HUB].store.read(state))


async def get_balances(request: web.Request) -> web.Response:
    store_id = await auth_store(request)

    def balances(conn):
        rows = balance_rows(conn, store_id)
        next_seq = conn.execute("SELECT next_seq FROM stores WHERE store_id = ?", (store_id,)).fetchone()[0]
        return {"next_seq": next_seq, "balances": rows, "balances_checksum": checksum(rows)}

    return answer(request, await request.app[HUB].store.read(balances))
