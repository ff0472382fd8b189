"""Holds (protocol 8.2, docs/members.md): before a sale spends a member's points or stored value online, the
store asks the cloud to set them aside; the sale's `member.activity` captures the hold, a cashier who abandons
the sale releases it, and a hold nobody captures stops counting after HOLD_SECONDS.

The store names the hold (h-<uuid4>): asking again with the same id and body, after a lost answer, is the
same hold and the same answer; the same id with another body is a mistake (409 hold_mismatch).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from aiohttp import web

from edge.core.clock import iso
from hub.db import Conn
from hub.errors import HubError
from hub.http import answer, auth_store, model_body
from hub.member_ledgers import balances, lock_member
from hub.state import HUB
from protocol.fields import show
from protocol.members import HOLD_SECONDS, HoldIn

log = logging.getLogger(__name__)

ANSWERED = ("hold_id", "member_id", "points", "amount_fen", "expires_at", "points_left", "balance_fen_left")


async def create_hold(db: Conn, store_id: str, hold: HoldIn, now: str, expires_at: str) -> tuple[int, dict]:
    """(201, the answer) for a new hold, (200, the first answer) for the same one asked again."""
    row = await db.fetchrow(f"SELECT store_id, {', '.join(ANSWERED)} FROM member_holds WHERE hold_id = $1",
                            hold.hold_id)
    if row is not None:
        if (row["store_id"], row["member_id"], row["points"], row["amount_fen"]) != (
                store_id, hold.member_id, hold.points, hold.amount_fen):
            raise HubError(409, "hold_mismatch", f"hold {hold.hold_id} was made with another body: a new hold needs "
                                                 "a new hold_id")
        return 200, {k: row[k] for k in ANSWERED}
    if not await lock_member(db, hold.member_id):
        raise HubError(404, "unknown_member", f"no member {hold.member_id}")
    free = await balances(db, hold.member_id, now)
    short = [(code, have, want) for code, have, want in (
        ("insufficient_points", free["points_available"], hold.points),
        ("insufficient_balance", free["balance_fen_available"], hold.amount_fen)) if want > have]
    if short:
        code, have, want = short[0]
        what = "points" if code == "insufficient_points" else "fen of stored value"
        raise HubError(409, code, f"member {hold.member_id} has {max(have, 0)} {what} free, not {want}",
                       points_available=max(free["points_available"], 0),
                       balance_fen_available=max(free["balance_fen_available"], 0))
    answered = {"hold_id": hold.hold_id, "member_id": hold.member_id, "points": hold.points,
                "amount_fen": hold.amount_fen, "expires_at": expires_at,
                "points_left": free["points_available"] - hold.points,
                "balance_fen_left": free["balance_fen_available"] - hold.amount_fen}
    await db.execute("INSERT INTO member_holds (hold_id, store_id, member_id, points, amount_fen, points_left, "
                     "balance_fen_left, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                     hold.hold_id, store_id, hold.member_id, hold.points, hold.amount_fen, answered["points_left"],
                     answered["balance_fen_left"], now, expires_at)
    return 201, answered


async def release_hold(db: Conn, store_id: str, hold_id: str, now: str) -> dict:
    """Release a hold of this store (again: the same answer); a captured hold cannot be (409)."""
    row = await db.fetchrow("SELECT member_id, points, amount_fen, expires_at, released_at, captured_at FROM "
                            "member_holds WHERE hold_id = $1 AND store_id = $2", hold_id, store_id)
    if row is None:
        raise HubError(404, "unknown_hold", f"store {store_id} has no hold {show(hold_id)}")
    if row["captured_at"] is not None:
        raise HubError(409, "hold_captured", f"hold {hold_id} was captured by its sale at {row['captured_at']}")
    released_at = row["released_at"] or now
    if row["released_at"] is None:
        await db.execute("UPDATE member_holds SET released_at = $1 WHERE hold_id = $2", now, hold_id)
    return {"hold_id": hold_id, "member_id": row["member_id"], "points": row["points"],
            "amount_fen": row["amount_fen"], "expires_at": row["expires_at"], "released_at": released_at}


async def store_create_hold(request: web.Request) -> web.Response:
    """POST /sync/v1/stores/{store_id}/members/holds."""
    store_id = await auth_store(request)
    hold = await model_body(request, HoldIn)
    hub = request.app[HUB]
    moment = hub.now()
    status, answered = await hub.db.write(create_hold, store_id, hold, iso(moment),
                                      iso(moment + timedelta(seconds=HOLD_SECONDS)))
    if status == 201:
        log.info("member hold", extra={"kv": {"store": store_id, "member": hold.member_id, "hold": hold.hold_id,
                                              "points": hold.points, "fen": hold.amount_fen}})
    return answer(request, answered, status)


async def store_release_hold(request: web.Request) -> web.Response:
    """DELETE /sync/v1/stores/{store_id}/members/holds/{hold_id}: the cashier abandoned the sale."""
    store_id = await auth_store(request)
    hub = request.app[HUB]
    released = await hub.db.write(release_hold, store_id, request.match_info["hold_id"], iso(hub.now()))
    log.info("member hold released", extra={"kv": {"store": store_id, "hold": released["hold_id"]}})
    return answer(request, released)
