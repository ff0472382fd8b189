"""交班: a cashier's shift at a till, from the opening float (备用金) to the cash counted at the close.

A shift's figures are read from the rows tagged with it (sales, returns, hand-overs: see the migration's
comment for why tagging and not a time window). The close keeps what the drawer should hold and the
difference, writes the audit line and queues the 交班小票, all in one transaction.
"""

from __future__ import annotations

import sqlite3
from typing import Annotated

from pydantic import Field

from edge.core.context import WriteContext
from edge.core.errors import InputError, NotFound
from edge.core.schemas import Body, Text
from edge.store import spool, users

LOCAL_TILL = "local"  # a till on the daemon's own machine (loopback, no token)
Cash = Annotated[int, Field(ge=0, le=100_000_000, description="Cash in fen (1 yuan = 100 fen)")]


class ShiftOpen(Body):
    cashier: Text = Field(description="Who works the till, as printed on the 交班小票")
    float_fen: Cash = Field(0, description="备用金: the cash in the drawer at the start, in fen")
    note: Text | None = None


class ShiftClose(Body):
    counted_fen: Cash = Field(description="The cash counted in the drawer at the close, in fen")
    closed_by: Text = Field(description="Who counted it")
    note: Text | None = None


def current_id(conn: sqlite3.Connection, device: str) -> int | None:
    """The shift a write at `device` belongs to: its till's open shift; on the dashboard (`ui:NAME`), the
    open shift that person opened. None outside any shift."""
    row = conn.execute("SELECT id FROM shifts WHERE till = ? AND closed_at IS NULL", (device,)).fetchone()
    if row is None and device.startswith("ui:"):
        row = conn.execute("SELECT id FROM shifts WHERE user_name = ? AND closed_at IS NULL",
                           (device[3:],)).fetchone()
    return row[0] if row else None


def open_shift(conn: sqlite3.Connection, body: ShiftOpen, ctx: WriteContext, *, till: str,
               user_name: str | None = None) -> dict:
    held = conn.execute("SELECT number, cashier FROM shifts WHERE closed_at IS NULL AND (till = ? OR user_name = ?)",
                        (till, user_name)).fetchone()
    if held is not None:
        raise InputError("shift_open", f"shift {held[0]} ({held[1]}) is still open at this till or for this "
                         "person: close it first", status=409,
                         detail={"message_zh": f"第 {held[0]} 班（{held[1]}）尚未交班，请先交班"})
    number = conn.execute("SELECT coalesce(max(number), 0) + 1 FROM shifts").fetchone()[0]
    cur = conn.execute("INSERT INTO shifts (number, till, cashier, user_name, business_date, opened_at, float_fen, "
                       "note) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (number, till, body.cashier, user_name, ctx.day, ctx.now, body.float_fen, body.note))
    return get_shift(conn, cur.lastrowid)


def figures(conn: sqlite3.Connection, shift_id: int, float_fen: int) -> dict:
    """Sales, refunds, hand-overs and payment split of one shift; the cash the drawer should hold."""
    one = lambda sql: conn.execute(sql, (shift_id,)).fetchone()  # noqa: E731
    sales_count, sales_fen, change = one("SELECT count(*), coalesce(sum(total_fen), 0), coalesce(sum(change_fen), 0) "
                                         "FROM sales WHERE shift_id = ?")
    returns_count, refunds_fen = one("SELECT count(*), coalesce(sum(refund_fen), 0) FROM returns WHERE shift_id = ?")
    pickups_count = one("SELECT count(*) FROM pickups WHERE shift_id = ?")[0]
    taken = dict(conn.execute("SELECT p.method, sum(p.amount_fen) FROM sale_payments p JOIN sales s "
                              "ON s.id = p.sale_id WHERE s.shift_id = ? GROUP BY p.method", (shift_id,)).fetchall())
    # by the method each part goes back by (return_refunds: a member's balance and points apart from the cash)
    refunded = dict(conn.execute("SELECT method, sum(amount_fen) FROM return_refunds WHERE shift_id = ? "
                                 "GROUP BY method", (shift_id,)).fetchall())
    # as sales.day_summary nets them: the change given back comes out of the cash taken
    by_method = {m: taken.get(m, 0) - (change if m == "cash" else 0) - refunded.get(m, 0)
                 for m in sorted(set(taken) | set(refunded))}
    cash_in = taken.get("cash", 0)
    return {"sales_count": sales_count, "sales_fen": sales_fen, "returns_count": returns_count,
            "refunds_fen": refunds_fen, "net_fen": sales_fen - refunds_fen, "pickups_count": pickups_count,
            "net_by_method_fen": by_method, "cash_taken_fen": cash_in, "change_fen": change,
            "cash_refunds_fen": refunded.get("cash", 0),
            "expected_cash_fen": float_fen + cash_in - change - refunded.get("cash", 0)}


def _shift(conn: sqlite3.Connection, row: sqlite3.Row) -> dict:
    shift = dict(row)
    shift["open"] = shift["closed_at"] is None
    shift["figures"] = figures(conn, shift["id"], shift["float_fen"])
    job = conn.execute("SELECT id, state, printer FROM print_jobs WHERE key = ?",
                       (f"shift_report:{shift['id']}",)).fetchone()
    shift["print_job"] = dict(job) if job else None
    return shift


def get_shift(conn: sqlite3.Connection, shift_id: int) -> dict:
    row = conn.execute("SELECT * FROM shifts WHERE id = ?", (shift_id,)).fetchone()
    if row is None:
        raise NotFound("unknown_shift", f"no shift {shift_id}", field="shift_id")
    return _shift(conn, row)


def open_at(conn: sqlite3.Connection, till: str | None = None, user_name: str | None = None) -> dict | None:
    """The open shift of a till, or of a dashboard person."""
    row = conn.execute("SELECT * FROM shifts WHERE closed_at IS NULL AND (till = ? OR user_name = ?)",
                       (till, user_name)).fetchone()
    return _shift(conn, row) if row else None


def open_tills(conn: sqlite3.Connection) -> dict[str, str]:
    """till → the cashier on shift there."""
    return dict(conn.execute("SELECT till, cashier FROM shifts WHERE closed_at IS NULL").fetchall())


def of_day(conn: sqlite3.Connection, day: str) -> list[dict]:
    """Every shift of a business day (the day it was opened in), in the order they opened."""
    rows = conn.execute("SELECT * FROM shifts WHERE business_date = ? ORDER BY number", (day,)).fetchall()
    return [_shift(conn, r) for r in rows]


def close_shift(conn: sqlite3.Connection, shift_id: int, body: ShiftClose, ctx: WriteContext, who: dict, *,
                till: str | None = None) -> dict:
    """Count the cash: the expected cash and the difference are kept as they are now; audited; the 交班小票
    queued. `till`: the till asking, which may close only its own shift (None: the dashboard, checked there)."""
    shift = get_shift(conn, shift_id)
    if till is not None and shift["till"] != till:
        raise InputError("other_till", f"shift {shift['number']} belongs to till {shift['till']!r}, not {till!r}",
                         field="shift_id", status=403)
    if not shift["open"]:
        raise InputError("shift_closed", f"shift {shift['number']} was closed at {shift['closed_at']}", status=409,
                         detail={"message_zh": f"第 {shift['number']} 班已经交班"})
    expected = shift["figures"]["expected_cash_fen"]
    difference = body.counted_fen - expected
    note = "\n".join(n for n in (shift["note"], body.note) if n) or None
    conn.execute("UPDATE shifts SET closed_at = ?, closed_by = ?, counted_fen = ?, expected_fen = ?, "
                 "difference_fen = ?, note = ? WHERE id = ?",
                 (ctx.now, body.closed_by, body.counted_fen, expected, difference, note, shift_id))
    users.audit(conn, who, "shift.close", str(shift["number"]),
                {"closed_by": body.closed_by, "counted_fen": body.counted_fen, "expected_fen": expected,
                 "difference_fen": difference}, ctx.now)
    job = spool.enqueue(conn, "shift_report", f"shift_report:{shift_id}", {"shift_id": shift_id}, ctx)
    return {**get_shift(conn, shift_id), "print_job": job and {"id": job["id"], "state": job["state"],
                                                                 "printer": job["printer"]}}
