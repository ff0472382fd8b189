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

The sums come from edge/store/report_sums.py; with its `ClosedDays`, the days before today are read once
and reused while their rows stay as they were, and only today is read at every request.
"""

from __future__ import annotations

import sqlite3
from datetime import date, time, timedelta
from zoneinfo import ZoneInfo

from edge.core.errors import InputError
from edge.store.report_sums import ClosedDays, bounds, days_of, merge, sums

MAX_DAYS = 366
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


def _shift(day: str, days: int) -> str:
    return (date.fromisoformat(day) + timedelta(days=days)).isoformat()


def comparisons(first: str, last: str) -> list[tuple[str, str, str]]:
    """(what, from, to): a day against the day before and the same weekday a week before; a range
    against the range of the same length just before it."""
    if first == last:
        return [("previous_day", _shift(first, -1), _shift(first, -1)),
                ("same_day_last_week", _shift(first, -7), _shift(first, -7))]
    length = len(days_of(first, last))
    return [("previous_range", _shift(first, -length), _shift(first, -1))]


def _change_pct(now: int, then: int) -> float | None:
    return None if then == 0 else round((now - then) * 100 / then, 1)


def _sums(conn, first: str, last: str, tz: ZoneInfo, cutoff: time, today: str | None, closed: ClosedDays | None,
          detail: bool = True) -> dict:
    """The range's sums: the days before today from `closed` (when given), today and later read now."""
    if closed is None or today is None or first >= today:
        return sums(conn, first, last, tz, cutoff, detail)
    before = min(last, _shift(today, -1))
    old = closed.sums(conn, first, before, tz, cutoff, detail)
    return old if last == before else merge(old, sums(conn, today, last, tz, cutoff, detail))


def _totals(s: dict) -> dict:
    return {"revenue_fen": s["sales_fen"] - s["refunds_fen"] + s["online_fen"],
            "till": {"sales_count": s["sales_count"], "sales_fen": s["sales_fen"], "returns_count": s["returns_count"],
                     "refunds_fen": s["refunds_fen"], "net_fen": s["sales_fen"] - s["refunds_fen"]},
            "online": {"handed_over_count": s["handed_over"], "fen": s["online_fen"], "received_count": s["received"]}}


def _payments(s: dict) -> dict[str, int]:
    """The till's money by payment method, net of change given and of refunds (as sales.day_summary)."""
    by_method = dict(s["paid"])
    if s["change_fen"]:
        by_method["cash"] = by_method.get("cash", 0) - s["change_fen"]
    for method, amount in s["refunded"].items():
        by_method[method] = by_method.get(method, 0) - amount
    return dict(sorted(by_method.items(), key=lambda item: -item[1]))


def _top_products(conn: sqlite3.Connection, s: dict) -> list[dict]:
    names = {r[0]: (r[1], r[2]) for r in conn.execute(
        f"SELECT sku, name, unit FROM products WHERE sku IN ({', '.join('?' * len(s['top']))})", s["top"])}
    return [{"sku": sku, "name": names.get(sku, (sku, None))[0], "unit": names.get(sku, (sku, None))[1],
             "qty": s["skus"][sku][0], "fen": s["skus"][sku][1]} for sku in s["top"]]


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


def report(conn: sqlite3.Connection, first: str, last: str, tz: ZoneInfo, cutoff: time, *,
           today: str | None = None, closed: ClosedDays | None = None) -> dict:
    """Everything the report page shows for the business days first..last (checked by check_range).
    `today` and `closed`: reuse the sums of the days before today (edge/store/report_sums.py)."""
    first, last = check_range(first, last)
    start, end = bounds(first, last, tz, cutoff)
    s = _sums(conn, first, last, tz, cutoff, today, closed)
    main = _totals(s)
    compare = []
    for what, c_first, c_last in comparisons(first, last):
        figures = _totals(_sums(conn, c_first, c_last, tz, cutoff, today, closed, detail=False))
        compare.append({"what": what, "from": c_first, "to": c_last, **figures,
                        "revenue_change_pct": _change_pct(main["revenue_fen"], figures["revenue_fen"])})
    days = []
    for day in days_of(first, last):
        count, fen, refunds, online_count, online_fen = s["days"].get(day, (0, 0, 0, 0, 0))
        days.append({"date": day, "sales_count": count, "sales_fen": fen, "refunds_fen": refunds,
                     "online_count": online_count, "online_fen": online_fen, "revenue_fen": fen - refunds + online_fen})
    hours = [{"hour": h, "sales_count": v[0], "till_fen": v[1], "online_count": v[2], "online_fen": v[3]}
             for h, v in sorted(s["hours"].items())]
    categories = [{"category": c, "qty": qty, "fen": fen}
                  for c, (qty, fen) in sorted(s["categories"].items(), key=lambda item: (-item[1][1], item[0] or ""))]
    return {"from": first, "to": last, "days_count": len(days), "start_at": start, "end_at": end, **main,
            "compare": compare, "payments_fen": _payments(s), "days": days, "hours": hours,
            "top_products": _top_products(conn, s), "categories": categories,
            # 核销 records are a daily list: the range's last day (a day of a range has its own report)
            "pickups": {"date": last, **pickup_records(conn, *bounds(last, last, tz, cutoff))}}
