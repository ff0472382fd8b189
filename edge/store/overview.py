"""What the manager's overview reads from the store: today's sales and orders, the lists to act on."""

from __future__ import annotations

import sqlite3
from datetime import datetime, time

from edge.core.clock import MIDNIGHT, day_bounds
from edge.store import job_runs, orders, outbox, stock

LIST_LIMIT = 50   # orders shown per list (the oldest first: first to prepare); the badges count them all
LOW_LIMIT = 20    # low-stock lines shown


def _orders(conn: sqlite3.Connection, where: str, args=()) -> list[dict]:
    rows = conn.execute(
        "SELECT o.id, o.number, o.state, o.short, o.received_at, o.kind, "
        "(SELECT coalesce(sum(qty), 0) FROM order_lines l WHERE l.order_id = o.id) AS item_count "
        f"FROM orders o WHERE {where} ORDER BY o.received_at, o.id LIMIT ?", (*args, LIST_LIMIT)).fetchall()
    return [{**dict(r), "short": bool(r["short"]), "print_state": orders.ticket_state(conn, r["id"])} for r in rows]


def figures(conn: sqlite3.Connection, day: str, tz, cutoff: time = MIDNIGHT) -> dict:
    """Everything the overview shows that lives in the store, in one read (the business day ends at `cutoff`)."""
    start, end = day_bounds(day, tz, cutoff)
    one = lambda sql, *args: conn.execute(sql, args).fetchone()[0]  # noqa: E731
    sales_count, sales_fen = conn.execute("SELECT count(*), coalesce(sum(total_fen), 0) FROM sales "
                                          "WHERE business_date = ?", (day,)).fetchone()
    returns_count, refunds_fen = conn.execute("SELECT count(*), coalesce(sum(refund_fen), 0) FROM returns "
                                              "WHERE business_date = ?", (day,)).fetchone()
    # by hour as the report counts it: till sales, and online orders handed over (not reversed)
    hours: dict[int, dict] = {}

    def add(stamp: str, part: str, fen: int) -> None:
        hour = datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(tz).hour
        slot = hours.setdefault(hour, {"hour": hour, "sales_count": 0, "till_fen": 0, "online_count": 0,
                                       "online_fen": 0})
        slot["sales_count" if part == "till" else "online_count"] += 1
        slot[f"{part}_fen"] += fen
    for created_at, total in conn.execute("SELECT created_at, total_fen FROM sales WHERE business_date = ?", (day,)):
        add(created_at, "till", total)
    for verified_at, total in conn.execute(
            "SELECT p.verified_at, o.total_fen FROM pickups p JOIN orders o ON o.id = p.order_id "
            "WHERE p.verified_at >= ? AND p.verified_at < ? AND p.reversed_at IS NULL", (start, end)):
        add(verified_at, "online", total)
    return {
        "sales": {"count": sales_count, "fen": sales_fen, "returns": returns_count, "refunds_fen": refunds_fen,
                  "net_fen": sales_fen - refunds_fen},
        "orders_today": {
            "received": one("SELECT count(*) FROM orders WHERE received_at >= ? AND received_at < ?", start, end),
            "picked_up": one("SELECT count(*) FROM pickups WHERE verified_at >= ? AND verified_at < ? "
                             "AND reversed_at IS NULL", start, end),
            "open": one("SELECT count(*) FROM orders WHERE state IN ('received', 'accepted', 'ready')"),
        },
        "hours": sorted(hours.values(), key=lambda h: h["hour"]),
        "waiting": _orders(conn, "o.state IN ('received', 'accepted')"),
        "ready": _orders(conn, "o.state = 'ready'"),
        # the lists show the oldest LIST_LIMIT (first to prepare); the badges count them all
        "waiting_count": one("SELECT count(*) FROM orders WHERE state IN ('received', 'accepted')"),
        "ready_count": one("SELECT count(*) FROM orders WHERE state = 'ready'"),
        "short": _orders(conn, "o.short = 1 AND o.state IN ('received', 'accepted', 'ready')"),
        "low": stock.list_balances(conn, low=True, limit=LOW_LIMIT)["items"],
        "queue": outbox.queue_status(conn),
        "failed_jobs": job_runs.failing(conn),
    }


def status_figures(conn: sqlite3.Connection, day: str) -> dict:
    """The read-only status page's counts (no login: nothing a customer must not see)."""
    one = lambda sql, *args: conn.execute(sql, args).fetchone()[0]  # noqa: E731
    return {
        "products": one("SELECT count(*) FROM products WHERE active = 1"),
        "low": one("SELECT count(*) FROM products p JOIN stock_balances b USING (sku) "
                   "WHERE p.active = 1 AND b.available <= p.low_stock"),
        "moves": one("SELECT coalesce(max(id), 0) FROM stock_moves"),
        "sales": one("SELECT count(*) FROM sales WHERE business_date = ?", day),
        "sales_fen": one("SELECT coalesce(sum(total_fen), 0) FROM sales WHERE business_date = ?", day),
        "queue": outbox.queue_status(conn),
        "orders_open": one("SELECT count(*) FROM orders WHERE state IN ('received', 'accepted', 'ready')"),
        "print_attention": one("SELECT count(*) FROM print_jobs WHERE state = 'uncertain' AND resolution IS NULL"),
        "orders_short": one("SELECT count(*) FROM orders WHERE short = 1 AND state IN ('received', 'accepted', "
                            "'ready')"),
    }
