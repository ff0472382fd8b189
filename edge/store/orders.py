"""Online orders at the store: received from the cloud, reserved, prepared, handed over.

States: received → accepted → ready → picked_up, or cancelled / refunded from the cloud. Every
change of state writes its ledger moves and an event for the cloud in the same transaction.
"""

from __future__ import annotations

import sqlite3
from typing import Literal

from edge.core.context import WriteContext
from edge.core.errors import InputError, NotFound
from edge.core.schemas import Body, Text
from edge.store import outbox, spool
from edge.store.stock import Move, apply_moves
from protocol.orders import OrderClosed, OrderCreated

OPEN_STATES = ("received", "accepted", "ready")
ALL_STATES = (*OPEN_STATES, "picked_up", "cancelled", "refunded")
# Transitions staff make at the store; picked_up comes from verification (核销), the rest from the cloud.
STAFF_TRANSITIONS = {"accepted": ("received",), "ready": ("received", "accepted")}


class StateChange(Body):
    to: Literal["accepted", "ready"]
    operator: Text


def receive(conn: sqlite3.Connection, order: OrderCreated, ctx: WriteContext) -> dict:
    """Store an order from the cloud and reserve its stock, flagging lines the shelf cannot cover."""
    if conn.execute("SELECT 1 FROM orders WHERE id = ?", (order.order_id,)).fetchone():
        return get_order(conn, order.order_id)
    for index, line in enumerate(order.lines):
        if not conn.execute("SELECT 1 FROM products WHERE sku = ?", (line.sku,)).fetchone():
            raise InputError("unknown_sku", f"order line {index + 1}: SKU {line.sku} is not in this store's catalog")
    short = []
    rows = []
    for no, line in enumerate(order.lines, start=1):
        available = conn.execute("SELECT coalesce((SELECT available FROM stock_balances WHERE sku = ?), 0)",
                                 (line.sku,)).fetchone()[0]
        # lines of the same SKU earlier in this order already took their share
        taken = sum(r[3] for r in rows if r[0] == line.sku)
        short_qty = max(0, line.qty - max(0, available - taken))
        if short_qty:
            short.append({"sku": line.sku, "qty": line.qty, "available": max(0, available - taken)})
        rows.append((line.sku, line.name, line.price_fen, line.qty, short_qty))
    conn.execute(
        "INSERT INTO orders (id, number, kind, state, short, total_fen, pickup_code_sha256, pickup_after, "
        "customer_note, customer_phone_last4, created_at, received_at, updated_at) "
        "VALUES (?, ?, ?, 'received', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (order.order_id, order.number, order.kind, int(bool(short)), order.total_fen, order.pickup_code_sha256,
         order.pickup_after, order.customer_note, order.customer_phone_last4, order.created_at or ctx.now, ctx.now,
         ctx.now))
    conn.executemany("INSERT INTO order_lines (order_id, line_no, sku, name, price_fen, qty, short_qty) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?)",
                     [(order.order_id, no, *row) for no, row in enumerate(rows, start=1)])
    # reserved even when short: available goes below zero, which is the truth the manager must see
    moves = apply_moves(conn, (Move(r[0], r[3], "reserve") for r in rows), "order", order.order_id, ctx)
    outbox.emit(conn, "order.received", {"order_id": order.order_id, "short": short, "moves": moves}, ctx.now)
    # the picking ticket is queued with the order: an order in the store is an order that will print
    spool.enqueue(conn, "order_ticket", f"order_ticket:{order.order_id}", {"order_id": order.order_id}, ctx,
                  order_id=order.order_id)
    return get_order(conn, order.order_id)


def close_from_cloud(conn: sqlite3.Connection, change: OrderClosed, to: str, ctx: WriteContext) -> dict:
    """The cloud cancelled or refunded an order: release its reservation, unless it is already gone."""
    order = get_order(conn, change.order_id)
    if order["state"] == "picked_up":
        reason = f"{to} upstream after it was handed over" + (f": {change.reason}" if change.reason else "")
        conn.execute("UPDATE orders SET conflict = ?, updated_at = ? WHERE id = ?", (reason, ctx.now, order["id"]))
        outbox.emit(conn, "order.conflict", {"order_id": order["id"], "reason": reason}, ctx.now)
    elif order["state"] in OPEN_STATES:
        moves = apply_moves(conn, (Move(line["sku"], -line["qty"], "release") for line in order["lines"]),
                            "order", order["id"], ctx)
        _set_state(conn, order, to, "cloud", moves, ctx)
    elif order["state"] != to:  # refunded after it was cancelled: nothing left to release
        _set_state(conn, order, to, "cloud", [], ctx)
    return get_order(conn, change.order_id)


def change_state(conn: sqlite3.Connection, order_id: str, body: StateChange, ctx: WriteContext) -> dict:
    order = get_order(conn, order_id)
    if order["state"] not in STAFF_TRANSITIONS[body.to]:
        raise InputError("invalid_transition", f"order {order['number']} is {order['state']}; it cannot become "
                         f"{body.to}", field="to", status=409)
    _set_state(conn, order, body.to, body.operator, [], ctx)
    return get_order(conn, order_id)


def _set_state(conn, order: dict, to: str, operator: str, moves: list, ctx: WriteContext) -> None:
    conn.execute("UPDATE orders SET state = ?, updated_at = ? WHERE id = ?", (to, ctx.now, order["id"]))
    outbox.emit(conn, "order.state_changed", {"order_id": order["id"], "from": order["state"], "to": to,
                                              "operator": operator, "moves": moves}, ctx.now)


def get_order(conn: sqlite3.Connection, order_id: str) -> dict:
    row = conn.execute("SELECT * FROM orders WHERE id = ?", (order_id,)).fetchone()
    if row is None:
        raise NotFound("unknown_order", f"no order {order_id}", field="order_id")
    order = dict(row)
    order["short"] = bool(order["short"])
    order["lines"] = [dict(r) for r in conn.execute(
        "SELECT line_no, sku, name, qty, price_fen, short_qty FROM order_lines WHERE order_id = ? ORDER BY line_no",
        (order_id,))]
    return order


def find_order(conn: sqlite3.Connection, order_id: str) -> dict | None:
    """The order, or None if this store has no such order."""
    try:
        return get_order(conn, order_id)
    except NotFound:
        return None


def open_matching(conn: sqlite3.Connection, *, number: str | None = None, phone_last4: str | None = None,
                  limit: int = 20) -> list[dict]:
    """The open orders (not yet handed over, cancelled or refunded) with this number or whose customer's
    phone ends in these four digits, newest first: several may share the digits, staff pick one."""
    rows = conn.execute(
        f"SELECT id FROM orders WHERE state IN ({', '.join('?' * len(OPEN_STATES))}) AND (number = ? COLLATE NOCASE OR "
        "customer_phone_last4 = ?) ORDER BY received_at DESC, id LIMIT ?",
        (*OPEN_STATES, number, phone_last4, limit)).fetchall()
    return [get_order(conn, r[0]) for r in rows]


def list_orders(conn: sqlite3.Connection, *, state: str | None = None, short: bool = False,
                before: str | None = None, limit: int = 100) -> dict:
    where, args = [], []
    if state == "open":  # every state staff still act on
        where.append(f"state IN ({', '.join('?' * len(OPEN_STATES))})")
        args.extend(OPEN_STATES)
    elif state:
        where.append("state = ?")
        args.append(state)
    if short:
        where.append("short = 1")
    if before:
        where.append("received_at < ?")
        args.append(before)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    rows = conn.execute(f"SELECT id FROM orders {clause} ORDER BY received_at DESC, id LIMIT ?",
                        (*args, limit + 1)).fetchall()
    items = [get_order(conn, r[0]) for r in rows[:limit]]
    return {"items": items, "next_before": items[-1]["received_at"] if len(rows) > limit else None}


def numbers(conn: sqlite3.Connection, order_ids) -> dict[str, str]:
    """The numbers people know orders by, for the ids a page holds (a stock move's ref, an audit target)."""
    ids = sorted({i for i in order_ids if i})
    if not ids:
        return {}
    marks = ",".join("?" * len(ids))
    return dict(conn.execute(f"SELECT id, number FROM orders WHERE id IN ({marks})", ids).fetchall())


def ticket_state(conn: sqlite3.Connection, order_id: str) -> str | None:
    """The state of the order's newest picking ticket (None: none was queued)."""
    row = conn.execute("SELECT state FROM print_jobs WHERE order_id = ? AND kind = 'order_ticket' "
                       "ORDER BY id DESC LIMIT 1", (order_id,)).fetchone()
    return row[0] if row else None
