"""What the Excel exports read: rows of a range of business days, oldest first, as stored (UTC times,
fen, codes); edge/ui/export_pages.py words and formats them, edge/core/xlsx.py writes them.

The range is the report's (edge/store/reports.py): till sales and returns by their business day; what
carries only a time (orders, hand-overs, stock moves) by [start, end) of the days, cut-off included.
Rows are fetched as they are written out (a cursor), so a long range never sits whole in memory.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator


def sales(conn: sqlite3.Connection, first: str, last: str) -> Iterator[sqlite3.Row]:
    """Sales and returns together: a return is a row of its own with its refund as a negative amount,
    so that the amounts add up to the till's net."""
    return conn.execute(
        "SELECT 'sale' AS kind, s.number, s.business_date, s.created_at, s.cashier, s.device, s.subtotal_fen, "
        "s.discount_fen, s.total_fen AS amount_fen, s.change_fen, "
        "(SELECT group_concat(p.method || ':' || p.amount_fen, ',') FROM sale_payments p WHERE p.sale_id = s.id) "
        "AS methods, s.note FROM sales s WHERE s.business_date BETWEEN ?1 AND ?2 "
        "UNION ALL SELECT 'return', s.number, r.business_date, r.created_at, NULL, r.device, NULL, NULL, "
        "-r.refund_fen, NULL, (SELECT group_concat(f.method || ':' || f.amount_fen, ',') FROM return_refunds f "
        "WHERE f.return_id = r.id), r.reason FROM returns r "
        "JOIN sales s ON s.id = r.sale_id WHERE r.business_date BETWEEN ?1 AND ?2 ORDER BY 4, 2", (first, last))


def orders(conn: sqlite3.Connection, start: str, end: str) -> Iterator[sqlite3.Row]:
    """Online orders received in [start, end), with their standing hand-over (if any)."""
    return conn.execute(
        "SELECT o.number, o.kind, o.state, o.received_at, (SELECT sum(qty) FROM order_lines l WHERE l.order_id = o.id) "
        "AS items, o.total_fen, p.verified_at, coalesce(u.display_name, p.operator) AS staff, o.short, o.conflict, "
        "o.customer_note FROM orders o LEFT JOIN pickups p ON p.order_id = o.id AND p.reversed_at IS NULL "
        "LEFT JOIN users u ON u.name = p.operator WHERE o.received_at >= ? AND o.received_at < ? "
        "ORDER BY o.received_at, o.id", (start, end))


def pickups(conn: sqlite3.Connection, start: str, end: str) -> Iterator[sqlite3.Row]:
    """核销 records stamped in [start, end), reversed ones too; `counted_fen` is what revenue counts."""
    return conn.execute(
        "SELECT p.verified_at, o.number, coalesce(u.display_name, p.operator) AS staff, p.method, p.provisional, "
        "o.total_fen, CASE WHEN p.reversed_at IS NULL AND o.state = 'picked_up' THEN o.total_fen ELSE 0 END "
        "AS counted_fen, p.reversed_at, coalesce(r.display_name, p.reversed_by) AS reversed_by, p.reverse_reason "
        "FROM pickups p JOIN orders o ON o.id = p.order_id LEFT JOIN users u ON u.name = p.operator "
        "LEFT JOIN users r ON r.name = p.reversed_by WHERE p.verified_at >= ? AND p.verified_at < ? "
        "ORDER BY p.verified_at, p.id", (start, end))


def moves(conn: sqlite3.Connection, start: str, end: str) -> Iterator[sqlite3.Row]:
    """Stock moves written in [start, end), in ledger order."""
    return conn.execute(
        "SELECT m.created_at, m.sku, p.name, p.unit, m.qty, m.reason, m.device, m.note "
        "FROM stock_moves m LEFT JOIN products p USING (sku) WHERE m.created_at >= ? AND m.created_at < ? "
        "ORDER BY m.id", (start, end))


def shifts(conn: sqlite3.Connection, first: str, last: str) -> Iterator[sqlite3.Row]:
    """Shifts (交班) of business days first..last with their till sales."""
    return conn.execute(
        "SELECT s.number, s.business_date, s.till, s.cashier, s.opened_at, s.float_fen, s.closed_at, "
        "coalesce(u.display_name, s.closed_by) AS closed_by, (SELECT count(*) FROM sales x WHERE x.shift_id = s.id) "
        "AS sales_count, (SELECT coalesce(sum(total_fen), 0) FROM sales x WHERE x.shift_id = s.id) AS sales_fen, "
        "s.expected_fen, s.counted_fen, s.difference_fen, s.note FROM shifts s "
        "LEFT JOIN users u ON u.name = s.closed_by WHERE s.business_date BETWEEN ? AND ? ORDER BY s.opened_at, s.id",
        (first, last))
