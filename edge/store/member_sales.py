"""A member in the store's sale (docs/members.md "At the till"; issue 12 parts 2-4): the programme and
member prices from the feed, which member a sale names, the member's price of each line, points earned and
spent, stored value paid, what a return gives back, and the offline caps.

Everything is written in the sale's (or the return's) own transaction, with the `member.activity` event
the cloud applies once per activity id: a sale recorded is a sale whose points reach the cloud, and a sale
rolled back took nothing. Money is integer fen, points are integers; every division floors.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from edge.core.clock import iso
from edge.core.context import WriteContext
from edge.core.refusals import refusal
from edge.store import members, outbox
from edge.store.signed_tokens import TokenRefused

SEEN_FOR = timedelta(minutes=30)   # a member named by id must have been verified or looked up this recently


@dataclass(frozen=True)
class Programme:
    version: int
    levels: dict[str, tuple[int, int]]    # level: (discount_pct, points_multiplier_pct)
    points_per_yuan: int
    excluded: frozenset[str]              # categories that earn no points
    fen_per_point: int                    # 0: no programme yet, points cannot pay
    max_pct: int                          # points pay at most this % of a sale

    def level(self, name: str) -> tuple[int, int]:
        # a level the programme does not know gets the list price and the plain rate
        return self.levels.get(name, (100, 100))


NO_PROGRAMME = Programme(0, {}, 0, frozenset(), 0, 0)


@dataclass(frozen=True)
class Hold:
    """The cloud's hold for this sale (docs/sync-protocol.md §8): what it holds and what is left after it."""
    hold_id: str
    points: int
    amount_fen: int
    points_left: int
    balance_fen_left: int


@dataclass(frozen=True)
class MemberChecks:
    """What a sale with a member needs beyond the database: the store, the time, the hold, the caps."""
    chain: str | None
    store_id: str
    now: float
    hold: Hold | None = None            # None: spent offline, within the caps
    points_cap: int = 2000              # [members] offline_points_cap
    stored_value_cap_fen: int = 0       # [members] offline_stored_value_cap_fen (0: online only)


@dataclass(frozen=True)
class SaleMember:
    member_id: str
    level: str
    name: str | None
    phone: str | None
    points: int
    balance_fen: int
    snapshot_at: str


@dataclass(frozen=True)
class Spend:
    """Points and stored value a sale's payments take from the member."""
    points: int
    points_value_fen: int
    stored_value_fen: int


# -- the feed --------------------------------------------------------------------------------------

def apply_program(conn: sqlite3.Connection, payload: dict, now: str) -> bool:
    """`member.program`: the newest version replaces the one held; an older one arriving late is kept out."""
    held = conn.execute("SELECT version FROM member_program WHERE id = 1").fetchone()
    if held is not None and held[0] > payload["version"]:
        return False
    conn.execute("INSERT INTO member_program (id, version, program, updated_at) VALUES (1, ?, ?, ?) "
                 "ON CONFLICT (id) DO UPDATE SET version = excluded.version, program = excluded.program, "
                 "updated_at = excluded.updated_at",
                 (payload["version"], json.dumps(payload, ensure_ascii=False), now))
    return True


def apply_prices(conn: sqlite3.Connection, prices: list[dict], now: str) -> None:
    """`member.prices`: level null is every level (''), price null removes that price."""
    for p in prices:
        level = p.get("level") or ""
        if p.get("price_fen") is None:
            conn.execute("DELETE FROM member_prices WHERE sku = ? AND level = ?", (p["sku"], level))
        else:
            conn.execute("INSERT INTO member_prices (sku, level, price_fen, updated_at) VALUES (?, ?, ?, ?) "
                         "ON CONFLICT (sku, level) DO UPDATE SET price_fen = excluded.price_fen, "
                         "updated_at = excluded.updated_at", (p["sku"], level, p["price_fen"], now))


def programme(conn: sqlite3.Connection) -> Programme:
    row = conn.execute("SELECT program FROM member_program WHERE id = 1").fetchone()
    if row is None:
        return NO_PROGRAMME
    p = json.loads(row[0])
    return Programme(version=p["version"],
                     levels={lv["level"]: (lv["discount_pct"], lv["points_multiplier_pct"]) for lv in p["levels"]},
                     points_per_yuan=p["points_per_yuan"], excluded=frozenset(p.get("excluded_categories") or ()),
                     fen_per_point=p["redeem_fen_per_point"], max_pct=p["redeem_max_pct"])


# -- which member ----------------------------------------------------------------------------------

def resolve(conn: sqlite3.Connection, ref, checks: MemberChecks, *, take: bool) -> SaleMember:
    """The sale's member from `{"code"}` (checked as a scan is; taken only when `take`, in the sale's
    transaction) or `{"member_id"}` (seen here in the last 30 minutes). Raises a refusal naming `member`."""
    if ref.code is not None:
        try:
            if take:
                found = members.verify_member_code(conn, ref.code, chain=checks.chain, store_id=checks.store_id,
                                                   now=checks.now).as_dict()
            else:
                found = members.check(conn, ref.code, chain=checks.chain, store_id=checks.store_id,
                                      now=checks.now).as_dict()
        except TokenRefused as exc:
            raise refusal(exc.reason, exc.message, field="member.code") from None
        return SaleMember(found["member_id"], found["level"], found["name"], found["phone"], found["points"],
                          found["balance_fen"], found["snapshot_at"])
    since = iso(datetime.fromtimestamp(checks.now, timezone.utc) - SEEN_FOR)
    row = conn.execute("SELECT member_id, level, name, phone, points, balance_fen, snapshot_at FROM members_seen "
                       "WHERE member_id = ? AND seen_at >= ?", (ref.member_id, since)).fetchone()
    if row is None:
        raise refusal("member_not_seen", f"member {ref.member_id} was not verified or looked up here in the last "
                      "30 minutes", field="member.member_id")
    return SaleMember(*row)


# -- the arithmetic --------------------------------------------------------------------------------

def member_price(conn: sqlite3.Connection, sku: str, list_price: int, level: str, prog: Programme) -> int:
    """The member price for (sku, level), else for (sku, every level), else the level's discount rounded
    half up to the fen; never above the list price."""
    row = conn.execute("SELECT price_fen FROM member_prices WHERE sku = ? AND level IN (?, '') "
                       "ORDER BY level = '' LIMIT 1", (sku, level)).fetchone()
    if row is not None:
        return min(row[0], list_price)
    return min((list_price * prog.level(level)[0] + 50) // 100, list_price)


def spend(payments, total: int, prog: Programme, has_member: bool) -> Spend:
    """Points and stored value among the payments, checked against the programme and the sale's total."""
    points_value = sum(p.amount_fen for p in payments if p.method == "points")
    stored = sum(p.amount_fen for p in payments if p.method == "stored_value")
    if (points_value or stored) and not has_member:
        raise refusal("member_required", "points and stored value pay only with a member on the sale",
                      field="payments")
    if not points_value:
        return Spend(0, 0, stored)
    if not prog.fen_per_point:
        raise refusal("no_member_program", "no member programme has come from the cloud yet", field="payments")
    if points_value % prog.fen_per_point:
        raise refusal("points_not_whole", f"{points_value} fen is not a whole number of points at "
                      f"{prog.fen_per_point} fen a point", field="payments", fen_per_point=prog.fen_per_point)
    limit = total * prog.max_pct // 100
    if points_value > limit:
        raise refusal("points_over_limit", f"points pay at most {prog.max_pct}% of the sale: {limit} fen",
                      field="payments", limit_fen=limit)
    return Spend(points_value // prog.fen_per_point, points_value, stored)


def points_earned(eligible_fen: int, level: str, prog: Programme) -> int:
    return max(eligible_fen, 0) * prog.points_per_yuan * prog.level(level)[1] // 10000


@dataclass(frozen=True)
class Since:
    """What this store did to a member since the cloud's snapshot of them (signed sums of member_activity)."""
    points_spent: int        # net: spent less given back
    stored_paid_fen: int     # net: paid less refunded
    points_earned: int       # net: earned less taken back
    offline_points: int      # the part of points_spent spent without a hold (and its returns)
    offline_paid_fen: int


def since_snapshot(conn: sqlite3.Connection, member: SaleMember) -> Since:
    row = conn.execute("SELECT coalesce(sum(points_spent), 0), coalesce(-sum(stored_value_fen), 0), "
                       "coalesce(sum(points_earned), 0), coalesce(sum(points_spent * offline), 0), "
                       "coalesce(-sum(stored_value_fen * offline), 0) FROM member_activity "
                       "WHERE member_id = ? AND at > ?", (member.member_id, member.snapshot_at)).fetchone()
    return Since(*row)


def check_offline(member: SaleMember, s: Spend, since: Since, checks: MemberChecks) -> None:
    """Without a hold: the snapshot less what this store spent since (plus what it gave back), and the
    member's offline spending since the snapshot within the configured caps."""
    if s.points:
        room = min(member.points - since.points_spent, checks.points_cap - since.offline_points)
        if s.points > room:
            raise refusal("points_offline_cap", f"offline, this member can spend at most {max(room, 0)} points",
                          field="payments", points_available=max(room, 0))
    if s.stored_value_fen:
        if checks.stored_value_cap_fen == 0:
            raise refusal("stored_value_offline_disabled", "stored value pays only while the cloud answers",
                          field="payments")
        room = min(member.balance_fen - since.stored_paid_fen, checks.stored_value_cap_fen - since.offline_paid_fen)
        if s.stored_value_fen > room:
            raise refusal("stored_value_offline_cap", f"offline, this member can pay at most {max(room, 0)} fen "
                          "from the balance", field="payments", balance_fen_available=max(room, 0))


def _balances(member: SaleMember, hold: Hold | None, since: Since) -> tuple[int, int]:
    """Points and balance before this sale: the hold's (the cloud's) when there is one, else the snapshot
    with what this store did since."""
    if hold is not None:
        return hold.points_left + hold.points, hold.balance_fen_left + hold.amount_fen
    return member.points - since.points_spent + since.points_earned, member.balance_fen - since.stored_paid_fen


def record_sale_member(conn: sqlite3.Connection, sale_id: str, member: SaleMember, s: Spend, earned: int,
                       saved: int, checks: MemberChecks, ctx: WriteContext) -> None:
    """The sale's member block, its activity and its `member.activity` event, in the sale's transaction."""
    hold = checks.hold
    if hold is not None and (hold.points, hold.amount_fen) != (s.points, s.stored_value_fen):
        raise refusal("hold_mismatch", "the cloud's hold does not cover this sale's points and stored value")
    offline = hold is None and bool(s.points or s.stored_value_fen)
    since = since_snapshot(conn, member)
    if offline:
        check_offline(member, s, since, checks)
    points_before, balance_before = _balances(member, hold, since)
    conn.execute("INSERT INTO sale_members (sale_id, member_id, level, name, phone, points_earned, points_spent, "
                 "points_value_fen, stored_value_fen, saved_fen, points_balance, stored_value_balance_fen, hold_id, "
                 "offline) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                 (sale_id, member.member_id, member.level, member.name, member.phone, earned, s.points,
                  s.points_value_fen, s.stored_value_fen, saved, points_before - s.points + earned,
                  balance_before - s.stored_value_fen, hold.hold_id if hold else None, int(offline)))
    _activity(conn, f"sale:{sale_id}", member.member_id, member.level, sale_id, None, earned, s.points,
              s.points_value_fen, -s.stored_value_fen, hold.hold_id if hold else None, offline, saved, ctx)


def _activity(conn, activity_id, member_id, level, sale_id, return_id, earned, spent, points_value, stored, hold_id,
              offline, saved, ctx) -> None:
    conn.execute("INSERT INTO member_activity (activity_id, member_id, sale_id, return_id, points_earned, "
                 "points_spent, points_value_fen, stored_value_fen, hold_id, offline, at) "
                 "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                 (activity_id, member_id, sale_id, return_id, earned, spent, points_value, stored, hold_id,
                  int(offline), ctx.now))
    outbox.emit(conn, "member.activity", {
        "activity_id": activity_id, "member_id": member_id, "sale_id": sale_id, "return_id": return_id,
        "level": level, "points_earned": earned, "points_spent": spent, "stored_value_fen": stored,
        "hold_id": hold_id, "offline": offline, "saved_fen": saved, "at": ctx.now}, ctx.now)


def for_sale(conn: sqlite3.Connection, sale_id: str) -> dict | None:
    row = conn.execute("SELECT member_id, level, name, phone, points_earned, points_spent, points_value_fen, "
                       "stored_value_fen, saved_fen, points_balance, stored_value_balance_fen, offline "
                       "FROM sale_members WHERE sale_id = ?", (sale_id,)).fetchone()
    if row is None:
        return None
    out = dict(row)
    out["offline"] = bool(out["offline"])
    return out


# -- returns ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Reversal:
    points_earned: int      # taken back
    points_spent: int       # given back
    points_value_fen: int   # the part of the refund paid back as points
    stored_value_fen: int   # back to the balance


def reversal(conn: sqlite3.Connection, sale: dict, refund_fen: int, last: bool) -> Reversal | None:
    """What a return of `refund_fen` of a member sale gives back: each part in proportion to the refunds
    so far (cumulative floors, so the parts of all returns add up to the sale's whatever the order), the
    last return taking exactly what is left. None for a sale without a member."""
    m = sale.get("member")
    if m is None:
        return None
    before = conn.execute("SELECT coalesce(-sum(a.points_earned), 0), coalesce(-sum(a.points_spent), 0), "
                          "coalesce(sum(a.stored_value_fen), 0), coalesce(sum(r.refund_fen), 0) "
                          "FROM member_activity a JOIN returns r ON r.id = a.return_id WHERE a.sale_id = ?",
                          (sale["id"],)).fetchone()
    total = sale["total_fen"]
    refunded = before[3] + refund_fen

    def share(whole: int, done: int) -> int:
        if last:
            return whole - done
        return whole * refunded // total - done if total else 0

    points_back = share(m["points_spent"], before[1])
    fen_per_point = m["points_value_fen"] // m["points_spent"] if m["points_spent"] else 0
    stored_back = share(m["stored_value_fen"], before[2])
    # a refund never pays more back to the balance and as points than the refund itself
    stored_back = min(stored_back, refund_fen)
    if fen_per_point:
        points_back = min(points_back, (refund_fen - stored_back) // fen_per_point)
    return Reversal(share(m["points_earned"], before[0]), points_back, points_back * fen_per_point, stored_back)


def record_return_member(conn: sqlite3.Connection, sale: dict, return_id: str, r: Reversal,
                         ctx: WriteContext) -> None:
    m = sale["member"]
    # a return of a sale spent offline gives back to the offline sums the caps read
    _activity(conn, f"return:{return_id}", m["member_id"], m["level"], sale["id"], return_id, -r.points_earned,
              -r.points_spent, -r.points_value_fen, r.stored_value_fen, None, m["offline"], 0, ctx)


def for_return(conn: sqlite3.Connection, return_id: str) -> dict | None:
    row = conn.execute("SELECT member_id, -points_earned, -points_spent, -points_value_fen, stored_value_fen "
                       "FROM member_activity WHERE return_id = ?", (return_id,)).fetchone()
    if row is None:
        return None
    return {"member_id": row[0], "points_taken_back": row[1], "points_given_back": row[2],
            "points_value_fen": row[3], "stored_value_fen": row[4]}
