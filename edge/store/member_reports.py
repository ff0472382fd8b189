"""What the manager's members page (/ui/members) reads for one business day: the sales with a member
(how many, how much), the points and stored value that moved (earned, spent, given back, taken back;
online and offline apart) and the offline spends, each against the member code's snapshot.

An offline spend (no hold at the cloud: the link was down) was checked at the till only against what the
store knew: the member code's points and balance less what this store spent since (the offline caps).
Another store or the mini-program may have spent the same points meanwhile; only the cloud can tell, and
flags it (`points_overspent`, docs/members.md). So each offline spend is listed with the balance the
till went by, as waiting for the cloud.
"""

from __future__ import annotations

import sqlite3

SALES_SHOWN = 200   # a day's member sales listed at most (the figures above the list count them all)

# the day's activity of both kinds, each row with the business day of its sale or of its return
_ACTIVITY = """
SELECT a.*, 0 AS is_return, s.number, s.created_at, s.total_fen FROM sales s
JOIN member_activity a ON a.activity_id = 'sale:' || s.id WHERE s.business_date = ?
UNION ALL
SELECT a.*, 1 AS is_return, s.number, r.created_at, r.refund_fen FROM returns r
JOIN member_activity a ON a.activity_id = 'return:' || r.id JOIN sales s ON s.id = r.sale_id
WHERE r.business_date = ?
"""

# (key, how a row's signed deltas give it, as a positive figure): a sale earns and spends, a return
# takes back what was earned and gives back what was spent
MOVES = (
    ("points_earned", lambda a: a["points_earned"] if not a["is_return"] else 0),
    ("points_spent", lambda a: a["points_spent"] if not a["is_return"] else 0),
    ("points_given_back", lambda a: -a["points_spent"] if a["is_return"] else 0),
    ("points_taken_back", lambda a: -a["points_earned"] if a["is_return"] else 0),
    ("stored_value_paid", lambda a: -a["stored_value_fen"] if not a["is_return"] else 0),
    ("stored_value_refunded", lambda a: a["stored_value_fen"] if a["is_return"] else 0),
)


def members_day(conn: sqlite3.Connection, day: str) -> dict:
    """The members page's figures for business day `day` (ISO date)."""
    count, amount, members, saved = conn.execute(
        "SELECT count(*), coalesce(sum(s.total_fen), 0), count(DISTINCT m.member_id), coalesce(sum(m.saved_fen), 0) "
        "FROM sales s JOIN sale_members m ON m.sale_id = s.id WHERE s.business_date = ?", (day,)).fetchone()
    activity = [dict(r) for r in conn.execute(_ACTIVITY, (day, day))]
    moves = {key: {"online": 0, "offline": 0} for key, _ in MOVES}
    for row in activity:
        for key, amount_of in MOVES:
            moves[key]["offline" if row["offline"] else "online"] += amount_of(row)
    return {"date": day, "sales_count": count, "sales_fen": amount, "members_count": members, "saved_fen": saved,
            "moves": moves, "sales": _sales(conn, day), "offline_spends": _offline_spends(conn, day)}


def _sales(conn: sqlite3.Connection, day: str) -> list[dict]:
    return [dict(r) for r in conn.execute(
        "SELECT s.id AS sale_id, s.number, s.created_at, s.total_fen, m.name, m.phone, m.level, m.points_earned, "
        "m.points_spent, m.stored_value_fen, m.saved_fen, m.offline FROM sales s "
        "JOIN sale_members m ON m.sale_id = s.id WHERE s.business_date = ? ORDER BY s.created_at DESC, s.number DESC "
        "LIMIT ?", (day, SALES_SHOWN))]


def _offline_spends(conn: sqlite3.Connection, day: str) -> list[dict]:
    """The day's sales that spent points or stored value without a hold, with what the member code
    allowed at that moment: the receipt's balance after the sale plus what the sale spent (less earned)."""
    out = []
    for r in conn.execute(
            "SELECT s.number, s.created_at, m.name, m.phone, m.level, m.points_spent, m.points_earned, "
            "m.stored_value_fen, m.points_balance, m.stored_value_balance_fen FROM sales s "
            "JOIN sale_members m ON m.sale_id = s.id WHERE s.business_date = ? AND m.offline = 1 "
            "AND (m.points_spent > 0 OR m.stored_value_fen > 0) ORDER BY s.created_at DESC", (day,)):
        row = dict(r)
        row["points_before"] = row["points_balance"] + row["points_spent"] - row["points_earned"]
        row["stored_value_before_fen"] = row["stored_value_balance_fen"] + row["stored_value_fen"]
        out.append(row)
    return out
