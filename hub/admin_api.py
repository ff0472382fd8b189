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
from hub.errors import HubError, bad_request, not_found, sha256
from hub.http import answer, auth_admin, model_body, query_int
from hub.state import Hub, new_epoch, set_epoch
from protocol.events import MAX_SEQ
from protocol.fields import parse_time

log = logging.getLogger(__name__)


def store_exists(conn, store_id: str) -> None:
    if not conn.execute("SELECT 1 FROM stores WHERE store_id = ?", (store_id,)).fetchone():
        raise not_found(f"no store {store_id}")


async def admin_put_store(request: web.Request) -> web.Response:
    hub = auth_admin(request)
    body = await model_body(request, StoreIn)
    token = "st_" + secrets.token_urlsafe(32)

    def put(conn, now):
        created = conn.execute(
            "INSERT INTO stores (store_id, name, token_hash, created_at, token_set_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (store_id) DO NOTHING", (body.store_id, body.name, sha256(token), now, now)).rowcount == 1
        if not created:
            conn.execute("UPDATE stores SET name = ?, token_hash = ?, token_set_at = ? WHERE store_id = ?",
                         (body.name, sha256(token), now, body.store_id))
        return created

    created = await hub.store.write(put, iso(hub.now()))
    if not created:  # the old token stops working now, also on an open hint socket
        await hub.close_sockets(body.store_id, WSCloseCode.POLICY_VIOLATION, b"token rotated")
    log.info("store registered" if created else "store token rotated", extra={"kv": {"store": body.store_id}})
    return answer(request, {"store_id": body.store_id, "name": body.name, "token": token, "created": created},
                  201 if created else 200)


async def admin_list_stores(request: web.Request) -> web.Response:
    hub = auth_admin(request)
    rows = await hub.store.read(lambda conn: [dict(r) for r in conn.execute(
        "SELECT store_id, name, next_seq, last_upload_at, created_at FROM stores ORDER BY store_id")])
    for row in rows:
        row["last_seen_at"] = hub.last_seen.get(row["store_id"])
    return answer(request, {"stores": rows})


async def admin_get_store(request: web.Request) -> web.Response:
    hub = auth_admin(request)
    store_id = request.match_info["store_id"]

    def view(conn):
        row = conn.execute("SELECT store_id, name, next_seq, last_upload_at, created_at, token_set_at FROM stores "
                           "WHERE store_id = ?", (store_id,)).fetchone()
        if row is None:
            raise not_found(f"no store {store_id}")
        events = {"applied": 0, "rejected": 0}
        events.update(conn.execute("SELECT status, count(*) FROM events WHERE store_id = ? GROUP BY status",
                                   (store_id,)).fetchall())
        orders = dict(conn.execute("SELECT state, count(*) FROM orders WHERE store_id = ? GROUP BY state",
                                   (store_id,)).fetchall())
        pending = conn.execute("SELECT count(*) FROM orders WHERE store_id = ? AND state = 'created' AND "
                               "received_at IS NULL", (store_id,)).fetchone()[0]
        balances = [dict(r) for r in conn.execute("SELECT sku, on_hand, reserved, updated_at FROM balances "
                                                  "WHERE store_id = ? ORDER BY sku", (store_id,))]
        return {**dict(row), "last_seen_at": hub.last_seen.get(store_id), "events": events, "orders": orders,
                "orders_pending": pending, "hint_sockets": len(hub.sockets.get(store_id, ())),
                "last_cursor": feed_cursor(conn, store_id), "balances": balances}

    return answer(request, await hub.store.read(view))


async def admin_store_events(request: web.Request) -> web.Response:
    hub = auth_admin(request)
    store_id = request.match_info["store_id"]
    status = request.query.get("status")
    if status not in (None, "", "applied", "rejected"):
        raise bad_request("status must be applied or rejected")
    after = query_int(request, "after_seq", 0, 0, MAX_SEQ)
    limit = query_int(request, "limit", 100, 1, 1000)

    def listing(conn):
        store_exists(conn, store_id)
        rows = conn.execute("SELECT seq, event_id AS id, type, created_at, status, reason, received_at, payload "
                            "FROM events WHERE store_id = ? AND seq > ? AND (? IS NULL OR status = ?) ORDER BY seq "
                            "LIMIT ?", (store_id, after, status or None, status or None, limit + 1)).fetchall()
        items = [{**dict(r), "payload": json.loads(r["payload"])} for r in rows[:limit]]
        return {"events": items, "next_after_seq": items[-1]["seq"] if len(rows) > limit else None}

    return answer(request, await hub.store.read(listing))


def availability(conn, hub: Hub, store_id: str, skus: list[str] | None = None) -> dict:
    """Online availability: max(0, (on_hand - reserved) - pending - buffer); 0 while the store is stale."""
    row = conn.execute("SELECT last_upload_at FROM stores WHERE store_id = ?", (store_id,)).fetchone()
    if row is None:
        raise not_found(f"no store {store_id}")
    # Fresh = the store has reported its balances once and has been in touch since: a quiet store with
    # an empty queue only pulls changes (every few minutes), and must not drop to zero online.
    last = max(filter(None, (row[0], hub.last_seen.get(store_id))), default=None)
    stale = row[0] is None or (hub.now() - parse_time(last)).total_seconds() > hub.stale_after
    products = dict(conn.execute("SELECT sku, active FROM products").fetchall())
    balances = {r[0]: r[1] - r[2] for r in conn.execute(
        "SELECT sku, on_hand, reserved FROM balances WHERE store_id = ?", (store_id,))}
    pending = dict(conn.execute(
        "SELECT l.sku, sum(l.qty) FROM order_lines l JOIN orders o USING (order_id) WHERE o.store_id = ? AND "
        "o.state = 'created' AND o.received_at IS NULL GROUP BY l.sku", (store_id,)).fetchall())
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
    return answer(request, await hub.store.read(availability, hub, request.match_info["store_id"]))



async def admin_products(request: web.Request) -> web.Response:
    hub = auth_admin(request)
    body = await model_body(request, ProductsIn)

    def upsert(conn, now):
        if body.store_id is not None:
            store_exists(conn, body.store_id)
        cursors = []
        for index, product in enumerate(body.products):
            for code in product.barcodes:
                owner = conn.execute("SELECT sku FROM barcodes WHERE code = ?", (code,)).fetchone()
                if owner is not None and owner[0] != product.sku:
                    raise HubError(409, "barcode_taken", f"products[{index}]: barcode {code} already belongs to "
                                   f"SKU {owner[0]}", sku=product.sku, barcode=code)
            conn.execute(
                "INSERT INTO products (sku, name, price_fen, unit, category, low_stock, barcodes, active, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (sku) DO UPDATE SET name = excluded.name, "
                "price_fen = excluded.price_fen, unit = excluded.unit, category = excluded.category, "
                "low_stock = excluded.low_stock, barcodes = excluded.barcodes, active = excluded.active, "
                "updated_at = excluded.updated_at",
                (product.sku, product.name, product.price_fen, product.unit, product.category, product.low_stock,
                 json.dumps(product.barcodes), int(product.active), now))
            conn.execute("DELETE FROM barcodes WHERE sku = ?", (product.sku,))
            conn.executemany("INSERT INTO barcodes (code, sku) VALUES (?, ?)",
                             [(code, product.sku) for code in product.barcodes])
            cursors.append(add_change(conn, body.store_id, "product.upserted", product.model_dump(), now)[0])
        return cursors

    cursors = await hub.store.write(upsert, iso(hub.now()))
    await hub.committed(cursor=cursors[-1])
    await hub.notify(body.store_id, {"type": "changes", "cursor": cursors[-1]})
    log.info("products published", extra={"kv": {"count": len(cursors), "store": body.store_id or "all",
                                                  "cursor": cursors[-1]}})
    return answer(request, {"upserted": len(cursors), "first_cursor": cursors[0], "last_cursor": cursors[-1]})


async def admin_correction(request: web.Request) -> web.Response:
    hub = auth_admin(request)
    store_id = request.match_info["store_id"]
    body = await model_body(request, CorrectionIn)

    def correct(conn, now):
        store_exists(conn, store_id)
        if not conn.execute("SELECT 1 FROM products WHERE sku = ?", (body.sku,)).fetchone():
            raise HubError(400, "unknown_sku", f"{body.sku} is not in the chain catalog", sku=body.sku)
        return add_change(conn, store_id, "stock.correction", body.model_dump(), now)

    cursor, change_id = await hub.store.write(correct, iso(hub.now()))
    await hub.committed(cursor=cursor)
    await hub.notify(store_id, {"type": "changes", "cursor": cursor})
    log.info("correction published", extra={"kv": {"store": store_id, "sku": body.sku, "qty": body.qty}})
    return answer(request, {"change_id": change_id, "cursor": cursor}, 201)


async def admin_change(request: web.Request) -> web.Response:
    hub = auth_admin(request)
    body = await model_body(request, ChangeIn)

    def publish(conn, now):
        if body.store_id is not None:
            store_exists(conn, body.store_id)
        return add_change(conn, body.store_id, body.type, body.payload, now)

    cursor, change_id = await hub.store.write(publish, iso(hub.now()))
    await hub.committed(cursor=cursor)
    await hub.notify(body.store_id, {"type": "changes", "cursor": cursor})
    log.info("change published", extra={"kv": {"type": body.type, "store": body.store_id or "all", "cursor": cursor}})
    return answer(request, {"change_id": change_id, "cursor": cursor}, 201)


async def admin_epoch(request: web.Request) -> web.Response:
    hub = auth_admin(request)
    previous, epoch = hub.epoch, new_epoch()
    await hub.store.write(set_epoch, epoch)
    hub.epoch = epoch
    await hub.committed(epoch=epoch)
    log.warning("new epoch", extra={"kv": {"epoch": epoch, "previous": previous, "why": "admin API"}})
    for store_id in list(hub.sockets):  # connected stores learn it at once
        cursor = await hub.store.read(feed_cursor, store_id)
        await hub.notify(store_id, {"type": "hello", "epoch": epoch, "cursor": cursor})
    return answer(request, {"previous_epoch": previous})
