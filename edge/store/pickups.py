"""到店自提 核销: look up an online order by its signed pickup token or typed code, hand it over, reverse.

Two steps, as staff expect: `lookup` shows the order and whether it can be handed over (it writes
nothing); `hand_over` checks the order's state again and, in one transaction, releases the reservation,
issues the stock, records who handed it over, tells the cloud and queues the pickup slip. A code
works once: the second try says when and by whom it was used. Works offline: the order was synced
before, the token's signature is checked with a synced key, and the hand-over is marked provisional.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Annotated

from pydantic import ConfigDict, Field, StringConstraints, model_validator

from edge.core.context import WriteContext
from edge.core.errors import InputError
from edge.core.jws import COMPACT_PATTERN, MAX_TOKEN
from edge.core.refusals import refusal
from edge.core.schemas import Body, SaleMemberRef, Text
from edge.store import member_sales, outbox, shifts, spool
from edge.store.orders import OPEN_STATES, get_order
from edge.store.signed_tokens import TokenRefused, verify
from edge.store.stock import Move, apply_moves


@dataclass(frozen=True)
class Checks:
    """What verification needs beyond the database: which store this is, the time, the cloud link."""

    store_id: str
    online: bool        # False while the cloud is unreachable: hand-overs are provisional
    now: float = field(default_factory=time.time)


def _token_or_code(schema: dict) -> None:
    # exactly one of the two, as _one checks: a null counts as absent
    schema["oneOf"] = [{"required": ["token"], "properties": {"token": {"type": "string"}}},
                       {"required": ["code"], "properties": {"code": {"type": "string"}}}]


class PickupIn(Body):
    model_config = ConfigDict(json_schema_extra=_token_or_code)

    token: Annotated[str, Field(min_length=1, max_length=MAX_TOKEN, description="The QR code's text",
                                json_schema_extra={"pattern": COMPACT_PATTERN})] | None = None
    code: Annotated[str, Field(pattern=r"^[0-9]{6,8}$", description="A typed numeric pickup code")] | None = None

    @model_validator(mode="after")
    def _one(self):
        if (self.token is None) == (self.code is None):
            raise ValueError("give exactly one of token or code")
        return self


class HandOver(PickupIn):
    operator: Text
    member_id: Annotated[str, Field(pattern=r"^[\x21-\x7e]{1,64}$", description=(
        "The member (会员) the customer showed at the counter: one verified at this store in the last 30 "
        "minutes; the cloud's pickup.verified names them"))] | None = None


class Reversal(Body):
    operator: Text
    reason: Text


class ManualHandOver(Body):
    """A hand-over without the customer's code (lost, phone dead): a manager's, with the reason why."""
    order_id: Annotated[str, Field(min_length=1, max_length=64)]
    operator: Text
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


def code_hash(code: str) -> str:
    return hashlib.sha256(code.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Identified:
    """The order a token or code names, found once: the token's signature is checked here, on a reader,
    and the result handed to the hand-over's transaction (and its audit line) instead of checked again."""

    order_id: str | None             # None: no order has this code, or the token was refused
    method: str                      # token, code
    jti: str | None = None
    refused: InputError | None = None  # raised by find, inside the hand-over's idempotent write: a replay
                                       # of a done hand-over is still answered with its first result


def identify(conn: sqlite3.Connection, body: PickupIn, checks: Checks) -> Identified:
    if body.token is not None:
        try:
            token = verify(conn, body.token, store_id=checks.store_id, now=checks.now, kind="pickup")
        except TokenRefused as exc:
            return Identified(None, "token", refused=refusal(exc.reason, exc.message))
        return Identified(token.subject, "token", token.jti)
    # a code may come back in a later order: the open order first, else the last handed over
    row = conn.execute(
        "SELECT id FROM orders WHERE pickup_code_sha256 = ? ORDER BY state NOT IN ('received', 'accepted', "
        "'ready'), received_at DESC LIMIT 1", (code_hash(body.code),)).fetchone()
    return Identified(row[0] if row else None, "code")


def find(conn: sqlite3.Connection, body: PickupIn, checks: Checks,
         identified: Identified | None = None) -> tuple[dict, str, str | None]:
    """(order, method, jti) for a token or code that may be handed over; else a refusal."""
    found = identified or identify(conn, body, checks)
    if found.refused is not None:
        raise found.refused
    if found.order_id is None:
        raise refusal("bad_code", "no order has this pickup code")
    return _handable(conn, _order(conn, found.order_id)), found.method, found.jti


def _order(conn: sqlite3.Connection, order_id: str) -> dict:
    if conn.execute("SELECT 1 FROM orders WHERE id = ?", (order_id,)).fetchone() is None:
        raise refusal("unknown_order", f"no order {order_id} at this store")
    return get_order(conn, order_id)


def _handable(conn: sqlite3.Connection, order: dict) -> dict:
    """The order if it may be handed over; else the refusal that says why not."""
    if order["state"] == "picked_up":
        used = conn.execute("SELECT verified_at, operator, device FROM pickups WHERE order_id = ? "
                            "AND reversed_at IS NULL", (order["id"],)).fetchone()
        raise refusal("already_used", f"order {order['number']} was handed over already",
                      used_at=used[0] if used else None, used_by=used[1] if used else None,
                      device=used[2] if used else None, order_number=order["number"])
    if order["state"] not in OPEN_STATES:
        raise refusal("not_ready", f"order {order['number']} is {order['state']}", state=order["state"],
                      order_number=order["number"])
    return order


def lookup(conn: sqlite3.Connection, body: PickupIn, checks: Checks) -> dict:
    """Step one: the order, its items and state, and how the hand-over would be recorded."""
    order, method, _ = find(conn, body, checks)
    return {"order": order, "method": method, "provisional": not checks.online}


def hand_over(conn: sqlite3.Connection, body: HandOver, checks: Checks, ctx: WriteContext,
              identified: Identified | None = None) -> dict:
    """Step two, in the caller's transaction: stock out, the record, the event, the slip. With
    `identified` (from `identify`, read before the transaction) the token is not verified again."""
    order, method, jti = find(conn, body, checks, identified)
    if body.member_id is not None:  # as a sale by member id: one verified or looked up here in 30 minutes
        member_sales.resolve(conn, SaleMemberRef(member_id=body.member_id),
                             member_sales.MemberChecks(None, checks.store_id, checks.now), take=False)
    return _hand_over(conn, order, method, jti, body.operator, checks, ctx, member_id=body.member_id)


def hand_over_manual(conn: sqlite3.Connection, body: ManualHandOver, checks: Checks, ctx: WriteContext) -> dict:
    """A hand-over without the code, in the caller's transaction (with its audit line). The record and
    the cloud's event say why (`manual_reason`); method 'code', jti none: no token was verified."""
    order = _handable(conn, _order(conn, body.order_id))
    return _hand_over(conn, order, "code", None, body.operator, checks, ctx, manual_reason=body.reason)


def _hand_over(conn: sqlite3.Connection, order: dict, method: str, jti: str | None, operator: str, checks: Checks,
               ctx: WriteContext, manual_reason: str | None = None, member_id: str | None = None) -> dict:
    moves = apply_moves(conn, [m for line in order["lines"] for m in (
        Move(line["sku"], -line["qty"], "release"), Move(line["sku"], -line["qty"], "pickup"))],
        "order", order["id"], ctx)
    provisional = not checks.online
    cur = conn.execute("INSERT INTO pickups (order_id, method, jti, operator, device, provisional, verified_at, "
                       "shift_id, manual_reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (order["id"], method, jti, operator, ctx.device, int(provisional), ctx.now,
                        shifts.current_id(conn, ctx.device), manual_reason))
    conn.execute("UPDATE orders SET state = 'picked_up', updated_at = ? WHERE id = ?", (ctx.now, order["id"]))
    # manual_reason and member_id only when there is one: an older cloud's payload stays exactly as it was
    outbox.emit(conn, "pickup.verified", {
        "order_id": order["id"], "method": method, "operator": operator, "device": ctx.device,
        "provisional": provisional, "verified_at": ctx.now, "jti": jti, "moves": moves,
        **({"manual_reason": manual_reason} if manual_reason else {}),
        **({"member_id": member_id} if member_id else {})}, ctx.now)
    slip = spool.enqueue(conn, "pickup_slip", f"pickup_slip:{order['id']}:{cur.lastrowid}", {
        "order_id": order["id"], "verified_at": ctx.now, "operator": operator, "provisional": provisional},
        ctx, order_id=order["id"])
    return {"pickup": get_pickup(conn, cur.lastrowid), "order": get_order(conn, order["id"]),
            "print_job": slip and {"id": slip["id"], "printer": slip["printer"]}, "member_id": member_id}


def reverse(conn: sqlite3.Connection, order_id: str, body: Reversal, ctx: WriteContext) -> dict:
    """冲正: undo a hand-over made by mistake. The goods are back, reserved for the order again."""
    order = get_order(conn, order_id)
    row = conn.execute("SELECT id FROM pickups WHERE order_id = ? AND reversed_at IS NULL", (order_id,)).fetchone()
    if order["state"] != "picked_up" or row is None:
        raise refusal("not_picked_up", f"order {order['number']} is {order['state']}, not handed over")
    moves = apply_moves(conn, [m for line in order["lines"] for m in (
        Move(line["sku"], line["qty"], "pickup"), Move(line["sku"], line["qty"], "reserve"))],
        "order", order_id, ctx)
    conn.execute("UPDATE pickups SET reversed_at = ?, reversed_by = ?, reverse_reason = ? WHERE id = ?",
                 (ctx.now, body.operator, body.reason, row[0]))
    conn.execute("UPDATE orders SET state = 'ready', updated_at = ? WHERE id = ?", (ctx.now, order_id))
    outbox.emit(conn, "pickup.reversed", {"order_id": order_id, "operator": body.operator, "reason": body.reason,
                                          "moves": moves}, ctx.now)
    return {"pickup": get_pickup(conn, row[0]), "order": get_order(conn, order_id)}


def get_pickup(conn: sqlite3.Connection, pickup_id: int) -> dict:
    row = dict(conn.execute("SELECT * FROM pickups WHERE id = ?", (pickup_id,)).fetchone())
    row["provisional"] = bool(row["provisional"])
    return row


def for_order(conn: sqlite3.Connection, order_id: str) -> list[dict]:
    """An order's hand-overs, newest first (a reversed one and its redo are both there)."""
    return [{**dict(r), "provisional": bool(r["provisional"])} for r in conn.execute(
        "SELECT * FROM pickups WHERE order_id = ? ORDER BY id DESC", (order_id,))]


def list_pickups(conn: sqlite3.Connection, *, before: int | None = None, limit: int = 100) -> dict:
    rows = conn.execute("SELECT p.*, o.number FROM pickups p JOIN orders o ON o.id = p.order_id "
                        "WHERE p.id < ? ORDER BY p.id DESC LIMIT ?", (before or 2**63 - 1, limit + 1)).fetchall()
    items = [{**dict(r), "provisional": bool(r["provisional"])} for r in rows[:limit]]
    return {"items": items, "next_before": items[-1]["id"] if len(rows) > limit else None}
