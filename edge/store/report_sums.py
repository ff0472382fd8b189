"""The sums behind a report, over a range of business days: every figure is a sum, so the sums of two
ranges side by side add up to the sums of both. That lets a report reuse the days that are over.

A business day that is over does not change: sales, returns, hand-overs and received orders are all
stamped with the time they are written, so they land on today. The one exception is a reversal (冲正)
of an earlier hand-over. `ClosedDays` keeps the sums of closed ranges, each with a mark of its rows
(counts from the indexes, milliseconds to read): a reversal, a restore or any late write changes the
mark, and the sums are read again.
"""

from __future__ import annotations

import heapq
import sqlite3
import threading
from bisect import bisect_right
from collections import OrderedDict
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from edge.core.clock import day_bounds, iso

TOP_PRODUCTS = 10


def days_of(first: str, last: str) -> list[str]:
    start = date.fromisoformat(first)
    return [(start + timedelta(days=n)).isoformat() for n in range((date.fromisoformat(last) - start).days + 1)]


def bounds(first: str, last: str, tz: ZoneInfo, cutoff: time) -> tuple[str, str]:
    """UTC [start, end) of business days first..last."""
    return day_bounds(first, tz, cutoff)[0], day_bounds(last, tz, cutoff)[1]


def _key_length(first: str, last: str, tz: ZoneInfo, cutoff: time) -> int:
    """How much of a UTC stamp to group by: the hour ('2026-11-21T08') when local hours and the cut-off
    fall on whole UTC hours, else the minute; each group then goes to its local hour and business day."""
    whole = cutoff.minute == 0 and all(
        datetime.combine(date.fromisoformat(d), time(12), tzinfo=tz).utcoffset() % timedelta(hours=1) == timedelta()
        for d in (first, last))
    return 13 if whole else 16


def _bucketer(first: str, last: str, tz: ZoneInfo, cutoff: time):
    """A function from a grouped UTC stamp to (business day, local hour)."""
    days = days_of(first, last)
    starts = [day_bounds(d, tz, cutoff)[0] for d in days]

    def place(key: str) -> tuple[str, int]:
        moment = datetime.strptime(key, "%Y-%m-%dT%H" if len(key) == 13 else "%Y-%m-%dT%H:%M")
        moment = moment.replace(tzinfo=timezone.utc)
        return days[max(0, bisect_right(starts, iso(moment)) - 1)], moment.astimezone(tz).hour
    return place


# `+o.state`: read from the hand-overs' time index, never from the orders' state index (every order ever
# handed over); a standing hand-over's order is picked_up, the test only guards against a stray row
HANDED_OVER = ("FROM pickups p JOIN orders o ON o.id = p.order_id WHERE p.verified_at >= ? AND p.verified_at < ? "
               "AND p.reversed_at IS NULL AND +o.state = 'picked_up'")
SOLD = ("WITH sold AS (SELECT l.sku, l.qty, l.amount_fen AS fen FROM sale_lines l JOIN sales s ON s.id = l.sale_id "
        "WHERE s.business_date BETWEEN ? AND ? UNION ALL SELECT l.sku, l.qty, l.qty * l.price_fen FROM pickups p "
        "JOIN order_lines l ON l.order_id = p.order_id JOIN orders o ON o.id = p.order_id WHERE p.verified_at >= ? "
        "AND p.verified_at < ? AND p.reversed_at IS NULL AND +o.state = 'picked_up') ")


def sums(conn: sqlite3.Connection, first: str, last: str, tz: ZoneInfo, cutoff: time, detail: bool = True) -> dict:
    """The sums of business days first..last; without `detail`, only the headline counts and amounts."""
    start, end = bounds(first, last, tz, cutoff)
    out: dict = {}
    out["sales_count"], out["sales_fen"], out["change_fen"] = conn.execute(
        "SELECT count(*), coalesce(sum(total_fen), 0), coalesce(sum(change_fen), 0) FROM sales "
        "WHERE business_date BETWEEN ? AND ?", (first, last)).fetchone()
    out["returns_count"], out["refunds_fen"] = conn.execute(
        "SELECT count(*), coalesce(sum(refund_fen), 0) FROM returns WHERE business_date BETWEEN ? AND ?",
        (first, last)).fetchone()
    out["handed_over"], out["online_fen"] = conn.execute(
        f"SELECT count(*), coalesce(sum(o.total_fen), 0) {HANDED_OVER}", (start, end)).fetchone()
    out["received"] = conn.execute("SELECT count(*) FROM orders WHERE received_at >= ? AND received_at < ?",
                                   (start, end)).fetchone()[0]
    if not detail:
        return out
    out["paid"] = dict(conn.execute(
        "SELECT p.method, sum(p.amount_fen) FROM sale_payments p JOIN sales s ON s.id = p.sale_id "
        "WHERE s.business_date BETWEEN ? AND ? GROUP BY p.method", (first, last)).fetchall())
    out["refunded"] = dict(conn.execute("SELECT method, sum(amount_fen) FROM return_refunds WHERE business_date "
                                        "BETWEEN ? AND ? GROUP BY method", (first, last)).fetchall())
    # per day: sales count and amount, refunds, online count and amount
    days = out["days"] = {}
    for day, count, fen in conn.execute("SELECT business_date, count(*), sum(total_fen) FROM sales "
                                        "WHERE business_date BETWEEN ? AND ? GROUP BY business_date", (first, last)):
        days[day] = [count, fen, 0, 0, 0]
    for day, fen in conn.execute("SELECT business_date, sum(refund_fen) FROM returns WHERE business_date BETWEEN ? "
                                 "AND ? GROUP BY business_date", (first, last)):
        days.setdefault(day, [0, 0, 0, 0, 0])[2] = fen
    # per local hour: sales count and amount, online count and amount
    hours = out["hours"] = {}
    n = _key_length(first, last, tz, cutoff)
    place = _bucketer(first, last, tz, cutoff)
    for key, count, fen in conn.execute(f"SELECT substr(created_at, 1, {n}) AS k, count(*), sum(total_fen) "
                                        "FROM sales WHERE business_date BETWEEN ? AND ? GROUP BY k", (first, last)):
        slot = hours.setdefault(place(key)[1], [0, 0, 0, 0])
        slot[0] += count
        slot[1] += fen
    for key, count, fen in conn.execute(f"SELECT substr(p.verified_at, 1, {n}) AS k, count(*), sum(o.total_fen) "
                                        f"{HANDED_OVER} GROUP BY k", (start, end)):
        day, hour = place(key)
        slot = days.setdefault(day, [0, 0, 0, 0, 0])
        slot[3] += count
        slot[4] += fen
        slot = hours.setdefault(hour, [0, 0, 0, 0])
        slot[2] += count
        slot[3] += fen
    # per product and per category: till lines and the lines of orders handed over
    args = (first, last, start, end)
    out["skus"] = {sku: [qty, fen] for sku, qty, fen in conn.execute(
        SOLD + "SELECT sku, sum(qty), sum(fen) FROM sold GROUP BY sku", args)}
    out["top"] = top(out["skus"])
    out["categories"] = {category: [qty, fen] for category, qty, fen in conn.execute(
        SOLD + "SELECT p.category, sum(s.qty), sum(s.fen) FROM sold s LEFT JOIN products p USING (sku) "
        "GROUP BY p.category", args)}
    return out


def top(skus: dict, among=None) -> list[str]:
    """The TOP_PRODUCTS best-selling SKUs (by amount, then SKU), among `among` (default: all)."""
    return [sku for sku, _ in heapq.nsmallest(TOP_PRODUCTS, ((k, skus[k]) for k in (skus if among is None else among)),
                                              key=lambda item: (-item[1][1], item[0]))]


def merge(a: dict, b: dict) -> dict:
    """The sums of two ranges that do not overlap, added (neither is changed)."""
    out = {}
    for key, value in a.items():
        other = b[key]
        if isinstance(value, dict):
            # a shallow copy of the bigger side (a month of SKUs): its lists are shared, never changed in place
            big, small = (value, other) if len(value) >= len(other) else (other, value)
            merged = dict(big)
            for k, v in small.items():
                if k not in merged:
                    merged[k] = v
                elif isinstance(v, list):
                    merged[k] = [x + y for x, y in zip(merged[k], v)]
                else:
                    merged[k] = merged[k] + v
            out[key] = merged
        elif key == "top":
            # the top of both is among the bigger side's top and the smaller side's every SKU: a SKU the smaller
            # side did not sell, outside the bigger side's top, has TOP_PRODUCTS ahead of it there, still ahead
            big, small = (a, b) if len(a["skus"]) >= len(b["skus"]) else (b, a)
            out[key] = top(out["skus"], among=set(big["top"]) | set(small["skus"]))
        else:
            out[key] = value + other
    return out


def mark(conn: sqlite3.Connection, first: str, last: str, tz: ZoneInfo, cutoff: time) -> tuple:
    """What the rows of a range look like, read from indexes only: a change means the sums are stale."""
    start, end = bounds(first, last, tz, cutoff)
    return tuple(conn.execute(
        "SELECT (SELECT count(*) FROM sales WHERE business_date BETWEEN ?1 AND ?2), "
        "(SELECT count(*) FROM returns WHERE business_date BETWEEN ?1 AND ?2), "
        "(SELECT count(*) FROM pickups WHERE verified_at >= ?3 AND verified_at < ?4 AND reversed_at IS NULL), "
        "(SELECT count(*) FROM orders WHERE received_at >= ?3 AND received_at < ?4)",
        (first, last, start, end)).fetchone())


class ClosedDays:
    """The sums of ranges of closed business days, the most recently used kept (shared by the reader
    threads, hence the lock)."""

    def __init__(self, size: int = 8):
        self.size = size
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def sums(self, conn: sqlite3.Connection, first: str, last: str, tz: ZoneInfo, cutoff: time,
             detail: bool = True) -> dict:
        key = (first, last, tz.key, cutoff.isoformat(), detail)
        now = mark(conn, first, last, tz, cutoff)
        with self._lock:
            found = self._items.get(key)
            if found is not None and found[0] == now:
                self._items.move_to_end(key)
                self.hits += 1
                return found[1]
            self.misses += 1
        value = sums(conn, first, last, tz, cutoff, detail)
        with self._lock:
            self._items[key] = (now, value)
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value
