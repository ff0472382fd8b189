"""Reports for a business day or a range of them: what the manager's 报表 page and GET /api/v1/reports show.

What counts (docs/api.md says the same):
- till: the sales and returns recorded on the range's business days (their `business_date`, which
  the cut-off already decided when they were written); net = sales - refunds;
- online: the orders handed over (核销) in the range, at their order total: a hand-over stamped
  between the start of the first business day and the end of the last (day_bounds, with the cut-off),
  not reversed (冲正). A cancelled or refunded order is never handed over, so never counted; a reversed
  hand-over counts on the day the order is handed over again. Online orders are paid to the chain,
  not at the till: they are their own line of the payment split;
- revenue = till sales - till refunds + online.
Product and category figures are line amounts (after line discounts; a sale-level discount and
returns are in the totals, not spread over products).
"""

from __future__ import annotations

import sqlite3
from bisect import bisect_right
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from edge.core.clock import day_bounds, iso
from edge.core.errors import InputError

MAX_DAYS = 366
TOP_PRODUCTS = 10
PICKUP_LIST_LIMIT = 500


def check_range(first: str, last: str) -> tuple[str, str]:
    """Both ISO dates, in order, at most MAX_DAYS days: else a 400 that says which."""
    days = []
    for name, raw in (("from", first), ("to", last)):
        try:
            days.append(date.fromisoformat(raw) if len(raw) == 10 else None)
        except ValueError:
            days.append(None)
        if days[-1] is None:
            raise InputError("invalid_query", f"{name} must be a date like 2026-11-21", field=name, status=400)
    if days[1] < days[0]:
        raise InputError("invalid_range", f"to ({last}) is before from ({first})", field="to", status=400)
    if (days[1] - days[0]).days + 1 > MAX_DAYS:
        raise InputError("range_too_long", f"a report covers at most {MAX_DAYS} days; {first} to {last} is "
                         f"{(days[1] - days[0]).days + 1}", field="to", status=400)
    return days[0].isoformat(), days[1].isoformat()


def _days(first: str, last: str) -> list[str]:
    start = date.fromisoformat(first)
    return [(start + timedelta(days=n)).isoformat() for n in range((date.fromisoformat(last) - start).days + 1)]


def _shift(day: str, days: int) -> str:
    return (date.fromisoformat(day) + timedelta(days=days)).isoformat()


def _key_length(first: str, last: str, tz: ZoneInfo, cutoff: time) -> int:
    """How much of a UTC stamp to group by: the hour ('2026-11-21T08') when local hours and the cut-off
    fall on whole UTC hours, else the minute; each group then goes to its local hour and business day."""
    whole = cutoff.minute == 0 and all(
        datetime.combine(date.fromisoformat(d), time(12), tzinfo=tz).utcoffset() % timedelta(hours=1) == timedelta()
        for d in (first, last))
    return 13 if whole else 16


def _bucketer(first: str, last: str, tz: ZoneInfo, cutoff: time):
    """A function from a grouped UTC stamp to (business day, local hour)."""
    days = _days(first, last)
    starts = [day_bounds(d, tz, cutoff)[0] for d in days]

    def place(key: str) -> tuple[str, int]:
        moment = datetime.strptime(key, "%Y-%m-%dT%H" if len(key) == 13 else "%Y-%m-%dT%H:%M")
        moment = moment.replace(tzinfo=timezone.utc)
        return days[max(0, bisect_right(starts, iso(moment)) - 1)], moment.astimezone(tz).hour
    return place


def totals(conn: sqlite3.Connection, first: str, last: str, tz: ZoneInfo, cutoff: time) -> dict:
    """The headline figures of a range: till, online, and revenue."""
    start, end = day_bounds(first, tz, cutoff)[0], day_bounds(last, tz, cutoff)[1]
    sales_count, sales_fen = conn.execute("SELECT count(*), coalesce(sum(total_fen), 0) FROM sales "
                                          "WHERE business_date BETWEEN ? AND ?", (first, last)).fetchone()
    returns_count, refunds_fen = conn.execute("SELECT count(*), coalesce(sum(refund_fen), 0) FROM returns "
                                              "WHERE business_date BETWEEN ? AND ?", (first, last)).fetchone()
    handed, online_fen = conn.execute(
        "SELECT count(*), coalesce(sum(o.total_fen), 0) FROM pickups p JOIN orders o ON o.id = p.order_id "
        "WHERE p.verified_at >= ? AND p.verified_at < ? AND p.reversed_at IS NULL AND o.state = 'picked_up'",
        (start, end)).fetchone()
    received = conn.execute("SELECT count(*) FROM orders WHERE received_at >= ? AND received_at < ?",
                            (start, end)).fetchone()[0]
    return {"revenue_fen": sales_fen - refunds_fen + online_fen,
            "till": {"sales_count": sales_count, "sales_fen": sales_fen, "returns_count": returns_count,
                     "refunds_fen": refunds_fen, "net_fen": sales_fen - refunds_fen},
            "online": {"handed_over_count": handed, "fen": online_fen, "received_count": received}}


def comparisons(first: str, last: str) -> list[tuple[str, str, str]]:
    """(what, from, to): a day against the day before and the same weekday a week before; a range
    against the range of the same length just before it."""
    if first == last:
        return [("previous_day", _shift(first, -1), _shift(first, -1)),
                ("same_day_last_week", _shift(first, -7), _shift(first, -7))]
    length = len(_days(first, last))
    return [("previous_range", _shift(first, -length), _shift(first, -1))]


def _change_pct(now: int, then: int) -> float | None:
    return None if then == 0 else round((now - then) * 100 / then, 1)


def payments(conn: sqlite3.Connection, first: str, last: str) -> dict[str, int]:
    """The till's money by payment method, net of change given and of refunds (as sales.day_summary)."""
    by_method: dict[str, int] = {}
    for method, amount in conn.execute(
            "SELECT p.method, sum(p.amount_fen) FROM sale_payments p JOIN sales s ON s.id = p.sale_id "
            "WHERE s.business_date BETWEEN ? AND ? GROUP BY p.method", (first, last)):
        by_method[method] = amount
    change = conn.execute("SELECT coalesce(sum(change_fen), 0) FROM sales WHERE business_date BETWEEN ? AND ?",
                          (first, last)).fetchone()[0]
    if change:
        by_method["cash"] = by_method.get("cash", 0) - change
    for method, amount in conn.execute("SELECT refund_method, sum(refund_fen) FROM returns "
                                       "WHERE business_date BETWEEN ? AND ? GROUP BY refund_method", (first, last)):
        by_method[method] = by_method.get(method, 0) - amount
    return dict(sorted(by_method.items(), key=lambda item: -item[1]))


def _by_day_and_hour(conn: sqlite3.Connection, first: str, last: str, tz: ZoneInfo, cutoff: time) -> tuple:
    start, end = day_bounds(first, tz, cutoff)[0], day_bounds(last, tz, cutoff)[1]
    n = _key_length(first, last, tz, cutoff)
    place = _bucketer(first, last, tz, cutoff)
    days = {d: {"date": d, "sales_count": 0, "sales_fen": 0, "refunds_fen": 0, "online_count": 0, "online_fen": 0}
            for d in _days(first, last)}
    hours: dict[int, dict] = {}

    def hour(h: int) -> dict:
        return hours.setdefault(h, {"hour": h, "sales_count": 0, "till_fen": 0, "online_count": 0, "online_fen": 0})

    for day, count, fen in conn.execute("SELECT business_date, count(*), sum(total_fen) FROM sales "
                                        "WHERE business_date BETWEEN ? AND ? GROUP BY business_date", (first, last)):
        days[day]["sales_count"], days[day]["sales_fen"] = count, fen
    for day, fen in conn.execute("SELECT business_date, sum(refund_fen) FROM returns WHERE business_date BETWEEN ? "
                                 "AND ? GROUP BY business_date", (first, last)):
        days[day]["refunds_fen"] = fen
    for key, count, fen in conn.execute(f"SELECT substr(created_at, 1, {n}) AS k, count(*), sum(total_fen) "
                                        "FROM sales WHERE business_date BETWEEN ? AND ? GROUP BY k", (first, last)):
        slot = hour(place(key)[1])
        slot["sales_count"] += count
        slot["till_fen"] += fen
    for key, count, fen in conn.execute(
            f"SELECT substr(p.verified_at, 1, {n}) AS k, count(*), sum(o.total_fen) FROM pickups p "
            "JOIN orders o ON o.id = p.order_id WHERE p.verified_at >= ? AND p.verified_at < ? "
            "AND p.reversed_at IS NULL AND o.state = 'picked_up' GROUP BY k", (start, end)):
        day, h = place(key)
        days[day]["online_count"] += count
        days[day]["online_fen"] += fen
        slot = hour(h)
        slot["online_count"] += count
        slot["online_fen"] += fen
    for d in days.values():
        d["revenue_fen"] = d["sales_fen"] - d["refunds_fen"] + d["online_fen"]
    return list(days.values()), [hours[h] for h in sorted(hours)]


def _products(conn: sqlite3.Connection, first: str, last: str, start: str, end: str) -> tuple[list, list]:
    """Best sellers (by amount) and categories, till lines and handed-over online orders together."""
    lines = ("WITH sold AS (SELECT l.sku, l.qty, l.amount_fen AS fen FROM sale_lines l JOIN sales s ON s.id = l.sale_id "
             "WHERE s.business_date BETWEEN ? AND ? UNION ALL SELECT l.sku, l.qty, l.qty * l.price_fen FROM pickups p "
             "JOIN order_lines l ON l.order_id = p.order_id WHERE p.verified_at >= ? AND p.verified_at < ? "
             "AND p.reversed_at IS NULL), by_sku AS (SELECT sku, sum(qty) AS qty, sum(fen) AS fen FROM sold "
             "GROUP BY sku) ")
    args = (first, last, start, end)
    top = [dict(r) for r in conn.execute(
        lines + "SELECT b.sku, coalesce(p.name, b.sku) AS name, p.unit, b.qty, b.fen FROM by_sku b "
        "LEFT JOIN products p USING (sku) ORDER BY b.fen DESC, b.sku LIMIT ?", (*args, TOP_PRODUCTS))]
    categories = [dict(r) for r in conn.execute(
        lines + "SELECT p.category, count(*) AS products, sum(b.qty) AS qty, sum(b.fen) AS fen FROM by_sku b "
        "LEFT JOIN products p USING (sku) GROUP BY p.category ORDER BY fen DESC", args)]
    return top, categories


def pickup_records(conn: sqlite3.Connection, start: str, end: str, limit: int = PICKUP_LIST_LIMIT) -> dict:
    """核销 records stamped in [start, end), oldest first: order number, staff (display name when the
    operator is a user's name), reversed ones too (marked)."""
    rows = conn.execute(
        "SELECT p.id, p.verified_at, o.number AS order_number, o.total_fen, p.operator, "
        "coalesce(u.display_name, p.operator) AS staff, p.provisional, p.reversed_at, "
        "coalesce(r.display_name, p.reversed_by) AS reversed_by FROM pickups p JOIN orders o ON o.id = p.order_id "
        "LEFT JOIN users u ON u.name = p.operator LEFT JOIN users r ON r.name = p.reversed_by "
        "WHERE p.verified_at >= ? AND p.verified_at < ? ORDER BY p.verified_at, p.id LIMIT ?",
        (start, end, limit + 1)).fetchall()
    items = [{**dict(r), "provisional": bool(r["provisional"])} for r in rows[:limit]]
    return {"items": items, "more": len(rows) > limit}


def report(conn: sqlite3.Connection, first: str, last: str, tz: ZoneInfo, cutoff: time) -> dict:
    """Everything the report page shows for the business days first..last (checked by check_range)."""
    first, last = check_range(first, last)
    start, end = day_bounds(first, tz, cutoff)[0], day_bounds(last, tz, cutoff)[1]
    main = totals(conn, first, last, tz, cutoff)
    compare = []
    for what, c_first, c_last in comparisons(first, last):
        figures = totals(conn, c_first, c_last, tz, cutoff)
        compare.append({"what": what, "from": c_first, "to": c_last, **figures,
                        "revenue_change_pct": _change_pct(main["revenue_fen"], figures["revenue_fen"])})
    days, hours = _by_day_and_hour(conn, first, last, tz, cutoff)
    top, categories = _products(conn, first, last, start, end)
    return {"from": first, "to": last, "days_count": len(days), "start_at": start, "end_at": end, **main,
            "compare": compare, "payments_fen": payments(conn, first, last), "days": days, "hours": hours,
            "top_products": top, "categories": categories, "pickups": pickup_records(conn, start, end)}
