"""A member's points and stored value at the reference cloud (docs/members.md, "The cloud's ledgers").

Two append-only ledgers, `member_points_ledger` and `member_value_ledger`: a member's points and balance are
the sums of their deltas, and nothing else holds them. Each row has an activity_id that is UNIQUE in its
ledger: a store's `member.activity` (sale:<id>, return:<id>) is applied once, whatever event carries it and
however often (a resend under a new event id after an epoch change finds its row and changes nothing).

What the stores report happened: an activity that spends past the balance (offline, within the store's own
caps) is applied all the same and its row flagged `points_overspent` / `stored_value_overspent` for a person
(the goods left the store), as the coupons' over-use is.

Every function runs inside its caller's transaction (hub/db.py's `Conn`).
"""

from __future__ import annotations

import json
import logging
import uuid

from hub.db import Conn, placeholders
from hub.errors import HubError, clean, not_found
from protocol.fields import show

log = logging.getLogger(__name__)

POINTS, VALUE = "member_points_ledger", "member_value_ledger"
OVERSPENT = {POINTS: "points_overspent", VALUE: "stored_value_overspent"}
LEDGER_NAMES = {POINTS: "points", VALUE: "stored_value"}
COLUMNS = {POINTS: "id, activity_id, store_id, kind, delta, earned, spent, balance_after, hold_id, offline, flags, "
                   "reason, at, event_id, received_at",
           VALUE: "id, activity_id, store_id, kind, delta, balance_after, hold_id, offline, flags, reason, at, "
                  "event_id, received_at"}


async def member_exists(db: Conn, member_id: str) -> bool:
    return await db.fetchval("SELECT 1 FROM members WHERE member_id = $1", member_id) is not None


async def lock_member(db: Conn, member_id: str) -> bool:
    """member_exists, and on PostgreSQL the member's row locked to the end of the transaction: two holds for
    one member through two hub processes read the balance one after the other, so neither counts what the
    other takes (SQLite's one writer gives this already). NO KEY UPDATE: the ledgers' rows that reference
    the member (an upload's activity) are not held up by it. An activity does not take this lock: it is
    applied whatever the balance, and a spend past it is flagged."""
    lock = " FOR NO KEY UPDATE" if db.dialect == "postgresql" else ""
    return await db.fetchval("SELECT 1 FROM members WHERE member_id = $1" + lock, member_id) is not None


async def balance(db: Conn, ledger: str, member_id: str) -> int:
    # CAST: PostgreSQL's sum of a BIGINT is a NUMERIC (a Decimal in Python)
    return await db.fetchval(f"SELECT CAST(coalesce(sum(delta), 0) AS BIGINT) FROM {ledger} WHERE member_id = $1",
                             member_id)


async def held(db: Conn, member_id: str, now: str) -> tuple[int, int]:
    """(points, fen) of the member's open holds: neither captured nor released, and not expired."""
    row = await db.fetchrow("SELECT CAST(coalesce(sum(points), 0) AS BIGINT), "
                            "CAST(coalesce(sum(amount_fen), 0) AS BIGINT) FROM member_holds "
                            "WHERE member_id = $1 AND released_at IS NULL AND captured_at IS NULL AND "
                            "expires_at > $2", member_id, now)
    return row[0], row[1]


async def balances(db: Conn, member_id: str, now: str) -> dict:
    """The ledgers' sums, what open holds set aside, and what is left to spend (which may be below 0 after an
    overspend)."""
    points, fen = await balance(db, POINTS, member_id), await balance(db, VALUE, member_id)
    held_points, held_fen = await held(db, member_id, now)
    return {"points": points, "balance_fen": fen, "points_held": held_points, "balance_fen_held": held_fen,
            "points_available": points - held_points, "balance_fen_available": fen - held_fen}


async def money(db: Conn, member_id: str, now: str) -> dict:
    """What the admin API shows of a member beside its row: the ledgers' balances and the open holds."""
    return {**await balances(db, member_id, now), "holds": await open_holds(db, member_id, now)}


async def with_balances(db: Conn, rows: list) -> list[dict]:
    """Members' rows with `points` and `balance_fen` from the ledgers, for what a store sees (a certificate,
    a look-up): floored at 0, since an overspent member has nothing to spend and the store's models count
    from 0."""
    return [{**dict(row), "points": max(0, await balance(db, POINTS, row["member_id"])),
             "balance_fen": max(0, await balance(db, VALUE, row["member_id"]))} for row in rows]


async def add_entry(db: Conn, ledger: str, member_id: str, activity_id: str, kind: str, delta: int, now: str, *,
                    at: str | None = None, store_id: str | None = None, hold_id: str | None = None,
                    offline: bool = False, reason: str | None = None, event_id: str | None = None,
                    parts: tuple[int, int] | None = None) -> dict:
    """Append a row; flagged overspent when it takes the balance below 0. parts: (earned, spent) of a points
    row."""
    after = await balance(db, ledger, member_id) + delta
    flags = [OVERSPENT[ledger]] if delta < 0 and after < 0 else []
    columns = ["member_id", "activity_id", "store_id", "kind", "delta", "balance_after", "hold_id", "offline",
               "flags", "reason", "at", "event_id", "received_at"]
    values = [member_id, activity_id, store_id, kind, delta, after, hold_id, int(offline), json.dumps(flags),
              reason, at or now, event_id, now]
    if parts is not None:
        columns += ["earned", "spent"]
        values += list(parts)
    row_id = await db.fetchval(f"INSERT INTO {ledger} ({', '.join(columns)}) VALUES "
                               f"({placeholders(1, len(values))}) RETURNING id", *values)
    return {"id": row_id, "ledger": LEDGER_NAMES[ledger], "delta": delta, "balance_after": after, "flags": flags}


async def add_openings(db: Conn, member_id: str, points: int, balance_fen: int, now: str) -> None:
    """A new member's amounts, as each ledger's first row."""
    for ledger, amount in ((POINTS, points), (VALUE, balance_fen)):
        if amount:
            await add_entry(db, ledger, member_id, f"opening:{member_id}", "opening", amount, now)


async def adjust(db: Conn, ledger: str, member_id: str, delta: int, reason: str, now: str) -> dict:
    """The chain's own row: a points adjustment, a top-up (充值) or a correction of the balance. A decrease
    may not take what is free to spend (beside open holds) below 0: 409."""
    if not await member_exists(db, member_id):
        raise not_found(f"no member {member_id}")
    free = await balances(db, member_id, now)
    key = "points_available" if ledger == POINTS else "balance_fen_available"
    if delta < 0 and free[key] + delta < 0:
        code = "insufficient_points" if ledger == POINTS else "insufficient_balance"
        raise HubError(409, code, f"member {member_id} has {free[key]} free, less than {-delta}",
                       points_available=free["points_available"],
                       balance_fen_available=free["balance_fen_available"])
    kind = "adjust" if ledger == POINTS else "topup"
    entry = await add_entry(db, ledger, member_id, f"{kind}:{uuid.uuid4()}", kind, delta, now, reason=reason,
                            parts=(max(delta, 0), max(-delta, 0)) if ledger == POINTS else None)
    return {"member_id": member_id, "entry": entry, **await balances(db, member_id, now)}


# -- the stores' member.activity ------------------------------------------------------------------------------

async def activity_problem(db: Conn, store_id: str, payload: dict) -> str | None:
    """Why an activity (already on the contract) cannot be applied, or None."""
    member_id, hold_id = payload["member_id"], payload.get("hold_id")
    if not await member_exists(db, member_id):
        return f"unknown_member: {show(member_id)} is not a member of the chain"
    if hold_id is not None:
        hold = await db.fetchrow("SELECT store_id, member_id FROM member_holds WHERE hold_id = $1", hold_id)
        if hold is None or hold["store_id"] != store_id or hold["member_id"] != member_id:
            return f"unknown_hold: {hold_id} is not a hold store {store_id} made for member {show(member_id)}"
    return None


async def apply_activity(db: Conn, store_id: str, event: dict, now: str) -> None:
    """Apply a sale's or a return's points and stored value once per activity_id; the sale's hold stops
    counting (captured: the activity's amounts are the ledger's, whatever the hold held)."""
    payload = event["payload"]
    activity_id, member_id = payload["activity_id"], payload["member_id"]
    first = await db.fetchval(f"SELECT event_id FROM {POINTS} WHERE activity_id = $1", activity_id)
    if first is not None:
        log.info("member activity applied already", extra={"kv": {"store": store_id, "activity": activity_id,
                                                                  "event": event["id"], "first_event": first}})
        return
    common = {"store_id": store_id, "hold_id": payload.get("hold_id"), "offline": payload["offline"],
              "at": clean(payload["at"], 40), "event_id": event["id"]}
    kind = "sale" if payload.get("return_id") is None else "return"
    earned, spent = payload["points_earned"], payload["points_spent"]
    entries = [await add_entry(db, POINTS, member_id, activity_id, kind, earned - spent, now, parts=(earned, spent),
                               **common)]
    if payload["stored_value_fen"]:
        entries.append(await add_entry(db, VALUE, member_id, activity_id, kind, payload["stored_value_fen"], now,
                                       **common))
    if common["hold_id"] is not None:
        await db.execute("UPDATE member_holds SET captured_at = $1, activity_id = $2 WHERE hold_id = $3 AND "
                         "captured_at IS NULL", now, activity_id, common["hold_id"])
    for entry in entries:
        if entry["flags"]:
            log.warning("member overspent", extra={"kv": {"store": store_id, "member": member_id,
                                                          "activity": activity_id, "ledger": entry["ledger"],
                                                          "delta": entry["delta"], "balance": entry["balance_after"],
                                                          "offline": payload["offline"]}})


# -- what the admin API reads ---------------------------------------------------------------------------------

def entry_view(ledger: str, row) -> dict:
    view = {"ledger": LEDGER_NAMES[ledger], **dict(row)}
    view["offline"], view["flags"] = bool(view["offline"]), json.loads(view["flags"])
    return view


async def ledger_rows(db: Conn, member_id: str, limit: int) -> dict:
    """Both ledgers of a member, newest first."""
    if not await member_exists(db, member_id):
        raise not_found(f"no member {member_id}")
    return {ledger_name: [entry_view(ledger, r) for r in await db.fetch(
        f"SELECT {COLUMNS[ledger]} FROM {ledger} WHERE member_id = $1 ORDER BY id DESC LIMIT $2", member_id, limit)]
        for ledger, ledger_name in LEDGER_NAMES.items()}


async def flagged(db: Conn, limit: int) -> list[dict]:
    """The flagged rows of both ledgers, newest first (by when the hub received them)."""
    rows = []
    for ledger in (POINTS, VALUE):
        rows += [{**entry_view(ledger, r), "member_id": r["member_id"]} for r in await db.fetch(
            f"SELECT member_id, {COLUMNS[ledger]} FROM {ledger} WHERE flags <> '[]' ORDER BY id DESC LIMIT $1",
            limit)]
    return sorted(rows, key=lambda r: (r["received_at"], r["id"]), reverse=True)[:limit]


async def open_holds(db: Conn, member_id: str, now: str) -> list[dict]:
    return [dict(r) for r in await db.fetch(
        "SELECT hold_id, store_id, points, amount_fen, created_at, expires_at FROM member_holds WHERE member_id = $1 "
        "AND released_at IS NULL AND captured_at IS NULL AND expires_at > $2 ORDER BY created_at", member_id, now)]
