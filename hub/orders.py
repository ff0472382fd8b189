"""Online orders (docs/hub-admin-api.md): created here and published to their store, listed with
what the store reported of them (state, prints, hand-over), cancelled or refunded."""

from __future__ import annotations

import json
import logging
import secrets
import uuid
from zoneinfo import ZoneInfo

from aiohttp import web

from edge.core.clock import iso
from hub.admin_api import availability, store_exists
from hub.bodies import OrderIn, ReasonIn
from hub.changes import add_change
from hub.db import Conn
from hub.errors import HubError, bad_request, not_found, sha256
from hub.http import answer, auth_admin, model_body, query_int
from hub.keys import issue_pickup_token
from protocol.fields import show
from protocol.orders import CLOSED_ORDER_STATES, PRINT_KINDS, STORE_ORDER_STATES

log = logging.getLogger(__name__)

ORDER_STATES = ("created", *STORE_ORDER_STATES, "rejected")
PRINTED_RESULTS = ("printed", "confirmed_printed")   # the job's paper came out
PICKUP_CODE_DIGITS = 6
HUB_TZ = ZoneInfo("Asia/Shanghai") # the business day of order numbers
ORDERS_LOCK = 0x68756233           # pg_advisory_xact_lock(key, hashtext(store)) around a store's new order


async def new_pickup_code(db: Conn, store_id: str) -> str:
    """A random 6-digit code that no open order of the store has (only its SHA-256 is kept)."""
    for _ in range(100):
        code = f"{secrets.randbelow(10 ** PICKUP_CODE_DIGITS):0{PICKUP_CODE_DIGITS}d}"
        if not await db.fetchrow("SELECT 1 FROM orders WHERE store_id = $1 AND pickup_code_sha256 = $2 AND state NOT IN "
                                 "('picked_up', 'cancelled', 'refunded', 'rejected')", store_id, sha256(code)):
            return code
    raise HubError(503, "unavailable", "no free pickup code for this store: too many open orders")


async def order_number(db: Conn, store_id: str, day: str) -> str:
    n = await db.fetchval("SELECT count(*) FROM orders WHERE store_id = $1 AND day = $2", store_id, day)
    return f"{chr(ord('A') + n // 999)}{n % 999 + 1:03d}" if n < 26 * 999 else f"Z{n + 1}"


async def admin_create_order(request: web.Request) -> web.Response:
    hub = auth_admin(request)
    store_id = request.match_info["store_id"]
    body = await model_body(request, OrderIn)
    order_id = body.order_id or "o-" + uuid.uuid4().hex
    moment = hub.now()

    async def create(db: Conn, now):
        await store_exists(db, store_id)
        if db.dialect == "postgresql":
            # the store's orders one at a time, as SQLite's one writer has them: its next number and a free
            # pickup code are read here and must not be taken meanwhile (upload slices lock the store's
            # row instead: an order does not wait for them)
            await db.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", ORDERS_LOCK, store_id)
        if await db.fetchrow("SELECT 1 FROM orders WHERE order_id = $1", order_id):
            raise HubError(409, "order_exists", f"order {order_id} already exists")
        wanted: dict[str, int] = {}
        lines = []
        for index, line in enumerate(body.lines):
            product = await db.fetchrow("SELECT name, price_fen, active FROM products WHERE sku = $1", line.sku)
            if product is None:
                raise HubError(400, "unknown_sku", f"lines[{index}]: {line.sku} is not in the chain catalog",
                               sku=line.sku)
            if not product["active"]:
                raise HubError(409, "product_inactive", f"lines[{index}]: {line.sku} is not for sale (inactive)",
                               sku=line.sku)
            wanted[line.sku] = wanted.get(line.sku, 0) + line.qty
            lines.append({"sku": line.sku, "name": product["name"], "qty": line.qty, "price_fen": product["price_fen"]})
        for item in (await availability(db, hub, store_id, list(wanted)))["items"]:
            if wanted[item["sku"]] > item["online_available"]:
                raise HubError(409, "out_of_stock", f"only {item['online_available']} of {item['sku']} can be "
                               "sold online now", sku=item["sku"], available=item["online_available"])
        day = moment.astimezone(HUB_TZ).date().isoformat()
        number = await order_number(db, store_id, day)
        code = await new_pickup_code(db, store_id)
        total = sum(line["qty"] * line["price_fen"] for line in lines)
        phone_last4 = body.customer_phone[-4:] if body.customer_phone else None
        payload = {"order_id": order_id, "number": number, "kind": body.kind, "lines": lines, "total_fen": total,
                   "pickup_code_sha256": sha256(code), "pickup_after": body.pickup_after,
                   "customer_note": body.customer_note, "created_at": now,
                   **({"customer_phone_last4": phone_last4} if phone_last4 else {})}
        cursor, change_id = await add_change(db, store_id, "order.created", payload, now)
        await db.execute("INSERT INTO orders (order_id, store_id, number, day, kind, state, total_fen, "
                         "pickup_code_sha256, pickup_after, customer_note, customer_phone_last4, change_id, created_at, "
                         "updated_at) VALUES ($1, $2, $3, $4, $5, 'created', $6, $7, $8, $9, $10, $11, $12, $12)",
                         order_id, store_id, number, day, body.kind, total, sha256(code), body.pickup_after,
                         body.customer_note, phone_last4, change_id, now)
        await db.executemany("INSERT INTO order_lines (order_id, line_no, sku, name, qty, price_fen) "
                             "VALUES ($1, $2, $3, $4, $5, $6)",
                             [(order_id, no, l["sku"], l["name"], l["qty"], l["price_fen"])
                              for no, l in enumerate(lines, start=1)])
        token = await issue_pickup_token(db, order_id, store_id, moment, now)
        return {"order_id": order_id, "store_id": store_id, "number": number, "kind": body.kind, "state": "created",
                "pickup_code": code, **token, "total_fen": total, "lines": lines,
                "pickup_after": body.pickup_after, "customer_note": body.customer_note,
                "customer_phone_last4": phone_last4, "change_id": change_id,
                "cursor": cursor}

    order = await hub.db.write(create, iso(moment))
    await hub.changed((store_id, order["cursor"]))
    log.info("order created", extra={"kv": {"store": store_id, "order": order_id, "number": order["number"],
                                            "lines": len(order["lines"]), "total_fen": order["total_fen"]}})
    return answer(request, order, 201)


ORDER_COLUMNS = ("order_id, store_id, number, kind, state, total_fen, pickup_after, customer_note, "
                 "customer_phone_last4, change_id, "
                 "received_at, short, conflict, created_at, updated_at")
# an order is printed when the store reported a print result for it and the last result of every print job kind
# it reported is printed or confirmed_printed
PRINTED_SQL = ("(EXISTS (SELECT 1 FROM order_prints p WHERE p.order_id = o.order_id) AND NOT EXISTS "
               "(SELECT 1 FROM order_prints p WHERE p.order_id = o.order_id AND p.result NOT IN "
               "('printed', 'confirmed_printed')))")   # PRINTED_RESULTS


async def order_view(db: Conn, row) -> dict:
    """An order as the admin API shows it (without its lines)."""
    order = dict(row)
    order["short"] = json.loads(order["short"]) if order["short"] is not None else None
    order["pending"] = order["state"] == "created" and order["received_at"] is None
    prints = [{**dict(r), "reprint": bool(r["reprint"])} for r in await db.fetch(
        "SELECT kind, job_key, result, at, printer, attempts, error, reprint, event_id, received_at FROM order_prints "
        "WHERE order_id = $1 ORDER BY seq DESC", order["order_id"])]
    order["print"] = prints[0] if prints else None            # the latest print result, of any kind
    order["prints"] = sorted(prints, key=lambda p: PRINT_KINDS.index(p["kind"]))   # the latest of each kind
    order["printed"] = bool(prints) and all(p["result"] in PRINTED_RESULTS for p in prints)
    pickup = await db.fetchrow("SELECT verified_at, operator, method, device, provisional, jti, manual_reason, "
                               "member_id, event_id, received_at, reversed_at, reversed_by, reverse_reason, "
                               "reverse_event_id "
                               "FROM order_pickups WHERE order_id = $1", order["order_id"])
    order["pickup"] = None if pickup is None else {**dict(pickup), "provisional": bool(pickup["provisional"])}
    return order


async def get_order(db: Conn, order_id: str) -> dict:
    row = await db.fetchrow(f"SELECT {ORDER_COLUMNS} FROM orders WHERE order_id = $1", order_id)
    if row is None:
        raise not_found(f"no order {order_id}")
    order = await order_view(db, row)
    order["lines"] = [dict(r) for r in await db.fetch(
        "SELECT line_no, sku, name, qty, price_fen FROM order_lines WHERE order_id = $1 ORDER BY line_no", order_id)]
    return order


async def admin_list_orders(request: web.Request) -> web.Response:
    hub = auth_admin(request)
    store_id = request.query.get("store_id") or None
    state = request.query.get("state") or None
    printed = request.query.get("printed") or None
    conflict = request.query.get("conflict") or None
    after = request.query.get("after") or None
    if state not in (None, *ORDER_STATES):
        raise bad_request(f"state must be one of {', '.join(ORDER_STATES)}")
    if printed not in (None, "true", "false"):
        raise bad_request("printed must be true or false")
    if conflict not in (None, "true", "false"):
        raise bad_request("conflict must be true or false")
    limit = query_int(request, "limit", 100, 1, 1000)

    async def listing(db: Conn):
        if store_id is not None:
            await store_exists(db, store_id)
        where, args = ["1 = 1"], []

        def arg(value) -> str:
            args.append(value)
            return f"${len(args)}"

        if after is not None:
            mark = await db.fetchrow("SELECT created_at, order_id FROM orders WHERE order_id = $1", after)
            if mark is None:
                raise bad_request(f"after: no order {show(after)} (pass the next_after of the page before)")
            where.append(f"(o.created_at, o.order_id) > ({arg(mark[0])}, {arg(mark[1])})")
        if store_id is not None:
            where.append(f"o.store_id = {arg(store_id)}")
        if state is not None:
            where.append(f"o.state = {arg(state)}")
        if printed is not None:
            where.append(PRINTED_SQL if printed == "true" else f"NOT {PRINTED_SQL}")
        if conflict is not None:
            where.append("o.conflict IS NOT NULL" if conflict == "true" else "o.conflict IS NULL")
        rows = await db.fetch(f"SELECT {', '.join('o.' + c for c in ORDER_COLUMNS.split(', '))} FROM orders o "
                              f"WHERE {' AND '.join(where)} ORDER BY o.created_at, o.order_id LIMIT {arg(limit + 1)}",
                              *args)
        orders = [await order_view(db, row) for row in rows[:limit]]
        return {"orders": orders, "next_after": orders[-1]["order_id"] if len(rows) > limit else None}

    return answer(request, await hub.db.read(listing))


async def admin_get_order(request: web.Request) -> web.Response:
    hub = auth_admin(request)
    return answer(request, await hub.db.read(get_order, request.match_info["order_id"]))


def close_order(to: str):
    change_type = {"cancelled": "order.cancelled", "refunded": "order.refunded"}[to]

    async def handler(request: web.Request) -> web.Response:
        hub = auth_admin(request)
        order_id = request.match_info["order_id"]
        body = await model_body(request, ReasonIn)

        async def close(db: Conn, now):
            if db.dialect == "postgresql":  # a second cancel (or a refund) waits, then finds the order closed
                await db.execute("SELECT 1 FROM orders WHERE order_id = $1 FOR UPDATE", order_id)
            order = await get_order(db, order_id)
            if order["state"] in CLOSED_ORDER_STATES:
                raise HubError(409, "order_closed", f"order {order_id} is already {order['state']}",
                               state=order["state"])
            await db.execute("UPDATE orders SET state = $1, updated_at = $2 WHERE order_id = $3", to, now, order_id)
            cursor, change_id = await add_change(db, order["store_id"], change_type,
                                                 {"order_id": order_id, "reason": body.reason}, now)
            return {"order_id": order_id, "store_id": order["store_id"], "state": to, "change_id": change_id,
                    "cursor": cursor}

        done = await hub.db.write(close, iso(hub.now()))
        await hub.changed((done["store_id"], done["cursor"]))
        log.info(f"order {to}", extra={"kv": {"store": done["store_id"], "order": order_id}})
        return answer(request, done)

    return handler


async def admin_pickup_token(request: web.Request) -> web.Response:
    """A new pickup token for an open order (the customer lost the QR code); the code is not re-issued."""
    hub = auth_admin(request)
    store_id, order_id = request.match_info["store_id"], request.match_info["order_id"]
    moment = hub.now()

    async def reissue(db: Conn, now):
        await store_exists(db, store_id)
        row = await db.fetchrow("SELECT state FROM orders WHERE order_id = $1 AND store_id = $2", order_id, store_id)
        if row is None:
            raise not_found(f"no order {order_id} at store {store_id}")
        if row[0] in (*CLOSED_ORDER_STATES, "rejected"):
            raise HubError(409, "order_closed", f"order {order_id} is {row[0]}", state=row[0])
        return {"order_id": order_id, "store_id": store_id,
                **await issue_pickup_token(db, order_id, store_id, moment, now)}

    done = await hub.db.write(reissue, iso(moment))
    log.info("pickup token issued", extra={"kv": {"store": store_id, "order": order_id}})
    return answer(request, done, 201)
