"""The admin API's stores, catalog, corrections, raw changes and epoch (docs/hub-admin-api.md),
and a store's online availability."""

from __future__ import annotations

import json
import logging
import secrets

from aiohttp import WSCloseCode, web

from edge.core.clock import iso
from hub.bodies import ChangeIn, CorrectionIn, ProductsIn, StoreIn
from hub.changes import add_change, feed_cursor
from hub.db import Conn, placeholders
from hub.errors import HubError, bad_request, not_found, sha256
from hub.http import answer, auth_admin, model_body, query_int
from hub.state import Hub, new_epoch, set_epoch
from hub.wakeups import hello_all
from protocol.events import MAX_SEQ
from protocol.fields import parse_time

log = logging.getLogger(__name__)


async def store_exists(db: Conn, store_id: str) -> None:
    if not await db.fetchrow("SELECT 1 FROM stores WHERE store_id = $1", store_id):
        raise not_found(f"no store {store_id}")


async def admin_put_store(request: web.Request) -> web.Response:
    hub = auth_admin(request)
    body = await model_body(request, StoreIn)
    token = "st_" + secrets.token_urlsafe(32)

    async def put(db: Conn, now):
        created = await db.fetchval(
            "INSERT INTO stores (store_id, name, token_hash, created_at, token_set_at) VALUES ($1, $2, $3, $4, $4) "
            "ON CONFLICT (store_id) DO NOTHING RETURNING 1", body.store_id, body.name, sha256(token), now) == 1
        if not created:
            await db.execute("UPDATE stores SET name = $1, token_hash = $2, token_set_at = $3 WHERE store_id = $4",
                             body.name, sha256(token), now, body.store_id)
        return created

    created = await hub.db.write(put, iso(hub.now()))
    if not created:  # the old token stops working now, also on an open hint socket
        await hub.close_sockets(body.store_id, WSCloseCode.POLICY_VIOLATION, b"token rotated")
    log.info("store registered" if created else "store token rotated", extra={"kv": {"store": body.store_id}})
    return answer(request, {"store_id": body.store_id, "name": body.name, "token": token, "created": created},
                  201 if created else 200)


async def admin_list_stores(request: web.Request) -> web.Response:
    hub = auth_admin(request)

    async def listing(db: Conn):
        return [dict(r) for r in await db.fetch(
            "SELECT store_id, name, next_seq, last_upload_at, created_at FROM stores ORDER BY store_id")]

    rows = await hub.db.read(listing)
    for row in rows:
        row["last_seen_at"] = hub.last_seen.get(row["store_id"])
    return answer(request, {"stores": rows})


async def admin_get_store(request: web.Request) -> web.Response:
    hub = auth_admin(request)
    store_id = request.match_info["store_id"]

    async def view(db: Conn):
        row = await db.fetchrow("SELECT store_id, name, next_seq, last_upload_at, created_at, token_set_at FROM stores "
                                "WHERE store_id = $1", store_id)
        if row is None:
            raise not_found(f"no store {store_id}")
        events = {"applied": 0, "rejected": 0}
        events.update(await db.fetch("SELECT status, count(*) FROM events WHERE store_id = $1 GROUP BY status",
                                     store_id))
        orders = dict(await db.fetch("SELECT state, count(*) FROM orders WHERE store_id = $1 GROUP BY state",
                                     store_id))
        pending = await db.fetchval("SELECT count(*) FROM orders WHERE store_id = $1 AND state = 'created' AND "
                                    "received_at IS NULL", store_id)
        balances = [dict(r) for r in await db.fetch("SELECT sku, on_hand, reserved, updated_at FROM balances "
                                                    "WHERE store_id = $1 ORDER BY sku", store_id)]
        return {**dict(row), "last_seen_at": hub.last_seen.get(store_id), "events": events, "orders": orders,
                "orders_pending": pending, "hint_sockets": len(hub.sockets.get(store_id, ())),
                "last_cursor": await feed_cursor(db, store_id), "balances": balances}

    return answer(request, await hub.db.read(view))


async def admin_store_events(request: web.Request) -> web.Response:
    hub = auth_admin(request)
    store_id = request.match_info["store_id"]
    status = request.query.get("status")
    if status not in (None, "", "applied", "rejected"):
        raise bad_request("status must be applied or rejected")
    after = query_int(request, "after_seq", 0, 0, MAX_SEQ)
    limit = query_int(request, "limit", 100, 1, 1000)

    async def listing(db: Conn):
        await store_exists(db, store_id)
        only = "AND status = $4 " if status else ""
        rows = await db.fetch("SELECT seq, event_id AS id, type, created_at, status, reason, received_at, payload "
                              f"FROM events WHERE store_id = $1 AND seq > $2 {only}ORDER BY seq LIMIT $3",
                              store_id, after, limit + 1, *([status] if status else []))
        items = [{**dict(r), "payload": json.loads(r["payload"])} for r in rows[:limit]]
        return {"events": items, "next_after_seq": items[-1]["seq"] if len(rows) > limit else None}

    return answer(request, await hub.db.read(listing))


async def availability(db: Conn, hub: Hub, store_id: str, skus: list[str] | None = None) -> dict:
    """Online availability: max(0, (on_hand - reserved) - pending - buffer); 0 while the store is stale."""
    row = await db.fetchrow("SELECT last_upload_at FROM stores WHERE store_id = $1", store_id)
    if row is None:
        raise not_found(f"no store {store_id}")
    # Fresh = the store has reported its balances once and has been in touch since: a quiet store with
    # an empty queue only pulls changes (every few minutes), and must not drop to zero online.
    last = max(filter(None, (row[0], hub.last_seen.get(store_id))), default=None)
    stale = row[0] is None or (hub.now() - parse_time(last)).total_seconds() > hub.stale_after
    # an order's few SKUs only, not the whole catalog and every balance of the store for each order
    only = [] if skus is None else list(skus)

    def among(column: str, first: int) -> str:
        """The condition of the SKUs asked about, their placeholders from $first; every row if none were named."""
        if skus is None:
            return "1 = 1"
        return f"{column} IN ({placeholders(first, len(only))})"

    products = dict(await db.fetch("SELECT sku, active FROM products WHERE " + among("sku", 1), *only))
    balances = {r[0]: r[1] - r[2] for r in await db.fetch(
        "SELECT sku, on_hand, reserved FROM balances WHERE store_id = $1 AND " + among("sku", 2), store_id, *only)}
    pending = dict(await db.fetch(
        "SELECT l.sku, sum(l.qty) FROM order_lines l JOIN orders o USING (order_id) WHERE o.store_id = $1 AND "
        "o.state = 'created' AND o.received_at IS NULL AND " + among("l.sku", 2) + " GROUP BY l.sku",
        store_id, *only))
    items = []
    for sku in skus if skus is not None else sorted(set(products) | set(balances), key=str.encode):
        available, held = balances.get(sku, 0), pending.get(sku, 0)
        online = 0 if stale or not products.get(sku, 0) else max(0, available - held - hub.safety_buffer)
        items.append({"sku": sku, "balance_available": available, "pending": held, "buffer": hub.safety_buffer,
                      "online_available": online, "active": bool(products.get(sku, 0))})
    return {"store_id": store_id, "stale": stale, "last_upload_at": last, "stale_after": hub.stale_after,
            "items": items}


async def admin_availability(request: web.Request) -> web.Response:
    hub = auth_admin(request)
    return answer(request, await hub.db.read(availability, hub, request.match_info["store_id"]))



async def admin_products(request: web.Request) -> web.Response:
    hub = auth_admin(request)
    body = await model_body(request, ProductsIn)

    async def upsert(db: Conn, now):
        if body.store_id is not None:
            await store_exists(db, body.store_id)
        cursors = []
        for index, product in enumerate(body.products):
            for code in product.barcodes:
                owner = await db.fetchrow("SELECT sku FROM barcodes WHERE code = $1", code)
                if owner is not None and owner[0] != product.sku:
                    raise HubError(409, "barcode_taken", f"products[{index}]: barcode {code} already belongs to "
                                   f"SKU {owner[0]}", sku=product.sku, barcode=code)
            await db.execute(
                "INSERT INTO products (sku, name, price_fen, unit, category, low_stock, barcodes, active, updated_at) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (sku) DO UPDATE SET name = excluded.name, "
                "price_fen = excluded.price_fen, unit = excluded.unit, category = excluded.category, "
                "low_stock = excluded.low_stock, barcodes = excluded.barcodes, active = excluded.active, "
                "updated_at = excluded.updated_at",
                product.sku, product.name, product.price_fen, product.unit, product.category, product.low_stock,
                json.dumps(product.barcodes), int(product.active), now)
            await db.execute("DELETE FROM barcodes WHERE sku = $1", product.sku)
            await db.executemany("INSERT INTO barcodes (code, sku) VALUES ($1, $2)",
                                 [(code, product.sku) for code in product.barcodes])
            cursors.append((await add_change(db, body.store_id, "product.upserted", product.model_dump(), now))[0])
        return cursors

    cursors = await hub.db.write(upsert, iso(hub.now()))
    await hub.changed((body.store_id, cursors[-1]))
    log.info("products published", extra={"kv": {"count": len(cursors), "store": body.store_id or "all",
                                                  "cursor": cursors[-1]}})
    return answer(request, {"upserted": len(cursors), "first_cursor": cursors[0], "last_cursor": cursors[-1]})


async def admin_correction(request: web.Request) -> web.Response:
    hub = auth_admin(request)
    store_id = request.match_info["store_id"]
    body = await model_body(request, CorrectionIn)

    async def correct(db: Conn, now):
        await store_exists(db, store_id)
        if not await db.fetchrow("SELECT 1 FROM products WHERE sku = $1", body.sku):
            raise HubError(400, "unknown_sku", f"{body.sku} is not in the chain catalog", sku=body.sku)
        return await add_change(db, store_id, "stock.correction", body.model_dump(), now)

    cursor, change_id = await hub.db.write(correct, iso(hub.now()))
    await hub.changed((store_id, cursor))
    log.info("correction published", extra={"kv": {"store": store_id, "sku": body.sku, "qty": body.qty}})
    return answer(request, {"change_id": change_id, "cursor": cursor}, 201)


async def admin_change(request: web.Request) -> web.Response:
    hub = auth_admin(request)
    body = await model_body(request, ChangeIn)

    async def publish(db: Conn, now):
        if body.store_id is not None:
            await store_exists(db, body.store_id)
        return await add_change(db, body.store_id, body.type, body.payload, now)

    cursor, change_id = await hub.db.write(publish, iso(hub.now()))
    await hub.changed((body.store_id, cursor))
    log.info("change published", extra={"kv": {"type": body.type, "store": body.store_id or "all", "cursor": cursor}})
    return answer(request, {"change_id": change_id, "cursor": cursor}, 201)


async def admin_epoch(request: web.Request) -> web.Response:
    hub = auth_admin(request)
    previous, epoch = hub.epoch, new_epoch()
    await hub.db.write(set_epoch, epoch)
    hub.epoch = epoch
    await hub.committed(epoch=epoch)
    log.warning("new epoch", extra={"kv": {"epoch": epoch, "previous": previous, "why": "admin API"}})
    await hello_all(hub)  # connected stores learn it at once (other hub processes' through hub/wakeups.py)
    return answer(request, {"previous_epoch": previous})
