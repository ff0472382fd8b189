"""日结: a business day closed: its totals, the online orders handed over, and every shift of the day.

The day follows the store's cut-off ([store] day_cutoff): sales and returns carry their business day, and
hand-overs (stamped in UTC only) are counted between the day's bounds.
"""

from __future__ import annotations

import sqlite3

from edge.store import sales, shifts


def day_close(conn: sqlite3.Connection, day: str, bounds: tuple[str, str]) -> dict:
    """`bounds`: the UTC [start, end) of the day (edge.core.clock.day_bounds with the store's cut-off)."""
    summary = sales.day_summary(conn, day, limit=1)
    del summary["sales"], summary["next_after"]
    summary["pickups_count"] = conn.execute(
        "SELECT count(*) FROM pickups WHERE verified_at >= ? AND verified_at < ? AND reversed_at IS NULL",
        bounds).fetchone()[0]
    outside = conn.execute("SELECT count(*), coalesce(sum(total_fen), 0) FROM sales WHERE business_date = ? "
                           "AND shift_id IS NULL", (day,)).fetchone()
    summary["outside_shifts"] = {"sales_count": outside[0], "sales_fen": outside[1]}
    day_shifts = shifts.of_day(conn, day)
    summary["shifts"] = day_shifts
    summary["open_shifts"] = sum(1 for s in day_shifts if s["open"])
    summary["difference_fen"] = sum(s["difference_fen"] or 0 for s in day_shifts)
    summary["start"], summary["end"] = bounds
    return summary
