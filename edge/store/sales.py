"""Till sales and returns. A sale is never refused for lack of recorded stock: the shelf is the
truth, so the ledger goes negative and the answer carries a warning for the manager to look at."""

from __future__ import annotations

import dataclasses
import sqlite3
import uuid

from edge.core.context import WriteContext
from edge.core.errors import InputError, NotFound
from edge.core.schemas import ReturnIn, SaleIn
from edge.store import coupons, member_sales, outbox, shifts, spool
from edge.store.catalog import resolve_sku
from edge.store.pickups import Checks
from edge.store.stock import Move, apply_moves


def record_sale(conn: sqlite3.Connection, body: SaleIn, ctx: WriteContext, checks: Checks | None = None,
                online_only: frozenset[str] = frozenset(), member_checks: member_sales.MemberChecks | None = None
                ) -> dict:
    """`checks` (the store, the time, the cloud link) are needed only when the sale has coupons,
    `member_checks` (the chain, the cloud's hold, the offline caps) only when it has a member."""
    member, prog = None, member_sales.NO_PROGRAMME
    if body.member is not None:
        if member_checks is None:
            raise InputError("members_unavailable", "members cannot be checked here", field="member")
        member = member_sales.resolve(conn, body.member, member_checks, take=True)
        prog = member_sales.programme(conn)
    lines, categories = [], {}
    for index, line in enumerate(body.lines):
        where = f"lines[{index}]"
        sku = resolve_sku(conn, line, where)
        name, price, categories[sku] = conn.execute("SELECT name, price_fen, category FROM products WHERE sku = ?",
                                                    (sku,)).fetchone()
        # the member's price replaces the list price, before any discount; a price the cashier typed stays
        unit_price = line.unit_price_fen if line.unit_price_fen is not None else price if member is None else \
            member_sales.member_price(conn, sku, price, member.level, prog)
        list_price = price if line.unit_price_fen is None else unit_price
        gross = unit_price * line.qty
        if line.discount_fen > gross:
            raise InputError("discount_too_large", f"line discount {line.discount_fen} fen is more than the line's "
                             f"{gross} fen", field=f"{where}.discount_fen")
        lines.append((sku, line.barcode, name, line.qty, unit_price, line.discount_fen, gross - line.discount_fen,
                      list_price, (list_price - unit_price) * line.qty))

    subtotal = sum(line[6] for line in lines)
    if body.discount_fen > subtotal:
        raise InputError("discount_too_large", f"sale discount {body.discount_fen} fen is more than the "
                         f"{subtotal} fen after line discounts", field="discount_fen")
    applied = []
    if body.coupons:
        if checks is None:
            raise InputError("coupons_unavailable", "coupons cannot be checked here", field="coupons")
        applied = coupons.evaluate(conn, body.coupons, [coupons.SaleLine(line[0], categories.get(line[0]), line[6])
                                                        for line in lines], checks, online_only)
        # coupons come after the cashier's discount; together they never take the sale below zero
        room, capped = subtotal - body.discount_fen, []
        for a in applied:
            capped.append(dataclasses.replace(a, discount_fen=min(a.discount_fen, room)))
            room -= capped[-1].discount_fen
        applied = capped
    discount = body.discount_fen + sum(a.discount_fen for a in applied)
    total = subtotal - discount
    paid = sum(p.amount_fen for p in body.payments)
    if paid < total:
        raise InputError("underpaid", f"payments add up to {paid} fen, the sale is {total} fen", field="payments")
    non_cash = sum(p.amount_fen for p in body.payments if p.method != "cash")
    if non_cash > total:
        raise InputError("overpaid", f"non-cash payments ({non_cash} fen) exceed the total ({total} fen); "
                         "only cash can give change", field="payments")
    change = paid - total
    spent = member_sales.spend(body.payments, total, prog, member is not None)

    sale_id = str(uuid.uuid4())
    number = conn.execute("SELECT coalesce(max(number), 0) + 1 FROM sales").fetchone()[0]
    conn.execute(
        "INSERT INTO sales (id, number, device, cashier, business_date, created_at, subtotal_fen, discount_fen, "
        "total_fen, paid_fen, change_fen, note, shift_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (sale_id, number, ctx.device, body.cashier, ctx.day, ctx.now, subtotal, discount, total, paid, change,
         body.note, shifts.current_id(conn, ctx.device)))
    conn.executemany(
        "INSERT INTO sale_lines (sale_id, line_no, sku, barcode, name, qty, unit_price_fen, discount_fen, "
        "amount_fen, list_price_fen, member_saved_fen) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [(sale_id, no, *line) for no, line in enumerate(lines, start=1)])
    conn.executemany("INSERT INTO sale_payments (sale_id, seq, method, amount_fen) VALUES (?, ?, ?, ?)",
                     [(sale_id, no, p.method, p.amount_fen) for no, p in enumerate(body.payments, start=1)])
    moves = apply_moves(conn, (Move(line[0], -line[3], "sale") for line in lines),
                "sale", sale_id, ctx)

    coupons.redeem(conn, applied, sale_id, checks, ctx)
    if member is not None:
        nets = net_amounts([line[6] for line in lines], discount)
        eligible = sum(net for line, net in zip(lines, nets) if categories[line[0]] not in prog.excluded)
        member_sales.record_sale_member(
            conn, sale_id, member, spent, member_sales.points_earned(eligible - spent.points_value_fen, member.level,
                                                                     prog),
            sum(line[8] for line in lines), member_checks, ctx)
    sale = get_sale(conn, sale_id)
    outbox.emit(conn, "sale.recorded", {**sale, "moves": moves}, ctx.now)
    # queued in the sale's transaction: a sale recorded is a receipt that will print (if a printer prints them)
    jobs = []
    if any(p.method == "cash" for p in body.payments):
        jobs.append(spool.enqueue(conn, "drawer", f"drawer:{sale_id}", {"sale_id": sale_id}, ctx))
    if body.print_receipt:
        jobs.append(spool.enqueue(conn, "receipt", f"receipt:{sale_id}", {"sale_id": sale_id}, ctx))
    return {"sale": sale, "warnings": _short_stock(conn, {line[0] for line in lines}),
            "print_jobs": [{"id": j["id"], "kind": j["kind"], "printer": j["printer"]} for j in jobs if j]}


def _short_stock(conn: sqlite3.Connection, skus: set[str]) -> list[dict]:
    marks = ",".join("?" * len(skus))
    rows = conn.execute(f"SELECT sku, available FROM stock_balances WHERE sku IN ({marks}) AND available < 0 "
                        "ORDER BY sku", tuple(skus))
    return [{"code": "stock_negative", "sku": sku, "available": available,
             "message": f"SKU {sku}: recorded stock is now {available}; count the shelf"}
            for sku, available in rows]


def net_amounts(amounts: list[int], discount: int) -> list[int]:
    """Spread a sale-level discount over its lines in proportion, in whole fen, summing exactly."""
    subtotal = sum(amounts)
    if not discount or not subtotal:
        return list(amounts)
    shares = [discount * a // subtotal for a in amounts]
    remainder = discount - sum(shares)
    # the largest lines absorb the leftover fen, one each, so no line goes below zero
    for index in sorted(range(len(amounts)), key=lambda i: -amounts[i])[:remainder]:
        shares[index] += 1
    return [a - s for a, s in zip(amounts, shares)]


def get_sale(conn: sqlite3.Connection, sale_id: str) -> dict:
    row = conn.execute("SELECT * FROM sales WHERE id = ?", (sale_id,)).fetchone()
    if row is None:
        raise NotFound("unknown_sale", f"no sale {sale_id}", field="sale_id")
    sale = dict(row)
    sale["lines"] = [dict(r) for r in conn.execute(
        "SELECT line_no, sku, barcode, name, qty, unit_price_fen, discount_fen, amount_fen, "
        "coalesce(list_price_fen, unit_price_fen) AS list_price_fen, member_saved_fen FROM sale_lines "
        "WHERE sale_id = ? ORDER BY line_no", (sale_id,))]
    sale["payments"] = [dict(r) for r in conn.execute(
        "SELECT method, amount_fen FROM sale_payments WHERE sale_id = ? ORDER BY seq", (sale_id,))]
    sale["coupons"] = coupons.for_sale(conn, sale_id)
    sale["member"] = member_sales.for_sale(conn, sale_id)
    sale["returns"] = [r[0] for r in conn.execute(
        "SELECT id FROM returns WHERE sale_id = ? ORDER BY created_at, id", (sale_id,))]
    return sale


def record_return(conn: sqlite3.Connection, sale_id: str, body: ReturnIn, ctx: WriteContext) -> dict:
    sale = get_sale(conn, sale_id)
    by_no = {line["line_no"]: line for line in sale["lines"]}
    nets = dict(zip(by_no, net_amounts([line["amount_fen"] for line in sale["lines"]], sale["discount_fen"])))
    done = {r["line_no"]: (r["qty"], r["refund"]) for r in conn.execute(
        "SELECT l.line_no, sum(l.qty) AS qty, sum(l.refund_fen) AS refund FROM return_lines l "
        "JOIN returns r ON r.id = l.return_id WHERE r.sale_id = ? GROUP BY l.line_no", (sale_id,))}

    out, seen = [], set()
    for index, line in enumerate(body.lines):
        where = f"lines[{index}]"
        sold = by_no.get(line.line_no)
        if sold is None:
            raise InputError("unknown_line", f"sale {sale['number']} has no line {line.line_no}",
                             field=f"{where}.line_no")
        if line.line_no in seen:
            raise InputError("duplicate_line", f"line {line.line_no} is returned twice in this request",
                             field=f"{where}.line_no")
        seen.add(line.line_no)
        returned_qty, refunded = done.get(line.line_no, (0, 0))
        left = sold["qty"] - returned_qty
        if line.qty > left:
            raise InputError("exceeds_sold", f"line {line.line_no}: {line.qty} to return, but only {left} of "
                             f"{sold['qty']} not yet returned", field=f"{where}.qty")
        net = nets[line.line_no]
        # the last units returned take what is left, so refunds add up to the line exactly
        refund = net - refunded if line.qty == left else net * line.qty // sold["qty"]
        out.append((line.line_no, sold["sku"], line.qty, refund))

    return_id = str(uuid.uuid4())
    refund_total = sum(r[3] for r in out)
    units_left = sum(line["qty"] - done.get(no, (0, 0))[0] for no, line in by_no.items()) - sum(r[2] for r in out)
    back = member_sales.reversal(conn, sale, refund_total, last=units_left == 0)
    # the shift of the till that pays the refund out, not the sale's: its drawer gives the cash back
    conn.execute("INSERT INTO returns (id, sale_id, device, business_date, created_at, refund_fen, refund_method, "
                 "restock, reason, shift_id, stored_value_fen, points_value_fen) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
                 "?, ?)",
                 (return_id, sale_id, ctx.device, ctx.day, ctx.now, refund_total, body.refund_method, int(body.restock),
                  body.reason, shifts.current_id(conn, ctx.device), back.stored_value_fen if back else 0,
                  back.points_value_fen if back else 0))
    conn.executemany("INSERT INTO return_lines (return_id, line_no, sku, qty, refund_fen) VALUES (?, ?, ?, ?, ?)",
                     [(return_id, *r) for r in out])
    moves = apply_moves(conn, (Move(sku, qty, "return") for _, sku, qty, _ in out if body.restock),
                        "return", return_id, ctx)
    if back is not None:
        member_sales.record_return_member(conn, sale, return_id, back, ctx)
        # the member's 退货单: what went back to the points and the balance (other returns print none)
        spool.enqueue(conn, "receipt", f"receipt:return:{return_id}", {"return_id": return_id}, ctx)
    result = get_return(conn, return_id)
    outbox.emit(conn, "sale.returned", {**result, "moves": moves}, ctx.now)
    return result


def get_return(conn: sqlite3.Connection, return_id: str) -> dict:
    row = conn.execute("SELECT * FROM returns WHERE id = ?", (return_id,)).fetchone()
    if row is None:
        raise NotFound("unknown_return", f"no return {return_id}")
    out = dict(row)
    out["restock"] = bool(out["restock"])
    out["member"] = member_sales.for_return(conn, return_id)
    out["lines"] = [dict(r) for r in conn.execute(
        "SELECT line_no, sku, qty, refund_fen FROM return_lines WHERE return_id = ? ORDER BY line_no",
        (return_id,))]
    return out


def day_summary(conn: sqlite3.Connection, day: str, *, after: int = 0, limit: int = 200) -> dict:
    """The sales and returns of one business day, with totals by payment method."""
    count, gross = conn.execute("SELECT count(*), coalesce(sum(total_fen), 0) FROM sales WHERE business_date = ?",
                                (day,)).fetchone()
    r_count, refunds = conn.execute("SELECT count(*), coalesce(sum(refund_fen), 0) FROM returns "
                                    "WHERE business_date = ?", (day,)).fetchone()
    by_method: dict[str, int] = {}
    for method, amount in conn.execute(
            "SELECT p.method, sum(p.amount_fen) FROM sale_payments p JOIN sales s ON s.id = p.sale_id "
            "WHERE s.business_date = ? GROUP BY p.method", (day,)):
        by_method[method] = amount
    change = conn.execute("SELECT coalesce(sum(change_fen), 0) FROM sales WHERE business_date = ?",
                          (day,)).fetchone()[0]
    if change:
        by_method["cash"] = by_method.get("cash", 0) - change
    # a member's return pays part back to the balance and as points: return_refunds splits it by method
    for method, amount in conn.execute("SELECT method, sum(amount_fen) FROM return_refunds WHERE business_date = ? "
                                       "GROUP BY method", (day,)):
        by_method[method] = by_method.get(method, 0) - amount
    rows = conn.execute("SELECT id, number, device, cashier, created_at, total_fen FROM sales "
                        "WHERE business_date = ? AND number > ? ORDER BY number LIMIT ?", (day, after, limit + 1))
    items = [dict(r) for r in rows]
    more = len(items) > limit
    items = items[:limit]
    return {"date": day, "sales_count": count, "sales_fen": gross, "returns_count": r_count, "refunds_fen": refunds,
            "net_fen": gross - refunds, "net_by_method_fen": by_method, "sales": items,
            "next_after": items[-1]["number"] if more else None}
